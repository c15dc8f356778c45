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
//! Delegation.

pub mod decide;
pub mod status;

use crate::api::{Activation, ActivationPhase, Delegation};
use crate::delegation::validate::{Decision, NamespaceState};
use crate::delegation::{STALE_CACHE_RETRY, resolve, validate};
use crate::domain::delegability::RoleCatalog;
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use crate::runtime::keys;
use decide::{Grounds, Verdict};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;

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
        let (Some(expires_at), Some(user)) =
            (verdict.grants_at(now), activation.spec.requester.clone())
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

/// How long until the first of `grants` expires, if any.
pub fn next_expiry(grants: &[ActiveGrant], now: Timestamp) -> Option<Duration> {
    grants
        .iter()
        .map(|g| g.expires_at)
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
        let Some(verdict) = verdict(&ctx, &activation, &namespace, now) else {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        };
        status::write(&ctx, &activation, &verdict).await?;
        Ok(match verdict.grants_at(now) {
            Some(expires_at) => Action::requeue(until(expires_at, now).min(ctx.settings.resync)),
            None => Action::requeue(ctx.settings.resync),
        })
    })
    .await
}

/// Where `activation` stands at `now`, from the caches; `None` while its
/// Delegation's consent is being recorded.
fn verdict(
    ctx: &Context,
    activation: &Activation,
    namespace: &str,
    now: Timestamp,
) -> Option<Verdict> {
    let name = &activation.spec.delegation;
    let Some(delegation) = ctx
        .caches
        .delegations
        .get(&ObjectRef::new(name).within(namespace))
    else {
        return Some(decide::decide(
            activation,
            Err(format!(
                "spec.delegation: there is no Delegation {name:?} in namespace {namespace:?}; name the Delegation whose plan makes you eligible"
            )),
            now,
        ));
    };
    let resolved = resolve::resolve(&ctx.caches, &delegation);
    let roles = RoleCatalog::new(&resolved.cluster_roles);
    let decision = validate::decide_resolved(&delegation, &resolved, &roles);
    let digest = match &decision.outcome {
        Ok(accepted) => accepted.plan.content_digest(),
        Err(_) => String::new(),
    };
    let namespaces = grantable(&decision);
    match grounds(&delegation, &decision, &digest, &namespaces) {
        Ok(None) => None,
        Ok(Some(grounds)) => Some(decide::decide(activation, Ok(grounds), now)),
        Err(why) => Some(decide::decide(activation, Err(why), now)),
    }
}
