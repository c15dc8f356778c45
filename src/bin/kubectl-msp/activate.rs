//! `kubectl msp activate`: a provider engineer asks for just-in-time access
//! under a Delegation's eligible authorization, as themselves, and learns
//! at once whether it is granted, waiting for approvers, or refused.
//!
//! Admission refuses an Activation whose `spec.requester` is not the
//! authenticated user or whose principal is not them (or a group of
//! theirs); the requester recorder fills `spec.requester` in where it is
//! installed. So the plugin asks the API server who you are and sets both
//! to that, which is right with or without the recorder.

use crate::cluster::{Cluster, WAIT, poll};
use crate::errors::Request;
use crate::identity::{self, me_as_user, parse_person, person_text};
use anyhow::anyhow;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use msp_operator::api::{Activation, ActivationPhase, ActivationSpec, Person};

/// Arguments of `activate`.
#[derive(clap::Args, Debug)]
pub struct ActivateArgs {
    /// The Delegation (in the namespace) whose plan makes you eligible.
    pub delegation: String,
    /// The eligible ClusterRole to activate.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// How long the access lasts once granted (10s to the plan's maximum),
    /// such as 30m, 1h, 2h30m.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub duration: String,
    /// Why the access is needed (some plans require it).
    #[arg(long, value_name = "TEXT")]
    pub justification: Option<String>,
    /// The eligible principal you act as: User/NAME (you) or Group/NAME (a
    /// group of yours). Default: User/<your user name>.
    #[arg(long, value_parser = parse_person, value_name = "User/NAME|Group/NAME")]
    pub principal: Option<Person>,
}

/// Runs `activate`.
pub async fn run(cluster: &Cluster, args: &ActivateArgs) -> anyhow::Result<()> {
    let ns = cluster.namespace.as_str();
    let me = match (identity::whoami(&cluster.client).await, &args.principal) {
        (Ok(me), _) => Some(me),
        (Err(_), Some(_)) => None,
        (Err(e), None) => return Err(e),
    };
    let principal = match (&args.principal, &me) {
        (Some(p), _) => p.clone(),
        (None, Some(me)) => me_as_user(me),
        (None, None) => return Err(anyhow!("pass --principal User/NAME or Group/NAME")),
    };
    let activation = build(ns, args, principal, me.map(|m| m.username));
    let api: Api<Activation> = Api::namespaced(cluster.client.clone(), ns);
    let created = api
        .create(&PostParams::default(), &activation)
        .await
        .map_err(|e| {
            Request::new("create", "activations")
                .namespace(ns)
                .if_forbidden(format!(
                    "only principals the accepted plan of a Delegation in {ns} makes eligible may; if one of your groups is eligible, pass --principal Group/NAME"
                ))
                .explain(e)
        })?;
    let name = created.name_any();
    crate::output::print(&format!("activation.msp-operator.io/{name} created\n"))?;
    let generation = created.metadata.generation;
    report(&api, ns, &name, generation).await
}

/// The Activation `args` ask for.
pub fn build(
    ns: &str,
    args: &ActivateArgs,
    principal: Person,
    requester: Option<String>,
) -> Activation {
    let mut prefix: String = args.delegation.chars().take(50).collect();
    prefix = prefix.trim_end_matches(['-', '.']).to_string();
    prefix.push('-');
    let mut a = Activation::new(
        "",
        ActivationSpec {
            delegation: args.delegation.clone(),
            principal,
            role_ref: args.role.clone(),
            duration: args.duration.clone(),
            justification: args.justification.clone(),
            requester,
            approvals: None,
        },
    );
    a.metadata.name = None;
    a.metadata.generate_name = Some(prefix);
    a.metadata.namespace = Some(ns.to_string());
    a
}

/// The Activation once the operator has seen generation `generation` (or a
/// later one), `None` after [`WAIT`].
pub async fn wait_seen(
    api: &Api<Activation>,
    ns: &str,
    name: &str,
    generation: Option<i64>,
) -> anyhow::Result<Option<Activation>> {
    poll(WAIT, || {
        let api = api.clone();
        async move {
            let a = api.get(name).await.map_err(|e| {
                Request::new("get", "activations")
                    .namespace(ns)
                    .name(name)
                    .explain(e)
            })?;
            let seen = a
                .status
                .as_ref()
                .is_some_and(|s| s.phase.is_some() && s.observed_generation >= generation);
            Ok(seen.then_some(a))
        }
    })
    .await
}

async fn report(
    api: &Api<Activation>,
    ns: &str,
    name: &str,
    generation: Option<i64>,
) -> anyhow::Result<()> {
    match wait_seen(api, ns, name, generation).await? {
        Some(a) => {
            let (text, ok) = describe(&a, ns, Timestamp::now());
            if ok {
                crate::output::print(&text)
            } else {
                Err(anyhow!(text.trim_end().to_string()))
            }
        }
        None => crate::output::print(&format!(
            "The operator has not decided on Activation {name} within {}s; follow it with `kubectl -n {ns} get activation {name}`.\n",
            WAIT.as_secs()
        )),
    }
}

