//! The controllers: Delegation (grants) and ManagedServiceOffer (status).
//!
//! Delegation reconcile is a pipeline: **resolve** everything from watch caches
//! (no LIST per reconcile) → **validate** ([`crate::validate::decide`], pure) →
//! **build** the desired RBAC objects ([`crate::desired::build`], pure) →
//! **apply** only what differs from the cache (server-side apply, one field
//! manager) and prune what no longer belongs → **update status** only when it
//! changed. When everything already matches, a reconcile writes nothing.
//! Deleting a Delegation runs the cleanup behind a finalizer, because grants
//! live in other namespaces where owner references cannot reach.

use crate::api::{
    Delegation, DelegationStatus, ManagedServiceOffer, ManagedServiceOfferStatus, NamespaceStatus,
    PlanStatus,
};
use crate::conditions::{Conditions, Reason, is_true, types};
use crate::desired::{self, Desired};
use crate::events::{EventType, Occurrence, Publisher};
use crate::index::Index;
use crate::metrics::{ControllerLabels, ErrorLabels, Health, Metrics, ReadyLabels};
use crate::names;
use crate::own_writes::OwnWrites;
use crate::roles;
use crate::snapshot;
use crate::validate::{self, Decision, NamespaceInfo, NamespaceState};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Errors of one reconcile; all are retried with backoff.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A request could not be built (a bug, never the user's input).
    #[error("internal error: {0}")]
    Internal(String),
    /// Some grants could not be written; the others were.
    #[error("could not apply grants: {0}")]
    Grants(String),
    /// An object without a namespace where one is required.
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

/// Settings of the controllers.
#[derive(Clone)]
pub struct Settings {
    /// Reconciles running at once, per controller, and the most write
    /// requests in flight across both controllers.
    pub concurrency: u16,
    /// Full re-check of every object this often, even without events.
    pub resync: Duration,
    /// Name reported as the source of Events.
    pub reporter: String,
    /// Where the controllers record what they do.
    pub metrics: Arc<Metrics>,
    /// What the probes report; the controllers set `caches_synced`.
    pub health: Arc<Health>,
    /// Act only on offers and delegations in these namespaces (all when
    /// empty). Grants, tenancy and roles are still read cluster-wide.
    pub watch_namespaces: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("concurrency", &self.concurrency)
            .field("resync", &self.resync)
            .field("reporter", &self.reporter)
            .field("watch_namespaces", &self.watch_namespaces)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            resync: Duration::from_secs(600),
            reporter: "msp-operator".into(),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::default()),
            watch_namespaces: Vec::new(),
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// Kubernetes client (the operator's own identity).
    pub client: Client,
    /// Every offer, by namespace/name.
    pub offers: Store<ManagedServiceOffer>,
    /// Every delegation.
    pub delegations: Store<Delegation>,
    /// Namespace metadata (labels for tenancy, deletion state).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Every ClusterRole (delegability, aggregation included).
    pub cluster_roles: Store<ClusterRole>,
    /// RoleBindings managed by the operator.
    pub role_bindings: Store<RoleBinding>,
    /// Roles managed by the operator (the deleter Roles).
    pub roles: Store<Role>,
    /// Snapshots of accepted plan versions.
    pub revisions: Store<ControllerRevision>,
    /// Delegations by offer (`namespace/name`).
    pub delegations_by_offer: Arc<Index<Delegation>>,
    /// Delegations by namespace they live in or delegate.
    pub delegations_by_namespace: Arc<Index<Delegation>>,
    /// Managed RoleBindings by delegation (`namespace/name`).
    pub role_bindings_by_delegation: Arc<Index<RoleBinding>>,
    /// Managed Roles by delegation.
    pub roles_by_delegation: Arc<Index<Role>>,
    /// Snapshots by delegation.
    pub revisions_by_delegation: Arc<Index<ControllerRevision>>,
    /// Publishes Events.
    pub events: Publisher,
    /// Settings.
    pub settings: Settings,
    /// Every cache has had its initial list (latched by `caches_ready`).
    pub caches_synced: std::sync::atomic::AtomicBool,
    /// Consecutive failures per object, for exponential backoff.
    pub failures: std::sync::Mutex<HashMap<String, u32>>,
    /// This operator's writes of delegations (by `namespace/name`) and
    /// offers (by `ManagedServiceOffer/namespace/name`) that the caches may
    /// not show yet.
    pub own_writes: OwnWrites,
    /// Write requests in flight, at most `settings.concurrency` across both
    /// controllers: reconciles write side by side, and the API server sees
    /// the same concurrency however the work is split.
    pub writes: tokio::sync::Semaphore,
    /// When each offer's status was last written (`namespace/name`), for
    /// `OFFER_COUNTS_INTERVAL`.
    pub offer_status_written: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

/// First retry delay after a failed reconcile; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The adoption counts in an offer's status (delegations per plan, and how
/// many are Ready) are refreshed at most this often while delegations are
/// converging; conditions, and counts where every delegation is Ready, are
/// written at once. Every delegation of an offer moves the counts while it
/// converges, and writing each move cost a write per offer per second of
/// convergence (452 writes in the cold phase of `make bench`).
pub const OFFER_COUNTS_INTERVAL: Duration = Duration::from_secs(10);
/// Retry of a reconcile that found its cache behind one of its own writes,
/// should the watch event that normally triggers it not come.
const STALE_CACHE_RETRY: Duration = Duration::from_secs(2);

/// Retry delay after `failures` consecutive failures (pure).
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    )
}

