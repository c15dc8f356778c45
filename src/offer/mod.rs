//! The ManagedServiceOffer controller: tells the provider whether its offer
//! can be granted and how each plan is adopted. It writes only the offer's
//! status, never a grant; its triggers come from the one watch of
//! delegations (see [`crate::runtime::controllers`]).

pub mod status;

use crate::api::ManagedServiceOffer;
use crate::delegation::{STALE_CACHE_RETRY, now};
use crate::domain::delegability::RoleCatalog;
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use crate::runtime::keys;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The adoption counts in an offer's status (delegations per plan, and how
/// many are Ready) are refreshed at most this often while delegations are
/// converging; conditions, and counts where every delegation is Ready, are
/// written at once. Every delegation of an offer moves the counts while it
/// converges, and writing each move cost a write per offer per second of
/// convergence (452 writes in the cold phase of `make bench`).
pub const OFFER_COUNTS_INTERVAL: Duration = Duration::from_secs(10);

/// The controller's reconcile: offer status, validity and per-plan adoption.
pub async fn reconcile(
    offer: Arc<ManagedServiceOffer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    errors::observed(&ctx, offer.as_ref(), async {
        ctx.caches_ready().await;
        let namespace = offer
            .namespace()
            .ok_or_else(|| Error::NoNamespace(offer.name_any()))?;
        let name = offer.name_any();
        let written_key = keys::object(offer.as_ref());
        if ctx
            .writer
            .own_writes
            .cache_is_behind(&written_key, offer.resource_version().as_deref())
        {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        }
        let delegations = ctx.caches.delegations_of_offer(&namespace, &name);
        let cluster_roles = ctx.caches.cluster_roles.state();
        let roles = RoleCatalog::new(&cluster_roles);
        let tenant = ctx.caches.namespace_info(&namespace).map(|n| n.tenant);
        let status = status::compute(&offer, &delegations, &roles, tenant.as_deref(), now());
        if offer.status.as_ref() == Some(&status) {
            return Ok(Action::requeue(ctx.settings.resync));
        }
        // Only the adoption counts changed, and some delegations are still
        // on their way to Ready: at most one write per interval. Settled
        // counts are written at once.
        let key = keys::namespaced(&namespace, &name);
        let counts_only = offer
            .status
            .as_ref()
            .is_some_and(|s| status::counts_only(s, &status));
        if counts_only
            && !status::settled(&status)
            && let Some(since) = ctx.writer.status_written_ago(&key)
            && since < OFFER_COUNTS_INTERVAL
        {
            return Ok(Action::requeue(OFFER_COUNTS_INTERVAL - since));
        }
        let api: kube::Api<ManagedServiceOffer> = ctx.writer.api(&namespace);
        let written = ctx
            .writer
            .limited(api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            ))
            .await?;
        ctx.writer.status_written_now(&key);
        // A write that changed nothing brings no watch event to wait for.
        if written.resource_version() != offer.resource_version() {
            ctx.writer.own_writes.record(
                &written_key,
                &offer.resource_version().into_iter().collect::<Vec<_>>(),
            );
        }
        Ok(Action::requeue(ctx.settings.resync))
    })
    .await
}