/// The Activation's state in words, and whether it is granted or may still
/// be (false: ended or refused).
pub fn describe(a: &Activation, ns: &str, now: Timestamp) -> (String, bool) {
    let name = a.name_any();
    let Some(status) = a.status.as_ref() else {
        return (format!("Activation {name} is not decided yet.\n"), true);
    };
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let why = ready
        .map(|c| format!(" ({}): {}", c.reason, c.message))
        .unwrap_or_default();
    let requester = a.spec.requester.as_deref().unwrap_or("the requester");
    match status.phase {
        Some(ActivationPhase::Active) => {
            let until = status
                .expires_at
                .as_ref()
                .map(|t| {
                    format!(
                        " until {} (in {})",
                        t.0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        crate::output::short_duration(t.0.as_second() - now.as_second())
                    )
                })
                .unwrap_or_default();
            (
                format!(
                    "Activation {name} is Active: {} is granted to {requester} in {}{until}.\n",
                    a.spec.role_ref,
                    status.namespaces.join(", ")
                ),
                true,
            )
        }
        Some(ActivationPhase::Pending) | None => (
            format!(
                "Activation {name} is Pending{why}\nAn approver decides with `kubectl msp approve {name} -n {ns}` (or deny).\n"
            ),
            true,
        ),
        Some(phase) => {
            let mut text = format!("Activation {name} is {phase:?}{why}\n");
            if ready.is_some_and(|c| c.reason == "NotEligible") {
                text.push_str(&format!(
                    "It asked as {}; if the plan makes a group of yours eligible, activate again with --principal Group/NAME.\n",
                    person_text(&a.spec.principal)
                ));
            }
            (text, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use msp_operator::api::{ActivationStatus, PersonKind};
    use msp_operator::fixtures;

    fn args() -> ActivateArgs {
        ActivateArgs {
            delegation: "contoso-incident-response".into(),
            role: "msp-operator:operator".into(),
            duration: "30m".into(),
            justification: Some("INC-4711".into()),
            principal: None,
        }
    }

    #[test]
    fn the_request_names_you_and_leaves_approvals_to_approvers() {
        let me = fixtures::person(PersonKind::User, "carlos");
        let a = build("fabrikam-db", &args(), me.clone(), Some("carlos".into()));
        assert_eq!(
            a.metadata.generate_name.as_deref(),
            Some("contoso-incident-response-")
        );
        assert!(a.metadata.name.is_none());
        assert_eq!(a.spec.principal, me);
        assert_eq!(a.spec.requester.as_deref(), Some("carlos"));
        assert_eq!(a.spec.duration, "30m");
        assert!(a.spec.approvals.is_none());
        let long = ActivateArgs {
            delegation: format!("{}-x", "d".repeat(49)),
            ..args()
        };
        let prefix = build("ns", &long, me, None).metadata.generate_name.unwrap();
        assert_eq!(prefix, format!("{}-", "d".repeat(49)));
    }

    fn with_status(phase: ActivationPhase, reason: &str, message: &str) -> Activation {
        let mut a = build(
            "ns",
            &args(),
            fixtures::person(PersonKind::Group, "oncall"),
            Some("carlos".into()),
        );
        a.metadata.name = Some("fix".into());
        a.status = Some(ActivationStatus {
            phase: Some(phase),
            namespaces: vec!["a".into(), "b".into()],
            expires_at: Some(Time(Timestamp::from_second(1_000_000 + 1800).unwrap())),
            conditions: vec![crate::output::fixtures::condition(
                "Ready", "False", reason, message,
            )],
            ..Default::default()
        });
        a
    }

    #[test]
    fn phases_read_in_plain_words() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let (active, ok) = describe(
            &with_status(ActivationPhase::Active, "Activated", ""),
            "ns",
            now,
        );
        assert!(ok);
        assert_eq!(
            active,
            "Activation fix is Active: msp-operator:operator is granted to carlos in a, b until 1970-01-12T14:16:40Z (in 30m).\n"
        );
        let (pending, ok) = describe(
            &with_status(
                ActivationPhase::Pending,
                "AwaitingApproval",
                "Group/leads must approve",
            ),
            "ns",
            now,
        );
        assert!(ok);
        assert!(
            pending.starts_with(
                "Activation fix is Pending (AwaitingApproval): Group/leads must approve\n"
            ),
            "{pending}"
        );
        let (denied, ok) = describe(
            &with_status(
                ActivationPhase::Denied,
                "NotEligible",
                "eligible: Group/oncall",
            ),
            "ns",
            now,
        );
        assert!(!ok);
        assert!(
            denied.contains("is Denied (NotEligible): eligible: Group/oncall\n"),
            "{denied}"
        );
        assert!(denied.contains("--principal Group/NAME"), "{denied}");
    }
}
