//! The environment integration tests run in: one control plane per test binary.
//!
//! [`TestEnv::shared`] starts a [`LocalControlPlane`] the first time a test asks
//! for it and hands every later test the same one, so startup is paid once per
//! test binary. With `MSP_TEST_KUBECONFIG` set it uses that cluster instead (a
//! kind cluster in CI, or any cluster), so the same suite runs unchanged there.
//!
//! Clients are runtime-bound, and every `#[tokio::test]` has its own runtime:
//! the environment therefore hands out kubeconfigs and makes a new client per
//! call instead of sharing one.

use crate::controlplane::{ControlPlaneOptions, LocalControlPlane};
use crate::kubeconfig::{Credentials, config_from_yaml, render_kubeconfig};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Environment variable naming a kubeconfig: run against that cluster instead
/// of starting a local control plane.
pub const EXISTING_CLUSTER_ENV: &str = "MSP_TEST_KUBECONFIG";
/// Label put on every namespace a test creates.
pub const TEST_NAMESPACE_LABEL: &str = "msp-testenv.io/test";

enum Backend {
    Local(Box<LocalControlPlane>),
    Existing { kubectl: PathBuf },
}

/// A cluster for tests: local or existing.
pub struct TestEnv {
    backend: Backend,
    kubeconfig_path: PathBuf,
    kubeconfig_yaml: String,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("kubeconfig", &self.kubeconfig_path)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// The environment shared by all tests of this test binary, started on
    /// first use. Panics with the startup error (tests cannot go on without it).
    pub fn shared() -> &'static TestEnv {
        static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
        let env = SHARED.get_or_init(|| {
            // Started on a thread of its own with its own runtime: the caller's
            // runtime (one per test) ends with the first test.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(TestEnv::start())
                    .map_err(|e| format!("{e:#}"))
            })
            .join()
            .unwrap_or_else(|_| Err("test environment startup panicked".to_string()))
        });
        match env {
            Ok(env) => env,
            Err(e) => panic!("cannot start the test environment: {e}"),
        }
    }

    /// Starts a local control plane, or connects to `MSP_TEST_KUBECONFIG`.
    pub async fn start() -> anyhow::Result<Self> {
        if let Some(path) = std::env::var_os(EXISTING_CLUSTER_ENV) {
            let kubeconfig_path = PathBuf::from(path);
            let kubeconfig_yaml = std::fs::read_to_string(&kubeconfig_path).map_err(|e| {
                anyhow::anyhow!("{EXISTING_CLUSTER_ENV}={}: {e}", kubeconfig_path.display())
            })?;
            let kubectl = std::env::var_os("KUBEBUILDER_ASSETS")
                .map(|d| Path::new(&d).join("kubectl"))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("kubectl"));
            return Ok(Self {
                backend: Backend::Existing { kubectl },
                kubeconfig_path,
                kubeconfig_yaml,
            });
        }
        let plane = LocalControlPlane::start(ControlPlaneOptions::default()).await?;
        let kubeconfig_path = plane.admin_kubeconfig().to_path_buf();
        let kubeconfig_yaml = std::fs::read_to_string(&kubeconfig_path)?;
        eprintln!(
            "msp-testenv: control plane at {} ready in {:.1}s (state in {})",
            plane.server(),
            plane.startup.as_secs_f64(),
            plane.dir().display()
        );
        Ok(Self {
            backend: Backend::Local(Box::new(plane)),
            kubeconfig_path,
            kubeconfig_yaml,
        })
    }

    /// True when running against a local control plane started by this process.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The local control plane, if this environment started one.
    pub fn local(&self) -> Option<&LocalControlPlane> {
        match &self.backend {
            Backend::Local(plane) => Some(plane),
            Backend::Existing { .. } => None,
        }
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Admin client configuration.
    pub async fn admin_config(&self) -> Config {
        config_from_yaml(&self.kubeconfig_yaml)
            .await
            .expect("admin kubeconfig is valid")
    }

    /// A new admin client on the current runtime.
    pub async fn client(&self) -> Client {
        Client::try_from(self.admin_config().await).expect("admin client")
    }

    /// A client acting as `user` in `groups`: a client certificate signed by the
    /// cluster's client CA (local), or impersonation (existing cluster, and
    /// a user in more than one group: rcgen keeps one value per subject
    /// attribute, so a certificate carries one group at most).
    pub async fn user_client(&self, user: &str, groups: &[&str]) -> Client {
        let config = match &self.backend {
            Backend::Local(_) if groups.len() > 1 => {
                let mut config = self.admin_config().await;
                config.auth_info.impersonate = Some(user.to_string());
                config.auth_info.impersonate_groups =
                    Some(groups.iter().map(|g| g.to_string()).collect());
                config
            }
            Backend::Local(plane) => {
                let cert = plane
                    .pki()
                    .client_cert(user, groups)
                    .expect("client certificate");
                let yaml = render_kubeconfig(
                    plane.server(),
                    &plane.pki().server_ca_pem(),
                    user,
                    &Credentials::ClientCertificate(cert),
                );
                config_from_yaml(&yaml).await.expect("user kubeconfig")
            }
            Backend::Existing { .. } => {
                let mut config = self.admin_config().await;
                config.auth_info.impersonate = Some(user.to_string());
                config.auth_info.impersonate_groups =
                    Some(groups.iter().map(|g| g.to_string()).collect());
                config
            }
        };
        Client::try_from(config).expect("user client")
    }

    /// A client authenticating with a fresh token of ServiceAccount
    /// `namespace/name` (created if missing), obtained through TokenRequest.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let token = self.service_account_token(namespace, name).await;
        let mut config = self.admin_config().await;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Client::try_from(config).expect("service account client")
    }

    /// A fresh token for ServiceAccount `namespace/name` (created if missing).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let client = self.client().await;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        if accounts.get_opt(name).await.expect("get sa").is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            };
            accounts
                .create(&PostParams::default(), &sa)
                .await
                .expect("create service account");
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let response: TokenRequest = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("token request");
        response.status.expect("token request status").token
    }

    /// A kubeconfig file for a ServiceAccount token (for out-of-process clients
    /// such as the operator binary run under a chart's RBAC).
    pub fn write_token_kubeconfig(&self, token: &str, path: &Path) -> anyhow::Result<()> {
        let kubeconfig = ClusterEndpoint::parse(&self.kubeconfig_yaml)?;
        std::fs::write(
            path,
            render_kubeconfig(
                &kubeconfig.server,
                &kubeconfig.ca_pem,
                "token-user",
                &Credentials::Token(token.to_string()),
            ),
        )?;
        Ok(())
    }

    /// A kubeconfig file acting as `user` in `groups` (for out-of-process
    /// clients): a client certificate locally; on an existing cluster the
    /// admin kubeconfig impersonating the user.
    pub fn write_user_kubeconfig(
        &self,
        user: &str,
        groups: &[&str],
        path: &Path,
    ) -> anyhow::Result<()> {
        let yaml = match &self.backend {
            Backend::Local(plane) => render_kubeconfig(
                plane.server(),
                &plane.pki().server_ca_pem(),
                user,
                &Credentials::ClientCertificate(plane.pki().client_cert(user, groups)?),
            ),
            Backend::Existing { .. } => {
                let mut kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml)?;
                for named in &mut kubeconfig.auth_infos {
                    if let Some(auth) = named.auth_info.as_mut() {
                        auth.impersonate = Some(user.to_string());
                        auth.impersonate_groups =
                            Some(groups.iter().map(|g| g.to_string()).collect());
                    }
                }
                serde_yaml::to_string(&kubeconfig)?
            }
        };
        std::fs::write(path, yaml)?;
        Ok(())
    }

    /// `kubectl` pointed at this cluster as admin.
    pub fn kubectl(&self) -> std::process::Command {
        let binary = match &self.backend {
            Backend::Local(plane) => plane.binaries().kubectl.clone(),
            Backend::Existing { kubectl } => kubectl.clone(),
        };
        let mut command = std::process::Command::new(binary);
        command.env("KUBECONFIG", &self.kubeconfig_path);
        command
    }

    /// A new namespace named `<prefix>-<unique suffix>`, deleted when the guard
    /// is dropped.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// Like [`TestEnv::namespace`], with extra labels.
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> TestNamespace {
        let name = unique_name(prefix);
        let mut all_labels: std::collections::BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all_labels.insert(TEST_NAMESPACE_LABEL.into(), "true".into());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all_labels),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<Namespace> = Api::all(self.client().await);
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace {
            name,
            kubeconfig_yaml: self.kubeconfig_yaml.clone(),
        }
    }
}

