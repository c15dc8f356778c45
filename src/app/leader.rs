//! Leader election among replicas through a `coordination.k8s.io` Lease:
//! only the leader runs the controllers (and so writes); a standby takes
//! over when the leader's Lease expires or is released, and a graceful
//! shutdown releases it at once.

use crate::runtime::context::Settings;
use crate::runtime::controllers;
use crate::runtime::metrics::{Health, Metrics};
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where and how to hold the Lease.
#[derive(Clone, Debug)]
pub struct Election {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Identity in the Lease (default: host name and pid).
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the leader renews it.
    pub grace_seconds: u64,
}

/// Runs the controllers whenever this replica leads, until `shutdown`.
pub async fn run_elected<S>(
    client: kube::Client,
    settings: Settings,
    election: &Election,
    shutdown: S,
    grace_seconds: u64,
) -> anyhow::Result<()>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let health: Arc<Health> = settings.health.clone();
    let metrics: Arc<Metrics> = settings.metrics.clone();
    // Leader election: kube-lease-manager renews the Lease and reports
    // leadership on a watch channel; the controllers run only while it is
    // true. Dropping the receiver makes the manager release the Lease, so a
    // graceful shutdown hands over at once.
    let identity = election.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "msp-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &election.lease_namespace);
    tracing::info!(%identity, lease = %format!("{}/{}", election.lease_namespace, election.lease_name), "waiting for leadership");
    'elect: loop {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.lease_name)
                .with_namespace(&election.lease_namespace)
                .with_identity(&identity)
                .with_duration(election.duration_seconds)
                .with_grace(
                    election
                        .grace_seconds
                        .min(election.duration_seconds.saturating_sub(1)),
                )
                // One field manager per replica: server-side apply conflicts
                // between managers are what make exactly one of two replicas
                // that grab a free Lease at once win (a shared name let both
                // succeed: split brain, seen by the chart tests).
                .with_field_manager(format!("msp-operator-leader-election-{identity}"))
                .build()
                .await?;
        let (mut leading, lease_task) = manager.watch().await;
        // Standby. kube-lease-manager re-checks a held Lease only when it would
        // expire, so a Lease released by a leader shutting down would sit free
        // until then. Watching the Lease and restarting the manager when its
        // holder lets go makes the hand-over immediate.
        enum Standby {
            Lead,
            Shutdown,
            Released,
        }
        let outcome = tokio::select! {
            _ = shutdown.clone() => Standby::Shutdown,
            changed = leading.wait_for(|leader| *leader) => {
                if changed.is_err() {
                    anyhow::bail!("the leader election task stopped");
                }
                Standby::Lead
            }
            _ = lease_released(&leases, &election.lease_name, &identity) => Standby::Released,
        };
        if let Standby::Released = outcome {
            tracing::info!(%identity, "the lease was released; trying to take it");
            drop(leading);
            let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
            // Bounds the restart rate should the Lease stay free but
            // unlockable (each restart reads the Lease once).
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue 'elect;
        }
        let lead = matches!(outcome, Standby::Lead);
        if lead {
            tracing::info!(%identity, "acquired leadership; starting controllers");
            health.leading.store(true, Ordering::Release);
            metrics.leader.set(1);
            let mut lost = leading.clone();
            let stop = {
                let shutdown = shutdown.clone();
                async move {
                    tokio::select! {
                        _ = shutdown => {}
                        _ = lost.wait_for(|leader| !*leader) => {}
                    }
                }
            };
            run_bounded(
                client.clone(),
                settings.clone(),
                stop,
                shutdown.clone(),
                grace_seconds,
            )
            .await;
            health.leading.store(false, Ordering::Release);
            health.synced_and_revoked.store(false, Ordering::Release);
            metrics.leader.set(0);
        }
        // Dropping the receiver makes the manager release the Lease.
        drop(leading);
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
            Err(_) => tracing::warn!("timed out releasing the lease"),
        }
        if shutdown.clone().now_or_never().is_some() {
            return Ok(());
        }
        tracing::warn!(%identity, "lost leadership; controllers stopped, waiting to lead again");
    }
}

/// Runs the controllers until `stop`; once `shutdown` fires, in-flight
/// reconciles get `grace_seconds` to finish before they are abandoned (a
/// reconcile waiting for an unreachable API server must not block exit).
pub async fn run_bounded(
    client: kube::Client,
    settings: Settings,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()>,
    grace_seconds: u64,
) {
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(Duration::from_secs(grace_seconds)).await;
    };
    tokio::select! {
        _ = controllers::run(client, settings, stop) => {}
        _ = deadline => tracing::warn!(grace_seconds, "in-flight reconciles abandoned at shutdown"),
    }
}

/// Resolves when the Lease has no holder (released on shutdown, or already
/// free when the watch starts) or, once held by another replica, is deleted.
///
/// "Already free" matters: a standby that starts while the leader is shutting
/// down can read the Lease as held, then see it released before this watch is
/// established; kube-lease-manager would then sleep until the old expiry.
async fn lease_released(leases: &kube::Api<Lease>, name: &str, identity: &str) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher::watcher(leases.clone(), config));
    let mut held_by_other = false;
    // Set while the Lease has been seen free but never held by another: this
    // replica's manager normally takes it at once (and the caller's select
    // then leads); if nobody has after a second, the manager read it before
    // the release and sleeps until the old expiry.
    let mut free_since: Option<tokio::time::Instant> = None;
    loop {
        let next = match free_since {
            Some(since) => {
                match tokio::time::timeout_at(since + Duration::from_secs(1), events.next()).await {
                    Ok(next) => next,
                    Err(_) => return,
                }
            }
            None => events.next().await,
        };
        let Some(event) = next else { return };
        let holder = |lease: &Lease| {
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty())
        };
        match event {
            Ok(Event::Apply(lease) | Event::InitApply(lease)) => match holder(&lease) {
                Some(h) if h != identity => {
                    held_by_other = true;
                    free_since = None;
                }
                Some(_) => free_since = None,
                None if held_by_other => return,
                None => {
                    free_since.get_or_insert_with(tokio::time::Instant::now);
                }
            },
            Ok(Event::Delete(_)) if held_by_other => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "lease watch error");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
