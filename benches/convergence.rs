//! `make bench`: how close msp-operator comes to the API server's own write
//! limit, what it costs at rest, and how that grows. Each size runs on a
//! fresh control plane; figures within a size are measured side by side in
//! one run and printed as a table and JSON.
//!
//! Workload per size n: n customers (Delegations), each with 2 namespaces in
//! which the 5 groups of its provider's plan get one reader ClusterRole;
//! one offer per 20 customers. Per size:
//!
//! 1. Two baselines at the operator's concurrency, best of two runs each,
//!    each run started on a quiet control plane: (a) *required writes* —
//!    exactly the write set the design needs per Delegation (the consent
//!    check's SubjectAccessReview, the consent record, the RoleBindings,
//!    the status patch, the provider's record, one Event; labels and
//!    finalizer come with the create, by deploy/delegation-metadata.yaml),
//!    the operator's very objects written as the operator's identity, so
//!    the admission policies that guard them cost the same; (b) *raw grant
//!    writes* — the RoleBindings alone (2 per customer, 5 subjects each),
//!    unlabeled, as a non-exempt user with cluster-admin rights. For (a)
//!    and the cold run: CPU seconds of each control-plane process and of
//!    the client, and the API server's requests by kind (its
//!    `apiserver_request_total`, reads included); `MSP_BENCH_PPROF=<dir>`
//!    also saves the API server's CPU profiles.
//! 2. Cold convergence: offers, namespaces and delegations exist; the operator
//!    starts; time until every Delegation is Ready.
//! 3. Steady state: operator writes in a quiet window, and after a forced
//!    full resync (a restart), counted from the API server's audit log.
//! 4. Drift repair: managed RoleBindings deleted one at a time; p50/p99 until
//!    restored.
//! 5. Plan update fan-out: every offer publishes 2.0.0 with another role and
//!    every customer accepts; time until all show the new grants.
//! 6. Just-in-time access ([`activations`]): up to 1,000 eligible users
//!    (one per customer) activate at once; activation-to-grant latency and
//!    revocation lateness after `expiresAt`, p50/p99.
//! 8. Onboarding ([`onboarding`], with the first size only): one
//!    tenant-wide Delegation over `--onboarding N` namespaces (default
//!    2,000) against N single-namespace Delegations, and N namespaces
//!    joining a tenant-wide Delegation one by one.
//! 7. Operator peak RSS and CPU seconds (from /proc), and the API server's
//!    latency per kind of operator write (from the audit log).
//!
//! Then the growth exponent of time and memory over the sizes (least squares
//! on log-log). Usage: cargo bench --bench convergence -- [--sizes
//! 200,1000,4000] [--quiet-seconds N] [--drift-samples N] [--concurrency N]
//! [--activations N] [--onboarding N] [--without-metadata-policy]
//! (`--sizes 100` for a quick run).

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::net::{http_get, sample};
use msp_testenv::operator::OperatorProcess;
use msp_testenv::{ControlPlaneOptions, LocalControlPlane, manifests};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[path = "convergence/activations.rs"]
mod activations;
#[path = "convergence/onboarding.rs"]
mod onboarding;

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

/// One workload size.
#[derive(Clone, Copy)]
struct Sizes {
    offers: usize,
    delegations: usize,
}

impl Sizes {
    fn new(delegations: usize) -> Self {
        Self {
            offers: (delegations / 20).max(1),
            delegations,
        }
    }

    /// RoleBindings granting the workload's access: one per (namespace,
    /// role), so one per customer namespace.
    fn bindings(&self) -> usize {
        self.delegations * NAMESPACES_PER_DELEGATION
    }
}

