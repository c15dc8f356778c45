//! `kubectl msp status`: one Delegation explained in plain words — what it
//! accepts, whether it is granted (or the refusal and its fix), each
//! namespace, a waiting update, the provider's own role assignments and
//! the just-in-time access in force — instead of a page of conditions.

use crate::cluster::Cluster;
use crate::errors::{Request, is_forbidden};
use crate::identity::person_text;
use crate::output::{self, Format, Table};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use msp_operator::api::{Activation, ActivationPhase, Delegation};

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The Delegation.
    pub delegation: String,
}

/// Runs `status`.
pub async fn run(cluster: &Cluster, args: &StatusArgs, format: Format) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let name = &args.delegation;
    let d = delegation(cluster, name).await?;
    if let Some(text) = output::document(format, &d)? {
        return output::print(&text);
    }
    let activations = match Api::<Activation>::namespaced(cluster.client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Some(list.items),
        Err(e) if is_forbidden(&e) => None,
        Err(e) => return Err(Request::new("list", "activations").namespace(ns).explain(e)),
    };
    output::print(&explain(&d, activations.as_deref(), Timestamp::now()))
}

fn condition<'a>(d: &'a Delegation, type_: &str) -> Option<&'a Condition> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The Delegation in words; `activations` are the namespace's (`None`:
/// not readable).
pub fn explain(d: &Delegation, activations: Option<&[Activation]>, now: Timestamp) -> String {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let status = d.status.as_ref();
    let provider = status
        .and_then(|s| s.managed_by_tenant.as_deref())
        .map(|t| format!(" of provider {t}"))
        .unwrap_or_default();
    let mut out = format!(
        "Delegation {ns}/{name}\nAccepts:      plan {}, version {} of offer {}/{}{provider}\n",
        d.spec.plan, d.spec.plan_version, d.spec.offer_ref.namespace, d.spec.offer_ref.name
    );
    if let Some(who) = d.annotations().get("msp-operator.io/consented-by") {
        out.push_str(&format!("Consented by: {who}\n"));
    }
    out.push_str(&readiness(d));
    out.push_str(&namespaces(d));
    for (type_, when, label) in [
        ("UpdateAvailable", "True", "Update:       "),
        ("OfferAvailable", "False", "Offer:        "),
        ("PolicyViolation", "True", "Policy:       "),
    ] {
        if let Some(c) = condition(d, type_).filter(|c| c.status == when) {
            out.push_str(&format!("{label}{} ({})\n", c.message, c.reason));
        }
    }
    if let Some(update) = status.and_then(|s| s.pending_update.as_ref()) {
        out.push_str(&format!(
            "              `kubectl msp diff {name} -n {ns}` shows what version {} would change.\n",
            update.version
        ));
    }
    out.push_str(&assignments(d));
    out.push_str(&activation_lines(&name, &ns, activations, now));
    out
}

fn readiness(d: &Delegation) -> String {
    let generation_seen = d
        .status
        .as_ref()
        .is_some_and(|s| s.observed_generation == d.metadata.generation);
    match condition(d, "Ready") {
        None => "Ready:        not yet: the operator has not reconciled it.\n".to_string(),
        Some(c) if c.status == "True" => {
            format!("Ready:        yes ({}): {}\n", c.reason, c.message)
        }
        Some(c) => {
            let stalled = condition(d, "Stalled").is_some_and(|s| s.status == "True");
            let state = if stalled {
                "no, refused"
            } else if !generation_seen {
                "not yet (the operator has not seen the latest change)"
            } else {
                "not yet"
            };
            format!("Ready:        {state} ({}): {}\n", c.reason, c.message)
        }
    }
}

fn namespaces(d: &Delegation) -> String {
    let Some(status) = d.status.as_ref().filter(|s| !s.namespaces.is_empty()) else {
        return String::new();
    };
    let mut table = Table::new(&["namespace", "grants"]);
    for n in &status.namespaces {
        let state = if n.ready {
            format!(
                "in place ({} RoleBinding{})",
                n.bindings,
                if n.bindings == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "not ready: {}",
                n.message.as_deref().unwrap_or("in progress")
            )
        };
        table.push(vec![n.name.clone(), state]);
    }
    format!("Namespaces:\n{}", indent(&table.render()))
}

fn assignments(d: &Delegation) -> String {
    let Some(status) = d
        .status
        .as_ref()
        .filter(|s| !s.provider_assignments.is_empty())
    else {
        return String::new();
    };
    let mut out =
        "Provider assignments (RoleBindings the provider made for its automation):\n".to_string();
    for a in &status.provider_assignments {
        out.push_str(&format!(
            "  {}/{}: {} to ServiceAccounts {}\n",
            a.namespace,
            a.name,
            a.role_ref,
            a.service_accounts.join(", ")
        ));
    }
    out
}

fn activation_lines(
    name: &str,
    ns: &str,
    activations: Option<&[Activation]>,
    now: Timestamp,
) -> String {
    let Some(all) = activations else {
        return format!("Activations:  you may not list Activations in namespace {ns}.\n");
    };
    let open: Vec<&Activation> = all
        .iter()
        .filter(|a| a.spec.delegation == name)
        .filter(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_none_or(|p| !p.is_final())
        })
        .collect();
    if open.is_empty() {
        return "Activations:  none active or pending.\n".to_string();
    }
    let mut table = Table::new(&["activation", "requester", "as", "role", "phase"]);
    for a in open {
        table.push(vec![
            a.name_any(),
            a.spec.requester.clone().unwrap_or_else(|| "-".into()),
            person_text(&a.spec.principal),
            a.spec.role_ref.clone(),
            phase_text(a, now),
        ]);
    }
    format!("Activations:\n{}", indent(&table.render()))
}

