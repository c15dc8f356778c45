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

/// Across all offers, counts-only writes come at most about this often:
/// with many offers the interval grows so that their sum stays near five
/// writes a second. At 10 s per offer the writes grew with the offers and
/// the time to converge (1,165 offer-status writes among 4,000 Delegations
/// and 200 offers in `make bench`, 5% of all the operator's writes).
pub const OFFER_COUNTS_SPACING: Duration = Duration::from_millis(200);

/// How long an offer's counts wait between writes while they move, among
/// `offers` offers (pure).
pub fn counts_interval(offers: usize) -> Duration {
    let offers = u32::try_from(offers).unwrap_or(u32::MAX);
    OFFER_COUNTS_INTERVAL.max(OFFER_COUNTS_SPACING.saturating_mul(offers))
}

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
            && let interval = counts_interval(ctx.caches.offers.state().len())
            && since < interval
        {
            return Ok(Action::requeue(interval - since));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_wait_longer_among_many_offers() {
        assert_eq!(counts_interval(0), OFFER_COUNTS_INTERVAL);
        assert_eq!(counts_interval(50), OFFER_COUNTS_INTERVAL);
        assert_eq!(counts_interval(200), Duration::from_secs(40));
        assert!(
            counts_interval(usize::MAX) > Duration::from_secs(86_400),
            "no overflow"
        );
    }
}
