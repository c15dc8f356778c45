//! The operator as it is deployed: the Helm chart installed in a kind cluster,
//! its image run by a kubelet, its Pods judged by their probes. Only a real
//! node shows these; every other suite runs the operator binary out of
//! cluster.
//!
//! Run by `make e2e-kind` (tests/e2e/kind.sh), which creates the cluster,
//! loads the images into its nodes and sets:
//! - `MSP_TEST_KUBECONFIG`: the kind cluster's admin kubeconfig;
//! - `MSP_E2E_IMAGE`: the operator image (`repository:tag`) loaded into it;
//! - `MSP_E2E_NEXT_TAG`: a second tag of the image, for the upgrade.
//!
//! One ordered scenario, because each step starts from the state the previous
//! one left (as an operator's life does): install, two Ready Pods of which one
//! leads, metrics through the chart's Service, a Delegation granted, the leader
//! Pod deleted while a second Delegation arrives, an image upgrade during which
//! no grant disappears, the ServiceAccount refused what the chart does not
//! grant, and an uninstall that leaves only the kept CRDs.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_testenv::{TestEnv, TestNamespace, wait_until};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::process::{helm_binary, run};
use support::*;

const RELEASE: &str = "msp-operator";
const NAMESPACE: &str = "msp-operator";
const TENANT: &str = "msp-operator.io/tenant";
/// Pods start on a real node: image, probes, and a 2-core machine.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(180);

/// What `make e2e-kind` hands the test.
struct Images {
    repository: String,
    tag: String,
    next_tag: String,
}

fn images() -> Images {
    let image = std::env::var("MSP_E2E_IMAGE")
        .expect("MSP_E2E_IMAGE (the operator image loaded into kind) is set by make e2e-kind");
    let (repository, tag) = image
        .rsplit_once(':')
        .expect("MSP_E2E_IMAGE is repository:tag");
    Images {
        repository: repository.into(),
        tag: tag.into(),
        next_tag: std::env::var("MSP_E2E_NEXT_TAG")
            .expect("MSP_E2E_NEXT_TAG (a second tag of the image) is set by make e2e-kind"),
    }
}

fn helm(env: &TestEnv) -> Command {
    let mut command = Command::new(helm_binary());
    command.arg("--kubeconfig").arg(env.kubeconfig_path());
    command
}

/// `helm upgrade --install` of the repository's chart with two replicas and
/// leader election (the chart's default), metrics on, the image `tag`, and
/// `--wait`: Helm returns once the Deployment's Pods are Ready by their probes.
fn install(env: &TestEnv, images: &Images, tag: &str) {
    let chart = msp_testenv::binaries::repo_root().join("charts/msp-operator");
    run(helm(env).args([
        "upgrade",
        "--install",
        RELEASE,
        &chart.to_string_lossy(),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        "replicaCount=2",
        "--set",
        "metrics.enabled=true",
        "--set",
        &format!("image.repository={}", images.repository),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "5m",
    ]));
}

