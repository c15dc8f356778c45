//! Prometheus metrics (`msp_operator_*`) and the health state probes report.
//!
//! Families: reconciles, errors by reason and reconcile duration per
//! controller; the backlog of delegations not yet reconciled at their current
//! generation; managed RoleBindings; drift corrections; delegations by Ready
//! status; leadership; and the Kubernetes client's requests by verb and
//! status code, counted by a tower layer in the client's stack.

use futures::future::BoxFuture;
use http::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Label set `controller`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `delegation` or `offer`.
    pub controller: String,
}

/// Label set `controller`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `delegation` or `offer`.
    pub controller: String,
    /// Short error class, e.g. `api_409`, `grants`, `kube_client`.
    pub reason: String,
}

/// Label set `ready`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `True`, `False` or `Unknown`.
    pub ready: String,
}

/// Label set `phase`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `Pending`, `Active`, `Expired`, `Denied`, `Revoked`, or `New` (not
    /// decided yet).
    pub phase: String,
}

/// Label set `verb`, `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// HTTP status code, or `error` when no response arrived.
    pub code: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run, per controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Failed reconciles, per controller and reason.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration, per controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Delegations whose current generation is not reconciled yet.
    pub queue_depth: Gauge,
    /// RoleBindings the operator manages.
    pub managed_role_bindings: Gauge,
    /// Grant objects restored after an edit or deletion.
    pub drift_corrections: Counter,
    /// Grant objects and consent records removed because their Delegation
    /// was gone (the periodic orphan sweep).
    pub orphans_removed: Counter,
    /// Delegations by Ready status.
    pub delegations: Family<ReadyLabels, Gauge>,
    /// Activations by phase.
    pub activations: Family<PhaseLabels, Gauge>,
    /// 1 while this replica leads (or runs without leader election).
    pub leader: Gauge,
    /// Kubernetes API requests, by verb and status code.
    pub kube_requests: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("msp_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            });
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            reconcile_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Delegations whose current generation has not been reconciled yet (kube-runtime does not expose its scheduler queue)",
            queue_depth.clone(),
        );
        let managed_role_bindings = Gauge::default();
        registry.register(
            "managed_rolebindings",
            "RoleBindings managed by the operator",
            managed_role_bindings.clone(),
        );
        let drift_corrections = Counter::default();
        registry.register(
            "drift_corrections",
            "Grant objects restored after an edit or deletion",
            drift_corrections.clone(),
        );
        let orphans_removed = Counter::default();
        registry.register(
            "orphans_removed",
            "Grant objects and consent records removed because their Delegation was gone",
            orphans_removed.clone(),
        );
        let delegations = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "delegations",
            "Delegations by Ready status",
            delegations.clone(),
        );
        let activations = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "activations",
            "Activations (just-in-time access requests) by phase",
            activations.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads and writes",
            leader.clone(),
        );
        let kube_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Kubernetes API requests by verb and status code",
            kube_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            queue_depth,
            managed_role_bindings,
            drift_corrections,
            orphans_removed,
            delegations,
            activations,
            leader,
            kube_requests,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// Every watch cache has its initial list and the first revocation pass
    /// is done, so grants may be written (set by the controllers).
    pub synced_and_revoked: AtomicBool,
    /// This replica currently leads.
    pub leading: AtomicBool,
    /// Leader election is on (a standby is then ready without leading).
    pub leader_election: AtomicBool,
    /// Since when (ms on [`clock_ms`]) every request to the API server has
    /// failed without an answer or with a server error; 0 while it answers.
    /// Set by [`CountRequests`].
    api_failing_since_ms: AtomicU64,
}

/// How long requests must keep failing before a replica says it is not
/// ready: one failed request under load is not an outage, and readiness
/// should not flap with it.
pub const API_AWAY_AFTER: Duration = Duration::from_secs(5);

