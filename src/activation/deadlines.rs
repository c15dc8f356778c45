//! Deadlines: each activation grant is revoked at its deadline by a timer of
//! its own, not only by the Delegation reconcile that comes back then.
//!
//! That reconcile competes for the controller's slots and the write limiter
//! with everything a burst brings: when a thousand activations end within
//! seconds, each also writes its status, two Events and the provider's
//! record, and revocations queued behind those ended past their deadline
//! (`make bench`, 1,000 activations at once: p99 +1.3 s among 1,000
//! Delegations, +4.0 s among 4,000). The timer deletes each grant
//! [`REVOKE_AHEAD`] before `expiresAt` through the writer's revocation lane,
//! which nothing but revocations uses. The reconcile at the deadline then
//! finds the grant gone; should the timer's delete fail, that reconcile
//! revokes it as before.
//!
//! The timer is tokio-util's `DelayQueue` (kube-runtime's scheduler uses the
//! same); it holds one entry per grant binding, at its latest deadline.

use super::{ActiveGrant, REVOKE_AHEAD};
use crate::api::Delegation;
use crate::domain::names;
use crate::runtime::context::Context;
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{debug, warn};

/// One grant's deadline: its RoleBinding `namespace/name`, of activation
/// `activation`, to be revoked at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Where the binding is.
    pub namespace: String,
    /// The binding's name.
    pub name: String,
    /// The activation it grants for (the binding's activation label).
    pub activation: String,
    /// When to revoke it: `REVOKE_AHEAD` before the activation expires.
    pub at: Timestamp,
}

/// Where the Delegation controller hands the timer the deadlines of the
/// grants it builds.
#[derive(Clone, Debug)]
pub struct Deadlines {
    tx: mpsc::UnboundedSender<Due>,
}

/// The handle and the receiving end [`run`] takes.
pub fn channel() -> (Deadlines, mpsc::UnboundedReceiver<Due>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Deadlines { tx }, rx)
}

impl Deadlines {
    /// Schedules the revocation of each of `grants` of `delegation`.
    pub fn schedule(&self, delegation: &Delegation, grants: &[ActiveGrant]) {
        for due in dues(delegation, grants) {
            // Closed only when the timer stopped with the controllers.
            let _ = self.tx.send(due);
        }
    }
}

/// The deadlines of `grants` of `delegation`, one per binding (pure).
pub fn dues(delegation: &Delegation, grants: &[ActiveGrant]) -> Vec<Due> {
    let own_namespace = delegation.namespace().unwrap_or_default();
    let ahead = SignedDuration::try_from(REVOKE_AHEAD).unwrap_or_default();
    grants
        .iter()
        .flat_map(|grant| {
            let name = names::activation_binding_name(
                &own_namespace,
                &delegation.name_any(),
                &grant.activation,
            );
            let at = grant
                .expires_at
                .checked_sub(ahead)
                .unwrap_or(grant.expires_at);
            grant.namespaces.iter().map(move |namespace| Due {
                namespace: namespace.clone(),
                name: name.clone(),
                activation: grant.activation.clone(),
                at,
            })
        })
        .collect()
}

/// Runs the timer until `shutdown`: keeps one entry per binding at its
/// latest deadline, and revokes each when it comes.
pub async fn run(
    ctx: Arc<Context>,
    mut dues: mpsc::UnboundedReceiver<Due>,
    shutdown: impl Future<Output = ()>,
) {
    let mut queue: DelayQueue<(String, String)> = DelayQueue::new();
    let mut entries: HashMap<(String, String), (Due, delay_queue::Key)> = HashMap::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            Some(due) = dues.recv() => {
                let key = (due.namespace.clone(), due.name.clone());
                let when = instant_of(due.at);
                match entries.get_mut(&key) {
                    Some((known, _)) if *known == due => {}
                    Some((known, delay)) => {
                        queue.reset_at(delay, when);
                        *known = due;
                    }
                    None => {
                        let delay = queue.insert_at(key.clone(), when);
                        entries.insert(key, (due, delay));
                    }
                }
            }
            Some(expired) = queue.next(), if !queue.is_empty() => {
                if let Some((due, _)) = entries.remove(expired.get_ref()) {
                    tokio::spawn(revoke(ctx.clone(), due));
                }
            }
        }
    }
}

/// The tokio instant of `at` (now when past), never before it: the
/// reconcile the revocation triggers must not find the grant still due, or
/// it would write it again.
fn instant_of(at: Timestamp) -> tokio::time::Instant {
    tokio::time::Instant::now() + super::until(at, Timestamp::now())
}

/// Deletes the binding `due` names, if the cache holds it for the same
/// activation; only that very object (by uid), so a newer grant that took
/// its name is never touched.
async fn revoke(ctx: Arc<Context>, due: Due) {
    let Some(binding) = ctx
        .caches
        .role_bindings
        .get(&ObjectRef::new(&due.name).within(&due.namespace))
    else {
        return;
    };
    if binding.labels().get(names::ACTIVATION_LABEL) != Some(&due.activation) {
        return;
    }
    let api: Api<RoleBinding> = ctx.writer.api(&due.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: binding.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match ctx.writer.revoking(api.delete(&due.name, &params)).await {
        Ok(_) => {
            debug!(binding = %format!("{}/{}", due.namespace, due.name), "activation grant revoked at its deadline")
        }
        // Gone already, or a newer grant of the same name.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => warn!(
            binding = %format!("{}/{}", due.namespace, due.name),
            error = %e,
            "could not revoke an activation grant at its deadline; the Delegation's reconcile at the deadline revokes it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn one_deadline_per_binding_ahead_of_the_expiry() {
        let delegation = fixtures::delegation("c", "d", ("p", "o"), "std", "1.0.0", None);
        let expires_at = Timestamp::from_second(1_800_000_000).expect("time");
        let grants = vec![ActiveGrant {
            activation: "a".into(),
            user: "alice".into(),
            role: "operator".into(),
            namespaces: vec!["c".into(), "c2".into()],
            expires_at,
        }];
        let got = dues(&delegation, &grants);
        let name = names::activation_binding_name("c", "d", "a");
        let at = Timestamp::from_second(1_800_000_000 - 1).expect("time");
        assert_eq!(
            got,
            vec![
                Due {
                    namespace: "c".into(),
                    name: name.clone(),
                    activation: "a".into(),
                    at,
                },
                Due {
                    namespace: "c2".into(),
                    name,
                    activation: "a".into(),
                    at,
                },
            ]
        );
        assert!(dues(&delegation, &[]).is_empty());
    }

    #[test]
    fn the_binding_names_agree_with_the_built_grants() {
        let delegation = fixtures::delegation("c", "d", ("p", "o"), "std", "1.0.0", None);
        let plan = fixtures::accepted(("p", "o"), "acme", "std", "1.0.0", Vec::new());
        let grants = vec![ActiveGrant {
            activation: "a".into(),
            user: "alice".into(),
            role: "operator".into(),
            namespaces: vec!["c".into()],
            expires_at: Timestamp::from_second(1_800_000_000).expect("time"),
        }];
        let built = crate::delegation::build::activation_bindings(&delegation, &plan, &grants);
        let due = dues(&delegation, &grants);
        assert_eq!(built.len(), due.len());
        assert_eq!(built[0].name_any(), due[0].name);
        assert_eq!(
            built[0].namespace().as_deref(),
            Some(due[0].namespace.as_str())
        );
    }
}
