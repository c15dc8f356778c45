//! Starts the controllers on one watch per kind: the caches' event streams
//! drive the Delegation controller, and the offer, Activation and
//! provider-policy controllers take their triggers from the same watches
//! instead of opening watches of their own (as in kube's
//! `shared_stream_controllers`).

use crate::api::{
    Activation, CATALOG_NAME, ClusterProviderPolicy, CustomerDelegation, Delegation,
    ManagedServiceOffer, ProviderPolicy,
};
use crate::domain::conditions::delegation_ready;
use crate::domain::tenancy;
use crate::runtime::caches::{Caches, Events};
use crate::runtime::context::{Context, Settings};
use crate::runtime::errors::{Failures, error_policy};
use crate::runtime::gauges;
use crate::runtime::index::Index;
use crate::runtime::keys;
use crate::runtime::writer::Writer;
use crate::{activation, catalog, delegation, offer, provider_policy};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::{Client, ResourceExt};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs both controllers until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let scope = (!settings.watch_namespaces.is_empty()).then(|| {
        Arc::new(
            settings
                .watch_namespaces
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
        )
    });
    let (caches, streams) = Caches::start(&client, scope);

    // The offer controller learns of delegation changes from the one watch
    // of delegations, and the delegation controller of offer changes from
    // the one watch of offers.
    // Likewise the Activation controller learns of its Delegations' changes
    // (deleted, another version accepted) from that watch, and the
    // Delegation controller of activations (whose grants it builds) from
    // the one watch of activations.
    let (offer_trigger, offer_triggers) = futures::channel::mpsc::unbounded();
    let (activation_trigger, activation_triggers) = futures::channel::mpsc::unbounded();
    let activations_by_delegation = caches.activations_by_delegation.clone();
    let delegation_events = streams.delegations.inspect_ok(move |d: &Delegation| {
        let offer = &d.spec.offer_ref;
        let _ = offer_trigger.unbounded_send(ObjectRef::new(&offer.name).within(&offer.namespace));
        let key = keys::namespaced(&d.namespace().unwrap_or_default(), &d.name_any());
        for activation in activations_by_delegation.get(&key) {
            let _ = activation_trigger.unbounded_send(activation);
        }
    });
    let (delegation_trigger, delegation_triggers) = futures::channel::mpsc::unbounded();
    let activation_delegation_trigger = delegation_trigger.clone();
    let delegation_trigger_for_policies = delegation_trigger.clone();
    let activation_events = streams.activations.inspect_ok(move |a: &Activation| {
        let namespace = a.namespace().unwrap_or_default();
        let _ = activation_delegation_trigger
            .unbounded_send(ObjectRef::new(&a.spec.delegation).within(&namespace));
    });
    let activation_store = caches.activations.clone();
    let by_offer = caches.delegations_by_offer.clone();
    let offer_events = streams.offers.inspect_ok(move |o: &ManagedServiceOffer| {
        let key = keys::namespaced(&o.namespace().unwrap_or_default(), &o.name_any());
        for delegation in by_offer.get(&key) {
            let _ = delegation_trigger.unbounded_send(delegation);
        }
    });
    let offer_store = caches.offers.clone();
    let policy_wiring = PolicyWiring::new(&caches, delegation_trigger_for_policies);
    let offer_events = policy_wiring.offers(offer_events);
    let namespace_events = policy_wiring.namespaces(streams.namespaces);
    // Customers' catalogs follow every offer whose spec changed or that is
    // gone (offers change rarely, and a catalog whose projection did not
    // change is not written; an offer's own status writes, which come every
    // few seconds while its customers converge, change no catalog) and
    // their namespace's tenant.
    let (catalog_trigger, catalog_triggers) = futures::channel::mpsc::unbounded();
    let namespace_catalog_trigger = catalog_trigger.clone();
    let catalog_store = caches.catalogs.clone();
    let every_catalog = caches.catalogs.clone();
    let offers_now = caches.offers.clone();
    let mut offer_generations: HashMap<String, Option<i64>> = HashMap::new();
    let offer_events = offer_events.inspect_ok(move |o: &ManagedServiceOffer| {
        let key = keys::object(o);
        let changed = if offers_now.get(&ObjectRef::from_obj(o)).is_none() {
            offer_generations.remove(&key);
            true
        } else {
            offer_generations.insert(key, o.metadata.generation) != Some(o.metadata.generation)
        };
        if changed {
            for c in every_catalog.state() {
                let _ = catalog_trigger.unbounded_send(ObjectRef::from_obj(c.as_ref()));
            }
        }
    });
    let namespace_events = namespace_events.inspect_ok(move |ns: &PartialObjectMeta<Namespace>| {
        let _ = namespace_catalog_trigger
            .unbounded_send(ObjectRef::new(CATALOG_NAME).within(&ns.name_any()));
    });
    let cluster_policy_events = policy_wiring.cluster_policies(streams.cluster_policies);
    let policy_events = policy_wiring.policies(streams.policies);
    let delegation_store = caches.delegations.clone();
    let by_namespace = caches.delegations_by_namespace.clone();
    let rb_store = caches.role_bindings.clone();
    let enforcement_store = caches.delegations.clone();
    let enforcement_store_2 = caches.delegations.clone();
    let assigned_store = caches.provider_assignments.clone();
    let role_store = caches.roles.clone();
    let not_ready_store = caches.delegations.clone();
    let (revoked, revoked_rx) = tokio::sync::watch::channel(false);
    let (deadlines, dues) = activation::deadlines::channel();
    let ctx = Arc::new(Context {
        writer: Writer::new(
            client.clone(),
            settings.concurrency,
            settings.reporter.clone(),
            std::env::var("POD_NAME").ok(),
        ),
        caches,
        settings: settings.clone(),
        failures: Failures::default(),
        deadlines,
        seen_activation_grants: Default::default(),
        revoked: revoked_rx,
    });
    let config = Config::default().concurrency(settings.concurrency);
    let record_echoes = ctx.clone();
    let by_labels =
        |labels: &std::collections::BTreeMap<String, String>| keys::delegation_of(labels);

    let delegations = Controller::for_stream(delegation_events, delegation_store)
        .with_config(config.clone())
        .watches_stream(streams.role_bindings, move |rb: RoleBinding| {
            by_labels(rb.labels())
        })
        .watches_stream(streams.roles, move |r: Role| by_labels(r.labels()))
        // A provider's record changed or deleted by someone else: restored.
        // The echo of the operator's own write of it is no trigger (a
        // reconcile per record written, for nothing).
        .watches_stream(streams.customer_records, move |r: CustomerDelegation| {
            if delegation::records::is_own_echo(&record_echoes.writer, &r) {
                return None;
            }
            by_labels(r.labels())
        })
        .watches_stream(streams.provider_assignments, move |rb: RoleBinding| {
            by_labels(rb.labels())
        })
        // The admission policy bounding role assigners came or went: every
        // Delegation (rare; a reconcile at rest writes nothing).
        .watches_stream(streams.assignment_policy, move |_| {
            every_delegation(&enforcement_store)
        })
        .watches_stream(streams.assignment_policy_binding, move |_| {
            every_delegation(&enforcement_store_2)
        })
        .watches_stream(streams.revisions, move |r: ControllerRevision| {
            by_labels(r.labels())
        })
        .reconcile_on(delegation_triggers)
        .watches_stream(namespace_events, move |ns: PartialObjectMeta<Namespace>| {
            // Those naming or reporting it, and the tenant-wide Delegations
            // of its tenant, which it may join.
            let name = ns.name_any();
            let tenant = tenancy::tenant_of(&name, ns.labels());
            let mut refs = by_namespace.get(&name);
            refs.extend(by_namespace.get(&format!("tenant:{tenant}")));
            refs
        })
        .watches_stream(streams.cluster_roles, move |role: ClusterRole| {
            // Delegations granting this role, and those waiting for a role to
            // become delegable. ClusterRole changes are rare, so the bindings
            // are scanned rather than indexed by role (an index entry per
            // managed binding costs more memory than the scan costs time).
            let name = role.name_any();
            let mut refs: HashSet<ObjectRef<Delegation>> = rb_store
                .state()
                .iter()
                .chain(assigned_store.state().iter())
                .filter(|rb| rb.role_ref.kind == "ClusterRole" && rb.role_ref.name == name)
                .filter_map(|rb| keys::delegation_of(rb.labels()))
                .collect();
            // Role assigners who may bind it.
            refs.extend(
                role_store
                    .state()
                    .iter()
                    .filter(|r| {
                        r.rules.iter().flatten().any(|rule| {
                            rule.verbs.iter().any(|v| v == "bind")
                                && rule.resource_names.iter().flatten().any(|n| *n == name)
                        })
                    })
                    .filter_map(|r| keys::delegation_of(r.labels())),
            );
            refs.extend(
                not_ready_store
                    .state()
                    .into_iter()
                    .filter(|d| !delegation_ready(d))
                    .map(|d| ObjectRef::from_obj(d.as_ref())),
            );
            refs.into_iter().collect::<Vec<_>>()
        })
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown.clone())
        .run(delegation::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "delegation reconcile error");
            }
        });

    // Offer status sums up its delegations, each of which changes many times
    // while converging; batching the triggers for a second turns hundreds of
    // status writes into a few (and `offer::counts_interval` bounds the rest).
    let offers = Controller::for_stream(offer_events, offer_store)
        .with_config(config.clone().debounce(Duration::from_secs(1)))
        .reconcile_on(offer_triggers)
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown.clone())
        .run(offer::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "offer reconcile error");
            }
        });
    let catalogs = Controller::for_stream(streams.catalogs, catalog_store)
        .with_config(config.clone())
        .reconcile_on(catalog_triggers)
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown.clone())
        .run(catalog::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "catalog reconcile error");
            }
        });
    // Activations: status, Events and expiry; their grants are the
    // Delegation controller's.
    let activations = Controller::for_stream(activation_events, activation_store)
        .with_config(config.clone())
        .reconcile_on(activation_triggers)
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown.clone())
        .run(activation::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "activation reconcile error");
            }
        });
    // Provider policies: their status lists the namespaces of the allowed
    // providers, for admission.
    let cluster_policies =
        Controller::for_stream(cluster_policy_events, policy_wiring.cluster_store)
            .with_config(config.clone())
            .reconcile_on(policy_wiring.cluster_triggers)
            .trigger_backoff(NoTriggerBackoff)
            .graceful_shutdown_on(shutdown.clone())
            .run(
                provider_policy::reconcile_cluster,
                error_policy,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "cluster provider policy reconcile error");
                }
            });
    let policies = Controller::for_stream(policy_events, policy_wiring.store)
        .with_config(config.clone())
        .reconcile_on(policy_wiring.triggers)
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            provider_policy::reconcile_namespaced,
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "provider policy reconcile error");
            }
        });
    // Revocation first: one pass over the caches before any reconcile
    // grants (the reconciles wait for it).
    let first = {
        let ctx = ctx.clone();
        async move {
            ctx.caches_ready().await;
            delegation::revoke::first_pass(&ctx).await;
            let _ = revoked.send(true);
            // Ready once grants may be written: after the revocation pass,
            // which can take a while when much changed while it was away.
            ctx.settings
                .health
                .synced_and_revoked
                .store(true, std::sync::atomic::Ordering::Release);
        }
    };
    tokio::join!(
        first,
        delegations,
        offers,
        catalogs,
        activations,
        cluster_policies,
        policies,
        gauges::update(ctx.clone(), shutdown.clone()),
        activation::deadlines::run(ctx.clone(), dues, shutdown.clone()),
        delegation::cleanup::sweep(ctx, shutdown)
    );
}

