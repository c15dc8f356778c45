//! `kubectl msp diff`: what accepting the newest published version of a
//! Delegation's plan would change, as `+`/`-` lines, and the one command
//! that accepts it. Consent stays explicit: nothing changes until the
//! customer raises `spec.planVersion`.

use crate::cluster::Cluster;
use crate::identity::person_text;
use crate::output::{self, Format};
use crate::status::delegation;
use msp_operator::api::{
    Authorization, Delegation, EligibleAuthorization, PendingUpdate, PrincipalKind,
};
use serde::Serialize;

/// Arguments of `diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The Delegation.
    pub delegation: String,
}

/// The document `-o json|yaml` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DiffDocument {
    /// `namespace/name` of the Delegation.
    pub delegation: String,
    /// The version the Delegation accepts (`spec.planVersion`).
    pub accepted_version: String,
    /// The newer published version, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// What accepting it changes.
    pub changes: Vec<Change>,
    /// The command that accepts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_command: Option<String>,
}

/// One added or removed grant.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `+` (granted by the new version) or `-` (revoked by it).
    pub change: &'static str,
    /// `permanent` or `eligible` (just-in-time).
    pub grant: &'static str,
    /// `User/NAME`, `Group/NAME` or `ServiceAccount/NAMESPACE/NAME`.
    pub principal: String,
    /// The principal's name as the provider shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_display_name: Option<String>,
    /// The role, with its terms in words.
    pub role: String,
}

/// Runs `diff`.
pub async fn run(cluster: &Cluster, args: &DiffArgs, format: Format) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let name = &args.delegation;
    let d = delegation(cluster, name).await?;
    let doc = document(&d, ns);
    if let Some(text) = output::document(format, &doc)? {
        return output::print(&text);
    }
    output::print(&text(&d, &doc))
}

/// The changes of `d`'s pending update, and the command accepting it.
pub fn document(d: &Delegation, ns: &str) -> DiffDocument {
    let name = d.metadata.name.clone().unwrap_or_default();
    let pending = d.status.as_ref().and_then(|s| s.pending_update.as_ref());
    DiffDocument {
        delegation: format!("{ns}/{name}"),
        accepted_version: d.spec.plan_version.clone(),
        pending_version: pending.map(|p| p.version.clone()),
        changes: pending.map(changes).unwrap_or_default(),
        accept_command: pending.map(|p| accept_command(ns, &name, &p.version)),
    }
}

/// `kubectl patch` raising `spec.planVersion` to `version`.
pub fn accept_command(ns: &str, name: &str, version: &str) -> String {
    format!(
        "kubectl -n {ns} patch delegation {name} --type merge -p '{{\"spec\":{{\"planVersion\":\"{version}\"}}}}'"
    )
}

fn changes(p: &PendingUpdate) -> Vec<Change> {
    let permanent = |change, a: &Authorization| Change {
        change,
        grant: "permanent",
        principal: principal(a),
        principal_display_name: a.principal_display_name.clone(),
        role: role(a),
    };
    let eligible = |change, e: &EligibleAuthorization| Change {
        change,
        grant: "eligible",
        principal: person_text(&e.principal),
        principal_display_name: e.principal_display_name.clone(),
        role: eligible_role(e),
    };
    let mut out: Vec<Change> = p.added.iter().map(|a| permanent("+", a)).collect();
    out.extend(p.removed.iter().map(|a| permanent("-", a)));
    out.extend(p.eligible_added.iter().map(|e| eligible("+", e)));
    out.extend(p.eligible_removed.iter().map(|e| eligible("-", e)));
    out
}

fn principal(a: &Authorization) -> String {
    let p = &a.principal;
    match p.kind {
        PrincipalKind::User => format!("User/{}", p.name),
        PrincipalKind::Group => format!("Group/{}", p.name),
        PrincipalKind::ServiceAccount => match &p.namespace {
            Some(ns) => format!("ServiceAccount/{ns}/{}", p.name),
            None => format!("ServiceAccount/{}", p.name),
        },
    }
}

fn role(a: &Authorization) -> String {
    match &a.delegated_roles {
        Some(roles) if !roles.is_empty() => {
            let names: Vec<&str> = roles.iter().map(|r| r.0.as_str()).collect();
            format!("{} (may bind {})", a.role_ref, names.join(", "))
        }
        _ => a.role_ref.clone(),
    }
}

fn eligible_role(e: &EligibleAuthorization) -> String {
    let mut terms = vec![format!("for at most {}", e.max_duration)];
    let approvers: Vec<String> = e.approvers().iter().map(person_text).collect();
    if !approvers.is_empty() {
        terms.push(format!("approved by {}", approvers.join(" or ")));
    }
    if e.require_justification {
        terms.push("with a justification".into());
    }
    format!("{} {}", e.role_ref, terms.join(", "))
}