/// The release's Pods that are not being deleted.
async fn pods(admin: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
        .await
        .expect("list the operator's Pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .map(|s| s.containers[0].image.clone().unwrap_or_default())
        .unwrap_or_default()
}

/// GET `path` through the API server (its service and pod proxies reach the
/// pod network from the control-plane node).
async fn proxy_get(admin: &Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    admin.request_text(request).await.map_err(|e| e.to_string())
}

/// The value of gauge `name` in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Waits until `want` Pods, all Ready and running `image`, exactly one of
/// which leads (its `msp_operator_leader` 1, the others 0, and it holds the
/// Lease); returns the leader's name. Two leaders at once fail at once.
async fn wait_for_one_leader(admin: &Client, want: usize, image: &str) -> String {
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    loop {
        let pods = pods(admin).await;
        let mut leaders = Vec::new();
        let mut observed = Vec::new();
        for pod in &pods {
            let name = pod.name_any();
            let metrics = proxy_get(
                admin,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}:8080/proxy/metrics"),
            )
            .await;
            let leader = metrics
                .as_deref()
                .ok()
                .and_then(|m| gauge(m, "msp_operator_leader"));
            if leader == Some(1.0) {
                leaders.push(name.clone());
            }
            observed.push(format!(
                "{name}: ready {} image {} leader {leader:?}",
                ready(pod),
                image_of(pod)
            ));
        }
        assert!(leaders.len() <= 1, "two leaders at once: {observed:?}");
        let holder = Api::<Lease>::namespaced(admin.clone(), NAMESPACE)
            .get_opt(RELEASE)
            .await
            .expect("read the Lease")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        if pods.len() == want
            && pods.iter().all(|p| ready(p) && image_of(p) == image)
            && leaders.len() == 1
            && holder.as_deref() == Some(leaders[0].as_str())
        {
            return leaders.remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEPLOY_TIMEOUT:?} waiting for {want} Ready Pods of {image} with one leader; Lease holder {holder:?}; {observed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A provider namespace with an offer whose plan gives `principal` the
/// reader role, and a customer namespace of another tenant delegating it.
struct Grant {
    provider: TestNamespace,
    customer: TestNamespace,
}

async fn offer_and_delegate(env: &TestEnv, admin: &Client, name: &str, principal: &str) -> Grant {
    let provider_tenant = msp_testenv::unique_name(&format!("{name}-prov"));
    let provider = env
        .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
        .await;
    let customer = env
        .namespace_with_labels(
            &format!("{name}-c"),
            &[(TENANT, &msp_testenv::unique_name(&format!("{name}-cust")))],
        )
        .await;
    apply(
        admin,
        &offer(
            &provider,
            "monitoring",
            &provider_tenant,
            vec![plan(
                "basic",
                "1.0.0",
                vec![auth(PrincipalKind::User, principal, "msp-operator:reader")],
            )],
        ),
    )
    .await;
    apply(
        admin,
        &delegation(
            &customer,
            "monitoring",
            (&provider, "monitoring"),
            "basic",
            "1.0.0",
            None,
        ),
    )
    .await;
    Grant { provider, customer }
}

/// Samples the grants of `grants` every 100 ms until `stop`; true when any
/// sample found one of them missing.
fn watch_grants(
    admin: Client,
    grants: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(bool, usize)> {
    tokio::spawn(async move {
        let (mut missing, mut samples) = (false, 0);
        while !stop.load(Ordering::SeqCst) {
            for ns in &grants {
                if managed_bindings(&admin, ns, "monitoring").await.is_empty() {
                    eprintln!("in-cluster: the grant of {ns}/monitoring is missing");
                    missing = true;
                }
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (missing, samples)
    })
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The operator's ServiceAccount, authenticated by its own token, is refused
/// what the chart does not grant it, and may do what it does.
async fn the_service_account_is_refused_the_rest(env: &TestEnv, customer: &str) {
    let account = env.service_account_client(NAMESPACE, RELEASE).await;
    Api::<Delegation>::all(account.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("the operator's account lists Delegations (positive control)");
    forbidden(
        Api::<Secret>::all(account.clone())
            .list(&ListParams::default().limit(1))
            .await,
        "list Secrets",
    );
    forbidden(
        Api::<Pod>::namespaced(account.clone(), customer)
            .list(&ListParams::default().limit(1))
            .await,
        "list Pods in a customer namespace",
    );
    forbidden(
        Api::<ClusterRoleBinding>::all(account.clone())
            .create(
                &PostParams::default(),
                &ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some("msp-e2e-escalate".into()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "ClusterRole".into(),
                        name: "cluster-admin".into(),
                    },
                    subjects: None,
                },
            )
            .await,
        "create a ClusterRoleBinding to cluster-admin",
    );
    forbidden(
        Api::<Namespace>::all(account.clone())
            .delete(customer, &DeleteParams::default())
            .await,
        "delete a namespace",
    );
    forbidden(
        Api::<Deployment>::namespaced(account.clone(), NAMESPACE)
            .delete(RELEASE, &DeleteParams::default())
            .await,
        "delete its own Deployment",
    );
}

/// After `helm uninstall`: nothing of the release and nothing the operator
/// made is left, only the CRDs (crds.keep, the default).
async fn nothing_is_left_but_the_crds(admin: &Client) {
    let release = format!("app.kubernetes.io/instance={RELEASE}");
    wait_until(
        DEPLOY_TIMEOUT,
        "the release's objects and the operator's grants to go",
        || {
            let admin = admin.clone();
            let release = release.clone();
            async move {
                let by_release = ListParams::default().labels(&release);
                let managed =
                    ListParams::default().labels(msp_operator::domain::names::MANAGED_SELECTOR);
                let left = [
                    (
                        "Pods",
                        Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
                            .list(&by_release)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "Deployments",
                        Api::<Deployment>::namespaced(admin.clone(), NAMESPACE)
                            .list(&by_release)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "ServiceAccounts",
                        Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
                            .list(&by_release)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "Leases",
                        Api::<Lease>::namespaced(admin.clone(), NAMESPACE)
                            .list(&ListParams::default())
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "ClusterRoles",
                        Api::<ClusterRole>::all(admin.clone())
                            .list(&by_release)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "ClusterRoleBindings",
                        Api::<ClusterRoleBinding>::all(admin.clone())
                            .list(&by_release)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "managed RoleBindings",
                        Api::<RoleBinding>::all(admin.clone())
                            .list(&managed)
                            .await
                            .map(|l| l.items.len()),
                    ),
                    (
                        "managed Roles",
                        Api::<Role>::all(admin.clone())
                            .list(&managed)
                            .await
                            .map(|l| l.items.len()),
                    ),
                ];
                let left: Vec<String> = left
                    .into_iter()
                    .filter_map(|(what, n)| match n {
                        Ok(0) => None,
                        Ok(n) => Some(format!("{n} {what}")),
                        Err(e) => Some(format!("{what}: {e}")),
                    })
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    for crd in [
        "delegations.msp-operator.io",
        "managedserviceoffers.msp-operator.io",
    ] {
        crds.get(crd)
            .await
            .unwrap_or_else(|e| panic!("CRD {crd} is kept by helm uninstall: {e}"));
    }
}

// Two workers: `helm upgrade --wait` blocks one while the grant watcher runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a kind cluster with the operator image loaded: run `make e2e-kind`"]
async fn the_chart_in_kind_from_install_to_uninstall() {
    let images = images();
    let env = TestEnv::shared();
    assert!(
        !env.is_local(),
        "this suite runs against kind (MSP_TEST_KUBECONFIG), not the local control plane"
    );
    let admin = env.client().await;
    let image = |tag: &str| format!("{}:{tag}", images.repository, tag = tag);
    let started = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "in-cluster: [{:>5.1}s] {what}",
            started.elapsed().as_secs_f64()
        )
    };

    // 1. Install: both Pods Ready through their probes, exactly one leads.
    install(env, &images, &images.tag);
    let leader = wait_for_one_leader(&admin, 2, &image(&images.tag)).await;
    step(&format!("installed: 2 Pods Ready, {leader} leads"));

    // 2. Metrics through the chart's Service.
    let metrics = proxy_get(
        &admin,
        &format!("/api/v1/namespaces/{NAMESPACE}/services/{RELEASE}-metrics:metrics/proxy/metrics"),
    )
    .await
    .unwrap_or_else(|e| panic!("scrape /metrics through the Service {RELEASE}-metrics: {e}"));
    assert!(
        metrics.contains("msp_operator_leader ")
            && metrics.contains("msp_operator_managed_rolebindings "),
        "the Service serves the operator's metrics:\n{metrics}"
    );
    step("metrics scraped through the Service");

    // 3. A Delegation is granted, proven as the provider's user.
    let alice_name = msp_testenv::unique_name("alice");
    let alice = env.user_client(&alice_name, &[]).await;
    let first = offer_and_delegate(env, &admin, "kind-a", &alice_name).await;
    wait_condition(
        &admin,
        &first.customer,
        "monitoring",
        "Ready",
        "True",
        Some("Granted"),
    )
    .await;
    wait_access(&alice, &first.customer, true).await;
    assert!(
        !can_list_pods(&alice, &first.provider).await,
        "nothing outside the delegated namespace"
    );
    step("a Delegation granted by the deployed operator");

    // 4. The leader Pod is deleted; a Delegation created meanwhile is granted
    // by the new leader.
    Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
        .delete(
            &leader,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("delete the leader Pod");
    let bob_name = msp_testenv::unique_name("bob");
    let bob = env.user_client(&bob_name, &[]).await;
    let second = offer_and_delegate(env, &admin, "kind-b", &bob_name).await;
    let new_leader = wait_for_one_leader(&admin, 2, &image(&images.tag)).await;
    assert_ne!(new_leader, leader, "the deleted Pod cannot lead");
    wait_condition(
        &admin,
        &second.customer,
        "monitoring",
        "Ready",
        "True",
        Some("Granted"),
    )
    .await;
    wait_access(&bob, &second.customer, true).await;
    step(&format!(
        "leader Pod deleted: {new_leader} leads, the Delegation made meanwhile is granted"
    ));

    // 5. helm upgrade to a new image tag rolls the Pods; sampled every 100 ms,
    // no grant disappears meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_grants(
        admin.clone(),
        vec![
            first.customer.name().to_string(),
            second.customer.name().to_string(),
        ],
        stop.clone(),
    );
    install(env, &images, &images.next_tag);
    let upgraded_leader = wait_for_one_leader(&admin, 2, &image(&images.next_tag)).await;
    stop.store(true, Ordering::SeqCst);
    let (missing, samples) = watcher.await.expect("the grant watcher");
    assert!(!missing, "a grant disappeared during the rolling upgrade");
    assert!(
        samples > 10,
        "the grants were sampled during the rollout ({samples} samples)"
    );
    wait_access(&alice, &first.customer, true).await;
    wait_access(&bob, &second.customer, true).await;
    step(&format!(
        "upgraded to {}: {upgraded_leader} leads, {samples} samples, no grant missing",
        images.next_tag
    ));

    // 6. The operator's own account is refused what the chart does not grant.
    the_service_account_is_refused_the_rest(env, first.customer.name()).await;
    step("the operator's ServiceAccount is refused the rest");

    // 7. The customers withdraw; helm uninstall leaves only the kept CRDs.
    let mut customers = BTreeSet::new();
    for grant in [&first, &second] {
        Api::<Delegation>::namespaced(admin.clone(), &grant.customer)
            .delete("monitoring", &DeleteParams::default())
            .await
            .expect("withdraw the Delegation");
        customers.insert(grant.customer.name().to_string());
    }
    wait_access(&alice, &first.customer, false).await;
    wait_access(&bob, &second.customer, false).await;
    for ns in &customers {
        wait_until(
            DEPLOY_TIMEOUT,
            &format!("the Delegation in {ns} to be gone"),
            || {
                let api = Api::<Delegation>::namespaced(admin.clone(), ns);
                async move {
                    match api.get_opt("monitoring").await {
                        Ok(None) => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    run(helm(env).args([
        "uninstall",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--wait",
        "--timeout",
        "3m",
    ]));
    nothing_is_left_but_the_crds(&admin).await;
    step("uninstalled: nothing left but the CRDs");
}
