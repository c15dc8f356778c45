//! The Delegation controller: turns a customer's consent into RBAC grants
//! and keeps them exactly so.
//!
//! A reconcile is a pipeline with one file per step:
//! [`resolve`] everything from the watch caches (no LIST per reconcile) →
//! [`validate`] (pure: accept a plan version or refuse with a reason; a
//! refusal is first [`confirm`]ed not to rest on a stale offer) →
//! [`consent`] (a consent never recorded before is checked against the
//! consenter's own rights, then recorded) → [`build`] the desired RBAC
//! objects (pure) → [`apply`] only what differs
//! (and prune what no longer belongs) → [`assignments`] (keep only the
//! RoleBindings a provider made that the consent still covers) → [`status`]
//! written only when it
//! changed, with its [`events`] → the provider's [`records`] ("My
//! customers"). When everything already matches, a
//! reconcile writes nothing. A deleted Delegation goes to [`cleanup`]. After a
//! start, no reconcile runs before [`revoke`] has revoked what changed while
//! the operator was away.
//! Consent is stored by [`snapshot`].

pub mod apply;
pub mod assignments;
pub mod build;
pub mod cleanup;
pub mod confirm;
pub mod consent;
pub mod drift;
pub mod events;
pub mod records;
pub mod resolve;
pub mod revoke;
pub mod snapshot;
pub mod status;
pub mod validate;

use crate::api::Delegation;
use crate::domain::delegability::RoleCatalog;
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use crate::runtime::keys;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Retry of a reconcile that found its cache behind one of its own writes,
/// should the watch event that normally triggers it not come.
pub const STALE_CACHE_RETRY: Duration = Duration::from_secs(2);

/// The controller's reconcile: grant, or clean up a deleted Delegation.
pub async fn reconcile(delegation: Arc<Delegation>, ctx: Arc<Context>) -> Result<Action, Error> {
    errors::observed(&ctx, delegation.as_ref(), async {
        ctx.caches_ready().await;
        ctx.revoked_first().await;
        if delegation.namespace().is_none() {
            return Err(Error::NoNamespace(delegation.name_any()));
        }
        if delegation.metadata.deletion_timestamp.is_some() {
            cleanup::cleanup(&ctx.writer, &delegation).await?;
            ctx.seen_activation_grants
                .forget(&keys::object(delegation.as_ref()));
            return Ok(Action::await_change());
        }
        grant(&delegation, &ctx).await
    })
    .await
}

/// The pipeline for a live Delegation.
async fn grant(delegation: &Delegation, ctx: &Context) -> Result<Action, Error> {
    let key = keys::object(delegation);
    if ctx
        .writer
        .own_writes
        .cache_is_behind(&key, delegation.resource_version().as_deref())
    {
        // The watch event of our own write is on its way and brings a
        // reconcile with it; this is only the fallback.
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }
    let mut superseded = apply::Superseded::new(key, delegation);

    let resolved = resolve::resolve(&ctx.caches, delegation);
    let roles = RoleCatalog::new(&resolved.cluster_roles);
    let mut decision = validate::decide_resolved(delegation, &resolved, &roles);
    if let Err(refused) = &decision.outcome
        && confirm::refusal_cache_behind(
            &ctx.writer,
            &ctx.caches,
            delegation,
            &resolved,
            refused.reason,
        )
        .await
    {
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }

    apply::metadata(&ctx.writer, delegation, &mut superseded).await?;
    consent::record(&ctx.writer, delegation, &mut decision, &roles).await?;
    let desired = build::for_decision(delegation, &decision);
    let applied = apply::grants(ctx, delegation, &desired, &decision).await;
    if let Ok(accepted) = &decision.outcome {
        ctx.deadlines.schedule(delegation, &accepted.activations);
    }
    apply::retired_snapshots(&ctx.writer, delegation, &decision, &resolved, &applied).await?;

    let assigned = assignments::keep_consented(ctx, delegation, &decision).await?;

    let mut status = status::compute(delegation, &decision, &desired, &applied, now());
    status.provider_assignments = assigned;
    if status::write(&ctx.writer, delegation, &status, &mut superseded).await? {
        let occurrences = events::transitions(delegation, delegation.status.as_ref(), &status);
        events::publish(&ctx.writer, delegation, occurrences).await;
    }
    let record = records::build(
        delegation,
        &status,
        resolved.offer.as_deref(),
        &resolved.activations,
    );
    records::publish(ctx, record).await?;
    if let Some(drift) = events::drift(&applied) {
        ctx.settings
            .metrics
            .drift_corrections
            .inc_by(applied.repaired as u64);
        info!(delegation = %keys::namespaced(&delegation.namespace().unwrap_or_default(), &delegation.name_any()), repaired = applied.repaired, "drift corrected");
        ctx.writer.publish(delegation, drift).await;
    }
    if !applied.errors.is_empty() {
        let detail: Vec<String> = applied
            .errors
            .iter()
            .map(|(ns, e)| format!("{ns}: {e}"))
            .collect();
        return Err(Error::Grants(detail.join("; ")));
    }
    // An activation's grant ends at its expiry: come back then, not later.
    let next_expiry = match &decision.outcome {
        Ok(accepted) => crate::activation::next_expiry(&accepted.activations, resolved.now),
        Err(_) => None,
    };
    Ok(Action::requeue(
        next_expiry.map_or(ctx.settings.resync, |d| d.min(ctx.settings.resync)),
    ))
}

/// The time conditions are stamped with.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