/// A reference to every cached Delegation.
fn every_delegation(store: &Store<Delegation>) -> Vec<ObjectRef<Delegation>> {
    store
        .state()
        .iter()
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

type Trigger<K> = futures::channel::mpsc::UnboundedSender<ObjectRef<K>>;
type Triggers<K> = futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>;

/// How provider policies join the one watch per kind: a namespace event
/// re-checks the policies whose provider list it may change; a policy whose
/// spec changed (or that was deleted) re-checks the Delegations it can
/// apply to — every Delegation for a platform policy (policy changes are
/// rare, and a reconcile at rest writes nothing), those of its namespace for
/// a customer's.
struct PolicyWiring {
    cluster_store: Store<ClusterProviderPolicy>,
    store: Store<ProviderPolicy>,
    cluster_trigger: Trigger<ClusterProviderPolicy>,
    cluster_triggers: Triggers<ClusterProviderPolicy>,
    trigger: Trigger<ProviderPolicy>,
    triggers: Triggers<ProviderPolicy>,
    cluster_by_provider: Arc<Index<ClusterProviderPolicy>>,
    by_provider: Arc<Index<ProviderPolicy>>,
    delegations: Store<Delegation>,
    delegations_by_namespace: Arc<Index<Delegation>>,
    delegation_trigger: Trigger<Delegation>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl PolicyWiring {
    fn new(caches: &Caches, delegation_trigger: Trigger<Delegation>) -> Self {
        let (cluster_trigger, cluster_triggers) = futures::channel::mpsc::unbounded();
        let (trigger, triggers) = futures::channel::mpsc::unbounded();
        Self {
            cluster_store: caches.cluster_policies.clone(),
            store: caches.policies.clone(),
            cluster_trigger,
            cluster_triggers,
            trigger,
            triggers,
            cluster_by_provider: caches.cluster_policies_by_provider.clone(),
            by_provider: caches.policies_by_provider.clone(),
            delegations: caches.delegations.clone(),
            delegations_by_namespace: caches.delegations_by_namespace.clone(),
            delegation_trigger,
            namespaces: caches.namespaces.clone(),
        }
    }

    /// Triggers of `key` (`tenant:<t>` or `namespace:<n>`) for both kinds.
    fn trigger_policies(
        key: &str,
        cluster_by_provider: &Index<ClusterProviderPolicy>,
        by_provider: &Index<ProviderPolicy>,
        cluster_trigger: &Trigger<ClusterProviderPolicy>,
        trigger: &Trigger<ProviderPolicy>,
    ) {
        for policy in cluster_by_provider.get(key) {
            let _ = cluster_trigger.unbounded_send(policy);
        }
        for policy in by_provider.get(key) {
            let _ = trigger.unbounded_send(policy);
        }
    }

    /// Offer events, re-checking the policies that allow the offer's
    /// tenant: their status lists only namespaces holding an offer.
    fn offers(
        &self,
        events: impl futures::Stream<Item = Result<ManagedServiceOffer, kube::runtime::watcher::Error>>
        + Send
        + 'static,
    ) -> impl futures::Stream<Item = Result<ManagedServiceOffer, kube::runtime::watcher::Error>>
    + Send
    + 'static {
        let (cluster_by_provider, by_provider) =
            (self.cluster_by_provider.clone(), self.by_provider.clone());
        let (cluster_trigger, trigger) = (self.cluster_trigger.clone(), self.trigger.clone());
        let namespaces = self.namespaces.clone();
        events.inspect_ok(move |offer| {
            let name = offer.namespace().unwrap_or_default();
            let tenant = namespaces
                .get(&ObjectRef::new(&name))
                .map(|ns| tenancy::tenant_of(&name, ns.labels()))
                .unwrap_or_else(|| name.clone());
            for key in [format!("tenant:{tenant}"), format!("namespace:{name}")] {
                Self::trigger_policies(
                    &key,
                    &cluster_by_provider,
                    &by_provider,
                    &cluster_trigger,
                    &trigger,
                );
            }
        })
    }

    /// Namespace events, re-checking the policies that allow the namespace's
    /// tenant or list the namespace.
    fn namespaces(
        &self,
        events: Events<PartialObjectMeta<Namespace>>,
    ) -> impl futures::Stream<
        Item = Result<PartialObjectMeta<Namespace>, kube::runtime::watcher::Error>,
    > + Send
    + 'static {
        let (cluster_by_provider, by_provider) =
            (self.cluster_by_provider.clone(), self.by_provider.clone());
        let (cluster_trigger, trigger) = (self.cluster_trigger.clone(), self.trigger.clone());
        events.inspect_ok(move |ns| {
            let name = ns.name_any();
            let keys = [
                format!("tenant:{}", tenancy::tenant_of(&name, ns.labels())),
                format!("namespace:{name}"),
            ];
            for key in &keys {
                Self::trigger_policies(
                    key,
                    &cluster_by_provider,
                    &by_provider,
                    &cluster_trigger,
                    &trigger,
                );
            }
        })
    }

    /// Platform policy events, re-checking every Delegation when a spec
    /// changed or a policy went away.
    fn cluster_policies(
        &self,
        events: Events<ClusterProviderPolicy>,
    ) -> impl futures::Stream<Item = Result<ClusterProviderPolicy, kube::runtime::watcher::Error>>
    + Send
    + 'static {
        let seen = SpecChanges::default();
        let (store, delegations, trigger) = (
            self.cluster_store.clone(),
            self.delegations.clone(),
            self.delegation_trigger.clone(),
        );
        events.inspect_ok(move |policy| {
            if seen.changed(policy, &store) {
                for d in delegations.state() {
                    let _ = trigger.unbounded_send(ObjectRef::from_obj(d.as_ref()));
                }
            }
        })
    }

    /// Customer policy events, re-checking the Delegations covering its
    /// namespace when a spec changed or a policy went away.
    fn policies(
        &self,
        events: Events<ProviderPolicy>,
    ) -> impl futures::Stream<Item = Result<ProviderPolicy, kube::runtime::watcher::Error>>
    + Send
    + 'static {
        let seen = SpecChanges::default();
        let (store, by_namespace, trigger) = (
            self.store.clone(),
            self.delegations_by_namespace.clone(),
            self.delegation_trigger.clone(),
        );
        events.inspect_ok(move |policy| {
            if seen.changed(policy, &store) {
                for d in by_namespace.get(&policy.namespace().unwrap_or_default()) {
                    let _ = trigger.unbounded_send(d);
                }
            }
        })
    }
}

/// The generation last seen of each object: its own status writes do not
/// count as a change.
#[derive(Default)]
struct SpecChanges(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl SpecChanges {
    /// True when `object` is new, its spec changed, or it is gone from
    /// `store` (a deletion).
    fn changed<K>(&self, object: &K, store: &Store<K>) -> bool
    where
        K: kube::Resource<DynamicType = ()> + Clone,
    {
        let key = keys::object(object);
        let generation = object.meta().generation.unwrap_or_default();
        let Ok(mut seen) = self.0.lock() else {
            return true;
        };
        if store.get(&ObjectRef::from_obj(object)).is_none() {
            seen.remove(&key);
            return true;
        }
        seen.insert(key, generation) != Some(generation)
    }
}

/// The controllers' trigger backoff: none. Every watch already retries with
/// its own backoff (`caches::watch_backoff`); kube's default here would, on
/// any one watch's error, stop polling *every* trigger of the controller for
/// up to a minute (30 s with jitter, growing). Measured before this: after a
/// kube-apiserver restart the relists waited 43 s and Delegations created
/// meanwhile were granted 45 to 100 s late (tests/faults.rs).
struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
}
