//! Step 4, apply: make the cluster hold what was built, writing only what
//! differs from the caches. In order: the Delegation's own labels and
//! cleanup finalizer, (the consent record, [`crate::delegation::consent`]),
//! the grants (created, repaired, or pruned), and last the records of
//! versions and generations no longer in force.

use crate::api::Delegation;
use crate::delegation::build::{self, Desired};
use crate::delegation::drift::{self, BindingKey, InPlaceBefore};
use crate::delegation::resolve::Resolved;
use crate::delegation::snapshot;
use crate::delegation::validate::Decision;
use crate::domain::names;
use crate::runtime::context::Context;
use crate::runtime::errors::Error;
use crate::runtime::keys;
use crate::runtime::writer::Writer;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Outcome of applying one delegation's desired objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Objects written because they were missing or had drifted.
    pub repaired: usize,
    /// Objects created for the first time or deleted as no longer wanted.
    pub changed: usize,
    /// Per namespace: the first error.
    pub errors: BTreeMap<String, String>,
    /// Per namespace: desired RoleBindings that could not be written (failed,
    /// or skipped after a failure there), so status counts only what is in
    /// place.
    pub missing_bindings: BTreeMap<String, usize>,
}

impl Applied {
    /// Notes the outcome of one write in `namespace`: `repair` when it
    /// restored something that should have been there.
    fn count_write<T>(&mut self, namespace: String, repair: bool, result: kube::Result<T>) {
        match result {
            Ok(_) if repair => self.repaired += 1,
            Ok(_) => self.changed += 1,
            Err(e) => self.failed(namespace, e),
        }
    }

    /// Notes the outcome of one delete in `namespace` (gone already is fine).
    fn count_delete<T>(&mut self, namespace: String, result: kube::Result<T>) {
        match result {
            Ok(_) => self.changed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => self.failed(namespace, e),
        }
    }

    /// Keeps the first error of each namespace.
    fn failed(&mut self, namespace: String, error: kube::Error) {
        self.errors
            .entry(namespace)
            .or_insert_with(|| error.to_string());
    }
}

/// The resourceVersions of a Delegation that the writes of this reconcile
/// superseded, so a later reconcile can tell a stale cache (see
/// [`crate::runtime::own_writes`]).
pub struct Superseded {
    key: String,
    versions: Vec<String>,
}

impl Superseded {
    /// Starts from the version the reconcile read.
    pub fn new(key: String, delegation: &Delegation) -> Self {
        Self {
            key,
            versions: delegation.resource_version().into_iter().collect(),
        }
    }

    /// Records a write of the Delegation that returned resourceVersion
    /// `written`. A write that changed nothing returns a version already
    /// superseded; no watch event follows it, so it is not recorded (a
    /// reconcile would otherwise wait for an event that never comes).
    pub fn record(&mut self, writer: &Writer, written: Option<String>) {
        if written.as_ref().is_some_and(|w| self.versions.contains(w)) {
            return;
        }
        writer.own_writes.record(&self.key, &self.versions);
        self.versions.extend(written);
    }
}

