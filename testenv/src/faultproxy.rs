//! A fault-injecting proxy between the operator and the API server, for the
//! overload tests: it answers a chosen fraction of requests with `429 Too
//! Many Requests`, `500 Internal Server Error` or a slow `504` (a timeout),
//! passes the rest on, and counts everything it sees.
//!
//! The operator talks plain HTTP to the proxy (its kubeconfig from
//! [`FaultProxy::write_kubeconfig`] has no credentials); the proxy forwards
//! with a client of the test's choosing, normally one that authenticates as
//! the operator's user, so RBAC and the audit log see the operator as usual.
//! Bodies stream both ways, so watches work through it.
//!
//! Written here rather than taken from a crate: what it must do (decide per
//! request, count, and forward with a kube client's credentials) is a few
//! lines on top of axum and `kube::Client::send`, which the tree has already.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use kube::Client;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to requests from now on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Fraction of requests (0 to 1) answered with a fault instead of being
    /// passed on; the faults take turns: 429, 500, slow 504.
    pub fraction: f64,
    /// How long a "timeout" holds the request before its 504.
    pub timeout: Duration,
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests answered with a fault.
    pub faults: AtomicU64,
}

struct Shared {
    upstream: Client,
    faults: Mutex<Faults>,
    /// xorshift state: deterministic per proxy, no crate needed.
    random: Mutex<u64>,
    counts: Counts,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards with `upstream`.
    pub async fn start(upstream: Client) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            random: Mutex::new(0x9E37_79B9_7F4A_7C15),
            counts: Counts::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that points at the proxy, without credentials.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: {}\nusers:\n- name: proxied\n  user: {{}}\ncontexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxied\ncurrent-context: proxy\n",
                self.url()
            ),
        )
    }

    /// Sets what happens to requests from now on.
    pub fn set(&self, faults: Faults) {
        *self
            .shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.counts.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with a fault so far.
    pub fn faults(&self) -> u64 {
        self.shared.counts.faults.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which fault, if any, request number `n` gets.
enum Fault {
    Throttled,
    ServerError,
    Timeout(Duration),
}

fn decide(shared: &Shared, n: u64) -> Option<Fault> {
    let faults = *shared
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if faults.fraction <= 0.0 {
        return None;
    }
    let draw = {
        let mut state = shared
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 1_000_000) as f64 / 1_000_000.0
    };
    (draw < faults.fraction).then_some(match n % 3 {
        0 => Fault::Throttled,
        1 => Fault::ServerError,
        _ => Fault::Timeout(faults.timeout),
    })
}

/// A `Status` answer, as the API server would give it.
fn status(code: u16, reason: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("fault proxy: {reason}"), "reason": reason, "code": code,
    });
    let mut response = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    response
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let n = shared.counts.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(fault) = decide(&shared, n) {
        shared.counts.faults.fetch_add(1, Ordering::Relaxed);
        return match fault {
            Fault::Throttled => status(429, "TooManyRequests", Some(1)),
            Fault::ServerError => status(500, "InternalError", None),
            Fault::Timeout(wait) => {
                tokio::time::sleep(wait).await;
                status(504, "Timeout", None)
            }
        };
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return status(413, "RequestEntityTooLarge", None);
    };
    let mut upstream = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "authorization" | "content-length") {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(kube::client::Body::from(bytes.to_vec())) else {
        return status(400, "BadRequest", None);
    };
    match shared.upstream.send(upstream).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => status(502, &format!("BadGateway: {e}"), None),
    }
}
