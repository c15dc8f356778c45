//! `msp-dev`: the developer loop behind `make run` and `make controlplane`.
//!
//! `msp-dev up` starts a local control plane in the foreground and keeps it
//! until Ctrl-C. `msp-dev run` reuses that control plane when one is up (or
//! starts its own), installs the CRDs and the delegable role catalog, applies
//! the samples in `examples/`, and runs the operator binary in the foreground;
//! Ctrl-C stops the operator and whatever this command started.

use msp_testenv::binaries::repo_root;
use msp_testenv::{ControlPlaneOptions, LocalControlPlane, manifests};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: msp-dev up | run [--operator PATH]";

/// Ctrl-C or SIGTERM, whichever comes first: both stop everything cleanly.
async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn state_dir() -> PathBuf {
    repo_root().join("target/msp-dev")
}

fn kubeconfig_path() -> PathBuf {
    state_dir().join("controlplane/admin.kubeconfig")
}

/// A client for an already running `msp-dev up`, if its API server answers.
async fn existing() -> Option<kube::Client> {
    let yaml = std::fs::read_to_string(kubeconfig_path()).ok()?;
    let client = msp_testenv::kubeconfig::client_from_yaml(&yaml)
        .await
        .ok()?;
    let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
    let ready = tokio::time::timeout(Duration::from_secs(3), client.request_text(request))
        .await
        .ok()?
        .ok()?;
    (ready == "ok").then_some(client)
}

async fn start() -> anyhow::Result<LocalControlPlane> {
    eprintln!("msp-dev: starting etcd, kube-apiserver and kube-controller-manager ...");
    let plane = LocalControlPlane::start(ControlPlaneOptions {
        dir: Some(state_dir().join("controlplane")),
        ..Default::default()
    })
    .await?;
    eprintln!(
        "msp-dev: control plane ready at {} in {:.1}s (logs in {})",
        plane.server(),
        plane.startup.as_secs_f64(),
        plane.dir().display()
    );
    Ok(plane)
}

async fn up() -> anyhow::Result<()> {
    if existing().await.is_some() {
        anyhow::bail!(
            "a control plane is already up (kubeconfig {})",
            kubeconfig_path().display()
        );
    }
    let mut plane = start().await?;
    println!("export KUBECONFIG={}", plane.admin_kubeconfig().display());
    eprintln!("msp-dev: Ctrl-C stops it");
    interrupted().await;
    eprintln!("msp-dev: stopping the control plane");
    plane.stop();
    Ok(())
}

fn read_yaml_dir(dir: &Path) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut all = String::new();
    for file in files {
        all.push_str("\n---\n");
        all.push_str(&std::fs::read_to_string(&file)?);
    }
    Ok(all)
}

async fn run(operator: PathBuf) -> anyhow::Result<()> {
    let (client, mut owned) = match existing().await {
        Some(client) => {
            eprintln!(
                "msp-dev: reusing the control plane of `make controlplane` ({})",
                kubeconfig_path().display()
            );
            (client, None)
        }
        None => {
            let plane = start().await?;
            (plane.admin_client().await?, Some(plane))
        }
    };
    let root = repo_root();
    let crds = read_yaml_dir(&root.join("crds"))?;
    manifests::apply_yaml(&client, &crds, "msp-dev", "default").await?;
    eprintln!("msp-dev: installed the CRDs from crds/");
    for file in [
        "deploy/delegable-roles.yaml",
        "deploy/activation-roles.yaml",
        "deploy/admission-policies.yaml",
        "deploy/provider-policies.yaml",
        "deploy/views.yaml",
        "deploy/consent-recorder.yaml",
        "deploy/delegation-metadata.yaml",
    ] {
        let yaml = std::fs::read_to_string(root.join(file))?;
        manifests::apply_yaml(&client, &yaml, "msp-dev", "default").await?;
        eprintln!("msp-dev: applied {file}");
    }
    // The examples' Delegation must meet the consent recorder in force.
    manifests::wait_for_consent_recorder(&client).await?;
    let examples = root.join("examples");
    let samples = read_yaml_dir(&examples)?;
    manifests::apply_yaml(&client, &samples, "msp-dev", "default").await?;
    eprintln!("msp-dev: applied examples/*.yaml");

    let kubeconfig = kubeconfig_path();
    // The kubectl plugin is built beside the operator (`make run`).
    let plugin = operator.with_file_name("kubectl-msp");
    eprintln!(
        "\nmsp-dev: running {} (Ctrl-C stops everything)\n  kubeconfig: {}\n  try:        KUBECONFIG={} kubectl get delegations -A\n  and:        KUBECONFIG={} {} offers -n fabrikam-web   (the kubectl plugin; `cargo install --path . --bin kubectl-msp` makes it `kubectl msp`)\n",
        operator.display(),
        kubeconfig.display(),
        kubeconfig.display(),
        kubeconfig.display(),
        plugin.display()
    );
    let mut child = tokio::process::Command::new(&operator)
        .arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", operator.display()))?;
    let result = tokio::select! {
        status = child.wait() => match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(anyhow::anyhow!("the operator exited with {status}")),
            Err(e) => Err(e.into()),
        },
        _ = interrupted() => {
            eprintln!("\nmsp-dev: stopping the operator");
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM); }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            Ok(())
        }
    };
    if let Some(plane) = owned.as_mut() {
        eprintln!("msp-dev: stopping the control plane");
        plane.stop();
    }
    result
}

// A single-threaded runtime: control-plane processes are started from the main
// thread, which lives exactly as long as this command.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up().await,
        Some("run") => {
            let operator = match args.get(1).map(String::as_str) {
                Some("--operator") => args.get(2).map(PathBuf::from),
                _ => None,
            }
            .unwrap_or_else(|| repo_root().join("target/debug/msp-operator"));
            run(operator).await
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msp-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}
