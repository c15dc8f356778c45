//! The Activation controller: just-in-time access under a Delegation's
//! eligible authorizations.
//!
//! It decides where each activation stands ([`decide`], pure), writes that
//! to its status with the Events both sides audit ([`status`]), and comes
//! back at `expiresAt`. It never writes a grant: the Delegation controller
//! builds the requester's RoleBindings from the same decision
//! ([`active_grants`]) with the rest of the Delegation's grants, so drift
//! repair, pruning, revocation first and cleanup on deletion hold for them
//! as for every other grant, and an activation's grant goes with its
//! Delegation. Each grant's end is also kept by a timer of its own
//! ([`deadlines`]), so a burst of expiries ends on time.

pub mod deadlines;
pub mod decide;
pub mod status;

use crate::api::{Activation, ActivationPhase, Delegation};
use crate::delegation::validate::{Decision, NamespaceState};
use crate::delegation::{STALE_CACHE_RETRY, confirm, resolve, validate};
use crate::domain::conditions::Reason;
use crate::domain::delegability::RoleCatalog;
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use crate::runtime::keys;
use decide::{Grounds, Verdict};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;

/// How long before `expiresAt` the Delegation controller revokes an
/// activation's grant. Expiries come in bursts (the API server keeps times
/// to the second, so activations approved within a second end together),
/// and a burst of revocations takes the write limiter a while: starting a
/// second early keeps the grant inside its deadline instead of past it. The
/// access is never longer than consented, at most this much shorter.
pub const REVOKE_AHEAD: Duration = Duration::from_secs(1);

/// One activation's grant, as the Delegation controller builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveGrant {
    /// The Activation's name (in the Delegation's namespace).
    pub activation: String,
    /// The requesting user: the binding's only subject.
    pub user: String,
    /// The eligible ClusterRole.
    pub role: String,
    /// Where: the namespaces recorded at activation that the Delegation
    /// still grants in.
    pub namespaces: Vec<String>,
    /// Until when.
    pub expires_at: Timestamp,
}

/// What `decision` offers the activations of `delegation`: `Ok(None)` while
/// its consent is still being recorded (wait), `Err` when it offers nothing.
pub fn grounds<'d>(
    delegation: &'d Delegation,
    decision: &'d Decision,
    digest: &'d str,
    namespaces: &'d [String],
) -> Result<Option<Grounds<'d>>, String> {
    if delegation.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "Delegation {:?} is being deleted",
            delegation.name_any()
        ));
    }
    match &decision.outcome {
        Ok(accepted) if accepted.new_snapshot => Ok(None),
        Ok(accepted) => Ok(Some(Grounds {
            plan: &accepted.plan,
            digest,
            namespaces,
            terms: delegation.spec.activation_terms.as_ref(),
        })),
        Err(refused) => Err(format!(
            "Delegation {:?} grants nothing ({}: {})",
            delegation.name_any(),
            refused.reason.as_str(),
            refused.message
        )),
    }
}

/// The namespaces `decision` grants in now.
pub fn grantable(decision: &Decision) -> Vec<String> {
    match &decision.outcome {
        Ok(accepted) => accepted
            .namespaces
            .iter()
            .filter(|(_, s)| *s == NamespaceState::Grantable)
            .map(|(n, _)| n.clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The grants `activations` of `delegation` stand for at `now` (pure): only
/// those the status already records as begun and that the decision, asked
/// again here, still finds active; never past `activatedAt + duration`.
pub fn active_grants(
    delegation: &Delegation,
    decision: &Decision,
    activations: &[Arc<Activation>],
    now: Timestamp,
) -> Vec<ActiveGrant> {
    let Ok(accepted) = &decision.outcome else {
        return Vec::new();
    };
    if delegation.metadata.deletion_timestamp.is_some() || activations.is_empty() {
        return Vec::new();
    }
    let digest = accepted.plan.content_digest();
    let namespaces = grantable(decision);
    // A consent still to be recorded counts here: the reconcile builds
    // grants only after it was verified and recorded (a refusal builds
    // nothing), and the revocation pass must not revoke what it will grant.
    let grounds = Grounds {
        plan: &accepted.plan,
        digest: &digest,
        namespaces: &namespaces,
        terms: delegation.spec.activation_terms.as_ref(),
    };
    let mut grants = Vec::new();
    for activation in activations {
        let recorded = activation
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Some(ActivationPhase::Active) && s.activated_at.is_some());
        if !recorded {
            continue;
        }
        let verdict = decide::decide(activation, Ok(grounds), now);
        let ahead = SignedDuration::try_from(REVOKE_AHEAD).unwrap_or_default();
        let Some(until) = now.checked_add(ahead).ok() else {
            continue;
        };
        let (Some(expires_at), Some(user)) =
            (verdict.grants_at(until), activation.spec.requester.clone())
        else {
            continue;
        };
        grants.push(ActiveGrant {
            activation: activation.name_any(),
            user,
            role: activation.spec.role_ref.clone(),
            namespaces: verdict
                .namespaces
                .iter()
                .filter(|n| namespaces.contains(n))
                .cloned()
                .collect(),
            expires_at,
        });
    }
    grants.sort_by(|a, b| a.activation.cmp(&b.activation));
    grants
}

/// How long until the first of `grants` must be revoked (`REVOKE_AHEAD`
/// before it expires), if any.
pub fn next_expiry(grants: &[ActiveGrant], now: Timestamp) -> Option<Duration> {
    let ahead = SignedDuration::try_from(REVOKE_AHEAD).unwrap_or_default();
    grants
        .iter()
        .map(|g| g.expires_at.checked_sub(ahead).unwrap_or(g.expires_at))
        .min()
        .map(|at| until(at, now))
}

/// The time from `now` to `at` (zero when past), rounded up to the next
/// millisecond so a reconcile scheduled for it never runs just before.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    let nanos = at.as_nanosecond() - now.as_nanosecond();
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)) + Duration::from_millis(1)
}

