//! A real local Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager as processes on loopback.
//!
//! This is the envtest model plus the controller manager, so that garbage
//! collection, namespace deletion and ServiceAccount tokens behave as in a real
//! cluster. There is no kubelet and no scheduler: pods can be created and listed
//! but never run, which is all an RBAC operator's tests need.

use crate::binaries::Binaries;
use crate::kubeconfig::{Credentials, render_kubeconfig};
use crate::pki::Pki;
use crate::process::{
    register, signal_group, spawn_guarded, stop_child, unregister, unregister_pid,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The user name of the admin client certificate (group `system:masters`).
pub const ADMIN_USER: &str = "msp-testenv:admin";
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Audit every write (at Metadata level) so tests can count the write
/// requests a component makes, as the API server saw them. Access and token
/// reviews are POSTs that store nothing (questions to the authorizers), so
/// they are not counted as writes.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources:
  - group: authorization.k8s.io
  - group: authentication.k8s.io
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// Where a control plane keeps its state.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// State directory (certificates, etcd data, logs, kubeconfig). A fresh
    /// temporary directory, removed on stop, when `None`.
    pub dir: Option<PathBuf>,
    /// Start kube-controller-manager (default true via [`ControlPlaneOptions::full`]).
    pub skip_controller_manager: bool,
}

/// One process of the control plane, and how to start it again.
#[derive(Debug)]
struct Component {
    name: String,
    binary: PathBuf,
    args: Vec<String>,
    /// `None` while it is killed (between [`LocalControlPlane::kill`] and
    /// [`LocalControlPlane::restart`]).
    child: Option<Child>,
}

