//! Faults: the operator killed at random moments, a leader killed among two
//! replicas, and the world changing while no operator runs. Each scenario
//! ends with the invariant checker (`support::invariant`) finding zero
//! differences between the grants in the cluster and what was consented to.
//!
//! `make test` runs a reduced size; `make chaos` sets MSP_CHAOS_SCALE=10
//! (200 Delegations, 50 kills) and prints the same report lines.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::operator::OperatorProcess;
use msp_testenv::{TestNamespace, unique_name};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::invariant;
use support::*;

const OPERATOR: &str = env!("CARGO_BIN_EXE_msp-operator");
const TENANT: &str = "msp-operator.io/tenant";

/// Scenarios start operators of their own: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// MSP_CHAOS_SCALE (default 1): multiplies Delegations and kills.
fn scale() -> usize {
    std::env::var("MSP_CHAOS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1)
}

/// A small deterministic random source (xorshift), seeded from the clock;
/// the seed is printed so a failing run can be replayed.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = std::env::var("MSP_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("faults: MSP_CHAOS_SEED={seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A provider with a reader offer for `groups`, and `n` customers of a
/// tenant each, with two namespaces each and a Delegation over both.
struct Fleet {
    provider: TestNamespace,
    provider_tenant: String,
    customers: Vec<(TestNamespace, TestNamespace)>,
}

impl Fleet {
    async fn new(name: &str, n: usize) -> Self {
        let env = install();
        let provider_tenant = unique_name(&format!("{name}-prov"));
        let provider = env
            .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
            .await;
        let mut customers = Vec::new();
        for i in 0..n {
            let tenant = unique_name(&format!("{name}-t{i}"));
            let a = env
                .namespace_with_labels(&format!("{name}-a{i}"), &[(TENANT, &tenant)])
                .await;
            let b = env
                .namespace_with_labels(&format!("{name}-b{i}"), &[(TENANT, &tenant)])
                .await;
            customers.push((a, b));
        }
        Self {
            provider,
            provider_tenant,
            customers,
        }
    }

    fn offer(&self, version: &str, groups: &[&str], role: &str) -> ManagedServiceOffer {
        self.offer_named("o", version, groups, role)
    }

    fn offer_named(
        &self,
        name: &str,
        version: &str,
        groups: &[&str],
        role: &str,
    ) -> ManagedServiceOffer {
        let authorizations = groups
            .iter()
            .map(|g| fixtures::auth(PrincipalKind::Group, g, role))
            .collect();
        fixtures::offer(
            &self.provider,
            name,
            &self.provider_tenant,
            vec![fixtures::plan("p", version, authorizations)],
        )
    }

    fn delegation(&self, i: usize, version: &str) -> Delegation {
        self.delegation_to(i, "o", version)
    }

    fn delegation_to(&self, i: usize, offer: &str, version: &str) -> Delegation {
        let (a, b) = &self.customers[i];
        fixtures::delegation(
            a,
            "d",
            (&self.provider, offer),
            "p",
            version,
            Some(vec![a, b]),
        )
    }

    /// The customers' own namespaces (where the Delegations live).
    fn scope(&self) -> BTreeSet<String> {
        self.customers.iter().map(|(a, _)| a.to_string()).collect()
    }
}

fn operator_kubeconfig(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.kubeconfig", std::process::id()));
    install()
        .write_user_kubeconfig(OPERATOR_USER, &[], &path)
        .expect("kubeconfig");
    path
}

fn start(kubeconfig: &Path, label: &str, extra: &[&str]) -> OperatorProcess {
    OperatorProcess::launch(Path::new(OPERATOR), kubeconfig, label, "")
        .args(["--resync-seconds", "3600"])
        .args(extra)
        .env("RUST_LOG", "warn,msp_operator=info")
        .spawn()
}

async fn kill(op: &mut OperatorProcess) {
    op.signal(libc::SIGKILL);
    op.wait_exit(Duration::from_secs(10)).await;
}

/// SIGKILLs `op` `times` times, each after a random 0.2 to 1.5 s, and
/// starts a new one each time.
async fn kill_at_random(
    op: &mut OperatorProcess,
    times: usize,
    random: &mut Random,
    kubeconfig: &Path,
) {
    for _ in 0..times {
        tokio::time::sleep(Duration::from_millis(200 + random.below(1300))).await;
        kill(op).await;
        *op = start(kubeconfig, "kill", &[]);
    }
}

async fn apply_all(admin: &Client, delegations: Vec<Delegation>) {
    futures::future::join_all(delegations.iter().map(|d| apply(admin, d))).await;
}

/// While Delegations converge, and again while a plan update fans out, the
/// operator is SIGKILLed at random moments and restarted: in the end exactly
/// the consented grants exist.
#[tokio::test]
async fn random_kills_lose_nothing_and_add_nothing() {
    let _serial = SERIAL.lock().await;
    let admin = install().client().await;
    let n = 20 * scale();
    let kills = 6 * scale();
    let mut random = Random::new();
    let fleet = Fleet::new("kill", n).await;
    let groups_v1 = ["kill-g1", "kill-g2", "kill-g3"];
    apply(
        &admin,
        &fleet.offer("1.0.0", &groups_v1, "msp-operator:reader"),
    )
    .await;
    let kubeconfig = operator_kubeconfig("kill");
    let mut op = start(&kubeconfig, "kill", &[]);
    apply_all(
        &admin,
        (0..n).map(|i| fleet.delegation(i, "1.0.0")).collect(),
    )
    .await;
    kill_at_random(&mut op, kills / 2, &mut random, &kubeconfig).await;
    // A plan update fans out: one group leaves, one joins.
    let groups_v2 = ["kill-g2", "kill-g3", "kill-g4"];
    apply(
        &admin,
        &fleet.offer("2.0.0", &groups_v2, "msp-operator:reader"),
    )
    .await;
    apply_all(
        &admin,
        (0..n).map(|i| fleet.delegation(i, "2.0.0")).collect(),
    )
    .await;
    kill_at_random(&mut op, kills - kills / 2, &mut random, &kubeconfig).await;
    // Each Delegation grants 3 groups in 2 namespaces.
    let took = invariant::converges(&admin, &fleet.scope(), n * 6, Duration::from_secs(180)).await;
    eprintln!(
        "faults: random kills: {n} delegations, {kills} SIGKILLs, differences 0, converged {:.1}s after the last kill",
        took.as_secs_f64()
    );
    op.assert_running();
}

/// Two replicas with leader election: the leader is killed, again and
/// again; the standby takes over and the grants end exactly as consented.
#[tokio::test]
async fn killing_the_leader_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let env = install();
    let admin = env.client().await;
    let n = 10 * scale();
    let kills = 3 * scale();
    let fleet = Fleet::new("leader", n).await;
    let lease = env.namespace("leader-lease").await;
    // The Lease permissions the chart grants in the operator's namespace.
    let lease_role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "lease", "namespace": *lease},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch"]}]
    }))
    .expect("role");
    apply(&admin, &lease_role).await;
    let lease_binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "lease", "namespace": *lease},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}]
    }))
    .expect("binding");
    apply(&admin, &lease_binding).await;
    apply(
        &admin,
        &fleet.offer("1.0.0", &["leader-g1"], "msp-operator:reader"),
    )
    .await;
    let kubeconfig = operator_kubeconfig("leader");
    let elect = |label: &str| {
        start(
            &kubeconfig,
            label,
            &[
                "--leader-elect",
                "--lease-namespace",
                &lease,
                "--identity",
                label,
                "--lease-duration-seconds",
                "4",
                "--lease-grace-seconds",
                "1",
            ],
        )
    };
    let mut replicas = [elect("leader-a"), elect("leader-b")];
    apply_all(
        &admin,
        (0..n).map(|i| fleet.delegation(i, "1.0.0")).collect(),
    )
    .await;
    let mut spawned = 2;
    for _ in 0..kills {
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some(i) = replicas.iter().position(|r| r.leads()) {
                break i;
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        kill(&mut replicas[leader]).await;
        spawned += 1;
        replicas[leader] = elect(&format!("leader-{spawned}"));
    }
    let took = invariant::converges(&admin, &fleet.scope(), n * 2, Duration::from_secs(120)).await;
    eprintln!(
        "faults: leader kills: {n} delegations, 2 replicas, {kills} leaders killed, differences 0, converged {:.1}s after the last kill",
        took.as_secs_f64()
    );
}

