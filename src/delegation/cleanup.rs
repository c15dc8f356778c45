//! Step 6, cleanup: when a Delegation is deleted, remove every grant object
//! it made (they live in other namespaces, where owner references cannot
//! reach), then release the cleanup finalizer. A periodic sweep removes what
//! escapes that path, so nothing the operator made outlives its Delegation.

use crate::api::Delegation;
use crate::delegation::events;
use crate::domain::names;
use crate::runtime::context::Context;
use crate::runtime::errors::Error;
use crate::runtime::events::EventType;
use crate::runtime::keys;
use crate::runtime::writer::Writer;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Removes the grants of a deleted `delegation` and then its finalizer (if
/// it still carries it).
pub async fn cleanup(writer: &Writer, delegation: &Delegation) -> Result<(), Error> {
    let Some(index) = delegation
        .finalizers()
        .iter()
        .position(|f| f == names::FINALIZER)
    else {
        return Ok(());
    };
    revoke_all(writer, delegation).await?;
    super::records::remove(writer, delegation).await?;
    release_finalizer(writer, delegation, index).await
}

/// Deletes every RoleBinding and Role labeled for `delegation`, and
/// publishes `Unregistered`.
async fn revoke_all(writer: &Writer, delegation: &Delegation) -> Result<(), Error> {
    let namespace = delegation.namespace().unwrap_or_default();
    let name = delegation.name_any();
    // A LIST here, once per deletion: cleanup must not trust a cache that may
    // lag behind a grant written a moment ago.
    // Only what carries the operator's mark: it never deletes what it did
    // not make.
    let selector = format!(
        "{},{}={},{}={}",
        names::MANAGED_SELECTOR,
        names::DELEGATION_NAMESPACE_LABEL,
        namespace,
        names::DELEGATION_LABEL,
        name
    );
    let params = ListParams::default().labels(&selector);
    // The consent records go too: the garbage collector would remove them
    // (they are owned by the Delegation), but only once it has discovered
    // the Delegation kind, which can take it a while.
    let removed = delete_listed::<RoleBinding>(writer, &params).await?
        + delete_listed::<Role>(writer, &params).await?;
    // Then what the provider made under its role-assigner right, now that
    // the right itself (the Role above) is gone.
    let provider_made = format!(
        "{},{}={},{}={}",
        names::PROVIDER_ASSIGNED_SELECTOR,
        names::DELEGATION_NAMESPACE_LABEL,
        namespace,
        names::DELEGATION_LABEL,
        name
    );
    let removed = removed
        + delete_listed::<RoleBinding>(writer, &ListParams::default().labels(&provider_made))
            .await?;
    delete_listed::<ControllerRevision>(writer, &params).await?;
    info!(delegation = %format!("{namespace}/{name}"), removed, "delegation removed");
    writer
        .publish(
            delegation,
            events::occurrence(
                EventType::Normal,
                "Unregistered",
                "Revoke",
                format!("removed {removed} grant object(s)"),
            ),
        )
        .await;
    Ok(())
}

/// Deletes every `K` that `params` lists, cluster-wide; returns how many.
async fn delete_listed<K>(writer: &Writer, params: &ListParams) -> Result<usize, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let listed = Api::<K>::all(writer.client.clone()).list(params).await?;
    delete_all(writer, listed.items.into_iter().map(Arc::new).collect()).await
}