/// A running local control plane. Dropping it stops every process.
#[derive(Debug)]
pub struct LocalControlPlane {
    id: u64,
    dir: PathBuf,
    remove_dir: bool,
    /// Behind a lock so that fault tests can kill and restart components of
    /// the environment they share (`&self`).
    components: Mutex<Vec<Component>>,
    etcd_port: u16,
    pki: Pki,
    server: String,
    admin_kubeconfig: PathBuf,
    binaries: Binaries,
    /// How long `start` took, for reporting.
    pub startup: Duration,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes state directories of earlier runs whose process no longer exists
/// (a test binary killed by a signal cannot clean up after itself).
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("msp-testenv-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl LocalControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until
    /// the API server is ready and the controller manager is working.
    pub async fn start(options: ControlPlaneOptions) -> anyhow::Result<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let started = Instant::now();
        let binaries = tokio::task::spawn_blocking(Binaries::locate).await??;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (dir, remove_dir) = match options.dir {
            Some(dir) => {
                if dir.exists() {
                    fs::remove_dir_all(&dir)?;
                }
                (dir, false)
            }
            None => {
                sweep_stale_dirs();
                let dir = std::env::temp_dir().join(format!(
                    "msp-testenv-{}-{id}-{}",
                    std::process::id(),
                    started.elapsed().as_nanos() % 1_000_000
                ));
                (dir, std::env::var_os("MSP_TESTENV_KEEP_DIR").is_none())
            }
        };
        fs::create_dir_all(dir.join("etcd"))?;
        fs::create_dir_all(dir.join("apiserver-certs"))?;

        let pki = Pki::generate()?;
        let serving = pki.serving_cert()?;
        let files = [
            ("server-ca.crt", pki.server_ca_pem()),
            ("client-ca.crt", pki.client_ca_pem()),
            ("client-ca.key", pki.client_ca_key_pem()),
            ("apiserver.crt", serving.cert_pem.clone()),
            ("apiserver.key", serving.key_pem.clone()),
            ("sa.key", pki.service_account_key.serialize_pem()),
            ("sa.pub", pki.service_account_key.public_key_pem()),
            ("audit-policy.yaml", AUDIT_POLICY.to_string()),
        ];
        for (name, content) in files {
            write_private(&dir.join(name), &content)?;
        }

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let mut plane = Self {
            id,
            dir: dir.clone(),
            remove_dir,
            components: Mutex::new(Vec::new()),
            etcd_port,
            pki,
            server: server.clone(),
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            binaries,
            startup: Duration::ZERO,
        };
        let d = |name: &str| dir.join(name).display().to_string();

        plane.spawn(
            "etcd",
            &plane.binaries.etcd.clone(),
            vec![
                "--name=default".into(),
                format!("--data-dir={}", d("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                // Test data is thrown away: durability buys nothing here and
                // fsync dominates write latency on small VMs.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;

        plane.spawn(
            "kube-apiserver",
            &plane.binaries.kube_apiserver.clone(),
            vec![
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", d("apiserver-certs")),
                format!("--tls-cert-file={}", d("apiserver.crt")),
                format!("--tls-private-key-file={}", d("apiserver.key")),
                format!("--client-ca-file={}", d("client-ca.crt")),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", d("sa.pub")),
                format!("--service-account-signing-key-file={}", d("sa.key")),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--allow-privileged=true".into(),
                format!("--audit-policy-file={}", d("audit-policy.yaml")),
                format!("--audit-log-path={}", d("audit.log")),
                "--audit-log-format=json".into(),
                "--v=1".into(),
            ],
        )?;

        let admin = plane.pki.client_cert(ADMIN_USER, &["system:masters"])?;
        write_private(
            &plane.admin_kubeconfig,
            &render_kubeconfig(
                &server,
                &plane.pki.server_ca_pem(),
                ADMIN_USER,
                &Credentials::ClientCertificate(admin),
            ),
        )?;
        let client = plane.admin_client().await?;
        plane.wait_ready(&client).await?;

        if !options.skip_controller_manager {
            let kcm_user = "system:kube-controller-manager";
            let kcm = plane.pki.client_cert(kcm_user, &[])?;
            write_private(
                &dir.join("kube-controller-manager.kubeconfig"),
                &render_kubeconfig(
                    &server,
                    &plane.pki.server_ca_pem(),
                    kcm_user,
                    &Credentials::ClientCertificate(kcm),
                ),
            )?;
            plane.spawn(
                "kube-controller-manager",
                &plane.binaries.kube_controller_manager.clone(),
                vec![
                    format!("--kubeconfig={}", d("kube-controller-manager.kubeconfig")),
                    "--secure-port=0".into(),
                    "--leader-elect=false".into(),
                    "--use-service-account-credentials=true".into(),
                    format!("--service-account-private-key-file={}", d("sa.key")),
                    format!("--root-ca-file={}", d("server-ca.crt")),
                    format!("--cluster-signing-cert-file={}", d("client-ca.crt")),
                    format!("--cluster-signing-key-file={}", d("client-ca.key")),
                    "--v=1".into(),
                ],
            )?;
            // The ServiceAccount controller creating `default` in `default`
            // shows the controller manager is connected and running.
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            plane
                .wait_until("kube-controller-manager to create default/default", || {
                    let accounts = accounts.clone();
                    async move { matches!(accounts.get_opt("default").await, Ok(Some(_))) }
                })
                .await?;
        }
        plane.startup = started.elapsed();
        Ok(plane)
    }

    fn components(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        // A panic while holding the lock leaves the list itself intact.
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&mut self, name: &str, binary: &Path, args: Vec<String>) -> anyhow::Result<()> {
        let child = self.start_process(name, binary, &args)?;
        self.components().push(Component {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            args,
            child: Some(child),
        });
        Ok(())
    }

    /// Starts `binary` with `args`, logging to `<name>.log` (appended to, so
    /// a restarted component's log continues).
    fn start_process(&self, name: &str, binary: &Path, args: &[String]) -> anyhow::Result<Child> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_guarded(command)
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        register(
            self.id,
            child.id(),
            self.remove_dir.then(|| self.dir.clone()),
        );
        Ok(child)
    }

    /// Kills component `name` (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`) with SIGKILL, as a crash would, and reaps
    /// it. [`Self::restart`] starts it again.
    pub fn kill(&self, name: &str) -> anyhow::Result<()> {
        let mut components = self.components();
        let component = components
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow::anyhow!("no component {name}"))?;
        if let Some(mut child) = component.child.take() {
            signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            unregister_pid(self.id, child.id());
        }
        Ok(())
    }

    /// Starts killed component `name` again, with the arguments and state
    /// directory it had (etcd keeps its data; the API server its port and
    /// certificates, so every kubeconfig stays valid).
    pub fn restart(&self, name: &str) -> anyhow::Result<()> {
        let mut components = self.components();
        let component = components
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow::anyhow!("no component {name}"))?;
        anyhow::ensure!(
            component.child.is_none(),
            "{name} is running; kill it first"
        );
        component.child = Some(self.start_process(name, &component.binary, &component.args)?);
        Ok(())
    }

    /// Waits until the API server answers `/readyz` with `ok` (after a
    /// restart: it has reconnected to etcd and filled its caches).
    pub async fn wait_api_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = self.admin_client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if client.request_text(request).await.is_ok_and(|t| t == "ok") {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "kube-apiserver not ready {timeout:?} after its restart; logs are in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Compacts etcd's history up to its current revision and returns that
    /// revision: a watch resumed from an older resourceVersion then gets
    /// `410 Gone` and must list again.
    pub fn compact_etcd(&self) -> anyhow::Result<i64> {
        let header = etcd_post(self.etcd_port, "/v3/kv/range", r#"{"key":"AA=="}"#)?;
        let revision: i64 = header["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("etcd's range answer has no revision: {header}"))?;
        etcd_post(
            self.etcd_port,
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        Ok(revision)
    }

    /// Fails fast, with the log's tail, when a process died during startup.
    fn check_alive(&self) -> anyhow::Result<()> {
        for component in self.components().iter_mut() {
            let name = &component.name;
            let Some(child) = component.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!(
                    "{name} exited during startup ({status}); last lines of {}:\n{}",
                    self.dir.join(format!("{name}.log")).display(),
                    tail(&self.dir.join(format!("{name}.log")), 30)
                );
            }
        }
        Ok(())
    }

    async fn wait_until<F, Fut>(&self, what: &str, mut probe: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            if probe().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "timed out after {START_TIMEOUT:?} waiting for {what}; logs are in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_ready(&self, client: &Client) -> anyhow::Result<()> {
        let client = client.clone();
        self.wait_until("kube-apiserver /readyz", || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz").body(Vec::new());
                match request {
                    Ok(request) => client.request_text(request).await.is_ok_and(|t| t == "ok"),
                    Err(_) => false,
                }
            }
        })
        .await
    }

    /// The API server URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Path of a kubeconfig with cluster-admin rights (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The state directory (logs are `<component>.log` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's audit log: one JSON event per write request.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Write requests made by `user` so far, as `VERB resource namespace/name`
    /// lines from the audit log, oldest first. The API server rotates its
    /// audit log at 100 MB (`audit-<time>.log`; a benchmark run writes more),
    /// so the rotated files are read first.
    pub fn writes_by(&self, user: &str) -> Vec<String> {
        self.writes_by_since(user, k8s_openapi::jiff::Timestamp::MIN)
    }

    /// [`Self::writes_by`], only requests the API server received at or
    /// after `since`. A count taken earlier is no boundary: a request in
    /// flight when the count was taken (say, of a process being stopped) is
    /// logged after it.
    pub fn writes_by_since(&self, user: &str, since: k8s_openapi::jiff::Timestamp) -> Vec<String> {
        self.audited(user, since, false)
    }

    /// [`Self::writes_by_since`], only the writes that succeeded (a 2xx
    /// answer): what changed the cluster. A delete answered 404 (the object
    /// was gone already) is a request, not a revocation.
    pub fn changes_by_since(&self, user: &str, since: k8s_openapi::jiff::Timestamp) -> Vec<String> {
        self.audited(user, since, true)
    }

    /// How long the API server took for each write of `user` received at
    /// or after `since` (from receipt to the complete response), by
    /// `VERB resource[/subresource]`.
    pub fn latencies_by_since(
        &self,
        user: &str,
        since: k8s_openapi::jiff::Timestamp,
    ) -> std::collections::BTreeMap<String, Vec<Duration>> {
        let time = |event: &serde_json::Value, field: &str| {
            event[field]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        };
        let mut out: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
        for event in self.audit_events() {
            if event["user"]["username"] != user || event["stage"] != "ResponseComplete" {
                continue;
            }
            let (Some(received), Some(done)) = (
                time(&event, "requestReceivedTimestamp"),
                time(&event, "stageTimestamp"),
            ) else {
                continue;
            };
            if received < since {
                continue;
            }
            let kind = request_kind(&event);
            let took = done.duration_since(received);
            out.entry(kind)
                .or_default()
                .push(Duration::try_from(took).unwrap_or_default());
        }
        out
    }

    /// Every event of the audit log, oldest first.
    fn audit_events(&self) -> Vec<serde_json::Value> {
        let mut rotated: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
            })
            .collect();
        // The names carry the rotation time in a sortable form.
        rotated.sort();
        rotated.push(self.audit_log());
        let text: String = rotated
            .iter()
            .map(|path| fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .collect()
    }

    fn audited(
        &self,
        user: &str,
        since: k8s_openapi::jiff::Timestamp,
        succeeded_only: bool,
    ) -> Vec<String> {
        self.audit_events()
            .into_iter()
            .filter(|event| event["user"]["username"] == user)
            .filter(|event| {
                event["requestReceivedTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t >= since)
            })
            .filter(|event| {
                !succeeded_only
                    || event["responseStatus"]["code"]
                        .as_u64()
                        .is_some_and(|code| (200..300).contains(&code))
            })
            .map(|event| {
                let object = &event["objectRef"];
                format!(
                    "{} {}/{}",
                    request_kind(&event),
                    object["namespace"].as_str().unwrap_or(""),
                    object["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// CPU seconds each running process of the control plane (etcd,
    /// kube-apiserver, kube-controller-manager) has used so far, by name.
    pub fn cpu_seconds(&self) -> std::collections::BTreeMap<String, f64> {
        let components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        components
            .iter()
            .filter_map(|c| {
                let pid = c.child.as_ref()?.id();
                Some((c.name.clone(), crate::process::cpu_seconds(pid)))
            })
            .collect()
    }

    /// The binaries this control plane runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The key material (to mint client certificates for any user).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// A new admin client on the current tokio runtime.
    pub async fn admin_client(&self) -> anyhow::Result<Client> {
        let yaml = fs::read_to_string(&self.admin_kubeconfig)?;
        crate::kubeconfig::client_from_yaml(&yaml).await
    }

    /// Stops every process (controller manager first, etcd last) and removes
    /// the state directory if it was a temporary one.
    pub fn stop(&mut self) {
        let mut components = std::mem::take(&mut *self.components());
        for component in components.iter_mut().rev() {
            if let Some(child) = component.child.as_mut() {
                stop_child(child, Duration::from_secs(5));
            }
        }
        unregister(self.id);
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for LocalControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// POSTs `body` to etcd's JSON gateway on loopback and returns the answer.
/// Hand-written over a plain socket: two requests in the fault tests do not
/// justify an HTTP client dependency. HTTP/1.0, so the answer is not chunked.
fn etcd_post(port: u16, path: &str, body: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, json) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("etcd {path}: no HTTP answer: {answer}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "etcd {path}: {head}\n{json}"
    );
    Ok(serde_json::from_str(json)?)
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// `VERB resource[/subresource]` of an audit event.
fn request_kind(event: &serde_json::Value) -> String {
    let object = &event["objectRef"];
    format!(
        "{} {}{}",
        event["verb"].as_str().unwrap_or(""),
        object["resource"].as_str().unwrap_or(""),
        object["subresource"]
            .as_str()
            .map(|s| format!("/{s}"))
            .unwrap_or_default()
    )
}
