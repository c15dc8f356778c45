//! Bad configuration fails fast, naming the cause and the fix: no
//! kubeconfig, an unreachable API server, CRDs never installed, an identity
//! without the operator's permissions. Each run of the real binary must exit
//! non-zero within seconds instead of retrying quietly. A test binary of its
//! own: it starts on a control plane without the CRDs.

mod support;

use msp_testenv::operator::OperatorProcess;
use msp_testenv::{TestEnv, manifests};
use std::path::{Path, PathBuf};
use std::time::Duration;

const OPERATOR: &str = env!("CARGO_BIN_EXE_msp-operator");

/// Runs the operator with `kubeconfig`; it must exit non-zero within 30 s
/// and its log must hold every one of `expected`.
async fn fails_with(kubeconfig: &Path, label: &str, expected: &[&str]) {
    let mut op = OperatorProcess::launch(Path::new(OPERATOR), kubeconfig, label, "")
        .env("RUST_LOG", "info")
        .spawn();
    let status = op
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{label}: still running after 30 s:\n{}", op.log_text()));
    assert!(!status.success(), "{label}: exited {status}");
    let log = op.log_text();
    for text in expected {
        assert!(
            log.contains(text),
            "{label}: the log lacks {text:?}:\n{log}"
        );
    }
}

fn path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.kubeconfig", std::process::id()))
}

#[tokio::test]
async fn bad_configuration_fails_fast_with_the_cause_and_the_fix() {
    let env = TestEnv::shared();
    let admin_kubeconfig = env.kubeconfig_path().to_path_buf();

    fails_with(
        Path::new("/nonexistent/kubeconfig"),
        "no-kubeconfig",
        &["no Kubernetes configuration", "set KUBECONFIG"],
    )
    .await;

    let unreachable = path("unreachable");
    let text = std::fs::read_to_string(&admin_kubeconfig).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("server line")
        .trim()
        .to_string();
    std::fs::write(&unreachable, text.replace(&server, "https://127.0.0.1:1")).expect("write");
    fails_with(
        &unreachable,
        "unreachable",
        &["cannot reach the Kubernetes API server", "check KUBECONFIG"],
    )
    .await;

    if env.local().is_some() {
        // Nothing of msp-operator is installed on this control plane yet.
        fails_with(
            &admin_kubeconfig,
            "no-crds",
            &[
                "CRDs are not installed",
                "kubectl apply --server-side -f crds/",
            ],
        )
        .await;
    }

    let client = env.client().await;
    for file in [
        "crds/managedserviceoffers.yaml",
        "crds/delegations.yaml",
        "crds/activations.yaml",
        "crds/clusterproviderpolicies.yaml",
        "crds/providerpolicies.yaml",
        "crds/offercatalogs.yaml",
        "crds/customerdelegations.yaml",
    ] {
        let yaml =
            std::fs::read_to_string(msp_testenv::binaries::repo_root().join(file)).expect("crd");
        manifests::apply_yaml(&client, &yaml, "msp-tests", "default")
            .await
            .expect("apply");
    }
    let nobody = path("nobody");
    env.write_user_kubeconfig(&msp_testenv::unique_name("nobody"), &[], &nobody)
        .expect("kubeconfig");
    msp_testenv::wait_until(Duration::from_secs(30), "the CRDs to be served", || {
        let client = client.clone();
        async move {
            let served = client
                .list_api_group_resources("msp-operator.io/v1alpha1")
                .await
                .map_err(|e| e.to_string())?;
            // Every kind (its subresources are listed too).
            let kinds = served
                .resources
                .iter()
                .filter(|r| !r.name.contains('/'))
                .count();
            if kinds >= 7 {
                Ok(())
            } else {
                Err(format!("{kinds} of 7 kinds served"))
            }
        }
    })
    .await
    .expect("served");
    fails_with(
        &nobody,
        "no-rbac",
        &[
            "the operator's identity may not watch managedserviceoffers",
            "bind it to the ClusterRole msp-operator",
        ],
    )
    .await;
}
