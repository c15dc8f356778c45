//! `kubectl msp approve` and `kubectl msp deny`: an approver adds their
//! decision to an Activation, exactly as the admission policy expects —
//! `approver` is your own user name, `principal` you or a group of yours,
//! appended to `spec.approvals` (which can only grow) — and sees what it
//! changed.

use crate::activate::{describe, wait_seen};
use crate::cluster::Cluster;
use crate::errors::Request;
use crate::identity::{self, Me, me_as_user, parse_person, person_text};
use anyhow::{anyhow, bail};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use msp_operator::api::{Activation, Approval, ApprovalDecision, Person, PersonKind};
use serde_json::json;

/// Arguments of `approve` and `deny`.
#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    /// The Activation (in the namespace).
    pub activation: String,
    /// The approver principal you decide as: User/NAME (you) or Group/NAME
    /// (a group of yours). Default: User/<your user name>.
    #[arg(long, value_parser = parse_person, value_name = "User/NAME|Group/NAME")]
    pub principal: Option<Person>,
}

/// How often a lost race with another writer is retried.
const ATTEMPTS: usize = 5;

/// Runs `approve` (`Approve`) or `deny` (`Deny`).
pub async fn run(
    cluster: &Cluster,
    args: &DecideArgs,
    decision: ApprovalDecision,
) -> anyhow::Result<()> {
    let ns = cluster.namespace.as_str();
    let name = args.activation.as_str();
    let me = identity::whoami(&cluster.client).await?;
    let principal = args.principal.clone().unwrap_or_else(|| me_as_user(&me));
    let approval = Approval {
        approver: me.username.clone(),
        principal,
        decision,
    };
    let api: Api<Activation> = Api::namespaced(cluster.client.clone(), ns);
    let mut attempt = 0;
    let updated = loop {
        attempt += 1;
        let current = get(&api, ns, name).await?;
        precheck(&current, &me, &approval).map_err(|e| anyhow!(e))?;
        let patch = approval_patch(&current, &approval)?;
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(a) => break a,
            // The list appeared, or changed, meanwhile: read it again.
            Err(kube::Error::Api(s)) if attempt < ATTEMPTS && lost_race(s.code, &s.message) => {}
            Err(e) => {
                return Err(Request::new("patch", "activations")
                    .namespace(ns)
                    .name(name)
                    .if_forbidden(format!(
                        "you are no approver of Activations in namespace {ns}; the plan's approvers (and the customer's) are"
                    ))
                    .explain(e));
            }
        }
    };
    let verb = match decision {
        ApprovalDecision::Approve => "approval",
        ApprovalDecision::Deny => "denial",
    };
    crate::output::print(&format!(
        "Your {verb} of Activation {name} (as {}) is recorded.\n",
        person_text(&approval.principal)
    ))?;
    match wait_seen(&api, ns, name, updated.metadata.generation).await? {
        Some(a) => crate::output::print(&describe(&a, ns, Timestamp::now()).0),
        None => crate::output::print(&format!(
            "The operator has not reacted yet; follow it with `kubectl -n {ns} get activation {name}`.\n"
        )),
    }
}

/// A conflict, or the resourceVersion guard of [`approval_patch`] failing.
fn lost_race(code: u16, message: &str) -> bool {
    code == 409 || (code == 422 && message.contains("testing value"))
}

async fn get(api: &Api<Activation>, ns: &str, name: &str) -> anyhow::Result<Activation> {
    api.get(name).await.map_err(|e| {
        Request::new("get", "activations")
            .namespace(ns)
            .name(name)
            .if_missing(format!("`kubectl -n {ns} get activations` lists them"))
            .explain(e)
    })
}

