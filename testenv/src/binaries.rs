//! Finding (or building) etcd, kube-apiserver, kube-controller-manager and kubectl.
//!
//! Order: the directory named by `KUBEBUILDER_ASSETS` (the envtest convention,
//! so `setup-envtest` users just work), then `PATH`, else the binaries built
//! from source by `tools/controlplane/build.sh` into a cache outside the tree.
//! Each binary is looked up on its own, so a `KUBEBUILDER_ASSETS` directory
//! without kube-controller-manager (setup-envtest ships none) is completed from
//! `PATH` or the build cache.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// etcd server.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kubectl of the same release as the API server where it was built here.
    pub kubectl: PathBuf,
}

/// The repository root (where `tools/controlplane` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn in_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    let candidate = dir.join(name);
    executable(&candidate).then_some(candidate)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find_map(|dir| in_dir(&dir, name)))
}

/// Finds one binary in `KUBEBUILDER_ASSETS`, then `PATH`.
fn preinstalled(name: &str) -> Option<PathBuf> {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .and_then(|dir| in_dir(Path::new(&dir), name))
        .or_else(|| on_path(name))
}

impl Binaries {
    /// Locates every binary, building the missing ones from source (cached).
    pub fn locate() -> anyhow::Result<Self> {
        let found = [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ]
        .map(|name| (name, preinstalled(name)));
        // kubectl on PATH may be of any release; prefer the one built with the
        // API server unless the user pointed KUBEBUILDER_ASSETS at one.
        let kubectl_from_assets = std::env::var_os("KUBEBUILDER_ASSETS")
            .and_then(|dir| in_dir(Path::new(&dir), "kubectl"));
        let need_build =
            found[..3].iter().any(|(_, path)| path.is_none()) || kubectl_from_assets.is_none();
        let built = if need_build {
            Some(build_from_source()?)
        } else {
            None
        };
        let pick = |index: usize, name: &str| -> PathBuf {
            found[index]
                .1
                .clone()
                .unwrap_or_else(|| built.as_ref().map(|d| d.join(name)).unwrap_or_default())
        };
        let kubectl = kubectl_from_assets
            .or_else(|| built.as_ref().map(|d| d.join("kubectl")))
            .unwrap_or_else(|| pick(3, "kubectl"));
        Ok(Self {
            etcd: pick(0, "etcd"),
            kube_apiserver: pick(1, "kube-apiserver"),
            kube_controller_manager: pick(2, "kube-controller-manager"),
            kubectl,
        })
    }
}

/// Runs `tools/controlplane/build.sh`, which prints the output directory on its
/// last line and returns at once when the cache is already populated.
fn build_from_source() -> anyhow::Result<PathBuf> {
    let script = repo_root().join("tools/controlplane/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{} failed ({}); it needs Go and access to the Go module proxy. \
             Alternatively set KUBEBUILDER_ASSETS to a directory holding etcd, \
             kube-apiserver and kube-controller-manager",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{} printed no output directory", script.display()))?;
    Ok(PathBuf::from(dir))
}
