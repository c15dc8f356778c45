//! What every reconcile is handed: the read side ([`Caches`]), the write side
//! ([`Writer`]), the settings, and the retry counts. A step's signature says
//! which of them it touches.

use crate::runtime::caches::Caches;
use crate::runtime::errors::Failures;
use crate::runtime::metrics::{Health, Metrics};
use crate::runtime::writer::Writer;
use std::sync::Arc;
use std::time::Duration;

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
    /// What the probes report; the controllers set `synced_and_revoked`.
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
    /// Watch caches and indexes (read).
    pub caches: Caches,
    /// Client, write limiter, own-writes tracker, Events (write).
    pub writer: Writer,
    /// Settings.
    pub settings: Settings,
    /// Consecutive failures per object, for backoff.
    pub failures: Failures,
    /// The activation grants' deadline timer (see
    /// [`crate::activation::deadlines`]).
    pub deadlines: crate::activation::deadlines::Deadlines,
    /// The activation grants each Delegation's last reconcile found in
    /// place, so a missing one tells drift from a grant just begun (see
    /// [`crate::delegation::drift`]).
    pub seen_activation_grants: crate::delegation::drift::SeenActivationGrants,
    /// True once the revocation pass after start has run
    /// ([`crate::delegation::revoke`]); grants wait for it.
    pub revoked: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Waits until the revocation pass after start has run.
    pub async fn revoked_first(&self) {
        let mut revoked = self.revoked.clone();
        let _ = revoked.wait_for(|done| *done).await;
    }

    /// Waits for every cache's initial list (see [`Caches::ready`]).
    pub async fn caches_ready(&self) {
        self.caches.ready().await;
    }
}
