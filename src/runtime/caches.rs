//! The watch caches and their secondary indexes: everything a reconcile
//! reads. One watch per kind feeds a store, the indexes over it, and the
//! controllers' triggers; reconciles read only from here (no LIST per
//! reconcile), so a quiet cluster costs the API server nothing.

use crate::api::{
    Activation, ClusterProviderPolicy, CustomerDelegation, Delegation, ManagedServiceOffer,
    OfferCatalog, ProviderPolicy, ProviderPolicyKind,
};
use crate::delegation::snapshot;
use crate::domain::names;
use crate::domain::provider_policy::Applying;
use crate::domain::tenancy::{self, NamespaceInfo};
use crate::runtime::index::Index;
use crate::runtime::keys;
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The watch caches and indexes, read-only for reconciles.
pub struct Caches {
    /// Every offer, by namespace/name.
    pub offers: Store<ManagedServiceOffer>,
    /// Every delegation.
    pub delegations: Store<Delegation>,
    /// Namespace metadata (labels for tenancy, deletion state).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Namespaces by tenant.
    pub namespaces_by_tenant: Arc<Index<PartialObjectMeta<Namespace>>>,
    /// Every ClusterRole (delegability, aggregation included).
    pub cluster_roles: Store<ClusterRole>,
    /// RoleBindings managed by the operator.
    pub role_bindings: Store<RoleBinding>,
    /// Roles managed by the operator (the deleter Roles).
    pub roles: Store<Role>,
    /// RoleBindings providers made under restricted role assignment.
    pub provider_assignments: Store<RoleBinding>,
    /// Provider-made RoleBindings by the delegation they name.
    pub provider_assignments_by_delegation: Arc<Index<RoleBinding>>,
    /// Snapshots of accepted plan versions.
    pub revisions: Store<ControllerRevision>,
    /// Activations (just-in-time access requests).
    pub activations: Store<Activation>,
    /// Activations by delegation (`namespace/name`).
    pub activations_by_delegation: Arc<Index<Activation>>,
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
    /// The platform's provider policies.
    pub cluster_policies: Store<ClusterProviderPolicy>,
    /// Platform policies by allowed tenant and listed namespace.
    pub cluster_policies_by_provider: Arc<Index<ClusterProviderPolicy>>,
    /// The customers' provider policies.
    pub policies: Store<ProviderPolicy>,
    /// Customer policies by the namespace they live in (and apply to).
    pub policies_by_namespace: Arc<Index<ProviderPolicy>>,
    /// Customer policies by allowed tenant and listed namespace.
    pub policies_by_provider: Arc<Index<ProviderPolicy>>,
    /// The admission policy that bounds provider role assignment, and its
    /// binding (by name only; without both, nothing is granted to role
    /// assigners).
    pub assignment_policy: Store<ValidatingAdmissionPolicy>,
    /// See [`Caches::assignment_policy`].
    pub assignment_policy_binding: Store<ValidatingAdmissionPolicyBinding>,
    /// The customers' catalogs.
    pub catalogs: Store<OfferCatalog>,
    /// The providers' records of their customers' Delegations.
    pub customer_records: Store<CustomerDelegation>,
    /// Every store has had its initial list (latched by [`Caches::ready`]).
    synced: AtomicBool,
}

/// A watch event stream that fills a store, yielding the objects it touched.
pub type Events<K> = Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The event streams behind [`Caches`], for the controllers to drive.
pub struct Streams {
    /// Offers.
    pub offers: Events<ManagedServiceOffer>,
    /// Delegations.
    pub delegations: Events<Delegation>,
    /// Namespace metadata.
    pub namespaces: Events<PartialObjectMeta<Namespace>>,
    /// ClusterRoles.
    pub cluster_roles: Events<ClusterRole>,
    /// Managed RoleBindings.
    pub role_bindings: Events<RoleBinding>,
    /// Managed Roles.
    pub roles: Events<Role>,
    /// Provider-made RoleBindings.
    pub provider_assignments: Events<RoleBinding>,
    /// Snapshots.
    pub revisions: Events<ControllerRevision>,
    /// Activations.
    pub activations: Events<Activation>,
    /// Platform provider policies.
    pub cluster_policies: Events<ClusterProviderPolicy>,
    /// Customer provider policies.
    pub policies: Events<ProviderPolicy>,
    /// The assignment admission policy.
    pub assignment_policy: Events<ValidatingAdmissionPolicy>,
    /// Its binding.
    pub assignment_policy_binding: Events<ValidatingAdmissionPolicyBinding>,
    /// Catalogs.
    pub catalogs: Events<OfferCatalog>,
    /// Customer records.
    pub customer_records: Events<CustomerDelegation>,
}

