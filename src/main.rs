//! The msp-operator binary: `run` the controllers, print the `crds`, or the `version`.

use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use msp_operator::controller::{self, Settings};
use msp_operator::metrics::{CountRequests, Health, Metrics};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Managed service offers and delegations for Kubernetes: providers publish
/// offers, customers accept plan versions, the operator grants exactly that.
#[derive(Parser, Debug)]
#[command(name = "msp-operator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Reconciles running at once, per controller; also the most write
    /// requests the operator has in flight to the API server at any time.
    #[arg(long, env = "MSP_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Seconds between full re-checks of every object.
    #[arg(long, env = "MSP_RESYNC_SECONDS", default_value_t = 600)]
    resync_seconds: u64,
    /// Log format; the level follows RUST_LOG (default `info`).
    #[arg(long, env = "MSP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Act only on offers and delegations in these namespaces (comma
    /// separated; all namespaces when empty). Read access stays cluster-wide:
    /// grants, tenancy and roles span namespaces.
    #[arg(long, env = "MSP_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Address of the Prometheus endpoint (`/metrics`).
    #[arg(long, env = "MSP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of the probes (`/healthz`, `/readyz`).
    #[arg(long, env = "MSP_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    probe_addr: SocketAddr,
    /// Elect a leader among replicas through a coordination.k8s.io Lease;
    /// only the leader reconciles and writes.
    #[arg(long, env = "MSP_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "MSP_LEASE_NAME", default_value = "msp-operator")]
    lease_name: String,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a Lease stays valid without renewal; a standby takes over
    /// after at most this long when the leader dies.
    #[arg(long, env = "MSP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds before expiry at which the leader renews the Lease.
    #[arg(long, env = "MSP_LEASE_GRACE_SECONDS", default_value_t = 5)]
    lease_grace_seconds: u64,
    /// Seconds in-flight reconciles get to finish after SIGTERM (keep it
    /// below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "MSP_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,
    /// Identity in the Lease (default: the pod name, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (uses KUBECONFIG, or the in-cluster ServiceAccount).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<std::path::PathBuf>,
    },
    /// Print version and build information.
    Version,
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Logs as text or JSON, filtered by RUST_LOG; with the `otlp` feature and
/// OTEL_EXPORTER_OTLP_ENDPOINT set, spans (one per reconcile, carrying the
/// object reference) are also exported over OTLP/HTTP.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt: BoxedLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    let mut layers = vec![fmt];
    layers.extend(otlp_layer());
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
}

#[cfg(feature = "otlp")]
fn otlp_layer() -> Option<BoxedLayer> {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("msp-operator: OTLP export disabled: {e}");
            return None;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("msp-operator")
                .build(),
        )
        .build();
    let tracer = provider.tracer("msp-operator");
    opentelemetry::global::set_tracer_provider(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
}

#[cfg(not(feature = "otlp"))]
fn otlp_layer() -> Option<BoxedLayer> {
    None
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutdown requested");
}

/// Serves `/healthz` and `/readyz`, and `/metrics` (on one address or two).
async fn serve(
    args: &RunArgs,
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
    let routers = if args.metrics_addr == args.probe_addr {
        vec![(args.probe_addr, probes.merge(exposition))]
    } else {
        vec![(args.probe_addr, probes), (args.metrics_addr, exposition)]
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    health
        .leader_election
        .store(args.leader_elect, Ordering::Release);
    let config = kube::Config::infer().await?;
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountRequests(metrics.clone()))
        .build();
    let version = client.apiserver_version().await?;
    tracing::info!(server = %version.git_version, "msp-operator {} starting", env!("CARGO_PKG_VERSION"));
    let shutdown = shutdown_signal().boxed().shared();
    serve(&args, metrics.clone(), health.clone(), shutdown.clone()).await?;
    let settings = Settings {
        concurrency: args.concurrency.max(1),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        metrics: metrics.clone(),
        health: health.clone(),
        watch_namespaces: args.watch_namespaces.clone(),
        ..Settings::default()
    };

    if !args.leader_elect {
        health.leading.store(true, Ordering::Release);
        metrics.leader.set(1);
        run_bounded(
            client,
            settings,
            shutdown.clone(),
            shutdown,
            args.shutdown_grace_seconds,
        )
        .await;
        return Ok(());
    }

    // Leader election: kube-lease-manager renews the Lease and reports
    // leadership on a watch channel; the controllers run only while it is
    // true. Dropping the receiver makes the manager release the Lease, so a
    // graceful shutdown hands over at once.
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "msp-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &args.lease_namespace);
    tracing::info!(%identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "waiting for leadership");
    'elect: loop {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
                .with_namespace(&args.lease_namespace)
                .with_identity(&identity)
                .with_duration(args.lease_duration_seconds)
                .with_grace(
                    args.lease_grace_seconds
                        .min(args.lease_duration_seconds.saturating_sub(1)),
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
            _ = lease_released(&leases, &args.lease_name, &identity) => Standby::Released,
        };
        if let Standby::Released = outcome {
            tracing::info!(%identity, "the lease was released; trying to take it");
            drop(leading);
            let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
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
                args.shutdown_grace_seconds,
            )
            .await;
            health.leading.store(false, Ordering::Release);
            health.caches_synced.store(false, Ordering::Release);
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
async fn run_bounded(
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
        _ = controller::run(client, settings, stop) => {}
        _ = deadline => tracing::warn!(grace_seconds, "in-flight reconciles abandoned at shutdown"),
    }
}

/// Resolves when the Lease, held by another replica when first seen, has no
/// holder any more (released on shutdown) or is deleted.
async fn lease_released(leases: &kube::Api<Lease>, name: &str, identity: &str) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher::watcher(leases.clone(), config));
    let mut held_by_other = false;
    while let Some(event) = events.next().await {
        let holder = |lease: &Lease| {
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty())
        };
        match event {
            Ok(Event::Apply(lease) | Event::InitApply(lease)) => match holder(&lease) {
                Some(h) if h != identity => held_by_other = true,
                Some(_) => {}
                None if held_by_other => return,
                None => {}
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

fn write_crds(output_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use msp_operator::crdgen;
    match output_dir {
        None => print!("{}", crdgen::all_yaml()?),
        Some(dir) => {
            for (file, crd) in crdgen::crds() {
                std::fs::write(dir.join(file), crdgen::to_yaml(&crd)?)?;
            }
        }
    }
    Ok(())
}

/// jemalloc instead of the system allocator: under `make bench` (1,000
/// delegations, 10,000 RoleBindings) it kept peak RSS at 61.5/68.6 MiB where
/// glibc malloc reached 64.1/82.1 MiB (cold run / resync, drift and plan
/// update), and used less CPU. The watch caches churn small objects across
/// threads, which fragments glibc's per-thread arenas. (mimalloc was tried
/// earlier and did worse than glibc.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("msp-operator: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds { output_dir } => match write_crds(output_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msp-operator: cannot write the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!(
                "msp-operator {}\ncommit: {}\nbuilt with: {} for {} ({})\napi: msp-operator.io/v1alpha1\nsupports: Kubernetes 1.33 and newer",
                env!("CARGO_PKG_VERSION"),
                env!("MSP_BUILD_COMMIT"),
                env!("MSP_BUILD_RUSTC"),
                env!("MSP_BUILD_TARGET"),
                env!("MSP_BUILD_PROFILE"),
            );
            ExitCode::SUCCESS
        }
    }
}