/// `Active, expires in 45m`, `Pending: <who must approve>`.
pub fn phase_text(a: &Activation, now: Timestamp) -> String {
    let Some(status) = a.status.as_ref() else {
        return "Pending (not seen by the operator yet)".to_string();
    };
    let reason = status.conditions.iter().find(|c| c.type_ == "Ready");
    match status.phase {
        Some(ActivationPhase::Active) => match &status.expires_at {
            Some(t) => format!(
                "Active, expires in {} ({})",
                output::short_duration(t.0.as_second() - now.as_second()),
                t.0.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => "Active".to_string(),
        },
        Some(phase) => match reason {
            Some(c) if !c.message.is_empty() => format!("{phase:?} ({}): {}", c.reason, c.message),
            _ => format!("{phase:?}"),
        },
        None => "Pending (not seen by the operator yet)".to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Delegation `name` of the namespace, or an error that says where to look
/// (shared with `diff`).
pub async fn delegation(cluster: &Cluster, name: &str) -> anyhow::Result<Delegation> {
    let ns = &cluster.namespace;
    Api::<Delegation>::namespaced(cluster.client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| {
            Request::new("get", "delegations")
                .namespace(ns)
                .name(name)
                .if_missing(format!(
                    "`kubectl msp providers -n {ns}` lists the Delegations there"
                ))
                .explain(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use msp_operator::api::{
        ActivationStatus, DelegationStatus, NamespaceStatus, PendingUpdate, PersonKind,
        ProviderAssignment,
    };
    use msp_operator::fixtures;

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        crate::output::fixtures::condition(type_, status, reason, message)
    }

    fn activation(name: &str, phase: ActivationPhase, expires: Option<i64>) -> Activation {
        let mut a = fixtures::activation(
            "shop",
            name,
            "ops",
            fixtures::person(PersonKind::Group, "oncall"),
            "msp-operator:operator",
            "1h",
        );
        a.spec.requester = Some("carlos".into());
        a.status = Some(ActivationStatus {
            phase: Some(phase),
            expires_at: expires.map(|s| Time(Timestamp::from_second(s).unwrap())),
            conditions: vec![cond(
                "Ready",
                "False",
                "AwaitingApproval",
                "Group/leads must approve",
            )],
            ..Default::default()
        });
        a
    }

    #[test]
    fn a_ready_delegation_reads_in_plain_words() {
        let mut d = fixtures::delegation(
            "shop",
            "ops",
            ("contoso", "o"),
            "p",
            "1.0.0",
            Some(vec!["shop", "web"]),
        );
        d.metadata.generation = Some(1);
        d.metadata.annotations = Some(
            [(
                "msp-operator.io/consented-by".to_string(),
                "carol".to_string(),
            )]
            .into(),
        );
        d.status = Some(DelegationStatus {
            observed_generation: Some(1),
            managed_by_tenant: Some("contoso".into()),
            conditions: vec![
                cond("Ready", "True", "Granted", "every grant is in place"),
                cond(
                    "UpdateAvailable",
                    "True",
                    "NewVersion",
                    "version 2.0.0 is published",
                ),
            ],
            namespaces: vec![
                NamespaceStatus {
                    name: "shop".into(),
                    ready: true,
                    bindings: 2,
                    message: None,
                },
                NamespaceStatus {
                    name: "web".into(),
                    ready: false,
                    bindings: 0,
                    message: Some("waiting".into()),
                },
            ],
            pending_update: Some(PendingUpdate {
                version: "2.0.0".into(),
                ..Default::default()
            }),
            provider_assignments: vec![ProviderAssignment {
                namespace: "web".into(),
                name: "ci".into(),
                role_ref: "msp-operator:reader".into(),
                service_accounts: vec!["deployer".into()],
            }],
            ..Default::default()
        });
        let now = Timestamp::from_second(1_000_000).unwrap();
        let acts = [
            activation("fix-1", ActivationPhase::Active, Some(1_000_000 + 2700)),
            activation("fix-2", ActivationPhase::Pending, None),
            activation("old", ActivationPhase::Expired, None),
        ];
        let text = explain(&d, Some(&acts), now);
        assert_eq!(
            text,
            "Delegation shop/ops\n\
             Accepts:      plan p, version 1.0.0 of offer contoso/o of provider contoso\n\
             Consented by: carol\n\
             Ready:        yes (Granted): every grant is in place\n\
             Namespaces:\n  \
             NAMESPACE   GRANTS\n  \
             shop        in place (2 RoleBindings)\n  \
             web         not ready: waiting\n\
             Update:       version 2.0.0 is published (NewVersion)\n              \
             `kubectl msp diff ops -n shop` shows what version 2.0.0 would change.\n\
             Provider assignments (RoleBindings the provider made for its automation):\n  \
             web/ci: msp-operator:reader to ServiceAccounts deployer\n\
             Activations:\n  \
             ACTIVATION   REQUESTER   AS             ROLE                    PHASE\n  \
             fix-1        carlos      Group/oncall   msp-operator:operator   Active, expires in 45m (1970-01-12T14:31:40Z)\n  \
             fix-2        carlos      Group/oncall   msp-operator:operator   Pending (AwaitingApproval): Group/leads must approve\n"
        );
    }

    #[test]
    fn refusals_and_unreadable_activations_are_said() {
        let mut d = fixtures::delegation("shop", "ops", ("contoso", "o"), "p", "1.0.0", None);
        d.status = Some(DelegationStatus {
            conditions: vec![
                cond(
                    "Ready",
                    "False",
                    "NotInAudience",
                    "ask the provider to add tenant t",
                ),
                cond(
                    "Stalled",
                    "True",
                    "NotInAudience",
                    "ask the provider to add tenant t",
                ),
            ],
            ..Default::default()
        });
        let text = explain(&d, None, Timestamp::now());
        assert!(
            text.contains(
                "Ready:        no, refused (NotInAudience): ask the provider to add tenant t\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("Activations:  you may not list Activations in namespace shop.\n"),
            "{text}"
        );
        d.status = None;
        let fresh = explain(&d, Some(&[]), Timestamp::now());
        assert!(
            fresh.contains("not yet: the operator has not reconciled it"),
            "{fresh}"
        );
        assert!(
            fresh.ends_with("Activations:  none active or pending.\n"),
            "{fresh}"
        );
    }
}
