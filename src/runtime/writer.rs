//! Everything a reconcile may use to change the cluster, in one place: the
//! client (the operator's identity), the write limiter, the tracker of the
//! operator's own writes, the Event publisher, and when each status was last
//! written. A step that takes a [`Writer`] writes; one that does not, cannot.

use crate::domain::names;
use crate::runtime::events::{Occurrence, Publisher};
use crate::runtime::own_writes::OwnWrites;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::warn;

/// The write side of the controllers.
pub struct Writer {
    /// Kubernetes client (the operator's own identity).
    pub client: Client,
    /// Write requests in flight, at most `concurrency` across both
    /// controllers: reconciles write side by side, and the API server sees
    /// the same concurrency however the work is split.
    limit: tokio::sync::Semaphore,
    /// Revocations in flight (deletes of grants no longer consented), at
    /// most `concurrency`, in a lane of their own: a grant past its consent
    /// or its deadline never waits behind the creates, statuses and Events
    /// queued for `limit` (a burst of a thousand expiring activations
    /// queues several thousand of those).
    revocations: tokio::sync::Semaphore,
    /// This operator's writes of delegations and offers (by
    /// `Kind/namespace/name`) that the caches may not show yet.
    pub own_writes: OwnWrites,
    /// Publishes Events.
    events: Publisher,
    /// When each object's status was last written (by `namespace/name`).
    status_written: Mutex<HashMap<String, Instant>>,
}

impl Writer {
    /// A writer with at most `concurrency` writes in flight, publishing
    /// Events as `reporter` from `instance` (the pod name).
    pub fn new(
        client: Client,
        concurrency: u16,
        reporter: String,
        instance: Option<String>,
    ) -> Self {
        Self {
            events: Publisher::new(client.clone(), reporter, instance),
            client,
            limit: tokio::sync::Semaphore::new(usize::from(concurrency.max(1))),
            revocations: tokio::sync::Semaphore::new(usize::from(concurrency.max(1))),
            own_writes: OwnWrites::default(),
            status_written: Mutex::new(HashMap::new()),
        }
    }

    /// The API of `K` in `namespace`, as the operator.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Sends one write request when its turn comes (see `limit`).
    pub async fn limited<T>(&self, write: impl Future<Output = T>) -> T {
        // The semaphore is never closed; were it, writes would go unlimited.
        let _permit = self.limit.acquire().await.ok();
        write.await
    }

    /// Sends one revocation (a delete of a grant) when its turn comes in
    /// the revocation lane (see `revocations`).
    pub async fn revoking<T>(&self, delete: impl Future<Output = T>) -> T {
        let _permit = self.revocations.acquire().await.ok();
        delete.await
    }

    /// Writes a grant object (Role or RoleBinding) as the operator's field
    /// manager. An object the cache does not hold is created with a plain
    /// POST: for the API server that is the cheapest write there is, about a
    /// third cheaper than a server-side apply that creates (5,000
    /// RoleBindings at concurrency 8: 2.9-3.2 s against 4.3-5.1 s), and cold
    /// convergence is mostly creates. An object that exists (drift), or that
    /// the create finds after all (a cache behind the API server, or a
    /// squatter of the name), gets a forced server-side apply, as before.
    pub async fn write_grant<K>(&self, api: &Api<K>, object: &K, cached: bool) -> kube::Result<K>
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
            match self.limited(api.create(&params, object)).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                other => return other,
            }
        }
        self.limited(api.patch(
            &object.name_any(),
            &PatchParams::apply(names::FIELD_MANAGER).force(),
            &Patch::Apply(object),
        ))
        .await
    }

    /// Publishes an Event about `object`; a failure is logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, occurrence: Occurrence) {
        if let Err(e) = self
            .limited(self.events.publish(&occurrence, &object.object_ref(&())))
            .await
        {
            warn!(error = %e, "cannot publish event");
        }
    }

    /// How long ago the status of `key` was last written here, if ever.
    pub fn status_written_ago(&self, key: &str) -> Option<Duration> {
        self.status_written
            .lock()
            .ok()
            .and_then(|w| w.get(key).map(|at| at.elapsed()))
    }

    /// Notes that the status of `key` was written now.
    pub fn status_written_now(&self, key: &str) {
        if let Ok(mut written) = self.status_written.lock() {
            written.insert(key.to_string(), Instant::now());
        }
    }
}
