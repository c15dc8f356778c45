//! Revocation first. When the operator starts (or a new leader takes over)
//! the world may have changed while nobody watched: Delegations deleted,
//! namespaces moved to another tenant, roles made non-delegable, versions
//! raised. Before any reconcile grants anything, one pass over the caches
//! deletes every managed RoleBinding and Role that no Delegation wants any
//! more, and every RoleBinding a provider made that its consent no longer
//! covers, so what must be revoked is revoked before anything new is
//! granted.
//! The pass decides as the reconciles do ([`validate`], [`build`]) but never
//! asks the API server and never writes a grant or a status.

use crate::delegation::{apply, assignments, build, resolve, validate};
use crate::domain::delegability::RoleCatalog;
use crate::runtime::context::Context;
use std::sync::Arc;
use tracing::info;

/// Deletes what no Delegation wants, then returns how many objects it
/// deleted. Grants of Delegations being deleted go too (their finalizer is
/// released by the reconcile that follows).
pub async fn first_pass(ctx: &Arc<Context>) -> usize {
    let mut revoked = 0;
    for delegation in ctx.caches.delegations.state() {
        let (desired, allowed) = if delegation.metadata.deletion_timestamp.is_some() {
            (build::Desired::default(), Default::default())
        } else {
            let resolved = resolve::resolve(&ctx.caches, &delegation);
            let roles = RoleCatalog::new(&resolved.cluster_roles);
            let decision = validate::decide_resolved(&delegation, &resolved, &roles);
            (
                build::for_decision(&delegation, &decision),
                assignments::allowed(&decision),
            )
        };
        revoked += apply::revoke_unwanted(ctx, &delegation, &desired).await;
        revoked += assignments::revoke_unwanted(ctx, &delegation, &allowed).await;
    }
    revoked += crate::delegation::cleanup::sweep_once(ctx, std::time::Duration::ZERO).await;
    if revoked > 0 {
        info!(
            revoked,
            "revoked what changed while the operator was away, before granting"
        );
    }
    revoked
}