/// The plain-words diff.
pub fn text(d: &Delegation, doc: &DiffDocument) -> String {
    let status = d.status.as_ref();
    let Some(version) = &doc.pending_version else {
        let latest = status.and_then(|s| s.latest_version.as_deref());
        return match latest {
            None => format!(
                "Delegation {} has not been reconciled yet: nothing to compare.\n",
                doc.delegation
            ),
            Some(l) if l == doc.accepted_version => format!(
                "Delegation {} is up to date: it accepts version {l} of plan {}, the latest published.\n",
                doc.delegation, d.spec.plan
            ),
            Some(l) => format!(
                "Delegation {} accepts version {} of plan {}; the latest published is {l}, with no change to compare (`kubectl msp status` explains the Delegation).\n",
                doc.delegation, doc.accepted_version, d.spec.plan
            ),
        };
    };
    let mut out = format!(
        "Delegation {} accepts version {} of plan {} (offer {}/{}); version {version} is published.\n",
        doc.delegation,
        doc.accepted_version,
        d.spec.plan,
        d.spec.offer_ref.namespace,
        d.spec.offer_ref.name
    );
    if doc.changes.is_empty() {
        out.push_str("Accepting it changes no grant.\n");
    } else {
        out.push_str(&format!(
            "Accepting {version} changes the provider's grants in each delegated namespace:\n"
        ));
    }
    for c in &doc.changes {
        let eligible = if c.grant == "eligible" {
            "eligible "
        } else {
            ""
        };
        let display = c
            .principal_display_name
            .as_ref()
            .map(|n| format!(" (\"{n}\")"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {eligible}{}{display}: {}\n",
            c.change, c.principal, c.role
        ));
    }
    if let Some(command) = &doc.accept_command {
        out.push_str(&format!("To accept version {version}:\n  {command}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_operator::api::{DelegationStatus, PersonKind, RoleName};
    use msp_operator::fixtures;

    fn delegation(pending: Option<PendingUpdate>, latest: Option<&str>) -> Delegation {
        let mut d = fixtures::delegation("shop", "ops", ("contoso", "o"), "p", "1.0.0", None);
        d.status = Some(DelegationStatus {
            latest_version: latest.map(String::from),
            pending_update: pending,
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_pending_update_shows_added_and_removed_grants_and_how_to_accept() {
        let mut assigner = fixtures::auth(
            PrincipalKind::ServiceAccount,
            "ci",
            "msp-operator:role-assigner",
        );
        assigner.principal.namespace = Some("contoso".into());
        assigner.delegated_roles = Some(vec![RoleName("msp-operator:reader".into())]);
        let mut eligible = fixtures::eligible(
            fixtures::person(PersonKind::Group, "oncall"),
            "msp-operator:operator",
            "1h",
            vec![fixtures::person(PersonKind::Group, "leads")],
        );
        eligible.require_justification = true;
        let pending = PendingUpdate {
            version: "2.0.0".into(),
            added: vec![
                fixtures::auth(PrincipalKind::User, "jane", "msp-operator:operator"),
                assigner,
            ],
            removed: vec![fixtures::auth(
                PrincipalKind::User,
                "jane",
                "msp-operator:reader",
            )],
            eligible_added: vec![eligible],
            eligible_removed: Vec::new(),
        };
        let d = delegation(Some(pending), Some("2.0.0"));
        let doc = document(&d, "shop");
        assert_eq!(
            text(&d, &doc),
            "Delegation shop/ops accepts version 1.0.0 of plan p (offer contoso/o); version 2.0.0 is published.\n\
             Accepting 2.0.0 changes the provider's grants in each delegated namespace:\n\
             + User/jane (\"jane at the provider\"): msp-operator:operator\n\
             + ServiceAccount/contoso/ci (\"ci at the provider\"): msp-operator:role-assigner (may bind msp-operator:reader)\n\
             - User/jane (\"jane at the provider\"): msp-operator:reader\n\
             + eligible Group/oncall: msp-operator:operator for at most 1h, approved by Group/leads, with a justification\n\
             To accept version 2.0.0:\n  \
             kubectl -n shop patch delegation ops --type merge -p '{\"spec\":{\"planVersion\":\"2.0.0\"}}'\n"
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["pendingVersion"], "2.0.0");
        assert_eq!(json["changes"][3]["grant"], "eligible");
    }

    #[test]
    fn up_to_date_and_unreconciled_delegations_say_so() {
        let d = delegation(None, Some("1.0.0"));
        let doc = document(&d, "shop");
        assert!(doc.accept_command.is_none());
        assert_eq!(
            text(&d, &doc),
            "Delegation shop/ops is up to date: it accepts version 1.0.0 of plan p, the latest published.\n"
        );
        let mut fresh = delegation(None, None);
        fresh.status = None;
        assert!(text(&fresh, &document(&fresh, "shop")).contains("has not been reconciled yet"));
    }
}
