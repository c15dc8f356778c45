//! `kubectl msp offers`: the customer's catalog, one row per plan it may
//! accept — the starting point before `kubectl msp accept`.

use crate::catalog;
use crate::cluster::Cluster;
use crate::output::{self, Format, Table};
use msp_operator::api::{OfferCatalogStatus, Visibility};
use serde::Serialize;

/// Arguments of `offers`.
#[derive(clap::Args, Debug)]
pub struct OffersArgs {
    /// Only offers of this provider tenant.
    #[arg(long, value_name = "TENANT")]
    pub provider: Option<String>,
}

/// One plan the namespace's tenant may accept.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OfferRow {
    /// `namespace/name` of the offer (what `accept` takes).
    pub offer: String,
    /// The offer's display name.
    pub offer_display_name: String,
    /// The provider's tenant.
    pub provider: String,
    /// The provider's display name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_display_name: Option<String>,
    /// The plan id.
    pub plan: String,
    /// The plan's display name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_display_name: Option<String>,
    /// The published version.
    pub version: String,
    /// `Public` or `Private` (offered to your tenant by name).
    pub visibility: String,
    /// Permanent authorizations.
    pub permanent_grants: usize,
    /// Eligible (just-in-time) authorizations.
    pub eligible_grants: usize,
}

/// Runs `offers`.
pub async fn run(cluster: &Cluster, args: &OffersArgs, format: Format) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let status = catalog::load(cluster, ns).await?;
    for note in catalog::notes(&status, ns) {
        eprintln!("{note}");
    }
    let rows = rows(&status, args.provider.as_deref());
    let empty = match &args.provider {
        Some(p) => format!("Provider {p} offers nothing your tenant may accept (namespace {ns})."),
        None => format!("No provider offers anything your tenant may accept yet (namespace {ns})."),
    };
    output::print_rows(format, &rows, &empty, table)
}

/// The catalog's plans as rows, of provider `provider` only when given.
pub fn rows(status: &OfferCatalogStatus, provider: Option<&str>) -> Vec<OfferRow> {
    status
        .offers
        .iter()
        .filter(|o| provider.is_none_or(|p| o.provider_tenant == p))
        .flat_map(|o| {
            o.plans.iter().map(move |p| OfferRow {
                offer: format!("{}/{}", o.namespace, o.name),
                offer_display_name: o.display_name.clone(),
                provider: o.provider_tenant.clone(),
                provider_display_name: o.provider_display_name.clone(),
                plan: p.name.clone(),
                plan_display_name: p.display_name.clone(),
                version: p.version.clone(),
                visibility: visibility(p.visibility),
                permanent_grants: p.authorizations.len(),
                eligible_grants: p.eligible_authorizations.len(),
            })
        })
        .collect()
}

fn visibility(v: Option<Visibility>) -> String {
    match v {
        Some(Visibility::Public) => "Public".into(),
        Some(Visibility::Private) => "Private".into(),
        None => "-".into(),
    }
}

fn table(rows: &[OfferRow]) -> Table {
    let mut table = Table::new(&[
        "offer",
        "provider",
        "plan",
        "version",
        "visibility",
        "grants",
    ]);
    for r in rows {
        table.push(vec![
            r.offer.clone(),
            r.provider.clone(),
            r.plan.clone(),
            r.version.clone(),
            r.visibility.clone(),
            grants(r.permanent_grants, r.eligible_grants),
        ]);
    }
    table
}

/// "3 permanent, 1 eligible".
fn grants(permanent: usize, eligible: usize) -> String {
    let mut text = format!("{permanent} permanent");
    if eligible > 0 {
        text.push_str(&format!(", {eligible} eligible"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{catalog, offer, plan};
    use msp_operator::api::CatalogEligibleAuthorization;

    #[test]
    fn every_plan_is_a_row_and_the_provider_filter_narrows() {
        let mut private = plan("vip", "2.0.0");
        private.visibility = Some(Visibility::Private);
        private.eligible_authorizations = vec![CatalogEligibleAuthorization {
            principal: "oncall".into(),
            role_ref: "msp-operator:operator".into(),
            max_duration: "1h".into(),
            ..Default::default()
        }];
        let status = catalog(vec![
            offer(
                "contoso",
                "ops",
                "contoso",
                vec![plan("basic", "1.0.0"), private],
            ),
            offer(
                "tailspin",
                "backup",
                "tailspin",
                vec![plan("daily", "3.1.0")],
            ),
        ]);
        let all = rows(&status, None);
        assert_eq!(all.len(), 3);
        let rendered = table(&all).render();
        assert_eq!(
            rendered,
            "OFFER             PROVIDER   PLAN    VERSION   VISIBILITY   GRANTS\n\
             contoso/ops       contoso    basic   1.0.0     Public       1 permanent\n\
             contoso/ops       contoso    vip     2.0.0     Private      1 permanent, 1 eligible\n\
             tailspin/backup   tailspin   daily   3.1.0     Public       1 permanent\n"
        );
        let tailspin = rows(&status, Some("tailspin"));
        assert_eq!(tailspin.len(), 1);
        assert_eq!(tailspin[0].plan, "daily");
        assert!(rows(&status, Some("nobody")).is_empty());
    }

    #[test]
    fn rows_serialize_in_camel_case() {
        let status = catalog(vec![offer(
            "contoso",
            "ops",
            "contoso",
            vec![plan("basic", "1.0.0")],
        )]);
        let json = serde_json::to_value(rows(&status, None)).unwrap();
        assert_eq!(json[0]["offer"], "contoso/ops");
        assert_eq!(json[0]["permanentGrants"], 1);
        assert_eq!(json[0]["eligibleGrants"], 0);
        assert!(json[0].get("providerDisplayName").is_none());
    }
}
