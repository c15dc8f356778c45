//! Running the command-line tools the tests drive (helm, kubectl, the Argo CD
//! health harness): a readable description of a command, its output, and a
//! run that must succeed, with everything it printed in the failure message.

use msp_testenv::binaries::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// `program args…` of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "{} {}",
        Path::new(command.get_program())
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        args.join(" ")
    )
}

/// Runs `command` and returns its output; panics only when it cannot start.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(command)))
}

/// Runs `command`, which must succeed; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        describe(command),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first `name` on PATH, if any.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The helm binary: `MSP_HELM`, else `helm` on PATH, else the pinned release
/// installed by `tools/helm/install.sh`.
pub fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("MSP_HELM").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        if let Some(path) = on_path("helm") {
            return path;
        }
        let stdout = run(Command::new("bash")
            .arg(repo_root().join("tools/helm/install.sh"))
            .stderr(Stdio::inherit()));
        PathBuf::from(stdout.trim())
    })
}
