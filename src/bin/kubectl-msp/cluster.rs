//! The connection to the cluster, found the way kubectl finds it:
//! `--kubeconfig`, else `KUBECONFIG` (a list of files, merged), else
//! `~/.kube/config`, else the in-cluster ServiceAccount; `--context` picks
//! a context; the namespace is `-n`, else the context's, else `default`.
//!
//! It also holds the one polling helper every command that waits for the
//! operator uses, so all of them wait the same way.

use anyhow::{Context, anyhow};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How `kubectl msp` reaches the cluster (the global flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// The namespace to act in (default: the kubeconfig context's, else
    /// `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else
    /// ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// A client and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    /// The API client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// Connects as the kubeconfig (or in-cluster ServiceAccount) says.
pub async fn connect(args: &ConnectArgs) -> anyhow::Result<Cluster> {
    let config = load_config(args).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("cannot build a Kubernetes client")?;
    Ok(Cluster { client, namespace })
}

async fn load_config(args: &ConnectArgs) -> anyhow::Result<Config> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| anyhow!("cannot read --kubeconfig {}: {e}", path.display()))?,
        None => match Kubeconfig::read() {
            Ok(k) => k,
            Err(KubeconfigError::FindPath | KubeconfigError::ReadConfig(..))
                if args.context.is_none() && in_cluster() =>
            {
                return Config::incluster().context("cannot use the in-cluster ServiceAccount");
            }
            Err(e) => {
                return Err(anyhow!(
                    "no usable kubeconfig ({e}): pass --kubeconfig FILE or set KUBECONFIG"
                ));
            }
        },
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| match &args.context {
            Some(context) => anyhow!("cannot use --context {context}: {e}"),
            None => anyhow!("cannot use the kubeconfig's current context: {e}"),
        })
}

/// True inside a Pod (the environment kubelet sets).
fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// How long commands wait for the operator, at most.
pub const WAIT: Duration = Duration::from_secs(30);
/// How often they look.
const POLL: Duration = Duration::from_millis(250);

/// Calls `probe` until it returns `Some` or `timeout` passes (then `None`);
/// an error of `probe` ends the wait at once.
pub async fn poll<T, F, Fut>(timeout: Duration, mut probe: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await? {
            return Ok(Some(found));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}