impl Context {
    /// Waits until every cache has its initial list; reconciles never act on
    /// a partial view (an empty offer cache would read as "offer deleted").
    ///
    /// `Store::wait_until_ready` wakes only the most recent of several
    /// concurrent waiters (its oneshot keeps one waker), and the controllers
    /// wait on their own stores too. So readiness is polled with a short
    /// timeout, which re-registers the waker each time; once a store was seen
    /// ready the answer is memoized, and the whole check is latched here.
    async fn caches_ready(&self) {
        if self
            .caches_synced
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        macro_rules! settle {
            ($store:expr) => {
                while tokio::time::timeout(Duration::from_millis(50), $store.wait_until_ready())
                    .await
                    .is_err()
                {}
            };
        }
        settle!(self.offers);
        settle!(self.delegations);
        settle!(self.namespaces);
        settle!(self.cluster_roles);
        settle!(self.role_bindings);
        settle!(self.roles);
        settle!(self.revisions);
        self.caches_synced
            .store(true, std::sync::atomic::Ordering::Release);
        self.settings
            .health
            .caches_synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Sends one write request when its turn comes (see `writes`).
    async fn limited<T>(&self, write: impl Future<Output = T>) -> T {
        // The semaphore is never closed; were it, writes would go unlimited.
        let _permit = self.writes.acquire().await.ok();
        write.await
    }

    fn namespace_info(&self, name: &str) -> Option<NamespaceInfo> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|ns| NamespaceInfo {
                tenant: validate::tenant_of(name, ns.labels()),
                terminating: ns.metadata.deletion_timestamp.is_some(),
            })
    }
}

fn belongs_to(labels: &BTreeMap<String, String>, namespace: &str, name: &str) -> bool {
    labels
        .get(names::DELEGATION_NAMESPACE_LABEL)
        .map(String::as_str)
        == Some(namespace)
        && labels.get(names::DELEGATION_LABEL).map(String::as_str) == Some(name)
}

fn delegation_of(labels: &BTreeMap<String, String>) -> Option<ObjectRef<Delegation>> {
    Some(
        ObjectRef::new(labels.get(names::DELEGATION_LABEL)?)
            .within(labels.get(names::DELEGATION_NAMESPACE_LABEL)?),
    )
}

/// ClusterRoles by name, borrowing from the cache snapshot.
fn roles_by_name(roles: &[Arc<ClusterRole>]) -> HashMap<&str, &ClusterRole> {
    roles
        .iter()
        .filter_map(|r| Some((r.metadata.name.as_deref()?, r.as_ref())))
        .collect()
}

/// Index key of a delegation: `namespace/name`.
fn delegation_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Index keys of a managed object: its delegation, from its labels.
fn owner_keys<K: Resource>(object: &K) -> Vec<String> {
    object
        .meta()
        .labels
        .as_ref()
        .and_then(delegation_of)
        .map(|owner| delegation_key(owner.namespace.as_deref().unwrap_or_default(), &owner.name))
        .into_iter()
        .collect()
}

fn offer_keys(delegation: &Delegation) -> Vec<String> {
    let offer = &delegation.spec.offer_ref;
    vec![format!("{}/{}", offer.namespace, offer.name)]
}

fn namespace_keys(delegation: &Delegation) -> Vec<String> {
    let mut keys = delegation.target_namespaces();
    keys.extend(delegation.namespace());
    keys.sort();
    keys.dedup();
    keys
}