/// Milliseconds on a monotonic clock that starts with the process (never 0).
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Health {
    /// Records the outcome of one request to the API server.
    pub fn record_answer(&self, answered: bool) {
        if answered {
            self.api_failing_since_ms.store(0, Ordering::Release);
        } else {
            let _ = self.api_failing_since_ms.compare_exchange(
                0,
                clock_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Whether requests have kept failing for [`API_AWAY_AFTER`] at `now_ms`.
    fn api_away_at(&self, now_ms: u64) -> bool {
        let since = self.api_failing_since_ms.load(Ordering::Acquire);
        since != 0 && now_ms.saturating_sub(since) >= API_AWAY_AFTER.as_millis() as u64
    }

    /// `/readyz`: nobody is ready while the API server is away (a replica
    /// that cannot reach it can neither grant nor revoke); then a leader (or
    /// a replica without leader election) is ready once its caches are
    /// synced and it has revoked what changed while it was away, and a
    /// standby while it waits.
    pub fn ready(&self) -> bool {
        self.ready_at(clock_ms())
    }

    fn ready_at(&self, now_ms: u64) -> bool {
        if self.api_away_at(now_ms) {
            return false;
        }
        let leading = self.leading.load(Ordering::Acquire);
        let synced = self.synced_and_revoked.load(Ordering::Acquire);
        if self.leader_election.load(Ordering::Acquire) && !leading {
            return true;
        }
        leading && synced
    }
}

/// The Kubernetes verb of a request, from its method and query.
pub fn verb_of<B>(request: &Request<B>) -> &'static str {
    let query = request.uri().query().unwrap_or("");
    match *request.method() {
        http::Method::GET if query.contains("watch=true") => "watch",
        http::Method::GET
            if query.contains("limit=")
                || query.contains("labelSelector=")
                || query.contains("fieldSelector=") =>
        {
            "list"
        }
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// A tower layer counting requests into [`Metrics::kube_requests`] and
/// recording in [`Health`] whether the API server answers.
#[derive(Clone)]
pub struct CountRequests {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        }
    }
}

/// The service of [`CountRequests`].
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Whether an answer shows a working API server: any answer but a server
/// error (5xx: its etcd is away, or it is shutting down) or no answer at all.
fn reachable<B, E>(result: &Result<Response<B>, E>) -> bool {
    result
        .as_ref()
        .is_ok_and(|response| !response.status().is_server_error())
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Counted<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let verb = verb_of(&request);
        let metrics = self.metrics.clone();
        let health = self.health.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            health.record_answer(reachable(&result));
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics
                .kube_requests
                .get_or_create(&RequestLabels {
                    verb: verb.to_string(),
                    code,
                })
                .inc();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_read_from_method_and_query() {
        let req = |method: &str, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .expect("request")
        };
        assert_eq!(
            verb_of(&req("GET", "/api/v1/pods?watch=true&resourceVersion=1")),
            "watch"
        );
        assert_eq!(verb_of(&req("GET", "/api/v1/pods?&limit=500")), "list");
        assert_eq!(verb_of(&req("GET", "/api/v1/namespaces/a/pods/b")), "get");
        assert_eq!(
            verb_of(&req("PATCH", "/api/v1/namespaces/a/pods/b")),
            "patch"
        );
    }

    #[test]
    fn standby_is_ready_leader_after_sync() {
        let health = Health::default();
        assert!(!health.ready(), "without leader election: not before sync");
        health.leading.store(true, Ordering::Release);
        health.synced_and_revoked.store(true, Ordering::Release);
        assert!(health.ready());
        let standby = Health::default();
        standby.leader_election.store(true, Ordering::Release);
        assert!(standby.ready(), "a standby is ready while it waits");
    }

    #[test]
    fn nobody_is_ready_while_the_api_server_is_away() {
        let leader = Health::default();
        leader.leading.store(true, Ordering::Release);
        leader.synced_and_revoked.store(true, Ordering::Release);
        let standby = Health::default();
        standby.leader_election.store(true, Ordering::Release);
        let grace = API_AWAY_AFTER.as_millis() as u64;
        for health in [&leader, &standby] {
            health.api_failing_since_ms.store(1_000, Ordering::Release);
            assert!(
                health.ready_at(1_000 + grace - 1),
                "one failure is not an outage"
            );
            assert!(
                !health.ready_at(1_000 + grace),
                "failing for the grace: away"
            );
            health.record_answer(false);
            assert_eq!(
                health.api_failing_since_ms.load(Ordering::Acquire),
                1_000,
                "a later failure keeps the first failure's time"
            );
            health.record_answer(true);
            assert!(health.ready_at(1_000 + grace), "an answer ends the outage");
        }
        let answer = |code: u16| -> Result<Response<()>, ()> {
            Ok(Response::builder().status(code).body(()).expect("response"))
        };
        assert!(reachable(&answer(200)));
        assert!(reachable(&answer(404)), "a refusal is an answer");
        assert!(reachable(&answer(429)), "throttled, but there");
        assert!(!reachable(&answer(500)));
        assert!(!reachable(&answer(503)));
        assert!(!reachable::<(), ()>(&Err(())), "no answer at all");
    }

    #[test]
    fn families_are_exported_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.leader.set(1);
        metrics
            .reconciles
            .get_or_create(&ControllerLabels {
                controller: "delegation".into(),
            })
            .inc();
        let text = metrics.encode();
        assert!(text.contains("msp_operator_leader 1"), "{text}");
        assert!(
            text.contains("msp_operator_reconciles_total{controller=\"delegation\"} 1"),
            "{text}"
        );
    }
}
