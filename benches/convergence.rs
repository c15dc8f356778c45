//! `make bench`: how close msp-operator comes to the API server's own write
//! limit, and what it costs at rest. Figures are measured side by side in one
//! run against the same control plane and printed as a table and JSON.
//!
//! 1. Baseline: the workload's RoleBindings written by a tight server-side
//!    apply loop at the operator's concurrency (best of two runs), and a
//!    replace (apply a new set, delete the old), as a non-exempt user like
//!    the operator.
//! 2. Cold convergence: offers, namespaces and delegations exist; the operator
//!    starts; time until every Delegation is Ready (every RoleBinding exists).
//! 3. Steady state: operator writes in a quiet window, and after a forced
//!    full resync (a restart), counted from the API server's audit log.
//! 4. Drift repair: managed RoleBindings deleted one at a time; p50/p99 until
//!    restored.
//! 5. Plan update fan-out: every offer publishes 2.0.0 with other roles and
//!    every customer accepts; time until all show the new grants.
//! 6. Operator peak RSS and CPU seconds (from /proc).
//!
//! Usage: cargo bench --bench convergence -- [--scale F] [--quiet-seconds N]
//! [--drift-samples N] [--concurrency N]
//! (`--scale 0.1` for a quick run; 1.0 is 50 offers, 1,000 delegations,
//! 2,000 customer namespaces, 10,000 RoleBindings).

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::net::{http_get, sample};
use msp_testenv::operator::OperatorProcess;
use msp_testenv::{ControlPlaneOptions, LocalControlPlane, manifests};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const OPERATOR: &str = env!("CARGO_BIN_EXE_msp-operator");
/// Writes in flight, for the baseline client and the operator alike
/// (`--concurrency`, default 8 like the operator's own default).
static CONCURRENCY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(8);

fn concurrency() -> usize {
    CONCURRENCY.load(std::sync::atomic::Ordering::Relaxed)
}
const AUTHORIZATIONS_PER_PLAN: usize = 5;
const NAMESPACES_PER_DELEGATION: usize = 2;
const OPERATOR_USER: &str = "msp-operator";
const BASELINE_USER: &str = "msp-bench-baseline";

struct Sizes {
    offers: usize,
    delegations: usize,
    quiet_seconds: u64,
    drift_samples: usize,
}

