//! The msp-operator binary: `run` the controllers, print the `crds`, or the `version`.

use clap::{Parser, Subcommand, ValueEnum};
use msp_operator::controller::{self, Settings};
use std::process::ExitCode;
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

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (uses KUBECONFIG, or the in-cluster ServiceAccount).
    Run {
        /// Reconciles running at once, per controller.
        #[arg(long, env = "MSP_CONCURRENCY", default_value_t = 8)]
        concurrency: u16,
        /// Seconds between full re-checks of every object.
        #[arg(long, env = "MSP_RESYNC_SECONDS", default_value_t = 600)]
        resync_seconds: u64,
        /// Log format; the level follows RUST_LOG (default `info`).
        #[arg(long, env = "MSP_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<std::path::PathBuf>,
    },
    /// Print version and build information.
    Version,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
    tracing::info!("shutting down");
}

async fn run(concurrency: u16, resync_seconds: u64) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    tracing::info!(server = %version.git_version, "msp-operator {} starting", env!("CARGO_PKG_VERSION"));
    let settings = Settings {
        concurrency: concurrency.max(1),
        resync: Duration::from_secs(resync_seconds.max(1)),
        ..Settings::default()
    };
    controller::run(client, settings, shutdown_signal()).await;
    Ok(())
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            concurrency,
            resync_seconds,
            log_format,
        } => {
            init_logging(log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("msp-operator: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(concurrency, resync_seconds)) {
                Ok(()) => ExitCode::SUCCESS,
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
            println!("msp-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