/// Sets the offer labels and the cleanup finalizer in one server-side apply,
/// only when one is missing. Where deploy/delegation-metadata.yaml is in
/// force (Kubernetes 1.36+) both come with the create and this writes
/// nothing; it remains for clusters without MutatingAdmissionPolicy,
/// Delegations created before the policy, and labels removed by hand.
/// (kube's finalizer helper would add the finalizer in a write of its own
/// and end the reconcile there, costing a second round per object.)
pub async fn metadata(
    writer: &Writer,
    delegation: &Delegation,
    superseded: &mut Superseded,
) -> Result<(), Error> {
    let labels = metadata_labels(delegation);
    let has_finalizer = delegation
        .finalizers()
        .iter()
        .any(|f| f == names::FINALIZER);
    if has_finalizer
        && labels
            .iter()
            .all(|(k, v)| delegation.labels().get(k) == Some(v))
    {
        return Ok(());
    }
    let name = delegation.name_any();
    let patch = metadata_patch(delegation, &labels);
    let api: Api<Delegation> = writer.api(&delegation.namespace().unwrap_or_default());
    let written = writer
        .limited(api.patch(
            &name,
            &PatchParams::apply(names::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        ))
        .await?;
    superseded.record(writer, written.resource_version());
    Ok(())
}

/// The labels [`metadata`] keeps on a Delegation (the same that
/// deploy/delegation-metadata.yaml sets at admission): what it consents to.
pub fn metadata_labels(delegation: &Delegation) -> BTreeMap<String, String> {
    let offer_ref = &delegation.spec.offer_ref;
    BTreeMap::from([
        (
            names::OFFER_NAMESPACE_LABEL.to_string(),
            offer_ref.namespace.clone(),
        ),
        (names::OFFER_LABEL.to_string(), offer_ref.name.clone()),
        (names::PLAN_LABEL.to_string(), delegation.spec.plan.clone()),
    ])
}

/// The server-side apply of [`metadata`]. It carries the Delegation's `uid`
/// as a precondition: an apply to a missing object is a create, so without
/// it a Delegation deleted since the cache saw it would be created again
/// (refused today only because the schema requires `spec`); with it the API
/// server answers 409 Conflict and creates nothing.
pub fn metadata_patch(
    delegation: &Delegation,
    labels: &BTreeMap<String, String>,
) -> serde_json::Value {
    json!({
        "apiVersion": Delegation::api_version(&()),
        "kind": Delegation::kind(&()),
        "metadata": {
            "name": delegation.name_any(),
            "uid": delegation.uid(),
            "labels": labels,
            "finalizers": [names::FINALIZER],
        },
    })
}

/// Creates, repairs and prunes the delegation's Roles and RoleBindings so
/// that they are exactly `desired`.
pub async fn grants(
    ctx: &Context,
    delegation: &Delegation,
    desired: &Desired,
    decision: &Decision,
) -> Applied {
    // A write repairs drift only where the grant had been in place (see
    // `drift`); the grants of a new version, namespace or activation are new.
    let key = keys::object(delegation);
    let before = InPlaceBefore::new(
        delegation,
        decision,
        desired,
        ctx.seen_activation_grants.of(&key),
    );
    let mut applied = Applied::default();

    for role in &desired.roles {
        let ns = role.namespace().unwrap_or_default();
        let existing = ctx
            .caches
            .roles
            .get(&ObjectRef::new(&role.name_any()).within(&ns));
        if existing
            .as_deref()
            .is_some_and(|e| build::role_matches(e, role))
        {
            continue;
        }
        let api: Api<Role> = ctx.writer.api(&ns);
        let result = ctx.writer.write_grant(&api, role, existing.is_some()).await;
        let repair = before.is_repair(&ns, existing.is_some(), None);
        applied.count_write(ns, repair, result);
    }
    let activations_in_place = role_bindings(ctx, desired, &before, &mut applied).await;
    ctx.seen_activation_grants
        .replace(&key, activations_in_place);

    // A binding that grants only what is still wanted, in a namespace where
    // a write failed, waits: its replacement may be what failed (bindings
    // renamed on upgrade, a role's subjects regrouped), and removing it now
    // would take away consented access.
    let failed = applied.errors.clone();
    let superseded_later = |rb: &RoleBinding| {
        failed.contains_key(&rb.namespace().unwrap_or_default()) && build::covered_by(rb, desired)
    };
    prune_unwanted(ctx, delegation, desired, superseded_later, &mut applied).await;
    applied
}

/// Runs `requests` side by side, `concurrency` at a time (the writer's
/// limiter also caps them across reconciles), and returns their outcomes.
async fn side_by_side<F: std::future::Future>(ctx: &Context, requests: Vec<F>) -> Vec<F::Output> {
    futures::stream::iter(requests)
        .buffer_unordered(usize::from(ctx.settings.concurrency.max(1)))
        .collect()
        .await
}

/// `(namespace, name)` of each object.
fn keys_of<K: Resource>(objects: &[K]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

/// Deletes the delegation's Roles and RoleBindings that grant something
/// `desired` does not, and nothing else; returns how many it deleted (see
/// [`crate::delegation::revoke`]). A binding whose every grant is still
/// desired under another name (a 0.1.0 per-authorization binding, say) is
/// no revocation: the reconcile replaces it after writing its successor.
pub async fn revoke_unwanted(ctx: &Context, delegation: &Delegation, desired: &Desired) -> usize {
    let mut applied = Applied::default();
    let still_granted = |rb: &RoleBinding| build::covered_by(rb, desired);
    prune_unwanted(ctx, delegation, desired, still_granted, &mut applied).await;
    applied.changed
}

/// Deletes the delegation's Roles and RoleBindings (from the indexes) that
/// `desired` does not hold, except the bindings `keep` spares.
async fn prune_unwanted(
    ctx: &Context,
    delegation: &Delegation,
    desired: &Desired,
    keep: impl Fn(&RoleBinding) -> bool,
    applied: &mut Applied,
) {
    let namespace = delegation.namespace().unwrap_or_default();
    let name = delegation.name_any();
    let bindings = ctx
        .caches
        .role_bindings_of(&namespace, &name)
        .into_iter()
        .filter(|rb| !keep(rb))
        .collect();
    prune(
        ctx,
        bindings,
        &keys_of(&desired.role_bindings),
        &namespace,
        &name,
        applied,
    )
    .await;
    let roles = ctx.caches.roles_of(&namespace, &name);
    prune(
        ctx,
        roles,
        &keys_of(&desired.roles),
        &namespace,
        &name,
        applied,
    )
    .await;
}

/// Writes the desired RoleBindings that are missing or differ, side by side;
/// the writer keeps the operator's writes in flight at `concurrency` in
/// total. Namespaces where a Role write already failed are skipped. Returns
/// the activation bindings in place afterwards.
async fn role_bindings(
    ctx: &Context,
    desired: &Desired,
    before: &InPlaceBefore,
    applied: &mut Applied,
) -> BTreeSet<BindingKey> {
    let mut in_place = BTreeSet::new();
    let writes: Vec<_> = desired
        .role_bindings
        .iter()
        .filter_map(|binding| {
            let ns = binding.namespace().unwrap_or_default();
            if applied.errors.contains_key(&ns) {
                *applied.missing_bindings.entry(ns).or_default() += 1;
                return None;
            }
            let existing = ctx
                .caches
                .role_bindings
                .get(&ObjectRef::new(&binding.name_any()).within(&ns));
            if existing
                .as_deref()
                .is_some_and(|e| build::role_binding_matches(e, binding))
            {
                in_place.extend(drift::activation_key(binding));
                return None;
            }
            Some(async move {
                let api: Api<RoleBinding> = ctx.writer.api(&ns);
                let result = match existing.as_deref() {
                    // roleRef is immutable: a binding whose roleRef was changed
                    // behind our back (delete + create) is replaced.
                    Some(e) if e.role_ref != binding.role_ref => {
                        let _ = ctx
                            .writer
                            .limited(api.delete(&binding.name_any(), &DeleteParams::default()))
                            .await;
                        ctx.writer.write_grant(&api, binding, false).await
                    }
                    _ => {
                        ctx.writer
                            .write_grant(&api, binding, existing.is_some())
                            .await
                    }
                };
                (binding, existing.is_some(), result)
            })
        })
        .collect();
    for (binding, existed, result) in side_by_side(ctx, writes).await {
        let ns = binding.namespace().unwrap_or_default();
        let activation = drift::activation_key(binding);
        if result.is_err() {
            *applied.missing_bindings.entry(ns.clone()).or_default() += 1;
        } else {
            in_place.extend(activation.clone());
        }
        let repair = before.is_repair(&ns, existed, activation);
        applied.count_write(ns, repair, result);
    }
    in_place
}

/// Deletes the objects among `owned` (this delegation's, from an index) that
/// are not `wanted`.
async fn prune<K>(
    ctx: &Context,
    owned: Vec<Arc<K>>,
    wanted: &BTreeSet<(String, String)>,
    namespace: &str,
    name: &str,
    applied: &mut Applied,
) where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let deletes: Vec<_> = owned
        .into_iter()
        .filter_map(|existing| {
            let key = (
                existing.namespace().unwrap_or_default(),
                existing.name_any(),
            );
            if !names::belongs_to(existing.labels(), namespace, name) || wanted.contains(&key) {
                return None;
            }
            Some(async move {
                let api: Api<K> = ctx.writer.api(&key.0);
                let result = ctx
                    .writer
                    .revoking(api.delete(&key.1, &DeleteParams::default()))
                    .await;
                (key.0, result)
            })
        })
        .collect();
    for (ns, result) in side_by_side(ctx, deletes).await {
        applied.count_delete(ns, result);
    }
}

/// Deletes the snapshots of versions no longer accepted, once the current
/// one is in force (every grant written).
pub async fn retired_snapshots(
    writer: &Writer,
    delegation: &Delegation,
    decision: &Decision,
    resolved: &Resolved,
    applied: &Applied,
) -> Result<(), Error> {
    let Ok(accepted) = &decision.outcome else {
        return Ok(());
    };
    if !applied.errors.is_empty() {
        return Ok(());
    }
    let current = snapshot::to_revision(delegation, &accepted.plan).map(|r| r.name_any());
    let api: Api<ControllerRevision> = writer.api(&delegation.namespace().unwrap_or_default());
    for revision in &resolved.revisions {
        if Some(revision.name_any()) == current {
            continue;
        }
        match writer
            .limited(api.delete(&revision.name_any(), &DeleteParams::default()))
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
