//! The HTTP endpoints: `/healthz` and `/readyz` for the kubelet's probes,
//! `/metrics` for Prometheus, on one address or two.

use crate::runtime::metrics::{Health, Metrics};
use std::net::SocketAddr;
use std::sync::Arc;

/// Binds the endpoints and serves them in the background until `shutdown`;
/// fails when an address cannot be bound.
pub async fn serve(
    metrics_addr: SocketAddr,
    probe_addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + 'static,
) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let probes = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    if health.ready() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                    }
                }
            }),
        );
    let exposition = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    let routers = if metrics_addr == probe_addr {
        vec![(probe_addr, probes.merge(exposition))]
    } else {
        vec![(probe_addr, probes), (metrics_addr, exposition)]
    };
    for (addr, router) in routers {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "serving probes/metrics");
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "probe/metrics server failed");
            }
        });
    }
    Ok(())
}