impl Caches {
    /// Opens one watch per kind. Offers and delegations are cached only in
    /// `scope` (every namespace when `None`); grants, tenancy and roles are
    /// read cluster-wide. The caches fill as the returned streams are driven.
    pub fn start(client: &Client, scope: Option<Arc<BTreeSet<String>>>) -> (Self, Streams) {
        let managed = || {
            watcher::Config::default()
                .labels(names::MANAGED_SELECTOR)
                .any_semantic()
        };
        let all = || watcher::Config::default().any_semantic();
        let role_bindings_by_delegation = Arc::new(Index::new(keys::owner_keys::<RoleBinding>));
        let roles_by_delegation = Arc::new(Index::new(keys::owner_keys::<Role>));
        let revisions_by_delegation = Arc::new(Index::new(keys::owner_keys::<ControllerRevision>));
        let delegations_by_offer = Arc::new(Index::new(keys::offer_keys));
        let delegations_by_namespace = Arc::new(Index::new(keys::namespace_keys));
        let (role_bindings, role_binding_events) = reflect(
            Api::all(client.clone()),
            managed(),
            vec![role_bindings_by_delegation.clone()],
            None,
            keep_all,
        );
        let provider_assignments_by_delegation =
            Arc::new(Index::new(keys::owner_keys::<RoleBinding>));
        let (provider_assignments, provider_assignment_events) = reflect(
            Api::all(client.clone()),
            watcher::Config::default()
                .labels(names::PROVIDER_ASSIGNED_SELECTOR)
                .any_semantic(),
            vec![provider_assignments_by_delegation.clone()],
            None,
            keep_all,
        );
        let (roles, role_events) = reflect(
            Api::all(client.clone()),
            managed(),
            vec![roles_by_delegation.clone()],
            None,
            keep_all,
        );
        let (revisions, revision_events) = reflect(
            Api::all(client.clone()),
            managed(),
            vec![revisions_by_delegation.clone()],
            None,
            snapshot::compact,
        );
        let (cluster_roles, cluster_role_events) =
            reflect(Api::all(client.clone()), all(), Vec::new(), None, keep_all);
        // Metadata only: tenancy needs labels, and full namespaces cost memory.
        let namespaces_by_tenant = Arc::new(Index::new(keys::namespace_tenant));
        let (namespaces, namespace_events) = reflect(
            Api::all(client.clone()),
            all(),
            vec![namespaces_by_tenant.clone()],
            None,
            keep_all,
        );
        // One watch of delegations feeds its controller, its store and both
        // indexes, and (through the controllers' wiring) the offer controller.
        let (delegations, delegation_events) = reflect(
            Api::all(client.clone()),
            all(),
            vec![
                delegations_by_offer.clone(),
                delegations_by_namespace.clone(),
            ],
            scope.clone(),
            keep_all,
        );
        let activations_by_delegation = Arc::new(Index::new(keys::activation_keys));
        let (activations, activation_events) = reflect(
            Api::all(client.clone()),
            all(),
            vec![activations_by_delegation.clone()],
            scope.clone(),
            keep_all,
        );
        let (offers, offer_events) = reflect(
            Api::all(client.clone()),
            all(),
            Vec::new(),
            scope.clone(),
            keep_all,
        );
        // Policies apply wherever a Delegation reaches, so they are read
        // cluster-wide like tenancy.
        let cluster_policies_by_provider = Arc::new(Index::new(
            keys::policy_provider_keys::<ClusterProviderPolicy>,
        ));
        let (cluster_policies, cluster_policy_events) = reflect(
            Api::all(client.clone()),
            all(),
            vec![cluster_policies_by_provider.clone()],
            None,
            keep_all,
        );
        let by_name = || {
            watcher::Config::default()
                .fields(&format!("metadata.name={}", names::ASSIGNMENT_POLICY))
                .any_semantic()
        };
        let (assignment_policy, assignment_policy_events) = reflect(
            Api::all(client.clone()),
            by_name(),
            Vec::new(),
            None,
            keep_all,
        );
        let (assignment_policy_binding, assignment_policy_binding_events) = reflect(
            Api::all(client.clone()),
            by_name(),
            Vec::new(),
            None,
            keep_all,
        );
        let policies_by_namespace = Arc::new(Index::new(keys::own_namespace::<ProviderPolicy>));
        let policies_by_provider =
            Arc::new(Index::new(keys::policy_provider_keys::<ProviderPolicy>));
        let (policies, policy_events) = reflect(
            Api::all(client.clone()),
            all(),
            vec![policies_by_namespace.clone(), policies_by_provider.clone()],
            None,
            keep_all,
        );
        let (catalogs, catalog_events) = reflect(
            Api::all(client.clone()),
            all(),
            Vec::new(),
            scope.clone(),
            keep_all,
        );
        let (customer_records, customer_record_events) = reflect(
            Api::all(client.clone()),
            managed(),
            Vec::new(),
            scope.clone(),
            keep_all,
        );
        let caches = Self {
            offers,
            delegations,
            namespaces,
            namespaces_by_tenant,
            cluster_roles,
            role_bindings,
            roles,
            provider_assignments,
            provider_assignments_by_delegation,
            revisions,
            activations,
            activations_by_delegation,
            delegations_by_offer,
            delegations_by_namespace,
            role_bindings_by_delegation,
            roles_by_delegation,
            revisions_by_delegation,
            cluster_policies,
            cluster_policies_by_provider,
            policies,
            policies_by_namespace,
            policies_by_provider,
            assignment_policy,
            assignment_policy_binding,
            catalogs,
            customer_records,
            synced: AtomicBool::new(false),
        };
        let streams = Streams {
            offers: Box::pin(offer_events),
            delegations: Box::pin(delegation_events),
            namespaces: Box::pin(namespace_events),
            cluster_roles: Box::pin(cluster_role_events),
            role_bindings: Box::pin(role_binding_events),
            roles: Box::pin(role_events),
            provider_assignments: Box::pin(provider_assignment_events),
            revisions: Box::pin(revision_events),
            activations: Box::pin(activation_events),
            cluster_policies: Box::pin(cluster_policy_events),
            policies: Box::pin(policy_events),
            assignment_policy: Box::pin(assignment_policy_events),
            assignment_policy_binding: Box::pin(assignment_policy_binding_events),
            catalogs: Box::pin(catalog_events),
            customer_records: Box::pin(customer_record_events),
        };
        (caches, streams)
    }