/// Removes exactly our finalizer, and only if it is still at `index`.
async fn release_finalizer(
    writer: &Writer,
    delegation: &Delegation,
    index: usize,
) -> Result<(), Error> {
    let api: Api<Delegation> = writer.api(&delegation.namespace().unwrap_or_default());
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": names::FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .map_err(|e| Error::Internal(format!("finalizer patch: {e}")))?;
    match writer
        .limited(api.patch(
            &delegation.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        ))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: a stale event after the finalizer was removed.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How often the caches are searched for orphans.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Objects younger than this are never orphans yet: their Delegation may not
/// be in the cache yet.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(30);

/// The managed objects whose Delegation no longer exists, by kind (pure over
/// cache snapshots): `exists` says whether a Delegation is known, `in_scope`
/// whether its namespace is this operator's to act on, `old_enough` whether
/// an object is past [`ORPHAN_MIN_AGE`].
pub fn orphans<K: Resource<DynamicType = ()>>(
    objects: &[Arc<K>],
    exists: impl Fn(&ObjectRef<Delegation>) -> bool,
    in_scope: impl Fn(&str) -> bool,
    old_enough: impl Fn(&K) -> bool,
) -> Vec<Arc<K>> {
    objects
        .iter()
        .filter(|o| {
            keys::delegation_of(o.labels()).is_some_and(|owner| {
                in_scope(owner.namespace.as_deref().unwrap_or_default())
                    && !exists(&owner)
                    && old_enough(o)
            })
        })
        .cloned()
        .collect()
}

/// Deletes grants and consent records that outlived their Delegation, every
/// [`SWEEP_INTERVAL`], until `shutdown`: cleanup normally runs behind the
/// finalizer, and this catches what escaped it (a finalizer removed by hand,
/// the operator down during a deletion). Only objects carrying the managed
/// label (or, for RoleBindings a provider made as role assigner, the
/// provider-assigned label) are considered, and only those of Delegations
/// this operator acts on.
pub async fn sweep(ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let work = async {
        ctx.caches_ready().await;
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            sweep_once(&ctx, ORPHAN_MIN_AGE).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

/// One sweep of objects at least `min_age` old; returns how many it deleted.
pub async fn sweep_once(ctx: &Context, min_age: Duration) -> usize {
    let scope = &ctx.settings.watch_namespaces;
    let in_scope = |ns: &str| scope.is_empty() || scope.iter().any(|s| s == ns);
    let exists = |d: &ObjectRef<Delegation>| ctx.caches.delegations.get(d).is_some();
    let now = k8s_openapi::jiff::Timestamp::now();
    let old_enough = |meta: &kube::api::ObjectMeta| {
        meta.creation_timestamp
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0).as_secs() >= min_age.as_secs() as i64)
    };
    let bindings = orphans(
        &ctx.caches.role_bindings.state(),
        exists,
        in_scope,
        |o: &RoleBinding| old_enough(&o.metadata),
    );
    let roles = orphans(&ctx.caches.roles.state(), exists, in_scope, |o: &Role| {
        old_enough(&o.metadata)
    });
    let records = orphans(
        &ctx.caches.revisions.state(),
        exists,
        in_scope,
        |o: &ControllerRevision| old_enough(&o.metadata),
    );
    // What providers made under a Delegation that is gone.
    let provider_made = orphans(
        &ctx.caches.provider_assignments.state(),
        exists,
        in_scope,
        |o: &RoleBinding| old_enough(&o.metadata),
    );
    // The providers' records of Delegations that are gone.
    let customer_records = orphans(
        &ctx.caches.customer_records.state(),
        exists,
        in_scope,
        |o: &crate::api::CustomerDelegation| old_enough(&o.metadata),
    );
    let mut removed = 0;
    for deleted in [
        delete_all(&ctx.writer, bindings).await,
        delete_all(&ctx.writer, roles).await,
        delete_all(&ctx.writer, records).await,
        delete_all(&ctx.writer, provider_made).await,
        delete_all(&ctx.writer, customer_records).await,
    ] {
        match deleted {
            Ok(n) => removed += n,
            // The next sweep tries again.
            Err(e) => tracing::warn!(error = %e, "cannot remove an orphaned grant"),
        }
    }
    if removed > 0 {
        info!(removed, "removed grants that outlived their Delegation");
        ctx.settings.metrics.orphans_removed.inc_by(removed as u64);
    }
    removed
}

/// Deletes `objects`; returns how many it deleted (gone already is fine).
pub async fn delete_all<K>(writer: &Writer, objects: Vec<Arc<K>>) -> Result<usize, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut removed = 0;
    for object in objects {
        let api: Api<K> = writer.api(&object.namespace().unwrap_or_default());
        match writer
            .revoking(api.delete(&object.name_any(), &DeleteParams::default()))
            .await
        {
            Ok(_) => removed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names;

    fn binding(delegation_ns: &str, delegation: &str) -> Arc<RoleBinding> {
        let mut rb = RoleBinding::default();
        rb.metadata.labels = Some(
            [
                (
                    names::DELEGATION_NAMESPACE_LABEL.to_string(),
                    delegation_ns.to_string(),
                ),
                (names::DELEGATION_LABEL.to_string(), delegation.to_string()),
            ]
            .into(),
        );
        Arc::new(rb)
    }

    #[test]
    fn orphans_are_grants_of_delegations_that_are_gone() {
        let objects = vec![
            binding("c", "live"),
            binding("c", "gone"),
            binding("elsewhere", "gone"),
            Arc::new(RoleBinding::default()),
        ];
        let exists = |d: &ObjectRef<Delegation>| d.name == "live";
        let found = orphans(&objects, exists, |ns| ns == "c", |_| true);
        assert_eq!(
            found.len(),
            1,
            "only the in-scope grant of a deleted Delegation"
        );
        assert!(
            orphans(&objects, exists, |ns| ns == "c", |_| false).is_empty(),
            "too young"
        );
    }
}
