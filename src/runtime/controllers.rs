//! Starts both controllers on one watch per kind: the caches' event streams
//! drive the Delegation controller, and the offer controller takes its
//! triggers from the same watches of delegations and offers instead of
//! opening watches of its own (as in kube's `shared_stream_controllers`).

use crate::api::{Activation, Delegation, ManagedServiceOffer};
use crate::domain::conditions::delegation_ready;
use crate::runtime::caches::Caches;
use crate::runtime::context::{Context, Settings};
use crate::runtime::errors::{Failures, error_policy};
use crate::runtime::gauges;
use crate::runtime::keys;
use crate::runtime::writer::Writer;
use crate::{activation, delegation, offer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::Backoff;
use kube::{Client, ResourceExt};
use std::collections::{BTreeSet, HashSet};
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
    let delegation_store = caches.delegations.clone();
    let by_namespace = caches.delegations_by_namespace.clone();
    let rb_store = caches.role_bindings.clone();
    let not_ready_store = caches.delegations.clone();
    let (revoked, revoked_rx) = tokio::sync::watch::channel(false);
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
        revoked: revoked_rx,
    });
    let config = Config::default().concurrency(settings.concurrency);
    let by_labels =
        |labels: &std::collections::BTreeMap<String, String>| keys::delegation_of(labels);

    let delegations = Controller::for_stream(delegation_events, delegation_store)
        .with_config(config.clone())
        .watches_stream(streams.role_bindings, move |rb: RoleBinding| {
            by_labels(rb.labels())
        })
        .watches_stream(streams.roles, move |r: Role| by_labels(r.labels()))
        .watches_stream(streams.revisions, move |r: ControllerRevision| {
            by_labels(r.labels())
        })
        .reconcile_on(delegation_triggers)
        .watches_stream(
            streams.namespaces,
            move |ns: PartialObjectMeta<Namespace>| by_namespace.get(&ns.name_any()),
        )
        .watches_stream(streams.cluster_roles, move |role: ClusterRole| {
            // Delegations granting this role, and those waiting for a role to
            // become delegable. ClusterRole changes are rare, so the bindings
            // are scanned rather than indexed by role (an index entry per
            // managed binding costs more memory than the scan costs time).
            let name = role.name_any();
            let mut refs: HashSet<ObjectRef<Delegation>> = rb_store
                .state()
                .iter()
                .filter(|rb| rb.role_ref.kind == "ClusterRole" && rb.role_ref.name == name)
                .filter_map(|rb| keys::delegation_of(rb.labels()))
                .collect();
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
    // status writes into a few (and `OFFER_COUNTS_INTERVAL` bounds the rest).
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
        activations,
        gauges::update(ctx.clone(), shutdown.clone()),
        delegation::cleanup::sweep(ctx, shutdown)
    );
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