    /// Waits until every cache has its initial list; reconciles never act on
    /// a partial view (an empty offer cache would read as "offer deleted").
    ///
    /// `Store::wait_until_ready` wakes only the most recent of several
    /// concurrent waiters (its oneshot keeps one waker), and the controllers
    /// wait on their own stores too. So readiness is polled with a short
    /// timeout, which re-registers the waker each time; once a store was seen
    /// ready the answer is memoized, and the whole check is latched here.
    pub async fn ready(&self) {
        if self.synced.load(Ordering::Acquire) {
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
        settle!(self.provider_assignments);
        settle!(self.revisions);
        settle!(self.activations);
        settle!(self.cluster_policies);
        settle!(self.policies);
        settle!(self.assignment_policy);
        settle!(self.assignment_policy_binding);
        settle!(self.catalogs);
        settle!(self.customer_records);
        self.synced.store(true, Ordering::Release);
    }

    /// Tenancy and deletion state of namespace `name`; `None` when it does
    /// not exist.
    pub fn namespace_info(&self, name: &str) -> Option<NamespaceInfo> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|ns| NamespaceInfo {
                tenant: tenancy::tenant_of(name, ns.labels()),
                terminating: ns.metadata.deletion_timestamp.is_some(),
            })
    }

    /// The provider policies that apply to namespace `name` (none when it
    /// does not exist): platform policies whose selector matches its labels,
    /// and the customer's policies in it.
    pub fn policies_for(&self, name: &str) -> Vec<Applying> {
        let Some(namespace) = self.namespaces.get(&ObjectRef::new(name)) else {
            return Vec::new();
        };
        let mut applying: Vec<Applying> = self
            .cluster_policies
            .state()
            .iter()
            .filter(|p| selects(p.spec.namespace_selector.as_ref(), namespace.labels()))
            .map(|p| Applying {
                source: format!("ClusterProviderPolicy {}", p.name_any()),
                rules: p.rules().clone(),
            })
            .collect();
        applying.extend(
            indexed(&self.policies_by_namespace, &self.policies, name)
                .iter()
                .map(|p| Applying {
                    source: format!("ProviderPolicy {name}/{}", p.name_any()),
                    rules: p.rules().clone(),
                }),
        );
        applying.sort_by(|a, b| a.source.cmp(&b.source));
        applying
    }

    /// True when the admission policy that bounds provider role assignment
    /// is installed and bound to deny: only then may role assigners be
    /// granted anything (without it their RoleBinding rights are unbounded).
    pub fn assignments_enforced(&self) -> bool {
        let policy = ObjectRef::new(names::ASSIGNMENT_POLICY);
        let bound = self
            .assignment_policy_binding
            .get(&ObjectRef::new(names::ASSIGNMENT_POLICY))
            .is_some_and(|b| {
                b.spec.as_ref().is_some_and(|s| {
                    s.policy_name.as_deref() == Some(names::ASSIGNMENT_POLICY)
                        && s.validation_actions.iter().flatten().any(|a| a == "Deny")
                })
            });
        bound && self.assignment_policy.get(&policy).is_some()
    }

    /// The namespaces of tenant `tenant`, sorted: those labeled with it, and
    /// the unlabeled namespace of that name.
    pub fn namespaces_of_tenant(&self, tenant: &str) -> Vec<String> {
        self.namespaces_selected(tenant, None)
    }

    /// The namespaces of tenant `tenant` that `selector` (absent: all)
    /// matches, sorted; none when the selector cannot be parsed (a grant
    /// never reaches wider than a selector says).
    pub fn namespaces_selected(
        &self,
        tenant: &str,
        selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    ) -> Vec<String> {
        use kube::core::{Selector, SelectorExt};
        let parsed = match selector.cloned().map(Selector::try_from) {
            None => None,
            Some(Ok(parsed)) => Some(parsed),
            Some(Err(_)) => return Vec::new(),
        };
        let mut names: Vec<String> = indexed(&self.namespaces_by_tenant, &self.namespaces, tenant)
            .iter()
            .filter(|ns| parsed.as_ref().is_none_or(|s| s.matches(ns.labels())))
            .map(|ns| ns.name_any())
            .collect();
        names.sort();
        names
    }

    /// The delegations of offer `namespace/name`.
    pub fn delegations_of_offer(&self, namespace: &str, name: &str) -> Vec<Arc<Delegation>> {
        indexed(
            &self.delegations_by_offer,
            &self.delegations,
            &keys::namespaced(namespace, name),
        )
    }

    /// The managed RoleBindings of delegation `namespace/name`.
    pub fn role_bindings_of(&self, namespace: &str, name: &str) -> Vec<Arc<RoleBinding>> {
        indexed(
            &self.role_bindings_by_delegation,
            &self.role_bindings,
            &keys::namespaced(namespace, name),
        )
    }

    /// The managed Roles of delegation `namespace/name`.
    pub fn roles_of(&self, namespace: &str, name: &str) -> Vec<Arc<Role>> {
        indexed(
            &self.roles_by_delegation,
            &self.roles,
            &keys::namespaced(namespace, name),
        )
    }

    /// The RoleBindings a provider made under delegation `namespace/name`.
    pub fn provider_assignments_of(&self, namespace: &str, name: &str) -> Vec<Arc<RoleBinding>> {
        indexed(
            &self.provider_assignments_by_delegation,
            &self.provider_assignments,
            &keys::namespaced(namespace, name),
        )
    }

    /// The Activations naming delegation `namespace/name`.
    pub fn activations_of(&self, namespace: &str, name: &str) -> Vec<Arc<Activation>> {
        indexed(
            &self.activations_by_delegation,
            &self.activations,
            &keys::namespaced(namespace, name),
        )
    }

    /// The snapshots labeled for delegation `namespace/name` that live in its
    /// namespace.
    pub fn revisions_of(&self, namespace: &str, name: &str) -> Vec<Arc<ControllerRevision>> {
        indexed(
            &self.revisions_by_delegation,
            &self.revisions,
            &keys::namespaced(namespace, name),
        )
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace))
        .collect()
    }
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