fn parse_args() -> Sizes {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let scale: f64 = value("--scale").and_then(|v| v.parse().ok()).unwrap_or(1.0);
    if let Some(n) = value("--concurrency").and_then(|v| v.parse::<usize>().ok()) {
        CONCURRENCY.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }
    Sizes {
        offers: ((50.0 * scale).round() as usize).max(1),
        delegations: ((1000.0 * scale).round() as usize).max(1),
        quiet_seconds: value("--quiet-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
        drift_samples: value("--drift-samples")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(msp_testenv::binaries::repo_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn customer_ns(d: usize, k: usize) -> String {
    format!("bench-c{d}-{k}")
}

fn offer(o: usize, version: &str, role: &str) -> ManagedServiceOffer {
    let authorizations = (0..AUTHORIZATIONS_PER_PLAN)
        .map(|a| fixtures::auth(PrincipalKind::Group, &format!("offer-{o}-team-{a}"), role))
        .collect();
    fixtures::offer(
        &format!("bench-p{o}"),
        &format!("offer-{o}"),
        &format!("bench-provider-{o}"),
        vec![fixtures::plan("std", version, authorizations)],
    )
}

fn delegation(d: usize, offers: usize, version: &str) -> Delegation {
    let namespaces: Vec<String> = (0..NAMESPACES_PER_DELEGATION)
        .map(|k| customer_ns(d, k))
        .collect();
    fixtures::delegation(
        &customer_ns(d, 0),
        "dlg",
        (
            &format!("bench-p{}", d % offers),
            &format!("offer-{}", d % offers),
        ),
        "std",
        version,
        Some(namespaces.iter().map(String::as_str).collect()),
    )
}

fn namespace(name: &str, tenant: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "msp-operator.io/tenant".to_string(),
                tenant.to_string(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn for_all<T, F, Fut>(items: Vec<T>, concurrency: usize, f: F)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    stream::iter(items)
        .for_each_concurrent(concurrency, f)
        .await;
}

/// The RoleBindings the workload needs, as the baseline writes them.
fn baseline_bindings(sizes: &Sizes, set: &str) -> Vec<RoleBinding> {
    let mut out = Vec::new();
    for d in 0..sizes.delegations {
        for k in 0..NAMESPACES_PER_DELEGATION {
            for a in 0..AUTHORIZATIONS_PER_PLAN {
                out.push(RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(format!("baseline-{set}-{a}")),
                        namespace: Some(customer_ns(d, k)),
                        labels: Some(BTreeMap::from([(
                            "bench".to_string(),
                            "baseline".to_string(),
                        )])),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "ClusterRole".into(),
                        name: "msp-operator:reader".into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "Group".into(),
                        name: format!("offer-{}-team-{a}", d % sizes.offers),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        ..Default::default()
                    }]),
                });
            }
        }
    }
    out
}

async fn apply_bindings(client: &Client, bindings: Vec<RoleBinding>) {
    let params = PatchParams::apply("msp-bench").force();
    for_all(bindings, concurrency(), |rb| {
        let api: Api<RoleBinding> =
            Api::namespaced(client.clone(), &rb.namespace().unwrap_or_default());
        let params = params.clone();
        async move {
            api.patch(&rb.name_any(), &params, &Patch::Apply(&rb))
                .await
                .expect("baseline apply");
        }
    })
    .await;
}

async fn delete_bindings(client: &Client, bindings: Vec<RoleBinding>) {
    for_all(bindings, concurrency(), |rb| {
        let api: Api<RoleBinding> =
            Api::namespaced(client.clone(), &rb.namespace().unwrap_or_default());
        async move {
            let _ = api.delete(&rb.name_any(), &DeleteParams::default()).await;
        }
    })
    .await;
}

/// Waits until every delegation reports Ready at `version`; returns when.
/// Follows a watch (one LIST, then events) so that waiting does not load the
/// API server the operator is being measured against.
async fn wait_all_ready(client: &Client, expected: usize, version: &str) -> Duration {
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    let started = Instant::now();
    let is_ready = |d: &Delegation| {
        d.status.as_ref().is_some_and(|s| {
            s.applied_version.as_deref() == Some(version)
                && s.observed_generation == d.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    };
    let api: Api<Delegation> = Api::all(client.clone());
    let mut events =
        std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
    let mut ready = std::collections::HashSet::new();
    let deadline = tokio::time::sleep(Duration::from_secs(1800));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("only {}/{expected} delegations Ready after 30 minutes", ready.len()),
            event = events.next() => {
                let key = |d: &Delegation| format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
                match event {
                    Some(Ok(Event::Apply(d) | Event::InitApply(d))) => {
                        if is_ready(&d) { ready.insert(key(&d)); } else { ready.remove(&key(&d)); }
                    }
                    Some(Ok(Event::Delete(d))) => { ready.remove(&key(&d)); }
                    Some(Ok(Event::Init | Event::InitDone)) | Some(Err(_)) => {}
                    None => panic!("delegation watch ended"),
                }
                if ready.len() >= expected {
                    return started.elapsed();
                }
            }
        }
    }
}

async fn count_managed(client: &Client, role: &str) -> usize {
    let api: Api<RoleBinding> = Api::all(client.clone());
    let mut params = ListParams::default()
        .labels("app.kubernetes.io/managed-by=msp-operator")
        .limit(2000);
    let mut count = 0;
    loop {
        let page = api.list(&params).await.expect("list rolebindings");
        count += page
            .items
            .iter()
            .filter(|rb| rb.role_ref.name == role)
            .count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return count,
        }
    }
}