/// The server URL and CA of a kubeconfig rendered by this crate or any other
/// single-cluster kubeconfig.
struct ClusterEndpoint {
    server: String,
    ca_pem: String,
}

impl ClusterEndpoint {
    fn parse(yaml: &str) -> anyhow::Result<Self> {
        use base64::Engine;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml)?;
        let cluster = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| anyhow::anyhow!("kubeconfig has no cluster"))?;
        let ca_pem = match (
            cluster.certificate_authority_data,
            cluster.certificate_authority,
        ) {
            (Some(data), _) => {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data.trim())?)?
            }
            (None, Some(path)) => std::fs::read_to_string(path)?,
            (None, None) => anyhow::bail!("kubeconfig cluster has no CA"),
        };
        Ok(Self {
            server: cluster
                .server
                .ok_or_else(|| anyhow::anyhow!("kubeconfig cluster has no server"))?,
            ca_pem,
        })
    }
}

/// A name unique within this test run: `<prefix>-<pid>-<counter>`, trimmed to
/// the 63 characters a namespace name allows.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}", std::process::id() % 100_000);
    let keep = 63usize.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(keep).collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// A namespace owned by one test; deleted (without waiting) on drop.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubeconfig_yaml: String,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        let yaml = self.kubeconfig_yaml.clone();
        // Drop cannot await: delete on a short-lived thread with its own
        // runtime, and wait for the request (not for finalization).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = crate::kubeconfig::client_from_yaml(&yaml).await {
                    let api: Api<Namespace> = Api::all(client);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        api.delete(&name, &DeleteParams::background()),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}