struct Args {
    sizes: Vec<usize>,
    /// Activations at once in the just-in-time phase (at most one per
    /// Delegation).
    activations: usize,
    /// Namespaces of the onboarding phase (run with the first size; 0
    /// skips it).
    onboarding: usize,
    quiet_seconds: u64,
    drift_samples: usize,
    /// Leave deploy/delegation-metadata.yaml out (`--without-metadata-policy`):
    /// the operator, and the baseline like it, then set each Delegation's
    /// labels and finalizer with a write of their own, as on clusters
    /// without MutatingAdmissionPolicy.
    metadata_policy: bool,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(n) = value("--concurrency").and_then(|v| v.parse::<usize>().ok()) {
        CONCURRENCY.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }
    Args {
        sizes: value("--sizes")
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![200, 1000, 4000]),
        activations: value("--activations")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
        onboarding: value("--onboarding")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
        quiet_seconds: value("--quiet-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
        metadata_policy: !args.iter().any(|a| a == "--without-metadata-policy"),
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

/// The RoleBindings the workload needs, as a careful admin (and the
/// operator) writes them: one per customer namespace holding the 5 groups.
fn baseline_bindings(sizes: &Sizes, set: &str) -> Vec<RoleBinding> {
    let mut out = Vec::new();
    for d in 0..sizes.delegations {
        for k in 0..NAMESPACES_PER_DELEGATION {
            out.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(format!("baseline-{set}")),
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
                subjects: Some(
                    (0..AUTHORIZATIONS_PER_PLAN)
                        .map(|a| Subject {
                            kind: "Group".into(),
                            name: format!("offer-{}-team-{a}", d % sizes.offers),
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            });
        }
    }
    out
}

/// Baseline (a): exactly the writes the design needs per Delegation, one
/// Delegation after another, `concurrency()` Delegations at a time, by a
/// tight client loop. The objects come from the operator's own pure code
/// (build, snapshot, status), so they are the same size as the operator's.
/// Setup and teardown (the `base-<round>` Delegations) are not timed; the
/// written objects lack the managed-by label so the operator never sees them.
async fn required_writes(
    plane: &LocalControlPlane,
    admin: &Client,
    client: &Client,
    sizes: Sizes,
    round: usize,
) -> (Duration, CpuSample, BTreeMap<String, f64>) {
    let name = format!("base-{round}");
    let created: Vec<Delegation> = stream::iter(0..sizes.delegations)
        .map(|d| {
            let mut delegation = delegation(d, sizes.offers, "1.0.0");
            delegation.metadata.name = Some(name.clone());
            let api: Api<Delegation> = Api::namespaced(admin.clone(), &customer_ns(d, 0));
            async move {
                api.create(&PostParams::default(), &delegation)
                    .await
                    .expect("baseline delegation")
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    settle(plane).await;
    let requests = request_counts(admin).await;
    let cpu = CpuSample::take(plane);
    let profile = profile_apiserver(plane, &format!("required-writes-{round}"), 5);
    let started = Instant::now();
    stream::iter(created.clone())
        .for_each_concurrent(concurrency(), |d| writes_of_one_delegation(client, d))
        .await;
    let elapsed = started.elapsed();
    let requests = requests_between(&requests, &request_counts(admin).await);
    let cpu = cpu.since(plane);
    if let Some(profile) = profile {
        let _ = profile.join();
    }
    stream::iter(created)
        .for_each_concurrent(32, |d| async move {
            let ns = d.namespace().unwrap_or_default();
            let api: Api<Delegation> = Api::namespaced(admin.clone(), &ns);
            let unfinalized = serde_json::json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&unfinalized),
                )
                .await;
            let _ = api.delete(&d.name_any(), &DeleteParams::default()).await;
            let records: Api<msp_operator::api::CustomerDelegation> =
                Api::namespaced(admin.clone(), &d.spec.offer_ref.namespace);
            let _ = records
                .delete(
                    &msp_operator::api::CustomerDelegation::name_for(&ns, &d.name_any()),
                    &DeleteParams::default(),
                )
                .await;
            let revisions: Api<ControllerRevision> = Api::namespaced(admin.clone(), &ns);
            let _ = revisions
                .delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels("bench=required"),
                )
                .await;
            for k in 0..NAMESPACES_PER_DELEGATION {
                let bindings: Api<RoleBinding> =
                    Api::namespaced(admin.clone(), &customer_ns_of(&ns, k));
                let _ = bindings
                    .delete_collection(
                        &DeleteParams::default(),
                        &ListParams::default().labels("bench=required"),
                    )
                    .await;
            }
        })
        .await;
    (elapsed, cpu, requests)
}

/// The requests of one Delegation, in the operator's order: the consent
/// check (a SubjectAccessReview), the consent record, the grants (side by
/// side), the status, the provider's record, one Event. (Its labels and
/// cleanup finalizer are set at admission, see deploy/delegation-metadata.yaml.)
async fn writes_of_one_delegation(client: &Client, d: Delegation) {
    use msp_operator::delegation::{build, snapshot, status};
    let ns = d.namespace().unwrap_or_default();
    let offer_ref = d.spec.offer_ref.clone();
    let o: usize = offer_ref
        .name
        .trim_start_matches("offer-")
        .parse()
        .unwrap_or(0);
    let plan = accepted_plan(o);
    // The operator's objects exactly, managed label included, so that the
    // admission policies treat them as they treat the operator's (the loop
    // runs as the operator's identity); one label more finds them for the
    // cleanup.
    let unmanaged = |labels: &mut Option<BTreeMap<String, String>>| {
        labels
            .get_or_insert_default()
            .insert("bench".into(), "required".into());
    };
    let delegations: Api<Delegation> = Api::namespaced(client.clone(), &ns);
    // Its labels and cleanup finalizer came with the create
    // (deploy/delegation-metadata.yaml); without that policy
    // (--without-metadata-policy) one apply sets them, as the operator does.
    if !d
        .finalizers()
        .iter()
        .any(|f| f == msp_operator::domain::names::FINALIZER)
    {
        let labels = msp_operator::delegation::apply::metadata_labels(&d);
        delegations
            .patch(
                &d.name_any(),
                &PatchParams::apply("msp-bench-required").force(),
                &Patch::Apply(msp_operator::delegation::apply::metadata_patch(&d, &labels)),
            )
            .await
            .expect("metadata apply");
    }
    // The consent check: may the consenter bind the role cluster-wide? (One
    // SubjectAccessReview per role; not a write, but a request the design
    // needs before it records a consent.)
    let consenter =
        msp_operator::domain::consent::Consenter::of(&d).expect("the consent recorder stamped it");
    let (resource_attributes, non_resource_attributes) =
        msp_operator::domain::escalation::Question::bind("", "msp-operator:reader").attributes();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(consenter.user),
            groups: Some(consenter.groups),
            resource_attributes,
            non_resource_attributes,
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("consent check");
    assert!(answer.status.is_some_and(|s| s.allowed));
    let mut revision = snapshot::to_revision(&d, &plan).expect("snapshot");
    unmanaged(&mut revision.metadata.labels);
    Api::<ControllerRevision>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &revision)
        .await
        .expect("consent record");
    let namespaces: Vec<String> = (0..NAMESPACES_PER_DELEGATION)
        .map(|k| customer_ns_of(&ns, k))
        .collect();
    let desired = build::build(&d, &plan, &namespaces);
    futures::future::join_all(desired.role_bindings.iter().cloned().map(|mut rb| {
        unmanaged(&mut rb.metadata.labels);
        let api: Api<RoleBinding> =
            Api::namespaced(client.clone(), &rb.namespace().unwrap_or_default());
        async move {
            api.create(&PostParams::default(), &rb)
                .await
                .expect("grant");
        }
    }))
    .await;
    let computed = accepted_status(&d, plan, &namespaces, &desired);
    delegations
        .patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status::merge_patch(None, &computed) })),
        )
        .await
        .expect("status");
    // The provider's record of the Delegation ("My customers").
    let mut record = msp_operator::delegation::records::build(
        &d,
        &computed,
        Some(&offer(o, "1.0.0", "msp-operator:reader")),
        &[],
    )
    .expect("record");
    unmanaged(&mut record.metadata.labels);
    Api::<msp_operator::api::CustomerDelegation>::namespaced(client.clone(), &offer_ref.namespace)
        .create(&PostParams::default(), &record)
        .await
        .expect("provider's record");
    let event = k8s_openapi::api::events::v1::Event {
        metadata: ObjectMeta {
            // Named as the operator names its Events: object, time in hex.
            name: Some(format!(
                "{}.{:x}",
                d.name_any(),
                k8s_openapi::jiff::Timestamp::now().as_nanosecond()
            )),
            ..Default::default()
        },
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        action: Some("Reconcile".into()),
        reason: Some("Granted".into()),
        note: Some(format!(
            "plan std version 1.0.0 granted in {} namespace(s)",
            NAMESPACES_PER_DELEGATION
        )),
        type_: Some("Normal".into()),
        reporting_controller: Some("msp-operator.io/delegation".into()),
        reporting_instance: Some("msp-bench".into()),
        regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(Delegation::api_version(&()).to_string()),
            kind: Some("Delegation".into()),
            name: Some(d.name_any()),
            namespace: Some(ns.clone()),
            uid: d.uid(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
        .expect("event");
}

/// What customers of offer `o` accept: its plan `std` at 1.0.0.
fn accepted_plan(o: usize) -> msp_operator::domain::consent::AcceptedPlan {
    fixtures::accepted(
        (&format!("bench-p{o}"), &format!("offer-{o}")),
        &format!("bench-provider-{o}"),
        "std",
        "1.0.0",
        offer(o, "1.0.0", "msp-operator:reader").spec.plans[0]
            .authorizations
            .clone(),
    )
}

/// The status the operator writes for `d` once `plan` is granted in
/// `namespaces` (its own pure code).
fn accepted_status(
    d: &Delegation,
    plan: msp_operator::domain::consent::AcceptedPlan,
    namespaces: &[String],
    desired: &msp_operator::delegation::build::Desired,
) -> DelegationStatus {
    use msp_operator::delegation::{apply, status, validate};
    let ns = d.namespace().unwrap_or_default();
    let decision = validate::Decision {
        // The customer's tenant: `bench-customer-<d>` for `bench-c<d>-0`.
        customer_tenant: format!(
            "bench-customer-{}",
            ns.trim_start_matches("bench-c").trim_end_matches("-0")
        ),
        managed_by_tenant: Some(plan.provider_tenant.clone()),
        latest_version: Some(plan.version.clone()),
        latest_authorizations: plan.authorizations.clone(),
        latest_eligible: plan.eligible_authorizations.clone(),
        offer_present: true,
        outcome: Ok(validate::Accepted {
            plan,
            new_snapshot: true,
            namespaces: namespaces
                .iter()
                .map(|n| (n.clone(), validate::NamespaceState::Grantable))
                .collect(),
            activations: Vec::new(),
            audited: Vec::new(),
        }),
    };
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    status::compute(d, &decision, desired, &apply::Applied::default(), now)
}

/// What one write of each kind costs, alone (one request at a time, so the
/// latency is the API server's work, not queueing): a RoleBinding create
/// against a Delegation status patch, and the variants that tell why the
/// status patch costs more (a patch is a read and a compare-and-swap where
/// a create is one write; a custom resource is decoded, pruned and
/// validated against its schema; the first status is the largest).
/// Client-side p50 and mean in ms, by kind. The objects are deleted after.
async fn write_costs(
    admin: &Client,
    client: &Client,
    sizes: Sizes,
    samples: usize,
) -> BTreeMap<String, serde_json::Value> {
    let ns = customer_ns(0, 0);
    let rb_api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let dlg_api: Api<Delegation> = Api::namespaced(client.clone(), &ns);
    let mut timings: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let mut timed = |kind: &str, started: Instant| {
        timings
            .entry(kind.to_string())
            .or_default()
            .push(started.elapsed());
    };
    let template = &baseline_bindings(&Sizes::new(1), "probe")[0];
    let namespaces: Vec<String> = (0..NAMESPACES_PER_DELEGATION)
        .map(|k| customer_ns(0, k))
        .collect();
    for i in 0..samples {
        let mut rb = template.clone();
        rb.metadata.name = Some(format!("probe-{i}"));
        let started = Instant::now();
        rb_api
            .create(&PostParams::default(), &rb)
            .await
            .expect("probe binding");
        timed("create rolebinding (5 subjects)", started);
        let started = Instant::now();
        rb_api
            .patch(
                &format!("probe-{i}"),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"probe": "patched"}}})),
            )
            .await
            .expect("probe binding patch");
        timed("merge patch rolebinding (one label)", started);

        let mut d = delegation(0, sizes.offers, "1.0.0");
        d.metadata.name = Some(format!("probe-{i}"));
        let started = Instant::now();
        let d = dlg_api
            .create(&PostParams::default(), &d)
            .await
            .expect("probe delegation");
        timed("create delegation", started);
        let plan = accepted_plan(0);
        let desired = msp_operator::delegation::build::build(&d, &plan, &namespaces);
        let full = accepted_status(&d, plan, &namespaces, &desired);
        let started = Instant::now();
        let patched = dlg_api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "status": msp_operator::delegation::status::merge_patch(None, &full)
                })),
            )
            .await
            .expect("probe status");
        timed("merge patch delegation status (first, full)", started);
        let mut next = full.clone();
        if let Some(ready) = next.conditions.iter_mut().find(|c| c.type_ == "Ready") {
            ready.message = format!("{} (probe)", ready.message);
        }
        let started = Instant::now();
        dlg_api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "status": msp_operator::delegation::status::merge_patch(patched.status.as_ref(), &next)
                })),
            )
            .await
            .expect("probe status change");
        timed("merge patch delegation status (one message)", started);
        let started = Instant::now();
        dlg_api
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"probe": "patched"}}})),
            )
            .await
            .expect("probe delegation patch");
        timed("merge patch delegation (one label)", started);
    }
    // Untimed cleanup, as the admin. The probes got the cleanup finalizer at
    // admission; no operator runs yet to release it, so it goes first (else
    // they would wait for the operator and cost it writes in the cold run).
    for i in 0..samples {
        let _ = Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .delete(&format!("probe-{i}"), &DeleteParams::default())
            .await;
        let delegations = Api::<Delegation>::namespaced(admin.clone(), &ns);
        let _ = delegations
            .patch(
                &format!("probe-{i}"),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await;
        let _ = delegations
            .delete(&format!("probe-{i}"), &DeleteParams::default())
            .await;
    }
    timings
        .into_iter()
        .map(|(kind, mut latencies)| {
            latencies.sort();
            let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
            (
                kind,
                serde_json::json!({
                    "samples": latencies.len(),
                    "p50_ms": ms(percentile(&latencies, 0.5)),
                    "mean_ms": ms(mean),
                }),
            )
        })
        .collect()
}