/// The operator as a separate process, so its memory and CPU are its own.
/// MSP_BENCH_WRAPPER runs it under a profiler, for example "heaptrack -o
/// target/bench/heap" or "perf record -g -o target/bench/perf.data" (peak
/// RSS and CPU are then the wrapper's).
fn start_operator(kubeconfig: &std::path::Path) -> OperatorProcess {
    let wrapper = std::env::var("MSP_BENCH_WRAPPER").unwrap_or_default();
    OperatorProcess::launch(
        std::path::Path::new(OPERATOR),
        kubeconfig,
        "bench",
        &wrapper,
    )
    .args(["--concurrency", &concurrency().to_string()])
    .env("RUST_LOG", "warn")
    .spawn()
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

fn reconciles_done(port: u16) -> f64 {
    http_get(port, "/metrics")
        .and_then(|(_, text)| {
            sample(
                &text,
                "msp_operator_reconciles_total{controller=\"delegation\"}",
            )
        })
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes = parse_args();
    let bindings_total = sizes.delegations * NAMESPACES_PER_DELEGATION * AUTHORIZATIONS_PER_PLAN;
    eprintln!(
        "bench: {} offers, {} delegations, {} customer namespaces, {} RoleBindings",
        sizes.offers,
        sizes.delegations,
        sizes.delegations * NAMESPACES_PER_DELEGATION,
        bindings_total
    );
    let plane = LocalControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.admin_client().await?;
    let server_version = admin.apiserver_version().await?.git_version;
    for file in [
        "crds/managedserviceoffers.yaml",
        "crds/delegations.yaml",
        "deploy/operator-clusterrole.yaml",
        "deploy/delegable-roles.yaml",
        "deploy/admission-policies.yaml",
        "deploy/consent-recorder.yaml",
    ] {
        manifests::apply_yaml(&admin, &read(file), "msp-bench", "default").await?;
    }
    // Delegations are created only once the consent recorder is in force.
    manifests::wait_for_consent_recorder(&admin).await?;
    // The operator and the baseline client are both ordinary (non-exempt)
    // users, so API Priority and Fairness treats them alike.
    for (user, role) in [
        (OPERATOR_USER, "msp-operator"),
        (BASELINE_USER, "cluster-admin"),
    ] {
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("bench-{user}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user.into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        };
        Api::<ClusterRoleBinding>::all(admin.clone())
            .create(&PostParams::default(), &binding)
            .await?;
    }
    let dir = plane.dir().to_path_buf();
    let write_kubeconfig = |user: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(format!("{user}.kubeconfig"));
        let cert = plane.pki().client_cert(user, &[])?;
        std::fs::write(
            &path,
            msp_testenv::kubeconfig::render_kubeconfig(
                plane.server(),
                &plane.pki().server_ca_pem(),
                user,
                &msp_testenv::kubeconfig::Credentials::ClientCertificate(cert),
            ),
        )?;
        Ok(path)
    };
    let operator_kubeconfig = write_kubeconfig(OPERATOR_USER)?;
    let baseline = msp_testenv::kubeconfig::client_from_yaml(&std::fs::read_to_string(
        write_kubeconfig(BASELINE_USER)?,
    )?)
    .await?;

    // Workload objects (not timed).
    let setup = Instant::now();
    let mut namespaces = Vec::new();
    for o in 0..sizes.offers {
        namespaces.push(namespace(
            &format!("bench-p{o}"),
            &format!("bench-provider-{o}"),
        ));
    }
    for d in 0..sizes.delegations {
        for k in 0..NAMESPACES_PER_DELEGATION {
            namespaces.push(namespace(
                &customer_ns(d, k),
                &format!("bench-customer-{d}"),
            ));
        }
    }
    let ns_api: Api<Namespace> = Api::all(admin.clone());
    for_all(namespaces, 16, |ns| {
        let api = ns_api.clone();
        async move {
            api.create(&PostParams::default(), &ns)
                .await
                .expect("namespace");
        }
    })
    .await;
    for o in 0..sizes.offers {
        let offer = offer(o, "1.0.0", "msp-operator:reader");
        Api::<ManagedServiceOffer>::namespaced(admin.clone(), &format!("bench-p{o}"))
            .create(&PostParams::default(), &offer)
            .await?;
    }
    eprintln!(
        "bench: namespaces and offers created in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // 1. Baseline: the create is run twice and the faster run counts, since
    // the baseline stands for the limit (single runs vary by up to 25% here).
    let set_a = baseline_bindings(&sizes, "a");
    let mut baseline_creates = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        apply_bindings(&baseline, set_a.clone()).await;
        baseline_creates.push(started.elapsed());
        if round == 0 {
            delete_bindings(&admin, set_a.clone()).await;
        }
    }
    let baseline_create = baseline_creates.iter().copied().min().unwrap_or_default();
    let started = Instant::now();
    let ((), ()) = tokio::join!(
        apply_bindings(&baseline, baseline_bindings(&sizes, "b")),
        delete_bindings(&baseline, set_a)
    );
    let baseline_replace = started.elapsed();
    delete_bindings(&admin, baseline_bindings(&sizes, "b")).await;
    eprintln!(
        "bench: baseline create {:.2}s (best of {:.2}s and {:.2}s), replace {:.2}s",
        baseline_create.as_secs_f64(),
        baseline_creates[0].as_secs_f64(),
        baseline_creates[1].as_secs_f64(),
        baseline_replace.as_secs_f64()
    );

    // 2. Cold convergence: everything exists, then the operator starts.
    let dlg_api_all: Vec<Delegation> = (0..sizes.delegations)
        .map(|d| delegation(d, sizes.offers, "1.0.0"))
        .collect();
    for_all(dlg_api_all, 16, |d| {
        let api: Api<Delegation> =
            Api::namespaced(admin.clone(), &d.namespace().unwrap_or_default());
        async move {
            api.create(&PostParams::default(), &d)
                .await
                .expect("delegation");
        }
    })
    .await;
    let operator = start_operator(&operator_kubeconfig);
    let probe_port = operator.probe_port;
    let cold_started = Instant::now();
    let startup_wait = tokio::spawn(async move {
        while http_status(probe_port, "/readyz") != Some(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cold_started.elapsed()
    });
    let cold = wait_all_ready(&admin, sizes.delegations, "1.0.0").await;
    let startup = startup_wait.await?;
    let granted = count_managed(&admin, "msp-operator:reader").await;
    assert_eq!(granted, bindings_total, "every RoleBinding exists");
    eprintln!("bench: cold convergence {:.2}s", cold.as_secs_f64());

    // 3. Steady state: a quiet window, then a restart (full resync).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = plane.writes_by(OPERATOR_USER).len();
    tokio::time::sleep(Duration::from_secs(sizes.quiet_seconds)).await;
    let quiet_writes = plane.writes_by(OPERATOR_USER).len() - before;
    let (rss_first, cpu_first) = operator.stop();
    let before = plane.writes_by(OPERATOR_USER).len();
    let operator = start_operator(&operator_kubeconfig);
    let metrics_port = operator.metrics_port;
    let resync_started = Instant::now();
    while reconciles_done(metrics_port) < sizes.delegations as f64 {
        assert!(
            resync_started.elapsed() < Duration::from_secs(600),
            "resync stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync = resync_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resync_list: Vec<String> = plane.writes_by(OPERATOR_USER).split_off(before);
    let resync_writes = resync_list.len();
    let mut resync_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for write in &resync_list {
        let kind: String = write.split(' ').take(2).collect::<Vec<_>>().join(" ");
        *resync_kinds.entry(kind).or_default() += 1;
    }
    eprintln!("bench: quiet writes {quiet_writes}, writes after a full resync {resync_writes}");

    // 4. Drift repair latency.
    let mut managed: Vec<RoleBinding> = Api::<RoleBinding>::all(admin.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=msp-operator"))
        .await?
        .items;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut latencies = Vec::new();
    for _ in 0..sizes.drift_samples.min(managed.len()) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let rb = managed.swap_remove((seed % managed.len() as u64) as usize);
        let api: Api<RoleBinding> =
            Api::namespaced(admin.clone(), &rb.namespace().unwrap_or_default());
        let old_uid = rb.uid();
        let started = Instant::now();
        api.delete(&rb.name_any(), &DeleteParams::default()).await?;
        loop {
            if let Some(now) = api.get_opt(&rb.name_any()).await?
                && now.uid() != old_uid
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "drift not repaired"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!(
        "bench: drift repair p50 {:.0}ms p99 {:.0}ms",
        ms(p50),
        ms(p99)
    );

    // 5. Plan update fan-out: 2.0.0 grants another role; all customers accept.
    for o in 0..sizes.offers {
        let api: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &format!("bench-p{o}"));
        let mut current = api.get(&format!("offer-{o}")).await?;
        current.spec = offer(o, "2.0.0", "msp-operator:operator").spec;
        api.replace(&format!("offer-{o}"), &PostParams::default(), &current)
            .await?;
    }
    let started = Instant::now();
    for_all((0..sizes.delegations).collect(), concurrency(), |d| {
        let api: Api<Delegation> = Api::namespaced(admin.clone(), &customer_ns(d, 0));
        async move {
            api.patch(
                "dlg",
                &PatchParams::default(),
                // Its role can run workloads: accepted knowingly.
                &Patch::Merge(serde_json::json!({"spec": {
                    "planVersion": "2.0.0",
                    "acknowledgedWorkloadRoles": ["msp-operator:operator"],
                }})),
            )
            .await
            .expect("accept 2.0.0");
        }
    })
    .await;
    wait_all_ready(&admin, sizes.delegations, "2.0.0").await;
    let fan_out = started.elapsed();
    let mut leftover = count_managed(&admin, "msp-operator:reader").await;
    let pruning = Instant::now();
    while leftover > 0 && pruning.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        leftover = count_managed(&admin, "msp-operator:reader").await;
    }
    let fan_out_total = started.elapsed();
    assert_eq!(
        count_managed(&admin, "msp-operator:operator").await,
        bindings_total
    );
    eprintln!(
        "bench: plan update fan-out {:.2}s",
        fan_out_total.as_secs_f64()
    );

    let (rss_second, cpu_second) = operator.stop();

    let figures = serde_json::json!({
        "date": k8s_openapi::jiff::Timestamp::now().to_string(),
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kubernetes": server_version,
        },
        "sizes": {
            "offers": sizes.offers,
            "delegations": sizes.delegations,
            "customer_namespaces": sizes.delegations * NAMESPACES_PER_DELEGATION,
            "rolebindings": bindings_total,
            "concurrency": concurrency(),
        },
        "baseline": {
            "create_seconds": baseline_create.as_secs_f64(),
            "create_seconds_runs": baseline_creates.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "replace_seconds": baseline_replace.as_secs_f64(),
            "create_per_second": bindings_total as f64 / baseline_create.as_secs_f64(),
        },
        "cold_convergence": {
            "seconds": cold.as_secs_f64(),
            "operator_startup_until_ready_seconds": startup.as_secs_f64(),
            "ratio_to_baseline_after_startup": (cold - startup.min(cold)).as_secs_f64() / baseline_create.as_secs_f64(),
            "ratio_to_baseline": cold.as_secs_f64() / baseline_create.as_secs_f64(),
        },
        "steady_state": {
            "quiet_window_seconds": sizes.quiet_seconds,
            "writes_in_quiet_window": quiet_writes,
            "full_resync_seconds": resync.as_secs_f64(),
            "writes_after_full_resync": resync_writes,
            "writes_after_full_resync_by_kind": resync_kinds,
        },
        "drift_repair": {
            "samples": latencies.len(),
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
        },
        "plan_update_fan_out": {
            "seconds_until_all_ready": fan_out.as_secs_f64(),
            "seconds_until_old_grants_pruned": fan_out_total.as_secs_f64(),
            "ratio_to_baseline_replace": fan_out_total.as_secs_f64() / baseline_replace.as_secs_f64(),
        },
        "operator": {
            "peak_rss_mib_first_process": rss_first,
            "cpu_seconds_first_process": cpu_first,
            "peak_rss_mib_second_process": rss_second,
            "cpu_seconds_second_process": cpu_second,
        },
    });
    let out_dir = msp_testenv::binaries::repo_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!(
        "convergence-{}.json",
        k8s_openapi::jiff::Timestamp::now().as_second()
    ));
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)?;

    println!(
        "\nmsp-operator convergence benchmark ({} cores, Kubernetes {})",
        figures["machine"]["cores"],
        figures["machine"]["kubernetes"].as_str().unwrap_or("")
    );
    println!(
        "sizes: {} offers, {} delegations, {} customer namespaces, {} RoleBindings, concurrency {}",
        sizes.offers,
        sizes.delegations,
        sizes.delegations * NAMESPACES_PER_DELEGATION,
        bindings_total,
        concurrency()
    );
    println!("{:<44} {:>12} {:>10}", "measure", "value", "target");
    let row =
        |name: &str, value: String, target: &str| println!("{name:<44} {value:>12} {target:>10}");
    row(
        "baseline: SSA create, best of 2",
        format!("{:.2}s", baseline_create.as_secs_f64()),
        "",
    );
    row(
        "baseline: replace (apply new + delete old)",
        format!("{:.2}s", baseline_replace.as_secs_f64()),
        "",
    );
    row(
        "cold convergence",
        format!("{:.2}s", cold.as_secs_f64()),
        "",
    );
    row(
        "  ratio to baseline create",
        format!("{:.2}x", cold.as_secs_f64() / baseline_create.as_secs_f64()),
        "<= 1.25x",
    );
    row(
        "  ratio after startup",
        format!(
            "{:.2}x",
            (cold - startup.min(cold)).as_secs_f64() / baseline_create.as_secs_f64()
        ),
        "",
    );
    row(
        &format!("writes in a {}s quiet window", sizes.quiet_seconds),
        quiet_writes.to_string(),
        "0",
    );
    row(
        "writes after a full resync (restart)",
        resync_writes.to_string(),
        "0",
    );
    row("drift repair p50", format!("{:.0}ms", ms(p50)), "");
    row("drift repair p99", format!("{:.0}ms", ms(p99)), "< 1000ms");
    row(
        "plan update fan-out (all Ready)",
        format!("{:.2}s", fan_out.as_secs_f64()),
        "",
    );
    row(
        "plan update fan-out (old grants pruned)",
        format!("{:.2}s", fan_out_total.as_secs_f64()),
        "",
    );
    row(
        "  ratio to baseline replace",
        format!(
            "{:.2}x",
            fan_out_total.as_secs_f64() / baseline_replace.as_secs_f64()
        ),
        "",
    );
    row(
        "operator peak RSS (cold run)",
        format!("{rss_first:.1}MiB"),
        "< 64MiB",
    );
    row(
        "operator CPU seconds (cold run + quiet)",
        format!("{cpu_first:.1}s"),
        "",
    );
    row(
        "operator peak RSS (resync, drift, update)",
        format!("{rss_second:.1}MiB"),
        "< 64MiB",
    );
    row(
        "operator CPU seconds (resync, drift, update)",
        format!("{cpu_second:.1}s"),
        "",
    );
    println!("figures: {}", out.display());
    Ok(())
}
