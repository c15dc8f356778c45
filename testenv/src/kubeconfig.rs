//! Kubeconfig files and clients for the identities tests act as.
//!
//! Tests prove RBAC outcomes as the affected user, so clients are built for a
//! client certificate (any user and groups), a ServiceAccount token, or — on an
//! existing cluster whose CA key we do not hold — impersonation by the admin,
//! which the API server authorizes exactly as the impersonated user.

use crate::pki::CertAndKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// How a kubeconfig user authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// An X.509 client certificate.
    ClientCertificate(CertAndKey),
    /// A bearer token (for example a ServiceAccount token).
    Token(String),
}

/// Renders a single-context kubeconfig.
pub fn render_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &Credentials,
) -> String {
    let user_block = match credentials {
        Credentials::ClientCertificate(c) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(&c.cert_pem),
            STANDARD.encode(&c.key_pem)
        ),
        Credentials::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: msp-testenv\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user:?}\n  user:\n{user_block}contexts:\n- name: msp-testenv\n  context:\n    cluster: msp-testenv\n    user: {user:?}\ncurrent-context: msp-testenv\n",
        ca = STANDARD.encode(ca_pem),
    )
}

/// A client configuration from kubeconfig YAML (its current context).
pub async fn config_from_yaml(yaml: &str) -> anyhow::Result<Config> {
    let kubeconfig = Kubeconfig::from_yaml(yaml)?;
    Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

/// A client from kubeconfig YAML, on the current tokio runtime.
pub async fn client_from_yaml(yaml: &str) -> anyhow::Result<Client> {
    Ok(Client::try_from(config_from_yaml(yaml).await?)?)
}