/// The cached objects of `store` that `index` lists under `key`.
fn indexed<K>(index: &Index<K>, store: &Store<K>, key: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    index
        .get(key)
        .iter()
        .filter_map(|object| store.get(object))
        .collect()
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Outcome of applying one delegation's desired objects.
#[derive(Default)]
struct Applied {
    /// Objects written because they were missing or had drifted.
    repaired: usize,
    /// Objects created for the first time or deleted as no longer wanted.
    changed: usize,
    /// Per namespace: the first error.
    errors: BTreeMap<String, String>,
}

async fn apply_grants(
    ctx: &Context,
    delegation: &Delegation,
    desired: &Desired,
    previously_ready: bool,
) -> Applied {
    let namespace = delegation.namespace().unwrap_or_default();
    let name = delegation.name_any();
    let mut applied = Applied::default();

    let wanted_roles: BTreeSet<(String, String)> = desired
        .roles
        .iter()
        .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
        .collect();
    for role in &desired.roles {
        let ns = role.namespace().unwrap_or_default();
        let existing = ctx.roles.get(&ObjectRef::new(&role.name_any()).within(&ns));
        if existing
            .as_deref()
            .is_some_and(|e| desired::role_matches(e, role))
        {
            continue;
        }
        let api: Api<Role> = Api::namespaced(ctx.client.clone(), &ns);
        match write_grant(ctx, &api, role, existing.is_some()).await {
            Ok(_) if existing.is_some() || previously_ready => applied.repaired += 1,
            Ok(_) => applied.changed += 1,
            Err(e) => {
                applied.errors.entry(ns).or_insert_with(|| e.to_string());
            }
        }
    }

    let wanted: BTreeSet<(String, String)> = desired
        .role_bindings
        .iter()
        .map(|rb| (rb.namespace().unwrap_or_default(), rb.name_any()))
        .collect();
    // The bindings are written side by side; `Context::writes` keeps the
    // operator's writes in flight at `concurrency` in total.
    let writes: Vec<_> = desired
        .role_bindings
        .iter()
        .filter_map(|binding| {
            let ns = binding.namespace().unwrap_or_default();
            if applied.errors.contains_key(&ns) {
                return None;
            }
            let existing = ctx
                .role_bindings
                .get(&ObjectRef::new(&binding.name_any()).within(&ns));
            if existing
                .as_deref()
                .is_some_and(|e| desired::role_binding_matches(e, binding))
            {
                return None;
            }
            Some(async move {
                let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
                let result = match existing.as_deref() {
                    // roleRef is immutable: a binding whose roleRef was changed
                    // behind our back (delete + create) is replaced.
                    Some(e) if e.role_ref != binding.role_ref => {
                        let _ = ctx
                            .limited(api.delete(&binding.name_any(), &DeleteParams::default()))
                            .await;
                        write_grant(ctx, &api, binding, false).await
                    }
                    _ => write_grant(ctx, &api, binding, existing.is_some()).await,
                };
                (ns, existing.is_some(), result)
            })
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(usize::from(ctx.settings.concurrency.max(1)))
        .collect()
        .await;
    for (ns, existed, result) in results {
        match result {
            Ok(_) if existed || previously_ready => applied.repaired += 1,
            Ok(_) => applied.changed += 1,
            Err(e) => {
                applied.errors.entry(ns).or_insert_with(|| e.to_string());
            }
        }
    }

    // Prune what this delegation manages but no longer wants.
    let owner = delegation_key(&namespace, &name);
    let bindings = indexed(&ctx.role_bindings_by_delegation, &ctx.role_bindings, &owner);
    prune(ctx, bindings, &wanted, &namespace, &name, &mut applied).await;
    let roles = indexed(&ctx.roles_by_delegation, &ctx.roles, &owner);
    prune(ctx, roles, &wanted_roles, &namespace, &name, &mut applied).await;
    applied
}

/// Writes a grant object (Role or RoleBinding) as the operator's field
/// manager. An object the cache does not hold is created with a plain POST:
/// for the API server that is the cheapest write there is, about a third
/// cheaper than a server-side apply that creates (5,000 RoleBindings at
/// concurrency 8: 2.9-3.2 s against 4.3-5.1 s), and cold convergence is
/// mostly creates. An object that exists (drift), or that the create finds
/// after all (a cache behind the API server, or a squatter of the name), gets
/// a forced server-side apply, as before.
async fn write_grant<K>(ctx: &Context, api: &Api<K>, object: &K, cached: bool) -> kube::Result<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if !cached {
        let params = PostParams {
            field_manager: Some(names::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match ctx.limited(api.create(&params, object)).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => return other,
        }
    }
    ctx.limited(api.patch(
        &object.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(object),
    ))
    .await
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
            if !belongs_to(existing.labels(), namespace, name) || wanted.contains(&key) {
                return None;
            }
            Some(async move {
                let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.0);
                let result = ctx
                    .limited(api.delete(&key.1, &DeleteParams::default()))
                    .await;
                (key.0, result)
            })
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(deletes)
        .buffer_unordered(usize::from(ctx.settings.concurrency.max(1)))
        .collect()
        .await;
    for (ns, result) in results {
        match result {
            Ok(_) => applied.changed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                applied.errors.entry(ns).or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The status a delegation should have (pure).
fn delegation_status(
    delegation: &Delegation,
    decision: &Decision,
    desired: &Desired,
    applied: &Applied,
    at: Time,
) -> DelegationStatus {
    let previous = delegation
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = delegation.metadata.generation;
    let mut conditions = Conditions::new(previous, generation, at);
    let mut namespaces = Vec::new();
    let mut applied_version = None;
    match &decision.outcome {
        Ok(accepted) => {
            applied_version = Some(accepted.plan.version.clone());
            conditions.set(
                types::ACCEPTED,
                true,
                Reason::Valid,
                format!(
                    "plan {:?} version {} of offer {}/{} is accepted",
                    accepted.plan.plan,
                    accepted.plan.version,
                    accepted.plan.offer_namespace,
                    accepted.plan.offer_name
                ),
            );
            for (ns, state) in &accepted.namespaces {
                let bindings = desired
                    .role_bindings
                    .iter()
                    .filter(|rb| rb.metadata.namespace.as_deref() == Some(ns))
                    .count() as i32;
                let (ready, message) = match (state, applied.errors.get(ns)) {
                    (_, Some(error)) => (false, Some(format!("applying grants failed: {error}"))),
                    (NamespaceState::Grantable, None) => (true, None),
                    (NamespaceState::Missing, None) => (
                        false,
                        Some("namespace does not exist; grants follow when it is created".into()),
                    ),
                    (NamespaceState::Terminating, None) => {
                        (false, Some("namespace is being deleted".into()))
                    }
                };
                namespaces.push(NamespaceStatus {
                    name: ns.clone(),
                    ready,
                    bindings: if ready { bindings } else { 0 },
                    message,
                });
            }
            let not_ready: Vec<&str> = namespaces
                .iter()
                .filter(|n| !n.ready)
                .map(|n| n.name.as_str())
                .collect();
            if not_ready.is_empty() {
                conditions.set(
                    types::READY,
                    true,
                    Reason::Granted,
                    format!(
                        "version {} is granted in {} namespace(s)",
                        accepted.plan.version,
                        namespaces.len()
                    ),
                );
            } else {
                let reason = if applied.errors.is_empty() {
                    Reason::Progressing
                } else {
                    Reason::ApplyFailed
                };
                let message = format!(
                    "grants are not in place in: {} (see status.namespaces)",
                    not_ready.join(", ")
                );
                conditions.set(types::READY, false, reason, message.clone());
                conditions.set(types::RECONCILING, true, reason, message);
            }
        }
        Err(refused) => {
            conditions.set(
                types::ACCEPTED,
                false,
                refused.reason,
                refused.message.clone(),
            );
            conditions.set(types::READY, false, refused.reason, refused.message.clone());
            conditions.set(
                types::STALLED,
                true,
                refused.reason,
                refused.message.clone(),
            );
        }
    }
    match (&decision.latest_version, &applied_version) {
        (Some(latest), Some(applied)) if validate::version_gt(latest, applied) => conditions.set(
            types::UPDATE_AVAILABLE,
            true,
            Reason::NewerVersionPublished,
            format!(
                "version {latest} of plan {:?} is published; set spec.planVersion to {latest} to accept it",
                delegation.spec.plan
            ),
        ),
        _ => conditions.set(
            types::UPDATE_AVAILABLE,
            false,
            Reason::UpToDate,
            "the accepted version is the latest",
        ),
    }
    if decision.offer_present {
        conditions.set(
            types::OFFER_AVAILABLE,
            true,
            Reason::OfferPresent,
            "the offer exists",
        );
    } else {
        let message = match &applied_version {
            Some(v) => format!(
                "offer {}/{} was deleted; the accepted grants of version {v} stay in force until this Delegation is deleted",
                delegation.spec.offer_ref.namespace, delegation.spec.offer_ref.name
            ),
            None => format!(
                "offer {}/{} does not exist",
                delegation.spec.offer_ref.namespace, delegation.spec.offer_ref.name
            ),
        };
        conditions.set(types::OFFER_AVAILABLE, false, Reason::OfferDeleted, message);
    }
    DelegationStatus {
        observed_generation: generation,
        conditions: conditions.finish(),
        managed_by_tenant: decision.managed_by_tenant.clone(),
        customer_tenant: Some(decision.customer_tenant.clone()),
        applied_version,
        latest_version: decision.latest_version.clone(),
        namespaces,
    }
}

/// Status equality that ignores only what cannot matter: conditions compared
/// as a set keyed by type.
fn same_status(a: &Option<DelegationStatus>, b: &DelegationStatus) -> bool {
    let Some(a) = a else { return false };
    let key = |s: &DelegationStatus| {
        let mut c = s.conditions.clone();
        c.sort_by(|x, y| x.type_.cmp(&y.type_));
        c
    };
    key(a) == key(b)
        && a.observed_generation == b.observed_generation
        && a.managed_by_tenant == b.managed_by_tenant
        && a.customer_tenant == b.customer_tenant
        && a.applied_version == b.applied_version
        && a.latest_version == b.latest_version
        && a.namespaces == b.namespaces
}

async fn publish(
    ctx: &Context,
    object: &Delegation,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let occurrence = Occurrence {
        type_,
        reason: reason.into(),
        action: action.into(),
        note,
    };
    if let Err(e) = ctx
        .limited(ctx.events.publish(&occurrence, &object.object_ref(&())))
        .await
    {
        warn!(error = %e, "cannot publish event");
    }
}

async fn apply_delegation(delegation: Arc<Delegation>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = delegation
        .namespace()
        .ok_or_else(|| Error::NoNamespace(delegation.name_any()))?;
    let name = delegation.name_any();
    let api: Api<Delegation> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = delegation_key(&namespace, &name);
    if ctx
        .own_writes
        .cache_is_behind(&key, delegation.resource_version().as_deref())
    {
        // The watch event of our own write is on its way and brings a
        // reconcile with it; this is only the fallback.
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }
    // Versions of this object that precede the last write made here.
    let mut superseded: Vec<String> = delegation.resource_version().into_iter().collect();

    // Resolve, from caches only.
    let offer_ref = &delegation.spec.offer_ref;
    let offer = ctx
        .offers
        .get(&ObjectRef::new(&offer_ref.name).within(&offer_ref.namespace));
    let revisions: Vec<Arc<ControllerRevision>> = indexed(
        &ctx.revisions_by_delegation,
        &ctx.revisions,
        &delegation_key(&namespace, &name),
    )
    .into_iter()
    .filter(|r| r.namespace().as_deref() == Some(&namespace))
    .collect();
    let found = snapshot::find(&delegation, revisions.iter().map(|r| r.as_ref()));
    let cluster_roles = ctx.cluster_roles.state();
    let by_name = roles_by_name(&cluster_roles);
    let role_check = |role: &str| {
        roles::check_delegable(
            role,
            |n| by_name.get(n).copied(),
            || by_name.values().copied().collect(),
        )
    };
    let namespace_info = |n: &str| ctx.namespace_info(n);

    // Validate (pure).
    let decision = validate::decide(&validate::Inputs {
        delegation: &delegation,
        offer: offer.as_deref(),
        snapshot: found.as_ref().map(|(_, plan)| plan.clone()),
        namespace: &namespace_info,
        role: &role_check,
    });

    // Build (pure).
    let desired = match &decision.outcome {
        Ok(accepted) => {
            let grantable: Vec<String> = accepted
                .namespaces
                .iter()
                .filter(|(_, s)| *s == NamespaceState::Grantable)
                .map(|(n, _)| n.clone())
                .collect();
            desired::build(&delegation, &accepted.plan, &grantable)
        }
        Err(_) => Desired::default(),
    };

    // Apply.
    // Labels and the cleanup finalizer in one server-side apply, only when
    // missing. (kube's finalizer helper would add the finalizer in a write of
    // its own and end the reconcile there, costing a second round per object.)
    let labels = BTreeMap::from([
        (
            names::OFFER_NAMESPACE_LABEL.to_string(),
            offer_ref.namespace.clone(),
        ),
        (names::OFFER_LABEL.to_string(), offer_ref.name.clone()),
        (names::PLAN_LABEL.to_string(), delegation.spec.plan.clone()),
    ]);
    let has_finalizer = delegation
        .finalizers()
        .iter()
        .any(|f| f == names::FINALIZER);
    if !has_finalizer
        || !labels
            .iter()
            .all(|(k, v)| delegation.labels().get(k) == Some(v))
    {
        let patch = json!({
            "apiVersion": Delegation::api_version(&()),
            "kind": Delegation::kind(&()),
            "metadata": { "name": name, "labels": labels, "finalizers": [names::FINALIZER] },
        });
        let written = ctx
            .limited(api.patch(
                &name,
                &PatchParams::apply(names::FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            ))
            .await?;
        ctx.own_writes.record(&key, &superseded);
        superseded.extend(written.resource_version());
    }
    if let Ok(accepted) = &decision.outcome
        && accepted.new_snapshot
        && let Some(revision) = snapshot::to_revision(&delegation, &accepted.plan)
    {
        let revisions_api: Api<ControllerRevision> =
            Api::namespaced(ctx.client.clone(), &namespace);
        match ctx
            .limited(revisions_api.create(&PostParams::default(), &revision))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let previously_ready = delegation
        .status
        .as_ref()
        .is_some_and(|s| is_true(&s.conditions, types::READY));
    let applied = apply_grants(&ctx, &delegation, &desired, previously_ready).await;

    // Snapshots of versions no longer accepted are pruned once the current
    // one is in force.
    if let Ok(accepted) = &decision.outcome
        && applied.errors.is_empty()
    {
        let current = snapshot::to_revision(&delegation, &accepted.plan).map(|r| r.name_any());
        for revision in &revisions {
            if Some(revision.name_any()) != current {
                let revisions_api: Api<ControllerRevision> =
                    Api::namespaced(ctx.client.clone(), &namespace);
                match ctx
                    .limited(revisions_api.delete(&revision.name_any(), &DeleteParams::default()))
                    .await
                {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    // Update status, only when it changed.
    let status = delegation_status(&delegation, &decision, &desired, &applied, now());
    if !same_status(&delegation.status, &status) {
        ctx.limited(api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        ))
        .await?;
        ctx.own_writes.record(&key, &superseded);
        events_for_transition(&ctx, &delegation, &status).await;
    }
    if applied.repaired > 0 {
        ctx.settings
            .metrics
            .drift_corrections
            .inc_by(applied.repaired as u64);
        info!(delegation = %format!("{namespace}/{name}"), repaired = applied.repaired, "drift corrected");
        publish(
            &ctx,
            &delegation,
            EventType::Normal,
            "DriftCorrected",
            "Reconcile",
            format!(
                "restored {} grant object(s) that were edited or deleted",
                applied.repaired
            ),
        )
        .await;
    }
    if !applied.errors.is_empty() {
        let detail: Vec<String> = applied
            .errors
            .iter()
            .map(|(ns, e)| format!("{ns}: {e}"))
            .collect();
        return Err(Error::Grants(detail.join("; ")));
    }
    Ok(Action::requeue(ctx.settings.resync))
}

async fn events_for_transition(ctx: &Context, delegation: &Delegation, status: &DelegationStatus) {
    let before = delegation.status.as_ref();
    let was_ready = before.is_some_and(|s| is_true(&s.conditions, types::READY));
    let now_ready = is_true(&status.conditions, types::READY);
    let before_version = before.and_then(|s| s.applied_version.clone());
    if now_ready && !was_ready && before_version.is_none() {
        publish(
            ctx,
            delegation,
            EventType::Normal,
            "Registered",
            "Grant",
            format!(
                "granted plan {:?} version {}",
                delegation.spec.plan,
                status.applied_version.clone().unwrap_or_default()
            ),
        )
        .await;
    } else if now_ready && before_version.is_some() && before_version != status.applied_version {
        publish(
            ctx,
            delegation,
            EventType::Normal,
            "Updated",
            "Grant",
            format!(
                "now granting version {} (was {})",
                status.applied_version.clone().unwrap_or_default(),
                before_version.unwrap_or_default()
            ),
        )
        .await;
    }
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY && c.status == "False");
    let failed_before = before.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == types::READY && c.status == "False")
            .map(|c| c.reason.clone())
    });
    if let Some(condition) = failed
        && condition.reason != Reason::Progressing.as_str()
        && failed_before.as_deref() != Some(condition.reason.as_str())
    {
        publish(
            ctx,
            delegation,
            EventType::Warning,
            &condition.reason,
            "Grant",
            condition.message.clone(),
        )
        .await;
    }
}

async fn cleanup_delegation(
    delegation: Arc<Delegation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = delegation
        .namespace()
        .ok_or_else(|| Error::NoNamespace(delegation.name_any()))?;
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
    let mut removed = 0;
    for binding in Api::<RoleBinding>::all(ctx.client.clone())
        .list(&params)
        .await?
    {
        let api: Api<RoleBinding> =
            Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
        match ctx
            .limited(api.delete(&binding.name_any(), &DeleteParams::default()))
            .await
        {
            Ok(_) => removed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for role in Api::<Role>::all(ctx.client.clone()).list(&params).await? {
        let api: Api<Role> =
            Api::namespaced(ctx.client.clone(), &role.namespace().unwrap_or_default());
        match ctx
            .limited(api.delete(&role.name_any(), &DeleteParams::default()))
            .await
        {
            Ok(_) => removed += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    info!(delegation = %format!("{namespace}/{name}"), removed, "delegation removed");
    publish(
        &ctx,
        &delegation,
        EventType::Normal,
        "Unregistered",
        "Revoke",
        format!("removed {removed} grant object(s)"),
    )
    .await;
    Ok(Action::await_change())
}

async fn reconcile_delegation(
    delegation: Arc<Delegation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_delegation_once(delegation.clone(), ctx.clone()).await;
    observe::<Delegation>(&ctx, started);
    let action = result?;
    succeeded(&ctx, delegation.as_ref());
    Ok(action)
}

async fn reconcile_delegation_once(
    delegation: Arc<Delegation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.caches_ready().await;
    let namespace = delegation
        .namespace()
        .ok_or_else(|| Error::NoNamespace(delegation.name_any()))?;
    if delegation.metadata.deletion_timestamp.is_none() {
        return apply_delegation(delegation, ctx).await;
    }
    let Some(index) = delegation
        .finalizers()
        .iter()
        .position(|f| f == names::FINALIZER)
    else {
        return Ok(Action::await_change());
    };
    cleanup_delegation(delegation.clone(), ctx.clone()).await?;
    // Remove exactly our finalizer, and only if it is still where we saw it.
    let api: Api<Delegation> = Api::namespaced(ctx.client.clone(), &namespace);
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": names::FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .map_err(|e| Error::Internal(format!("finalizer patch: {e}")))?;
    match ctx
        .limited(api.patch(
            &delegation.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        ))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Already gone: a stale event after the finalizer was removed.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = object_key(object.as_ref());
    let failures = match ctx.failures.lock() {
        Ok(mut failures) => {
            let n = failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(failures);
    ctx.settings
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            controller: controller_name::<K>().into(),
            reason: error_reason(error),
        })
        .inc();
    warn!(object = %key, %error, failures, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// The `controller` label of a kind.
fn controller_name<K: Resource<DynamicType = ()>>() -> &'static str {
    if K::kind(&()) == "ManagedServiceOffer" {
        "offer"
    } else {
        "delegation"
    }
}

/// The `reason` label of an error: coarse, bounded cardinality.
fn error_reason(error: &Error) -> String {
    match error {
        Error::Kube(kube::Error::Api(status)) => format!("api_{}", status.code),
        Error::Kube(_) => "kube_client".into(),
        Error::Internal(_) => "internal".into(),
        Error::Grants(_) => "grants".into(),
        Error::NoNamespace(_) => "no_namespace".into(),
    }
}

/// Counts a reconcile and its duration.
fn observe<K: Resource<DynamicType = ()>>(ctx: &Context, started: std::time::Instant) {
    let labels = ControllerLabels {
        controller: controller_name::<K>().into(),
    };
    let metrics = &ctx.settings.metrics;
    metrics.reconciles.get_or_create(&labels).inc();
    metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
}

/// Forgets the failures of an object that reconciled successfully.
fn succeeded<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K) {
    if let Ok(mut failures) = ctx.failures.lock()
        && !failures.is_empty()
    {
        failures.remove(&object_key(object));
    }
}

/// Offer status: validity and per-plan adoption.
async fn reconcile_offer(
    offer: Arc<ManagedServiceOffer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_offer_once(offer.clone(), ctx.clone()).await;
    observe::<ManagedServiceOffer>(&ctx, started);
    let action = result?;
    succeeded(&ctx, offer.as_ref());
    Ok(action)
}

async fn reconcile_offer_once(
    offer: Arc<ManagedServiceOffer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.caches_ready().await;
    let namespace = offer
        .namespace()
        .ok_or_else(|| Error::NoNamespace(offer.name_any()))?;
    let name = offer.name_any();
    let written_key = format!("ManagedServiceOffer/{namespace}/{name}");
    if ctx
        .own_writes
        .cache_is_behind(&written_key, offer.resource_version().as_deref())
    {
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }
    let delegations = indexed(
        &ctx.delegations_by_offer,
        &ctx.delegations,
        &format!("{namespace}/{name}"),
    );
    let cluster_roles = ctx.cluster_roles.state();
    let by_name = roles_by_name(&cluster_roles);
    let mut problems = Vec::new();
    let mut plans = Vec::new();
    for plan in &offer.spec.plans {
        for (index, authorization) in plan.authorizations.iter().enumerate() {
            if let Some(ns) = &authorization.principal.namespace
                && *ns != namespace
            {
                problems.push(format!(
                    "spec.plans[{}].authorizations[{index}].principal.namespace must be {namespace:?} (the offer's namespace), not {ns:?}",
                    plan.name
                ));
            }
            if authorization.role_ref != crate::api::DELEGATION_DELETER_ROLE
                && let Err(refusal) = roles::check_delegable(
                    &authorization.role_ref,
                    |n| by_name.get(n).copied(),
                    || by_name.values().copied().collect(),
                )
            {
                problems.push(format!(
                    "spec.plans[{}].authorizations[{index}].roleRef {:?}: {refusal}",
                    plan.name, authorization.role_ref
                ));
            }
        }
        let of_plan: Vec<&Arc<Delegation>> = delegations
            .iter()
            .filter(|d| d.spec.plan == plan.name)
            .collect();
        plans.push(PlanStatus {
            name: plan.name.clone(),
            version: plan.version.clone(),
            delegations: of_plan.len() as i32,
            ready_delegations: of_plan
                .iter()
                .filter(|d| {
                    d.status
                        .as_ref()
                        .is_some_and(|s| is_true(&s.conditions, types::READY))
                })
                .count() as i32,
        });
    }
    let previous = offer
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut conditions = Conditions::new(previous, offer.metadata.generation, now());
    if problems.is_empty() {
        conditions.set(
            types::READY,
            true,
            Reason::Published,
            format!("{} plan(s) published", plans.len()),
        );
    } else {
        let message = format!(
            "{}; customers cannot accept the affected plans until this is fixed",
            problems.join("; ")
        );
        conditions.set(
            types::READY,
            false,
            Reason::InvalidAuthorization,
            message.clone(),
        );
        conditions.set(types::STALLED, true, Reason::InvalidAuthorization, message);
    }
    let status = ManagedServiceOfferStatus {
        observed_generation: offer.metadata.generation,
        conditions: conditions.finish(),
        plans,
    };
    if offer.status.as_ref() != Some(&status) {
        let key = format!("{namespace}/{name}");
        // Only the adoption counts changed, and some delegations are still
        // on their way to Ready: at most one write per interval. Settled
        // counts are written at once.
        let counts_only = offer.status.as_ref().is_some_and(|s| {
            s.observed_generation == status.observed_generation
                && s.conditions == status.conditions
                && s.plans.len() == status.plans.len()
        });
        let settled = status
            .plans
            .iter()
            .all(|p| p.ready_delegations == p.delegations);
        let since_last = ctx
            .offer_status_written
            .lock()
            .ok()
            .and_then(|w| w.get(&key).map(|at| at.elapsed()));
        if counts_only
            && !settled
            && let Some(since) = since_last
            && since < OFFER_COUNTS_INTERVAL
        {
            return Ok(Action::requeue(OFFER_COUNTS_INTERVAL - since));
        }
        let api: Api<ManagedServiceOffer> = Api::namespaced(ctx.client.clone(), &namespace);
        ctx.limited(api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        ))
        .await?;
        if let Ok(mut written) = ctx.offer_status_written.lock() {
            written.insert(key, std::time::Instant::now());
        }
        ctx.own_writes.record(
            &written_key,
            &offer.resource_version().into_iter().collect::<Vec<_>>(),
        );
    }
    Ok(Action::requeue(ctx.settings.resync))
}

/// For `reflect`: cache an object as the watch delivers it.
fn keep_all<K>(_: &mut K) {}

/// A store and the event stream that fills it, feeding `indexes` on the way;
/// `trim` shrinks each object before it is cached.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    indexes: Vec<Arc<Index<K>>>,
    namespaces: Option<Arc<BTreeSet<String>>>,
    trim: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    // managedFields are never read here and are often the largest part of an
    // object: dropping them before caching halves the operator's memory.
    let events = watcher(api, config)
        .modify(move |object| {
            object.meta_mut().managed_fields = None;
            trim(object);
        })
        .try_filter_map(move |event| {
            let keep = |object: &K| {
                namespaces.as_ref().is_none_or(|set| {
                    object
                        .meta()
                        .namespace
                        .as_ref()
                        .is_some_and(|ns| set.contains(ns))
                })
            };
            let kept = match event {
                watcher::Event::Apply(o)
                | watcher::Event::Delete(o)
                | watcher::Event::InitApply(o)
                    if !keep(&o) =>
                {
                    None
                }
                other => Some(other),
            };
            futures::future::ready(Ok(kept))
        });
    let stream = reflector::reflector(writer, events)
        .inspect_ok(move |event| {
            for index in &indexes {
                index.observe(event);
            }
        })
        .default_backoff()
        .touched_objects();
    (store, stream)
}

/// Runs both controllers until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let managed = || {
        watcher::Config::default()
            .labels(names::MANAGED_SELECTOR)
            .any_semantic()
    };
    let all = || watcher::Config::default().any_semantic();
    let role_bindings_by_delegation = Arc::new(Index::new(owner_keys::<RoleBinding>));
    let roles_by_delegation = Arc::new(Index::new(owner_keys::<Role>));
    let revisions_by_delegation = Arc::new(Index::new(owner_keys::<ControllerRevision>));
    let delegations_by_offer = Arc::new(Index::new(offer_keys));
    let delegations_by_namespace = Arc::new(Index::new(namespace_keys));

    let (role_bindings, role_binding_events) = reflect(
        Api::<RoleBinding>::all(client.clone()),
        managed(),
        vec![role_bindings_by_delegation.clone()],
        None,
        keep_all,
    );
    let (roles, role_events) = reflect(
        Api::<Role>::all(client.clone()),
        managed(),
        vec![roles_by_delegation.clone()],
        None,
        keep_all,
    );
    let (revisions, revision_events) = reflect(
        Api::<ControllerRevision>::all(client.clone()),
        managed(),
        vec![revisions_by_delegation.clone()],
        None,
        snapshot::compact,
    );
    let (cluster_roles, cluster_role_events) = reflect(
        Api::<ClusterRole>::all(client.clone()),
        all(),
        Vec::new(),
        None,
        keep_all,
    );
    // Metadata only: tenancy needs labels, and full namespaces cost memory.
    let (namespaces, namespace_events) = reflect(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        all(),
        Vec::new(),
        None,
        keep_all,
    );
    let scope = (!settings.watch_namespaces.is_empty()).then(|| {
        Arc::new(
            settings
                .watch_namespaces
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
        )
    });
    // One watch of delegations feeds the controller, its store and both indexes.
    let (delegations, delegation_events) = reflect(
        Api::<Delegation>::all(client.clone()),
        all(),
        vec![
            delegations_by_offer.clone(),
            delegations_by_namespace.clone(),
        ],
        scope.clone(),
        keep_all,
    );
    let (offers, offer_events) = reflect(
        Api::<ManagedServiceOffer>::all(client.clone()),
        all(),
        Vec::new(),
        scope,
        keep_all,
    );

    // The offer controller learns of delegation changes from the one watch
    // of delegations, instead of a second watch of its own.
    let (offer_trigger, offer_triggers) = futures::channel::mpsc::unbounded();
    let delegation_events = delegation_events.inspect_ok(move |d: &Delegation| {
        let offer = &d.spec.offer_ref;
        let _ = offer_trigger.unbounded_send(ObjectRef::new(&offer.name).within(&offer.namespace));
    });
    let offer_controller = Controller::for_stream(offer_events, offers.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        offers,
        delegations: delegations.clone(),
        namespaces,
        cluster_roles,
        role_bindings,
        roles,
        revisions,
        delegations_by_offer: delegations_by_offer.clone(),
        delegations_by_namespace: delegations_by_namespace.clone(),
        role_bindings_by_delegation,
        roles_by_delegation,
        revisions_by_delegation,
        events: Publisher::new(
            client.clone(),
            settings.reporter.clone(),
            std::env::var("POD_NAME").ok(),
        ),
        settings: settings.clone(),
        caches_synced: std::sync::atomic::AtomicBool::new(false),
        failures: std::sync::Mutex::new(HashMap::new()),
        own_writes: OwnWrites::default(),
        writes: tokio::sync::Semaphore::new(usize::from(settings.concurrency.max(1))),
        offer_status_written: std::sync::Mutex::new(HashMap::new()),
    });

    let ctx_for_gauges = ctx.clone();
    let shutdown_for_gauges = shutdown.clone();
    let by_labels = |labels: &BTreeMap<String, String>| delegation_of(labels);
    let not_ready_store = ctx.delegations.clone();
    let rb_store = ctx.role_bindings.clone();
    let config = kube::runtime::controller::Config::default().concurrency(settings.concurrency);

    let delegation_controller = Controller::for_stream(delegation_events, delegations)
        .with_config(config.clone())
        .watches_stream(role_binding_events, move |rb: RoleBinding| {
            by_labels(rb.labels())
        })
        .watches_stream(role_events, move |r: Role| by_labels(r.labels()))
        .watches_stream(revision_events, move |r: ControllerRevision| {
            by_labels(r.labels())
        })
        .watches(
            Api::<ManagedServiceOffer>::all(client.clone()),
            all(),
            move |offer: ManagedServiceOffer| {
                delegations_by_offer.get(&format!(
                    "{}/{}",
                    offer.namespace().unwrap_or_default(),
                    offer.name_any()
                ))
            },
        )
        .watches_stream(namespace_events, move |ns: PartialObjectMeta<Namespace>| {
            delegations_by_namespace.get(&ns.name_any())
        })
        .watches_stream(cluster_role_events, move |role: ClusterRole| {
            // Delegations granting this role, and those waiting for a role to
            // become delegable. ClusterRole changes are rare, so the bindings
            // are scanned rather than indexed by role (an index entry per
            // managed binding costs more memory than the scan costs time).
            let name = role.name_any();
            let mut refs: std::collections::HashSet<ObjectRef<Delegation>> = rb_store
                .state()
                .iter()
                .filter(|rb| rb.role_ref.kind == "ClusterRole" && rb.role_ref.name == name)
                .filter_map(|rb| delegation_of(rb.labels()))
                .collect();
            refs.extend(
                not_ready_store
                    .state()
                    .into_iter()
                    .filter(|d| {
                        !d.status
                            .as_ref()
                            .is_some_and(|s| is_true(&s.conditions, types::READY))
                    })
                    .map(|d| ObjectRef::from_obj(d.as_ref())),
            );
            refs.into_iter().collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_delegation, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "delegation reconcile error");
            }
        });

    // Offer status sums up its delegations, each of which changes many times
    // while converging; batching the triggers for a second turns hundreds of
    // status writes into a few (and `OFFER_COUNTS_INTERVAL` bounds the rest).
    let offers = offer_controller
        .with_config(config.debounce(Duration::from_secs(1)))
        .reconcile_on(offer_triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_offer, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "offer reconcile error");
            }
        });
    let gauges = update_gauges(ctx_for_gauges, shutdown_for_gauges);
    tokio::join!(delegation_controller, offers, gauges);
}

/// Keeps the state gauges current (every 2 s, from the caches) and marks the
/// caches synced for `/readyz` as soon as they are, even with nothing to do.
async fn update_gauges(ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let work = async {
        ctx.caches_ready().await;
        loop {
            let metrics = &ctx.settings.metrics;
            metrics
                .managed_role_bindings
                .set(ctx.role_bindings.state().len() as i64);
            let mut by_ready: HashMap<&'static str, i64> =
                HashMap::from([("True", 0), ("False", 0), ("Unknown", 0)]);
            let mut backlog = 0;
            for delegation in ctx.delegations.state() {
                let status = delegation.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
                    .map(|c| if c.status == "True" { "True" } else { "False" })
                    .unwrap_or("Unknown");
                *by_ready.entry(ready).or_default() += 1;
                if status.and_then(|s| s.observed_generation) != delegation.metadata.generation {
                    backlog += 1;
                }
            }
            for (ready, count) in by_ready {
                metrics
                    .delegations
                    .get_or_create(&ReadyLabels {
                        ready: ready.into(),
                    })
                    .set(count);
            }
            metrics.queue_depth.set(backlog);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
