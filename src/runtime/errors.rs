//! What a failed reconcile means and what happens next: the error type of
//! both controllers, the retry policy (exponential backoff per object), and
//! the reconcile metrics (count, duration, errors by coarse reason).

use crate::runtime::context::Context;
use crate::runtime::keys;
use crate::runtime::metrics::{ControllerLabels, ErrorLabels};
use kube::Resource;
use kube::runtime::controller::Action;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

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

impl Error {
    /// The `reason` label of an error: coarse, bounded cardinality.
    pub fn metric_reason(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => format!("api_{}", status.code),
            Error::Kube(_) => "kube_client".into(),
            Error::Internal(_) => "internal".into(),
            Error::Grants(_) => "grants".into(),
            Error::NoNamespace(_) => "no_namespace".into(),
        }
    }
}

/// First retry delay after a failed reconcile; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Retry delay after `failures` consecutive failures (pure).
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Consecutive failures per object (`Kind/namespace/name`), for backoff.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts one more failure of `key` and returns the count.
    fn record(&self, key: &str) -> u32 {
        match self.0.lock() {
            Ok(mut failures) => {
                let n = failures.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        }
    }

    /// Forgets the failures of `key`.
    fn clear(&self, key: &str) {
        if let Ok(mut failures) = self.0.lock()
            && !failures.is_empty()
        {
            failures.remove(key);
        }
    }
}

/// The `controller` label of a kind.
fn controller_name<K: Resource<DynamicType = ()>>() -> &'static str {
    if K::kind(&()) == "ManagedServiceOffer" {
        "offer"
    } else {
        "delegation"
    }
}

/// The controllers' error policy: count the error, retry with backoff.
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = keys::object(object.as_ref());
    let failures = ctx.failures.record(&key);
    let delay = backoff(failures);
    ctx.settings
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            controller: controller_name::<K>().into(),
            reason: error.metric_reason(),
        })
        .inc();
    warn!(object = %key, %error, failures, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Runs one reconcile of `object`, counting it and its duration, and forgets
/// the object's failures when it succeeds.
pub async fn observed<K, F>(ctx: &Context, object: &K, reconcile: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let result = reconcile.await;
    let labels = ControllerLabels {
        controller: controller_name::<K>().into(),
    };
    let metrics = &ctx.settings.metrics;
    metrics.reconciles.get_or_create(&labels).inc();
    metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let action = result?;
    ctx.failures.clear(&keys::object(object));
    Ok(action)
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

    #[test]
    fn failures_count_per_object_until_cleared() {
        let failures = Failures::default();
        assert_eq!(failures.record("Delegation/a/b"), 1);
        assert_eq!(failures.record("Delegation/a/b"), 2);
        assert_eq!(failures.record("Delegation/a/c"), 1);
        failures.clear("Delegation/a/b");
        assert_eq!(failures.record("Delegation/a/b"), 1);
    }
}
