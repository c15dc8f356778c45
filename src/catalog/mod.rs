//! The OfferCatalog controller: keeps each customer's catalog the
//! projection of every offer for its namespace's tenant
//! ([`crate::domain::catalog::project`]).
//!
//! Catalogs exist only where a customer asked for one (one per namespace),
//! so the writes are bounded by them; a catalog whose projection did not
//! change is not written. Its triggers come from the one watch of offers
//! (every catalog, as offers change rarely and a reconcile at rest writes
//! nothing) and of namespaces (the catalog of a namespace whose tenant
//! label changed), see [`crate::runtime::controllers`].

use crate::api::{CATALOG_NAME, OfferCatalog, OfferCatalogStatus};
use crate::delegation::{STALE_CACHE_RETRY, now};
use crate::domain::catalog::{self, MAX_CATALOG_PLANS};
use crate::domain::conditions::{Conditions, Reason, types};
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use crate::runtime::keys;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use std::sync::Arc;

/// The controller's reconcile: the catalog's status for its tenant.
pub async fn reconcile(catalog: Arc<OfferCatalog>, ctx: Arc<Context>) -> Result<Action, Error> {
    errors::observed(&ctx, catalog.as_ref(), async {
        ctx.caches_ready().await;
        let namespace = catalog
            .namespace()
            .ok_or_else(|| Error::NoNamespace(catalog.name_any()))?;
        // Admission refuses any other name; one written before that rule
        // (or with it removed) gets nothing.
        if catalog.name_any() != CATALOG_NAME {
            return Ok(Action::await_change());
        }
        let key = keys::object(catalog.as_ref());
        if ctx
            .writer
            .own_writes
            .cache_is_behind(&key, catalog.resource_version().as_deref())
        {
            return Ok(Action::requeue(STALE_CACHE_RETRY));
        }
        let Some(info) = ctx.caches.namespace_info(&namespace) else {
            return Ok(Action::await_change());
        };
        let offers = ctx.caches.offers.state();
        let status = compute(&catalog, &info.tenant, &offers, now());
        // Checked again at each resync too: an offer deleted while the
        // watch was down leaves no event behind.
        if catalog.status.as_ref() == Some(&status) {
            return Ok(Action::requeue(ctx.settings.resync));
        }
        let api: kube::Api<OfferCatalog> = ctx.writer.api(&namespace);
        let written = ctx
            .writer
            .limited(api.patch_status(
                &catalog.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            ))
            .await?;
        if written.resource_version() != catalog.resource_version() {
            ctx.writer.own_writes.record(
                &key,
                &catalog.resource_version().into_iter().collect::<Vec<_>>(),
            );
        }
        Ok(Action::requeue(ctx.settings.resync))
    })
    .await
}

/// The status of `catalog` for `tenant` given every cached offer (pure).
pub fn compute(
    catalog: &OfferCatalog,
    tenant: &str,
    offers: &[Arc<crate::api::ManagedServiceOffer>],
    now: Time,
) -> OfferCatalogStatus {
    let projection = catalog::project(tenant, catalog.spec.provider.as_deref(), offers);
    let previous = catalog
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut conditions = Conditions::new(previous, catalog.metadata.generation, now);
    if projection.truncated {
        conditions.set(
            types::READY,
            true,
            Reason::Truncated,
            format!(
                "more plans are offered to tenant {tenant:?} than a catalog lists ({MAX_CATALOG_PLANS}); set spec.provider to a provider tenant to list that provider's plans"
            ),
        );
    } else {
        conditions.set(
            types::READY,
            true,
            Reason::Current,
            format!(
                "{} plan(s) of {} offer(s) tenant {tenant:?} may accept",
                projection.plan_count,
                projection.offers.len()
            ),
        );
    }
    OfferCatalogStatus {
        observed_generation: catalog.metadata.generation,
        conditions: conditions.finish(),
        tenant: Some(tenant.to_string()),
        plan_count: projection.plan_count as i32,
        truncated: projection.truncated,
        offers: projection.offers,
    }
}
