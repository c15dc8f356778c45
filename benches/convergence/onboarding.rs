//! The onboarding phase of `make bench`: one tenant-wide Delegation
//! (`spec.namespaceSelector`) against as many single-namespace Delegations,
//! for `count` namespaces each, same workload per namespace (5 groups, one
//! reader role), same operator, same run:
//!
//! (a) tenant-wide over existing namespaces: from creating the one
//!     Delegation until its status lists every namespace granted;
//! (b) one Delegation per namespace: from the first create until all are
//!     Ready (the customer's client creates them at the operator's
//!     concurrency);
//! (c) tenant-wide, namespaces created afterwards: from the first
//!     namespace create until all are granted, with the operator's status
//!     writes counted (each join moves the status).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::LocalControlPlane;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const OFFER: &str = "onboarding";
const LABEL: &str = "msp-bench/onboard";

/// A namespace of `tenant`, labeled for selection when `selected`.
fn namespace(name: &str, tenant: &str, selected: bool) -> Namespace {
    let mut labels = BTreeMap::from([("msp-operator.io/tenant".to_string(), tenant.to_string())]);
    if selected {
        labels.insert(LABEL.into(), "yes".into());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn create_namespaces(admin: &Client, names: Vec<String>, tenant: &str, selected: bool) {
    let api: Api<Namespace> = Api::all(admin.clone());
    super::for_all(names, super::concurrency(), |name| {
        let api = api.clone();
        let ns = namespace(&name, tenant, selected);
        async move {
            api.create(&PostParams::default(), &ns)
                .await
                .expect("namespace");
        }
    })
    .await;
}

fn tenant_wide(namespace: &str, provider_ns: &str) -> Delegation {
    let mut d = fixtures::delegation(namespace, "all", (provider_ns, OFFER), "p", "1.0.0", None);
    d.spec.namespace_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(LABEL.to_string(), "yes".to_string())])),
        match_expressions: None,
    });
    d
}

/// Waits until `namespace/all` reports `count` namespaces, every one ready.
async fn wait_granted(admin: &Client, namespace: &str, count: usize) -> Duration {
    let started = Instant::now();
    let api: Api<Delegation> = Api::namespaced(admin.clone(), namespace);
    loop {
        let done = api.get_opt("all").await.ok().flatten().is_some_and(|d| {
            d.status.as_ref().is_some_and(|s| {
                s.namespaces.len() == count && s.namespaces.iter().all(|n| n.ready)
            })
        });
        if done {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "tenant-wide Delegation {namespace}/all not granted in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the phase with `count` namespaces per variant; the provider
/// namespace `provider_ns` (tenant `provider_tenant`) gets the offer.
pub async fn measure(
    admin: &Client,
    plane: &LocalControlPlane,
    provider_ns: &str,
    provider_tenant: &str,
    count: usize,
) -> anyhow::Result<serde_json::Value> {
    let groups: Vec<Authorization> = (0..super::AUTHORIZATIONS_PER_PLAN)
        .map(|g| {
            fixtures::auth(
                PrincipalKind::Group,
                &format!("onboarding-{g}"),
                fixtures::READER_ROLE,
            )
        })
        .collect();
    Api::<ManagedServiceOffer>::namespaced(admin.clone(), provider_ns)
        .create(
            &PostParams::default(),
            &fixtures::offer(
                provider_ns,
                OFFER,
                provider_tenant,
                vec![fixtures::plan("p", "1.0.0", groups)],
            ),
        )
        .await?;
    let names =
        |prefix: &str| -> Vec<String> { (0..count).map(|i| format!("{prefix}-{i}")).collect() };

    // (a) Tenant-wide, namespaces exist.
    create_namespaces(admin, vec!["onb-a-home".into()], "bench-onb-a", false).await;
    create_namespaces(admin, names("onb-a"), "bench-onb-a", true).await;
    let started = Instant::now();
    Api::<Delegation>::namespaced(admin.clone(), "onb-a-home")
        .create(
            &PostParams::default(),
            &tenant_wide("onb-a-home", provider_ns),
        )
        .await?;
    wait_granted(admin, "onb-a-home", count).await;
    let tenant_wide_existing = started.elapsed();
    eprintln!(
        "bench: onboarding (a) one tenant-wide Delegation, {count} namespaces: {:.2}s",
        tenant_wide_existing.as_secs_f64()
    );

    // (b) One Delegation per namespace.
    let each = names("onb-b");
    create_namespaces(admin, each.clone(), "bench-onb-b", false).await;
    let started = Instant::now();
    super::for_all(each, super::concurrency(), |ns| {
        let api: Api<Delegation> = Api::namespaced(admin.clone(), &ns);
        let mut d = fixtures::delegation(&ns, "one", (provider_ns, OFFER), "p", "1.0.0", None);
        d.metadata.labels = Some(BTreeMap::from([(LABEL.to_string(), "each".to_string())]));
        async move {
            api.create(&PostParams::default(), &d)
                .await
                .expect("delegation");
        }
    })
    .await;
    super::wait_ready_labeled(admin, count, "1.0.0", Some(&format!("{LABEL}=each"))).await;
    let one_each = started.elapsed();
    eprintln!(
        "bench: onboarding (b) {count} single-namespace Delegations: {:.2}s",
        one_each.as_secs_f64()
    );

    // (c) Tenant-wide, namespaces created afterwards.
    create_namespaces(admin, vec!["onb-c-home".into()], "bench-onb-c", false).await;
    Api::<Delegation>::namespaced(admin.clone(), "onb-c-home")
        .create(
            &PostParams::default(),
            &tenant_wide("onb-c-home", provider_ns),
        )
        .await?;
    wait_granted(admin, "onb-c-home", 0).await;
    let since = k8s_openapi::jiff::Timestamp::now();
    let started = Instant::now();
    let late = names("onb-c");
    let creating = create_namespaces(admin, late, "bench-onb-c", true);
    let waiting = wait_granted(admin, "onb-c-home", count);
    let (_, _) = futures::join!(creating, waiting);
    let joined = started.elapsed();
    // The operator's writes land in the audit log a moment later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = plane.writes_by_since(super::OPERATOR_USER, since);
    let status_writes = writes
        .iter()
        .filter(|w| w.starts_with("patch delegations/status onb-c-home/"))
        .count();
    let bindings = writes
        .iter()
        .filter(|w| w.starts_with("create rolebindings onb-c-"))
        .count();
    eprintln!(
        "bench: onboarding (c) {count} namespaces joining: {:.2}s, {status_writes} status writes",
        joined.as_secs_f64()
    );
    Ok(serde_json::json!({
        "namespaces": count,
        "tenant_wide_existing_seconds": tenant_wide_existing.as_secs_f64(),
        "one_delegation_each_seconds": one_each.as_secs_f64(),
        "ratio_tenant_wide_to_one_each": tenant_wide_existing.as_secs_f64() / one_each.as_secs_f64(),
        "tenant_wide_joining_seconds": joined.as_secs_f64(),
        "joining_status_writes": status_writes,
        "joining_rolebinding_creates": bindings,
    }))
}
