//! The operator binary as a separate process, the way the chart's Deployment
//! runs it (out of cluster here, with a kubeconfig): one launcher for the
//! operations tests, the chart tests and the benchmark.
//!
//! Metrics and probes listen on ephemeral loopback ports; stdout and stderr
//! go to a log file whose tail is printed when a test fails; the process is
//! killed when dropped.

use crate::net::{free_port, http_get, sample};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What to start: see [`OperatorProcess::launch`].
pub struct Launch {
    command: Command,
    label: String,
    log: PathBuf,
    metrics_port: u16,
    probe_port: u16,
}

impl Launch {
    /// Adds command-line arguments after `run`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable (over the launcher's defaults, but never
    /// over the metrics and probe addresses, which are the launcher's).
    pub fn env(
        mut self,
        name: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> Self {
        self.command.env(name, value);
        self
    }

    /// Sets several environment variables (see [`Launch::env`]).
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Starts the process.
    pub fn spawn(mut self) -> OperatorProcess {
        let file = std::fs::File::create(&self.log).expect("create the operator log");
        let child = self
            .command
            .env(
                "MSP_METRICS_ADDR",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .env("MSP_PROBE_ADDR", format!("127.0.0.1:{}", self.probe_port))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start the operator ({}): {e}", self.label));
        OperatorProcess {
            label: self.label,
            child,
            log: self.log,
            metrics_port: self.metrics_port,
            probe_port: self.probe_port,
        }
    }
}

/// A running `msp-operator run`.
pub struct OperatorProcess {
    /// Names the process in logs and messages.
    pub label: String,
    child: Child,
    log: PathBuf,
    /// Port of `/metrics` on 127.0.0.1.
    pub metrics_port: u16,
    /// Port of `/healthz` and `/readyz` on 127.0.0.1.
    pub probe_port: u16,
}

impl OperatorProcess {
    /// Prepares `binary run` as `label` against `kubeconfig`. `wrapper`
    /// (split on whitespace, may be empty) runs it under another program,
    /// such as a profiler. The in-cluster configuration is removed from the
    /// environment, so the kubeconfig is what it uses; logs are plain text.
    pub fn launch(binary: &Path, kubeconfig: &Path, label: &str, wrapper: &str) -> Launch {
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("MSP_LOG_FORMAT", "text")
            .env("NO_COLOR", "1");
        let log =
            std::env::temp_dir().join(format!("msp-operator-{label}-{}.log", std::process::id()));
        Launch {
            command,
            label: label.to_string(),
            log,
            metrics_port: free_port(),
            probe_port: free_port(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The text of `/metrics` (empty while it does not answer).
    pub fn metrics(&self) -> String {
        match http_get(self.metrics_port, "/metrics") {
            Some((200, body)) => body,
            _ => String::new(),
        }
    }

    /// `msp_operator_leader`: 1 while it leads, 0 while it stands by; None
    /// while the endpoint does not answer.
    pub fn leader_gauge(&self) -> Option<f64> {
        sample(&self.metrics(), "msp_operator_leader")
    }

    /// Whether it leads now.
    pub fn leads(&self) -> bool {
        self.leader_gauge() == Some(1.0)
    }

    /// The status of `path` on the probe port, if it answers.
    pub fn probe(&self, path: &str) -> Option<u16> {
        http_get(self.probe_port, path).map(|(status, _)| status)
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.probe("/readyz") == Some(200)
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics (with the log) if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the operator ({}) exited ({status}):\n{}",
                self.label,
                self.log_text()
            );
        }
    }

    /// Panics (with the offending lines) if the API server refused it
    /// anything: its RBAC must be enough.
    pub fn assert_never_forbidden(&self) {
        let log = self.log_text();
        let refused: Vec<&str> = log
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
            .collect();
        assert!(
            refused.is_empty(),
            "the operator ({}) was refused by the API server:\n{}",
            self.label,
            refused.join("\n")
        );
    }

    /// Sends `signal` (a `libc::SIG*` number).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signals our own child, which has not been reaped while
        // `self` holds it.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits up to `timeout` for it to exit; None when it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as the kubelet stops a pod: it must exit 0 within 30 s.
    pub async fn terminate(&mut self) {
        self.assert_running();
        self.signal(libc::SIGTERM);
        let status = self
            .wait_exit(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the operator ({}) did not exit within 30 s of SIGTERM:\n{}",
                    self.label,
                    self.log_tail(40)
                )
            });
        assert!(
            status.success(),
            "the operator ({}) must exit 0 on SIGTERM, got {status}:\n{}",
            self.label,
            self.log_tail(40)
        );
    }

    /// (peak RSS in MiB, CPU seconds so far), from /proc.
    pub fn usage(&self) -> (f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        (hwm_kib / 1024.0, crate::process::cpu_seconds(pid))
    }

    /// Starts a new peak: the kernel resets the process's peak RSS (VmHWM)
    /// to its current RSS (`/proc/<pid>/clear_refs`, Linux 4.0+), so the
    /// next [`OperatorProcess::usage`] reports the peak since this call.
    /// False where the kernel refuses (the peak then runs on).
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }

    /// SIGTERM and wait; returns [`OperatorProcess::usage`] from just before.
    pub fn stop(mut self) -> (f64, f64) {
        let usage = self.usage();
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        usage
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- operator ({}) log {}, last 60 lines ---\n{}",
                self.label,
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}