/// While no operator runs: Delegations are deleted and created, a namespace
/// moves to another tenant, a role stops being delegable, a version is
/// raised. The operator that starts afterwards converges to zero
/// differences, and revokes everything that must go before it grants.
#[tokio::test]
async fn changes_while_down_are_revoked_first() {
    let _serial = SERIAL.lock().await;
    let env = install();
    let admin = env.client().await;
    let n = 8;
    let fleet = Fleet::new("down", n).await;
    let role = unique_name("down-reader");
    let reader = fixtures::delegable_cluster_role(
        &role,
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }],
    );
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .patch(
            &role,
            &PatchParams::apply("msp-tests").force(),
            &Patch::Apply(&reader),
        )
        .await
        .expect("role");
    apply(
        &admin,
        &fleet.offer("1.0.0", &["down-g1", "down-g2"], "msp-operator:reader"),
    )
    .await;
    apply(
        &admin,
        &fleet.offer_named("o2", "1.0.0", &["down-g9"], &role),
    )
    .await;
    let mut first = vec![
        fleet.delegation_to(4, "o2", "1.0.0"),
        fleet.delegation_to(5, "o2", "1.0.0"),
    ];
    first.extend([0, 1, 2, 3].map(|i| fleet.delegation(i, "1.0.0")));
    apply_all(&admin, first).await;
    let kubeconfig = operator_kubeconfig("down");
    let mut op = start(&kubeconfig, "down", &[]);
    // 4 Delegations of o grant 2 groups in 2 namespaces, 2 of o2 one group.
    invariant::converges(
        &admin,
        &fleet.scope(),
        4 * 4 + 2 * 2,
        Duration::from_secs(60),
    )
    .await;
    kill(&mut op).await;

    // The world moves on without an operator: two Delegations deleted, a
    // namespace moved to another tenant, a version raised and two new
    // Delegations of it, and the role of offer o2 no longer delegable.
    for i in [0, 1] {
        Api::<Delegation>::namespaced(admin.clone(), &fleet.customers[i].0)
            .delete("d", &DeleteParams::default())
            .await
            .expect("delete");
    }
    let moved = fleet.customers[2].1.to_string();
    Api::<Namespace>::all(admin.clone())
        .patch(
            &moved,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {TENANT: unique_name("elsewhere")}}}),
            ),
        )
        .await
        .expect("move a namespace");
    apply(
        &admin,
        &fleet.offer("2.0.0", &["down-g2", "down-g3"], "msp-operator:reader"),
    )
    .await;
    apply_all(
        &admin,
        vec![
            fleet.delegation(3, "2.0.0"),
            fleet.delegation(6, "2.0.0"),
            fleet.delegation(7, "2.0.0"),
        ],
    )
    .await;
    let mut plain = reader.clone();
    plain.metadata.labels = None;
    let before = env
        .local()
        .map(|plane| plane.writes_by(OPERATOR_USER).len());

    roles
        .patch(
            &role,
            &PatchParams::apply("msp-tests").force(),
            &Patch::Apply(&plain),
        )
        .await
        .expect("undelegable");

    // The operator returns.
    let _op = start(&kubeconfig, "down", &[]);
    // Left: delegation 2 refused (a namespace of another tenant), 4 and 5
    // revoked (role), 0 and 1 deleted; 3, 6 and 7 grant 2 groups in 2
    // namespaces at 2.0.0.
    let took = invariant::converges(&admin, &fleet.scope(), 3 * 4, Duration::from_secs(60)).await;
    eprintln!(
        "faults: changes while down: 2 deleted, 1 namespace moved, 1 version raised and 2 new at it, 1 role made undelegable; differences 0 after {:.1}s",
        took.as_secs_f64()
    );
    if let (Some(plane), Some(before)) = (env.local(), before) {
        let writes: Vec<String> = plane.writes_by(OPERATOR_USER).split_off(before);
        let first_create = writes
            .iter()
            .position(|w| w.starts_with("create rolebindings"));
        let last_delete = writes
            .iter()
            .rposition(|w| w.starts_with("delete rolebindings"));
        assert!(last_delete.is_some(), "grants were revoked: {writes:#?}");
        if let (Some(create), Some(delete)) = (first_create, last_delete) {
            assert!(
                delete < create,
                "a grant was created before every revocation: {writes:#?}"
            );
        }
    }
}
