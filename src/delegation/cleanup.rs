//! Step 6, cleanup: when a Delegation is deleted, remove every grant object
//! it made (they live in other namespaces, where owner references cannot
//! reach), then release the cleanup finalizer.

use crate::api::Delegation;
use crate::delegation::events;
use crate::domain::names;
use crate::runtime::errors::Error;
use crate::runtime::events::EventType;
use crate::runtime::writer::Writer;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
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
    release_finalizer(writer, delegation, index).await
}

/// Deletes every RoleBinding and Role labeled for `delegation`, and
/// publishes `Unregistered`.
async fn revoke_all(writer: &Writer, delegation: &Delegation) -> Result<(), Error> {
    let namespace = delegation.namespace().unwrap_or_default();
    let name = delegation.name_any();
    // A LIST here, once per deletion: cleanup must not trust a cache that may
    // lag behind a grant written a moment ago.
    let selector = format!(
        "{}={},{}={}",
        names::DELEGATION_NAMESPACE_LABEL,
        namespace,
        names::DELEGATION_LABEL,
        name
    );
    let params = ListParams::default().labels(&selector);
    let removed = delete_listed::<RoleBinding>(writer, &params).await?
        + delete_listed::<Role>(writer, &params).await?;
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
    let mut removed = 0;
    for object in Api::<K>::all(writer.client.clone()).list(params).await? {
        let api: Api<K> = writer.api(&object.namespace().unwrap_or_default());
        match writer
            .limited(api.delete(&object.name_any(), &DeleteParams::default()))
            .await
        {
            Ok(_) => removed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
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