/// True when `selector` (absent: everything) matches `labels`. A selector
/// that cannot be parsed matches everything: a policy applies rather than
/// not (fail closed).
fn selects(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    use kube::core::{Selector, SelectorExt};
    match selector.cloned().map(Selector::try_from) {
        None => true,
        Some(Ok(selector)) => selector.matches(labels),
        Some(Err(_)) => true,
    }
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
        .backoff(watch_backoff())
        .touched_objects();
    (store, stream)
}

/// First retry delay of a watch after an error.
const WATCH_RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay of a watch.
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);

/// How a watch retries after an error: 250 ms, doubling to at most 5 s,
/// reset after 60 s without errors.
///
/// Not kube's `DefaultBackoff`, which grows to 30 s (with jitter): after a
/// kube-apiserver restart every watch then waited up to 30 s more before it
/// came back, and Delegations created meanwhile were granted 45 to 85 s late
/// (tests/faults.rs, control-plane restarts). A handful of watches retrying
/// every 5 s is no load on an API server.
pub fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    ResetTimerBackoff::new(retry_schedule(), Duration::from_secs(60))
}

/// The schedule itself, without the reset timer.
fn retry_schedule() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_RETRY_MIN)
        .with_max_delay(WATCH_RETRY_MAX)
        .with_factor(2.0)
        .without_max_times()
        .into()
}

#[cfg(test)]
mod watch_backoff_tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn watch_retries_double_to_five_seconds_and_reset() {
        let mut backoff = retry_schedule();
        let delays: Vec<u128> = backoff.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [250, 500, 1_000, 2_000, 4_000, 5_000, 5_000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(WATCH_RETRY_MIN));
    }
}
