//! The state gauges (delegations by readiness, activations by phase,
//! managed RoleBindings, the reconcile backlog), recomputed from the caches
//! every two seconds; the controllers only count what they do, this says
//! where things stand.

use crate::domain::conditions::types;
use crate::runtime::context::Context;
use crate::runtime::metrics::{PhaseLabels, ReadyLabels};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Keeps the state gauges current (every 2 s, from the caches) and marks the
/// caches synced for `/readyz` as soon as they are, even with nothing to do.
pub async fn update(ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let work = async {
        ctx.caches_ready().await;
        loop {
            let metrics = &ctx.settings.metrics;
            metrics
                .managed_role_bindings
                .set(ctx.caches.role_bindings.state().len() as i64);
            let mut by_ready: HashMap<&'static str, i64> =
                HashMap::from([("True", 0), ("False", 0), ("Unknown", 0)]);
            let mut backlog = 0;
            for delegation in ctx.caches.delegations.state() {
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
            let mut by_phase: HashMap<String, i64> =
                ["New", "Pending", "Active", "Expired", "Denied", "Revoked"]
                    .into_iter()
                    .map(|p| (p.to_string(), 0))
                    .collect();
            for activation in ctx.caches.activations.state() {
                let phase = activation
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map_or_else(|| "New".to_string(), |p| format!("{p:?}"));
                *by_phase.entry(phase).or_default() += 1;
            }
            for (phase, count) in by_phase {
                metrics
                    .activations
                    .get_or_create(&PhaseLabels { phase })
                    .set(count);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}
