//! `kubectl msp customers`: the provider's "My customers" — who accepted
//! which plan, whether it works, and what is waiting — from the
//! `CustomerDelegation` records the operator keeps in the offer's
//! namespace, so a provider needs no access to any customer namespace.

use crate::cluster::Cluster;
use crate::errors::Request;
use crate::output::{self, Format, Table, counts, or_dash};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use msp_operator::api::CustomerDelegation;
use serde::Serialize;

/// Arguments of `customers`.
#[derive(clap::Args, Debug)]
pub struct CustomersArgs {
    /// Only customers of this offer.
    #[arg(long, value_name = "NAME")]
    pub offer: Option<String>,
    /// Every namespace you may read, instead of one.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// One customer Delegation of one of your offers.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRow {
    /// The provider namespace holding the offer (and the record).
    pub namespace: String,
    /// The customer's tenant.
    pub customer: String,
    /// The offer.
    pub offer: String,
    /// The plan.
    pub plan: String,
    /// The version in force (`-`: none).
    pub version: String,
    /// The version the customer asked for.
    pub requested_version: String,
    /// How many namespaces are delegated.
    pub namespaces: i32,
    /// Tenant-wide onboarding (namespaces join and leave by label).
    pub tenant_wide: bool,
    /// Every grant is in place.
    pub ready: bool,
    /// The Ready condition's reason.
    pub reason: String,
    /// Its message: why, and the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A newer version the customer has not accepted yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// Activations in force.
    pub active_activations: i32,
    /// Activations awaiting approval.
    pub pending_activations: i32,
    /// `namespace/name` of the customer's Delegation.
    pub delegation: String,
}

/// Runs `customers`.
pub async fn run(cluster: &Cluster, args: &CustomersArgs, format: Format) -> anyhow::Result<()> {
    let ns = cluster.namespace.as_str();
    let (api, request): (Api<CustomerDelegation>, _) = if args.all_namespaces {
        (
            Api::all(cluster.client.clone()),
            Request::new("list", "customerdelegations").if_forbidden(
                "ask a cluster admin for read access, or name your offer's namespace with -n",
            ),
        )
    } else {
        (
            Api::namespaced(cluster.client.clone(), ns),
            Request::new("list", "customerdelegations").namespace(ns).if_forbidden(format!(
                "customer records live in the namespace of the offer; if {ns} holds your offer, ask an admin of {ns} for the view role there"
            )),
        )
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| request.explain(e))?;
    let rows = rows(&list.items, args.offer.as_deref());
    let empty = match (&args.offer, args.all_namespaces) {
        (Some(o), _) => format!("No customer has accepted offer {o} (namespace {ns})."),
        (None, true) => "No customer has accepted any offer you may read.".to_string(),
        (None, false) => format!("No customer has accepted an offer of namespace {ns}."),
    };
    output::print_rows(format, &rows, &empty, table)
}

/// The records as rows, of offer `offer` only when given, sorted.
pub fn rows(records: &[CustomerDelegation], offer: Option<&str>) -> Vec<CustomerRow> {
    let mut rows: Vec<CustomerRow> = records
        .iter()
        .filter(|r| offer.is_none_or(|o| r.spec.offer == o))
        .map(|r| {
            let s = &r.spec;
            CustomerRow {
                namespace: r.namespace().unwrap_or_default(),
                customer: s.customer_tenant.clone(),
                offer: s.offer.clone(),
                plan: s.plan.clone(),
                version: or_dash(s.applied_version.as_deref()),
                requested_version: s.requested_version.clone(),
                namespaces: s.namespace_count,
                tenant_wide: s.tenant_wide,
                ready: s.ready,
                reason: s.reason.clone(),
                message: s.message.clone(),
                update: s.pending_version.clone(),
                active_activations: s.active_activations,
                pending_activations: s.pending_activations,
                delegation: format!("{}/{}", s.delegation.namespace, s.delegation.name),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.namespace, &a.offer, &a.customer, &a.delegation).cmp(&(
            &b.namespace,
            &b.offer,
            &b.customer,
            &b.delegation,
        ))
    });
    rows
}

fn table(rows: &[CustomerRow]) -> Table {
    let mut table = Table::new(&[
        "customer",
        "offer",
        "plan",
        "version",
        "namespaces",
        "ready",
        "reason",
        "update",
        "activations",
        "delegation",
    ]);
    for r in rows {
        let namespaces = if r.tenant_wide {
            format!("{} (tenant-wide)", r.namespaces)
        } else {
            r.namespaces.to_string()
        };
        table.push(vec![
            r.customer.clone(),
            r.offer.clone(),
            r.plan.clone(),
            r.version.clone(),
            namespaces,
            if r.ready { "True" } else { "False" }.to_string(),
            or_dash(Some(&r.reason)),
            or_dash(r.update.as_deref()),
            counts(&[
                (i64::from(r.active_activations), "active"),
                (i64::from(r.pending_activations), "pending"),
            ]),
            r.delegation.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_operator::api::{CustomerDelegationSpec, DelegationRef};

    fn record(offer: &str, customer: &str, ready: bool) -> CustomerDelegation {
        let mut r = CustomerDelegation::new(
            &CustomerDelegation::name_for("shop", offer),
            CustomerDelegationSpec {
                offer: offer.into(),
                plan: "basic".into(),
                customer_tenant: customer.into(),
                delegation: DelegationRef {
                    namespace: format!("{customer}-ns"),
                    name: format!("{offer}-basic"),
                },
                requested_version: "1.0.0".into(),
                applied_version: ready.then(|| "1.0.0".into()),
                pending_version: Some("2.0.0".into()),
                namespaces: vec!["a".into(), "b".into()],
                namespace_count: 2,
                ready,
                reason: if ready { "Granted" } else { "NotInAudience" }.into(),
                active_activations: 1,
                pending_activations: 2,
                ..Default::default()
            },
        );
        r.metadata.namespace = Some("contoso".into());
        r
    }

    #[test]
    fn records_become_rows_filtered_by_offer() {
        let records = vec![
            record("ops", "tailspin", false),
            record("ops", "fabrikam", true),
            record("backup", "fabrikam", true),
        ];
        let all = rows(&records, None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].offer, "backup");
        let ops = rows(&records, Some("ops"));
        assert_eq!(
            ops.iter().map(|r| r.customer.as_str()).collect::<Vec<_>>(),
            ["fabrikam", "tailspin"]
        );
        let rendered = table(&ops).render();
        assert_eq!(
            rendered,
            "CUSTOMER   OFFER   PLAN    VERSION   NAMESPACES   READY   REASON          UPDATE   ACTIVATIONS           DELEGATION\n\
             fabrikam   ops     basic   1.0.0     2            True    Granted         2.0.0    1 active, 2 pending   fabrikam-ns/ops-basic\n\
             tailspin   ops     basic   -         2            False   NotInAudience   2.0.0    1 active, 2 pending   tailspin-ns/ops-basic\n"
        );
        let json = serde_json::to_value(&ops).unwrap();
        assert_eq!(json[0]["activeActivations"], 1);
        assert_eq!(json[1]["ready"], false);
    }
}