/// Refuses what admission or the operator would refuse or ignore anyway,
/// with a clearer reason.
pub fn precheck(a: &Activation, me: &Me, approval: &Approval) -> Result<(), String> {
    let name = a.name_any();
    if let Some(phase) = a
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .filter(|p| p.is_final())
    {
        return Err(format!(
            "Activation {name} is already {phase:?}: there is nothing left to decide"
        ));
    }
    if a.spec.requester.as_deref() == Some(me.username.as_str()) {
        return Err(format!(
            "you requested Activation {name}; someone else must decide on it"
        ));
    }
    let group = &approval.principal.name;
    if approval.principal.kind == PersonKind::Group && !me.groups.contains(group) {
        return Err(format!(
            "you are not in group {group} (your groups: {}); name a group of yours, or leave --principal out to decide as yourself",
            me.groups.join(", ")
        ));
    }
    let already =
        a.spec.approvals.iter().flatten().any(|given| {
            given.approver == approval.approver && given.principal == approval.principal
        });
    if already {
        return Err(format!(
            "you already decided on Activation {name} as {}; a decision, once given, stays",
            person_text(&approval.principal)
        ));
    }
    Ok(())
}

/// The JSON patch appending `approval`: to the list when there is one,
/// else creating the list, guarded by the resourceVersion read so a list
/// created meanwhile is not replaced.
pub fn approval_patch(a: &Activation, approval: &Approval) -> anyhow::Result<json_patch::Patch> {
    let value = serde_json::to_value(approval)?;
    let ops = match &a.spec.approvals {
        Some(_) => json!([{ "op": "add", "path": "/spec/approvals/-", "value": value }]),
        None => {
            let Some(version) = a.metadata.resource_version.as_deref() else {
                bail!("the Activation as read has no resourceVersion");
            };
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": version },
                { "op": "add", "path": "/spec/approvals", "value": [value] },
            ])
        }
    };
    Ok(serde_json::from_value(ops)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_operator::api::{ActivationPhase, ActivationStatus};
    use msp_operator::fixtures;

    fn activation() -> Activation {
        let mut a = fixtures::activation(
            "db",
            "fix",
            "ops",
            fixtures::person(PersonKind::Group, "oncall"),
            "msp-operator:operator",
            "1h",
        );
        a.spec.requester = Some("carlos".into());
        a.metadata.resource_version = Some("42".into());
        a
    }

    fn lena() -> Me {
        Me {
            username: "lena".into(),
            groups: vec!["contoso:leads".into(), "system:authenticated".into()],
        }
    }

    fn approval(principal: Person) -> Approval {
        Approval {
            approver: "lena".into(),
            principal,
            decision: ApprovalDecision::Approve,
        }
    }

    #[test]
    fn the_first_decision_creates_the_list_guarded_by_the_version_read() {
        let leads = approval(fixtures::person(PersonKind::Group, "contoso:leads"));
        let patch = serde_json::to_value(approval_patch(&activation(), &leads).unwrap()).unwrap();
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": "42" },
                { "op": "add", "path": "/spec/approvals", "value": [
                    { "approver": "lena", "principal": { "kind": "Group", "name": "contoso:leads" }, "decision": "Approve" }
                ] },
            ])
        );
        let mut decided = activation();
        decided.spec.approvals = Some(vec![approval(fixtures::person(PersonKind::User, "dana"))]);
        let patch = serde_json::to_value(approval_patch(&decided, &leads).unwrap()).unwrap();
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(patch[0]["path"], "/spec/approvals/-");
        assert_eq!(patch[0]["value"]["principal"]["name"], "contoso:leads");
    }

    #[test]
    fn decisions_admission_would_refuse_are_refused_first() {
        let me = lena();
        let leads = approval(fixtures::person(PersonKind::Group, "contoso:leads"));
        assert!(precheck(&activation(), &me, &leads).is_ok());
        let stranger = approval(fixtures::person(PersonKind::Group, "fabrikam:dbas"));
        assert!(
            precheck(&activation(), &me, &stranger)
                .unwrap_err()
                .contains("not in group fabrikam:dbas")
        );
        let mut own = activation();
        own.spec.requester = Some("lena".into());
        assert!(
            precheck(&own, &me, &leads)
                .unwrap_err()
                .contains("someone else must decide")
        );
        let mut twice = activation();
        twice.spec.approvals = Some(vec![leads.clone()]);
        assert!(
            precheck(&twice, &me, &leads)
                .unwrap_err()
                .contains("already decided")
        );
        let mut ended = activation();
        ended.status = Some(ActivationStatus {
            phase: Some(ActivationPhase::Expired),
            ..Default::default()
        });
        assert!(
            precheck(&ended, &me, &leads)
                .unwrap_err()
                .contains("already Expired")
        );
    }
}