/// The controller's reconcile: decide, write the status, come back at the
/// expiry.
pub async fn reconcile(activation: Arc<Activation>, ctx: Arc<Context>) -> Result<Action, Error> {
    errors::observed(&ctx, activation.as_ref(), async {
        ctx.caches_ready().await;
        ctx.revoked_first().await;
        let namespace = activation
            .namespace()
            .ok_or_else(|| Error::NoNamespace(activation.name_any()))?;
        if ctx.writer.own_writes.cache_is_behind(
            &keys::object(activation.as_ref()),
            activation.resource_version().as_deref(),
        ) {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        }
        let now = Timestamp::now();
        let Some((verdict, refused)) = verdict(&ctx, &activation, &namespace, now) else {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        };
        // An end for good on a refusal the offer's cache may not back (see
        // `delegation::confirm`) waits for the watch. Waiting extends no
        // access: the grant is the Delegation controller's, which confirms
        // the same way before it grants or revokes anything.
        if let Some((delegation, resolved, reason)) = refused
            && verdict.phase.is_final()
            && confirm::refusal_cache_behind(
                &ctx.writer,
                &ctx.caches,
                &delegation,
                &resolved,
                reason,
            )
            .await
        {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        }
        status::write(&ctx, &activation, &verdict).await?;
        Ok(match verdict.grants_at(now) {
            Some(expires_at) => Action::requeue(until(expires_at, now).min(ctx.settings.resync)),
            None => Action::requeue(ctx.settings.resync),
        })
    })
    .await
}

/// The Delegation whose decision refused, with what that decision read
/// from the caches and the reason it gave.
type Refused = (Arc<Delegation>, resolve::Resolved, Reason);

/// Where `activation` stands at `now`, from the caches, and the refusal it
/// rests on, if any; `None` while its Delegation's consent is being
/// recorded.
fn verdict(
    ctx: &Context,
    activation: &Activation,
    namespace: &str,
    now: Timestamp,
) -> Option<(Verdict, Option<Refused>)> {
    let name = &activation.spec.delegation;
    let Some(delegation) = ctx
        .caches
        .delegations
        .get(&ObjectRef::new(name).within(namespace))
    else {
        let missing = format!(
            "spec.delegation: there is no Delegation {name:?} in namespace {namespace:?}; name the Delegation whose plan makes you eligible"
        );
        return Some((decide::decide(activation, Err(missing), now), None));
    };
    let resolved = resolve::resolve(&ctx.caches, &delegation);
    let roles = RoleCatalog::new(&resolved.cluster_roles);
    let decision = validate::decide_resolved(&delegation, &resolved, &roles);
    let digest = match &decision.outcome {
        Ok(accepted) => accepted.plan.content_digest(),
        Err(_) => String::new(),
    };
    let namespaces = grantable(&decision);
    let refused = decision
        .outcome
        .as_ref()
        .err()
        .map(|r| (delegation.clone(), resolved, r.reason));
    match grounds(&delegation, &decision, &digest, &namespaces) {
        Ok(None) => None,
        Ok(Some(grounds)) => Some((decide::decide(activation, Ok(grounds), now), None)),
        Err(why) => Some((decide::decide(activation, Err(why), now), refused)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ActivationStatus, PersonKind};
    use crate::delegation::validate::{Accepted, NamespaceState};
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    #[test]
    fn grants_are_built_from_a_recorded_start_and_end_revoke_ahead_of_the_deadline() {
        let delegation = fixtures::delegation("c", "d", ("p", "o"), "std", "1.0.0", None);
        let mut plan = fixtures::accepted(("p", "o"), "acme", "std", "1.0.0", Vec::new());
        plan.eligible_authorizations = vec![fixtures::eligible(
            fixtures::person(PersonKind::Group, "oncall"),
            "operator",
            "1h",
            Vec::new(),
        )];
        let decision = Decision {
            customer_tenant: "cust".into(),
            managed_by_tenant: Some("acme".into()),
            latest_version: None,
            latest_authorizations: Vec::new(),
            latest_eligible: Vec::new(),
            offer_present: true,
            outcome: Ok(Accepted {
                plan,
                new_snapshot: false,
                namespaces: vec![("c".into(), NamespaceState::Grantable)],
                activations: Vec::new(),
                audited: Vec::new(),
            }),
        };
        let mut a = fixtures::activation(
            "c",
            "a",
            "d",
            fixtures::person(PersonKind::Group, "oncall"),
            "operator",
            "30m",
        );
        a.spec.requester = Some("alice".into());
        let unrecorded = Arc::new(a.clone());
        assert!(
            active_grants(&delegation, &decision, &[unrecorded], t(0)).is_empty(),
            "nothing before the status records the start"
        );
        a.status = Some(ActivationStatus {
            phase: Some(ActivationPhase::Active),
            activated_at: Some(Time(t(0))),
            namespaces: vec!["c".into()],
            ..Default::default()
        });
        let a = Arc::new(a);
        let grants = active_grants(&delegation, &decision, std::slice::from_ref(&a), t(10));
        assert_eq!(grants.len(), 1);
        assert_eq!(
            (grants[0].user.as_str(), grants[0].expires_at),
            ("alice", t(1800))
        );
        assert_eq!(grants[0].namespaces, vec!["c".to_string()]);
        assert_eq!(
            next_expiry(&grants, t(10)),
            Some(Duration::from_secs(1789) + Duration::from_millis(1))
        );
        assert!(
            active_grants(&delegation, &decision, std::slice::from_ref(&a), t(1799)).is_empty()
        );
    }
}