/// The `k`-th namespace of the customer whose first namespace is `first`.
fn customer_ns_of(first: &str, k: usize) -> String {
    format!("{}-{k}", first.trim_end_matches("-0"))
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
    wait_ready_labeled(client, expected, version, None).await
}

/// [`wait_all_ready`] for the delegations `labels` selects (all when `None`).
async fn wait_ready_labeled(
    client: &Client,
    expected: usize,
    version: &str,
    labels: Option<&str>,
) -> Duration {
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
    let config = match labels {
        Some(labels) => watcher::Config::default().labels(labels),
        None => watcher::Config::default(),
    };
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
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

/// The operator's reconciles so far, by controller (its own counter).
fn reconciles_by_controller(port: u16) -> BTreeMap<String, f64> {
    let text = http_get(port, "/metrics")
        .map(|(_, text)| text)
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("msp_operator_reconciles_total{controller=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .filter_map(|(controller, value)| Some((controller.to_string(), value.parse().ok()?)))
        .collect()
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

/// Runs every measure at one size on a fresh control plane; returns its
/// figures.
async fn run_size(
    sizes: Sizes,
    args: &Args,
    onboarding_namespaces: usize,
) -> anyhow::Result<serde_json::Value> {
    let bindings_total = sizes.bindings();
    let plane = LocalControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.admin_client().await?;
    let server_version = admin.apiserver_version().await?.git_version;
    for file in [
        "crds/managedserviceoffers.yaml",
        "crds/delegations.yaml",
        "crds/activations.yaml",
        "crds/clusterproviderpolicies.yaml",
        "crds/providerpolicies.yaml",
        "crds/offercatalogs.yaml",
        "crds/customerdelegations.yaml",
        "deploy/operator-clusterrole.yaml",
        "deploy/delegable-roles.yaml",
        "deploy/activation-roles.yaml",
        "deploy/admission-policies.yaml",
        "deploy/provider-policies.yaml",
        "deploy/views.yaml",
        "deploy/consent-recorder.yaml",
    ] {
        manifests::apply_yaml(&admin, &read(file), "msp-bench", "default").await?;
    }
    if args.metadata_policy {
        let file = "deploy/delegation-metadata.yaml";
        manifests::apply_yaml(&admin, &read(file), "msp-bench", "default").await?;
    }
    // Delegations are created only once the consent recorder is in force.
    manifests::wait_for_consent_recorder(&admin).await?;
    if args.metadata_policy {
        manifests::wait_for_delegation_metadata(&admin).await?;
    }
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
    // Baseline (a) writes what the operator writes, as the operator's
    // identity: the admission policies that guard the operator's objects
    // (its own permission checked on every labeled grant and record; the
    // bounds on what it may bind) then cost the loop what they cost the
    // operator.
    let as_operator =
        msp_testenv::kubeconfig::client_from_yaml(&std::fs::read_to_string(&operator_kubeconfig)?)
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

    let write_costs = write_costs(&admin, &baseline, sizes, 100).await;

    // 1. Baselines, each the best of two runs: they stand for the limit
    // (single runs vary by up to 25% here).
    // CPU seconds of the control plane and of the writing client (this
    // process for the loop, the operator for itself) per run: on 2 cores the
    // client's CPU is taken from the API server's, and a server that burns
    // more for the same writes is serving something else (watches, reads).
    let mut required_runs = Vec::new();
    let mut required_cpu = Vec::new();
    let mut required_requests = Vec::new();
    for round in 0..2 {
        let (elapsed, cpu, requests) =
            required_writes(&plane, &admin, &as_operator, sizes, round).await;
        required_runs.push(elapsed);
        required_cpu.push(cpu);
        required_requests.push(requests);
    }
    let best = usize::from(required_runs[1] < required_runs[0]);
    let required = required_runs[best];
    let required_cpu = required_cpu.swap_remove(best);
    let required_requests = required_requests.swap_remove(best);
    let set_a = baseline_bindings(&sizes, "a");
    let mut baseline_creates = Vec::new();
    for round in 0..2 {
        settle(&plane).await;
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
        "bench: required writes {:.2}s (runs {:.2}s, {:.2}s); raw grants {:.2}s (runs {:.2}s, {:.2}s); replace {:.2}s",
        required.as_secs_f64(),
        required_runs[0].as_secs_f64(),
        required_runs[1].as_secs_f64(),
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
    settle(&plane).await;
    let cold_requests = request_counts(&admin).await;
    let operator_since = k8s_openapi::jiff::Timestamp::now();
    let cold_cpu = CpuSample::take(&plane);
    let cold_profile = profile_apiserver(&plane, "cold-convergence", 10);
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
    let cold_cpu = cold_cpu.since(&plane);
    let cold_requests = requests_between(&cold_requests, &request_counts(&admin).await);
    if let Some(profile) = cold_profile {
        let _ = profile.join();
    }
    let operator_cold_cpu = operator.usage().1;
    let startup = startup_wait.await?;
    let granted = count_managed(&admin, "msp-operator:reader").await;
    assert_eq!(granted, bindings_total, "every RoleBinding exists");
    eprintln!("bench: cold convergence {:.2}s", cold.as_secs_f64());
    let cold_reconciles = reconciles_by_controller(operator.metrics_port);
    eprintln!("bench: reconciles in the cold run, by controller: {cold_reconciles:?}");
    eprintln!("bench: API server requests, baseline (a) / cold convergence (every client):");
    let kinds: BTreeSet<&String> = required_requests
        .keys()
        .chain(cold_requests.keys())
        .collect();
    for kind in kinds {
        let count = |m: &BTreeMap<String, f64>| m.get(kind).copied().unwrap_or(0.0);
        eprintln!(
            "bench:   {kind:<48} {:>7.0} {:>7.0}",
            count(&required_requests),
            count(&cold_requests)
        );
    }
    eprintln!(
        "bench: CPU seconds, required writes: control plane {:.1?}, loop {:.1}; cold convergence: control plane {:.1?}, operator {operator_cold_cpu:.1}",
        required_cpu.control_plane, required_cpu.client, cold_cpu.control_plane,
    );
    let cold_writes = plane.latencies_by_since(OPERATOR_USER, operator_since);

    // 3. Steady state: a quiet window, then a restart (full resync).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = plane.writes_by(OPERATOR_USER).len();
    tokio::time::sleep(Duration::from_secs(args.quiet_seconds)).await;
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
    // The second process's peak RSS phase by phase: which workload sets it.
    let mut peaks: BTreeMap<&str, f64> = BTreeMap::new();
    let mut phase_peak = |phase: &'static str| {
        peaks.insert(phase, operator.usage().0);
        operator.reset_peak()
    };
    let per_phase = phase_peak("resync");
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
    for _ in 0..args.drift_samples.min(managed.len()) {
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
    phase_peak("drift");
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
    phase_peak("update");
    assert_eq!(
        count_managed(&admin, "msp-operator:operator").await,
        bindings_total
    );
    eprintln!(
        "bench: plan update fan-out {:.2}s",
        fan_out_total.as_secs_f64()
    );

    // 6. Just-in-time access: eligible users activate at once.
    let jit_customers: Vec<String> = (0..sizes.delegations.min(args.activations))
        .map(|d| customer_ns(d, 0))
        .collect();
    let just_in_time = activations::measure(
        &admin,
        &plane,
        "bench-p0",
        "bench-provider-0",
        &jit_customers,
    )
    .await?;
    phase_peak("activations");

    // 8. Onboarding: one tenant-wide Delegation against one per namespace.
    let onboarding = if onboarding_namespaces > 0 {
        let figures = onboarding::measure(
            &admin,
            &plane,
            "bench-p0",
            "bench-provider-0",
            onboarding_namespaces,
        )
        .await?;
        phase_peak("onboarding");
        figures
    } else {
        serde_json::Value::Null
    };

    // Without per-phase peaks (the kernel refused to reset one) the
    // second process reports only its overall peak.
    let peaks = if per_phase { peaks } else { BTreeMap::new() };
    let (rss_second, cpu_second) = operator.stop();

    let write_latencies: BTreeMap<String, serde_json::Value> = cold_writes
        .iter()
        .map(|(kind, latencies)| {
            let mut sorted = latencies.clone();
            sorted.sort();
            (
                kind.clone(),
                serde_json::json!({
                    "count": sorted.len(),
                    "p50_ms": ms(percentile(&sorted, 0.5)),
                    "p99_ms": ms(percentile(&sorted, 0.99)),
                    "mean_ms": ms(sorted.iter().sum::<Duration>() / sorted.len().max(1) as u32),
                }),
            )
        })
        .collect();
    let cold_write_count: usize = cold_writes.values().map(Vec::len).sum();
    Ok(serde_json::json!({
        "kubernetes": server_version,
        "sizes": {
            "offers": sizes.offers,
            "delegations": sizes.delegations,
            "customer_namespaces": sizes.delegations * NAMESPACES_PER_DELEGATION,
            "rolebindings": bindings_total,
            "concurrency": concurrency(),
        },
        "baselines": {
            "required_writes_seconds": required.as_secs_f64(),
            "required_writes_seconds_runs": required_runs.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "raw_grants_seconds": baseline_create.as_secs_f64(),
            "raw_grants_seconds_runs": baseline_creates.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "raw_grants_replace_seconds": baseline_replace.as_secs_f64(),
            "required_writes_control_plane_cpu_seconds": required_cpu.control_plane,
            "required_writes_control_plane_cpu_seconds_total": required_cpu.control_plane_total(),
            "required_writes_client_cpu_seconds": required_cpu.client,
            "required_writes_api_server_requests": required_requests,
        },
        "cold_convergence": {
            "seconds": cold.as_secs_f64(),
            "operator_reconciles_by_controller": cold_reconciles,
            "operator_startup_until_ready_seconds": startup.as_secs_f64(),
            "ratio_to_required_writes": cold.as_secs_f64() / required.as_secs_f64(),
            "ratio_to_raw_grants": cold.as_secs_f64() / baseline_create.as_secs_f64(),
            "operator_writes": cold_write_count,
            "operator_writes_per_delegation": cold_write_count as f64 / sizes.delegations as f64,
            "write_latency_by_kind": write_latencies,
            "control_plane_cpu_seconds": cold_cpu.control_plane,
            "control_plane_cpu_seconds_total": cold_cpu.control_plane_total(),
            "operator_cpu_seconds": operator_cold_cpu,
            "api_server_requests": cold_requests,
        },
        "write_costs_alone": write_costs,
        "steady_state": {
            "quiet_window_seconds": args.quiet_seconds,
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
        "just_in_time": just_in_time,
        "onboarding": onboarding,
        "plan_update_fan_out": {
            "seconds_until_all_ready": fan_out.as_secs_f64(),
            "seconds_until_old_grants_pruned": fan_out_total.as_secs_f64(),
            "ratio_to_raw_grants_replace": fan_out_total.as_secs_f64() / baseline_replace.as_secs_f64(),
        },
        "operator": {
            "peak_rss_mib_first_process": rss_first,
            "cpu_seconds_first_process": cpu_first,
            "peak_rss_mib_second_process": peaks.values().copied().fold(rss_second, f64::max),
            "peak_rss_mib_second_process_by_phase": peaks,
            "cpu_seconds_second_process": cpu_second,
            "rss_bytes_per_binding": rss_first * 1024.0 * 1024.0 / bindings_total as f64,
        },
    }))
}

/// The API server's request counters (`apiserver_request_total`), summed
/// by `VERB resource[/subresource]`: what every client asked of it,
/// reads and watches included (the audit log holds writes only).
async fn request_counts(admin: &Client) -> BTreeMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = admin.request_text(request).await.unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut kind = format!("{} {}", label("verb"), label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            kind = format!("{kind}/{subresource}");
        }
        *counts.entry(kind).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// `after - before` of [`request_counts`], the kinds that grew only.
fn requests_between(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(kind, n)| (kind.clone(), n - before.get(kind).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect()
}

/// Waits (up to 60 s) until the control plane is quiet: less than a tenth
/// of a core busy over one second. Each timed phase starts from there, not
/// while the garbage collector and etcd still work off the one before (a
/// second run of the same baseline right after the first's cleanup took
/// 25-55% longer).
async fn settle(plane: &LocalControlPlane) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = CpuSample::take(plane);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = before.since(plane).control_plane_total();
        if busy < 0.1 || Instant::now() >= deadline {
            return;
        }
    }
}

/// With `MSP_BENCH_PPROF=<dir>`, a CPU profile of kube-apiserver over the
/// next `seconds`, written to `<dir>/<name>.pprof` (read it with `go tool
/// pprof -top <file>`); nothing otherwise. It runs beside the phase it
/// profiles, through kubectl's `get --raw` of the server's /debug/pprof.
fn profile_apiserver(
    plane: &LocalControlPlane,
    name: &str,
    seconds: u64,
) -> Option<std::thread::JoinHandle<()>> {
    let dir = std::path::PathBuf::from(std::env::var_os("MSP_BENCH_PPROF")?);
    let kubectl = plane.binaries().kubectl.clone();
    let kubeconfig = plane.admin_kubeconfig().to_path_buf();
    let out = dir.join(format!("{name}.pprof"));
    Some(std::thread::spawn(move || {
        let _ = std::fs::create_dir_all(&dir);
        let result = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "get",
                "--raw",
                &format!("/debug/pprof/profile?seconds={seconds}"),
            ])
            .output();
        match result {
            Ok(output) if output.status.success() => {
                let _ = std::fs::write(&out, output.stdout);
                eprintln!("bench: API server CPU profile in {}", out.display());
            }
            other => eprintln!("bench: no API server profile: {other:?}"),
        }
    }))
}

/// CPU seconds used by each control-plane process and by this process (the
/// baseline's client) since [`CpuSample::take`].
struct CpuSample {
    control_plane: BTreeMap<String, f64>,
    client: f64,
}

impl CpuSample {
    fn take(plane: &LocalControlPlane) -> Self {
        Self {
            control_plane: plane.cpu_seconds(),
            client: msp_testenv::process::cpu_seconds(std::process::id()),
        }
    }

    /// What was used between `self` and now.
    fn since(&self, plane: &LocalControlPlane) -> Self {
        let now = Self::take(plane);
        Self {
            control_plane: now
                .control_plane
                .iter()
                .map(|(name, cpu)| {
                    let before = self.control_plane.get(name).copied().unwrap_or(0.0);
                    (name.clone(), cpu - before)
                })
                .collect(),
            client: now.client - self.client,
        }
    }

    fn control_plane_total(&self) -> f64 {
        self.control_plane.values().sum()
    }
}

/// The exponent b of y = a·n^b fitted by least squares on log-log: 1 is
/// linear growth.
fn growth_exponent(points: &[(f64, f64)]) -> f64 {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(n, y)| *n > 0.0 && *y > 0.0)
        .map(|(n, y)| (n.ln(), y.ln()))
        .collect();
    if logs.len() < 2 {
        return f64::NAN;
    }
    let count = logs.len() as f64;
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / count;
    let covariance: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    covariance / variance
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(msp_testenv::binaries::repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let mut runs = Vec::new();
    for (i, &n) in args.sizes.iter().enumerate() {
        let sizes = Sizes::new(n);
        eprintln!(
            "bench: size {n}: {} offers, {} delegations, {} customer namespaces, {} RoleBindings",
            sizes.offers,
            sizes.delegations,
            sizes.delegations * NAMESPACES_PER_DELEGATION,
            sizes.bindings()
        );
        // The onboarding phase runs once, with the first size.
        let onboarding = if i == 0 { args.onboarding } else { 0 };
        runs.push(run_size(sizes, &args, onboarding).await?);
    }
    let f = |run: &serde_json::Value, path: &str| -> f64 {
        path.split('.')
            .fold(run, |v, key| &v[key])
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let curve = |path: &str| -> Vec<(f64, f64)> {
        runs.iter()
            .map(|r| (f(r, "sizes.delegations"), f(r, path)))
            .collect()
    };
    let time_exponent = growth_exponent(&curve("cold_convergence.seconds"));
    let memory_exponent = growth_exponent(&curve("operator.peak_rss_mib_first_process"));
    let kubernetes = runs
        .first()
        .and_then(|r| r["kubernetes"].as_str())
        .unwrap_or("")
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let commit = git_commit();
    let figures = serde_json::json!({
        "date": k8s_openapi::jiff::Timestamp::now().to_string(),
        "git_commit": commit,
        "machine": { "cores": cores, "kubernetes": kubernetes },
        "concurrency": concurrency(),
        "metadata_policy": args.metadata_policy,
        "workload": {
            "namespaces_per_delegation": NAMESPACES_PER_DELEGATION,
            "authorizations_per_plan": AUTHORIZATIONS_PER_PLAN,
            "roles_per_plan": 1,
        },
        "growth_exponent": { "cold_convergence_time": time_exponent, "peak_rss": memory_exponent },
        "runs": runs,
    });
    let out_dir = msp_testenv::binaries::repo_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!(
        "convergence-{}.json",
        k8s_openapi::jiff::Timestamp::now().as_second()
    ));
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)?;

    println!(
        "\nmsp-operator convergence benchmark ({cores} cores, Kubernetes {kubernetes}, commit {commit}, concurrency {}{})",
        concurrency(),
        if args.metadata_policy {
            ""
        } else {
            ", without the metadata policy"
        }
    );
    let mut header = format!("{:<44}", "delegations (2 namespaces, 5 groups, 1 role)");
    for run in &runs {
        header.push_str(&format!(" {:>10}", f(run, "sizes.delegations")));
    }
    println!("{header} {:>12}", "target");
    let row = |name: &str, path: &str, unit: &str, digits: usize, target: &str| {
        let mut line = format!("{name:<44}");
        for run in &runs {
            let value = f(run, path);
            line.push_str(&format!(" {:>10}", format!("{value:.digits$}{unit}")));
        }
        println!("{line} {target:>12}");
    };
    row("RoleBindings written", "sizes.rolebindings", "", 0, "");
    row(
        "baseline (a): required writes",
        "baselines.required_writes_seconds",
        "s",
        2,
        "",
    );
    row(
        "baseline (b): raw grant writes",
        "baselines.raw_grants_seconds",
        "s",
        2,
        "",
    );
    row("cold convergence", "cold_convergence.seconds", "s", 2, "");
    row(
        "  ratio to required writes",
        "cold_convergence.ratio_to_required_writes",
        "x",
        2,
        "<= 1.15x",
    );
    row(
        "  ratio to raw grant writes",
        "cold_convergence.ratio_to_raw_grants",
        "x",
        2,
        "<= 2.65x",
    );
    row(
        "  operator writes per delegation",
        "cold_convergence.operator_writes_per_delegation",
        "",
        2,
        "",
    );
    row(
        "  control-plane CPU, baseline (a)",
        "baselines.required_writes_control_plane_cpu_seconds_total",
        "s",
        1,
        "",
    );
    row(
        "  control-plane CPU, cold convergence",
        "cold_convergence.control_plane_cpu_seconds_total",
        "s",
        1,
        "",
    );
    row(
        "  client CPU, baseline (a) loop",
        "baselines.required_writes_client_cpu_seconds",
        "s",
        1,
        "",
    );
    row(
        "  client CPU, operator cold",
        "cold_convergence.operator_cpu_seconds",
        "s",
        1,
        "",
    );
    row(
        "plan update fan-out (old grants pruned)",
        "plan_update_fan_out.seconds_until_old_grants_pruned",
        "s",
        2,
        "",
    );
    row("drift repair p50", "drift_repair.p50_ms", "ms", 0, "");
    row(
        "drift repair p99",
        "drift_repair.p99_ms",
        "ms",
        0,
        "< 1000ms",
    );
    row(
        &format!("writes in a {}s quiet window", args.quiet_seconds),
        "steady_state.writes_in_quiet_window",
        "",
        0,
        "0",
    );
    row(
        "writes after a full resync (restart)",
        "steady_state.writes_after_full_resync",
        "",
        0,
        "0",
    );
    row("activations at once", "just_in_time.activations", "", 0, "");
    row(
        "activation to grant p50",
        "just_in_time.activation_to_grant_ms.p50",
        "ms",
        0,
        "",
    );
    row(
        "activation to grant p99",
        "just_in_time.activation_to_grant_ms.p99",
        "ms",
        0,
        "",
    );
    row(
        "revocation lateness p50",
        "just_in_time.revocation_lateness_ms.p50",
        "ms",
        0,
        "",
    );
    row(
        "revocation lateness p99",
        "just_in_time.revocation_lateness_ms.p99",
        "ms",
        0,
        "< 1000ms",
    );
    row("onboarding namespaces", "onboarding.namespaces", "", 0, "");
    row(
        "  one tenant-wide Delegation",
        "onboarding.tenant_wide_existing_seconds",
        "s",
        2,
        "",
    );
    row(
        "  one Delegation per namespace",
        "onboarding.one_delegation_each_seconds",
        "s",
        2,
        "",
    );
    row(
        "  ratio tenant-wide / one each",
        "onboarding.ratio_tenant_wide_to_one_each",
        "x",
        2,
        "<= 1x",
    );
    row(
        "  namespaces joining one by one",
        "onboarding.tenant_wide_joining_seconds",
        "s",
        2,
        "",
    );
    row(
        "  status writes while joining",
        "onboarding.joining_status_writes",
        "",
        0,
        "",
    );
    row(
        "peak RSS, cold run",
        "operator.peak_rss_mib_first_process",
        "MiB",
        1,
        "64/160MiB",
    );
    row(
        "peak RSS, second process (every phase)",
        "operator.peak_rss_mib_second_process",
        "MiB",
        1,
        "64/160MiB",
    );
    for phase in ["resync", "drift", "update", "activations", "onboarding"] {
        row(
            &format!("  while {phase}"),
            &format!("operator.peak_rss_mib_second_process_by_phase.{phase}"),
            "MiB",
            1,
            "",
        );
    }
    row(
        "RSS bytes per managed binding",
        "operator.rss_bytes_per_binding",
        "",
        0,
        "",
    );
    row(
        "CPU seconds, cold run + quiet",
        "operator.cpu_seconds_first_process",
        "s",
        1,
        "",
    );
    row(
        "CPU seconds, second process (every phase)",
        "operator.cpu_seconds_second_process",
        "s",
        1,
        "",
    );
    println!(
        "{:<44} {:>10} {:>12}",
        "growth exponent, cold convergence time",
        format!("{time_exponent:.2}"),
        "<= 1.1"
    );
    println!(
        "{:<44} {:>10} {:>12}",
        "growth exponent, peak RSS",
        format!("{memory_exponent:.2}"),
        "<= 1.1"
    );
    println!("\nAPI server latency per operator write during cold convergence (audit log):");
    for run in &runs {
        let n = f(run, "sizes.delegations");
        if let Some(kinds) = run["cold_convergence"]["write_latency_by_kind"].as_object() {
            for (kind, l) in kinds {
                println!(
                    "  n={n:<6} {kind:<40} {:>7} requests  p50 {:>6.1}ms  p99 {:>6.1}ms",
                    l["count"],
                    l["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    l["p99_ms"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    println!("\nOne write alone (100 sequential requests each, client-side p50 / mean):");
    for run in &runs {
        let n = f(run, "sizes.delegations");
        if let Some(kinds) = run["write_costs_alone"].as_object() {
            for (kind, l) in kinds {
                println!(
                    "  n={n:<6} {kind:<48} p50 {:>6.1}ms  mean {:>6.1}ms",
                    l["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    l["mean_ms"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    println!("figures: {}", out.display());
    Ok(())
}
