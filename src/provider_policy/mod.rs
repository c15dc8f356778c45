//! The provider-policy controller: keeps each `ClusterProviderPolicy` and
//! `ProviderPolicy` status listing the namespaces of its allowed provider
//! tenants. Admission reads that list: a Delegation names its offer's
//! namespace, and the tenant of a namespace is a label that a
//! ValidatingAdmissionPolicy cannot look up. The Delegation controller reads
//! the policies themselves (it knows tenancy), so a stale list can only
//! delay an admission answer, never decide what is granted.

use crate::api::{ClusterProviderPolicy, ProviderPolicy, ProviderPolicyKind, ProviderPolicyStatus};
use crate::runtime::caches::Caches;
use crate::runtime::context::Context;
use crate::runtime::errors::{self, Error};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The status `policy` should have (pure but for the cache read): the
/// namespaces of its allowed tenants that hold an offer. Only those: a
/// namespace's admins may write a ProviderPolicy naming any tenant, and
/// its status must not list another tenant's namespaces beyond the ones
/// whose offers it publishes to customers.
pub fn desired_status<K: ProviderPolicyKind + Resource>(
    policy: &K,
    caches: &Caches,
) -> ProviderPolicyStatus {
    let with_offers: BTreeSet<String> = caches
        .offers
        .state()
        .iter()
        .filter_map(|o| o.namespace())
        .collect();
    let mut provider_namespaces: Vec<String> = policy
        .rules()
        .allowed_providers
        .iter()
        .flatten()
        .flat_map(|p| caches.namespaces_of_tenant(&p.tenant.0))
        .filter(|n| with_offers.contains(n))
        .collect();
    provider_namespaces.sort();
    provider_namespaces.dedup();
    ProviderPolicyStatus {
        observed_generation: policy.meta().generation,
        provider_namespaces,
    }
}

/// Reconciles a platform policy.
pub async fn reconcile_cluster(
    policy: Arc<ClusterProviderPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let api: Api<ClusterProviderPolicy> = Api::all(ctx.writer.client.clone());
    reconcile(policy, ctx, api).await
}

/// Reconciles a customer policy.
pub async fn reconcile_namespaced(
    policy: Arc<ProviderPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = policy
        .namespace()
        .ok_or_else(|| Error::NoNamespace(policy.name_any()))?;
    let api: Api<ProviderPolicy> = ctx.writer.api(&namespace);
    reconcile(policy, ctx, api).await
}

/// Writes the status when it differs; nothing at rest.
async fn reconcile<K>(policy: Arc<K>, ctx: Arc<Context>, api: Api<K>) -> Result<Action, Error>
where
    K: ProviderPolicyKind
        + Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    errors::observed(&ctx, policy.as_ref(), async {
        ctx.caches_ready().await;
        let status = desired_status(policy.as_ref(), &ctx.caches);
        if policy.policy_status() == Some(&status) {
            return Ok(Action::requeue(ctx.settings.resync));
        }
        ctx.writer
            .limited(api.patch_status(
                &policy.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            ))
            .await?;
        Ok(Action::requeue(ctx.settings.resync))
    })
    .await
}
