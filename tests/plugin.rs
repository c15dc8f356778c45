//! The `kubectl msp` plugin end to end, against the real API server and the
//! operator, run as the built binary with a kubeconfig of the affected user
//! (a client certificate), as a customer, a provider, an eligible engineer
//! and an approver would run it: what each sees, what each may do, what
//! each is told when they may not, and the exit codes.

mod support;

use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestEnv, unique_name};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const TENANT: &str = "msp-operator.io/tenant";

/// What one run of the plugin did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    fn failed(&self, code: i32, text: &str) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    fn says(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }

    fn never_says(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text) && !self.stderr.contains(text),
            "output mentions {text:?}: {self:#?}"
        );
        self
    }
}

/// Runs `kubectl-msp` with `kubeconfig` (no terminal on stdin).
async fn msp(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-msp"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run kubectl-msp");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the plugin until `done` holds for its run (the operator writes what
/// it reads a moment after the change), then returns that run.
async fn eventually(kubeconfig: &Path, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let run = msp(kubeconfig, args).await;
        if done(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "never as expected: {run:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A kubeconfig file for `user` in `groups` (at most one: a certificate
/// carries one), whose context's namespace is `namespace` when given.
fn kubeconfig(env: &TestEnv, user: &str, groups: &[&str], namespace: Option<&str>) -> PathBuf {
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.kubeconfig", unique_name(user)));
    env.write_user_kubeconfig(user, groups, &path)
        .expect("write kubeconfig");
    if let Some(ns) = namespace {
        let text = std::fs::read_to_string(&path).expect("read kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig yaml");
        config["contexts"][0]["context"]["namespace"] = ns.into();
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
    }
    path
}

/// Makes `user` the admin of `ns` (the built-in role, into which the chart
/// aggregates Delegation writes and the catalog), and waits until RBAC says
/// so.
async fn customer(env: &TestEnv, admin: &Client, ns: &str, user: &str) {
    apply(
        admin,
        &fixtures::role_binding(
            ns,
            &format!("{user}-admin"),
            ("ClusterRole", "admin"),
            ("User", user),
        ),
    )
    .await;
    let client = env.user_client(user, &[]).await;
    wait_allowed(&client, ns, "create", "offercatalogs").await;
    wait_allowed(&client, ns, "create", "delegations").await;
}

/// The kubeconfig of a new user named after `prefix` who may `view`
/// namespace `ns`, once RBAC lets them list `resource` there.
async fn viewer(env: &TestEnv, admin: &Client, ns: &str, prefix: &str, resource: &str) -> PathBuf {
    let user = unique_name(prefix);
    apply(
        admin,
        &fixtures::role_binding(
            ns,
            &format!("{user}-view"),
            ("ClusterRole", "view"),
            ("User", &user),
        ),
    )
    .await;
    wait_allowed(&env.user_client(&user, &[]).await, ns, "list", resource).await;
    kubeconfig(env, &user, &[], None)
}

/// Waits until `client` may `verb` `resource` (msp-operator.io) in `ns`.
async fn wait_allowed(client: &Client, ns: &str, verb: &str, resource: &str) {
    msp_testenv::wait_until(
        TIMEOUT,
        &format!("{verb} {resource} in {ns}"),
        || async move {
            if can(client, ns, verb, "msp-operator.io", resource).await {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn private(mut plan: Plan, audience: &[&str]) -> Plan {
    plan.visibility = Visibility::Private;
    plan.audience = Some(audience.iter().map(|t| TenantId(t.to_string())).collect());
    plan
}

/// Offer `ops` of provider namespace `p`: Public `basic` (jane reads) at
/// `basic_version`, Private `vip` for `customer`, Private `secret` for
/// `other` only.
fn ops_offer(
    p: &str,
    tenant: &str,
    customer: &str,
    other: &str,
    basic: Vec<Authorization>,
    basic_version: &str,
) -> ManagedServiceOffer {
    let reader = |user: &str| {
        vec![fixtures::auth(
            PrincipalKind::User,
            user,
            fixtures::READER_ROLE,
        )]
    };
    fixtures::offer(
        p,
        "ops",
        tenant,
        vec![
            fixtures::plan("basic", basic_version, basic),
            private(fixtures::plan("vip", "1.0.0", reader("vince")), &[customer]),
            private(fixtures::plan("secret", "1.0.0", reader("sid")), &[other]),
        ],
    )
}

#[tokio::test]
async fn a_customer_browses_accepts_and_follows_a_plan_and_the_provider_sees_it() {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name("plug-prov");
    let customer_tenant = unique_name("plug-cust");
    let other_tenant = unique_name("plug-other");
    let p = env
        .namespace_with_labels("plug-p", &[(TENANT, &provider_tenant)])
        .await;
    let c = env
        .namespace_with_labels("plug-c", &[(TENANT, &customer_tenant)])
        .await;
    // The provider's offer, whose basic plan grants `user` the reader role.
    let publish = |user: &str, version: &str| {
        let reader = vec![fixtures::auth(
            PrincipalKind::User,
            user,
            fixtures::READER_ROLE,
        )];
        ops_offer(
            &p,
            &provider_tenant,
            &customer_tenant,
            &other_tenant,
            reader,
            version,
        )
    };
    apply(&admin, &publish("jane", "1.0.0")).await;
    let cara = unique_name("cara");
    customer(env, &admin, &c, &cara).await;
    // Her kubeconfig's context is her namespace: no -n needed.
    let cara_config = kubeconfig(env, &cara, &[], Some(&c));

    // The catalog: Public plans and the Private plan naming her tenant,
    // never another tenant's plan, never an audience.
    let offers = msp(&cara_config, &["offers"]).await;
    offers
        .ok()
        .says("OFFER")
        .says("GRANTS")
        .says(&format!("{}/ops", p.name()))
        .says("basic")
        .says("vip");
    offers
        .says("Private")
        .says("1 permanent")
        .never_says("secret")
        .never_says(&other_tenant);
    // Other tests' providers publish Public plans too: look at this one's.
    let json = msp(
        &cara_config,
        &["offers", "-o", "json", "--provider", &provider_tenant],
    )
    .await;
    json.ok()
        .never_says(&other_tenant)
        .never_says("audience")
        .never_says(&customer_tenant);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("offers json");
    let plans: Vec<&str> = rows
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["plan"].as_str().expect("plan"))
        .collect();
    assert_eq!(plans, ["basic", "vip"], "{rows}");
    assert_eq!(rows[0]["provider"], provider_tenant.as_str());
    assert_eq!(rows[0]["permanentGrants"], 1);
    let nobody = msp(&cara_config, &["offers", "--provider", "nobody"]).await;
    nobody.ok().never_says("basic");
    assert!(
        nobody.stderr.contains("Provider nobody offers nothing"),
        "{nobody:#?}"
    );

    // Wrong names and versions: exit 1, saying what exists.
    msp(&cara_config, &["accept", "nope", "basic", "--yes"])
        .await
        .failed(1, "offer nope is not in the catalog")
        .failed(1, &format!("{}/ops", p.name()));
    msp(&cara_config, &["accept", "ops", "gold", "--yes"])
        .await
        .failed(
            1,
            "has no plan gold that you may accept; its plans for you: basic, vip",
        );
    msp(
        &cara_config,
        &["accept", "ops", "basic", "--version", "0.9.0", "--yes"],
    )
    .await
    .failed(
        1,
        "version 0.9.0 of plan basic is not published; the latest is 1.0.0",
    );
    // No terminal, no --yes: nothing is created.
    msp(&cara_config, &["accept", "ops", "basic"])
        .await
        .failed(1, "pass --yes");
    assert!(
        Api::<Delegation>::namespaced(admin.clone(), &c)
            .get_opt("ops-basic")
            .await
            .expect("get")
            .is_none()
    );

    // Accepted: what it grants is shown, then the outcome.
    let accepted = msp(
        &cara_config,
        &[
            "accept",
            &format!("{}/ops", p.name()),
            "basic",
            "--version",
            "1.0.0",
            "--yes",
        ],
    )
    .await;
    accepted
        .ok()
        .says("User jane")
        .says("msp-operator:reader")
        .says("Delegation ops-basic is Ready");
    let d = wait_condition(&admin, &c, "ops-basic", "Ready", "True", None).await;
    assert_eq!(
        d.annotations().get("msp-operator.io/consented-by"),
        Some(&cara)
    );

    // Who manages her namespace, and the Delegation in words.
    msp(&cara_config, &["providers"])
        .await
        .ok()
        .says("PRINCIPAL")
        .says("User/jane")
        .says("msp-operator:reader")
        .says(&provider_tenant)
        .says(&format!("{}/ops-basic", c.name()));
    msp(&cara_config, &["status", "ops-basic"])
        .await
        .ok()
        .says("Ready:        yes")
        .says(&format!("of provider {provider_tenant}"));
    msp(&cara_config, &["diff", "ops-basic"])
        .await
        .ok()
        .says("is up to date");
    let json = msp(&cara_config, &["providers", "-o", "json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&json.ok().stdout).expect("providers json");
    assert_eq!(rows[0]["principal"], "User/jane", "{rows}");
    assert_eq!(rows[0]["delegation"], format!("{}/ops-basic", c.name()));
    let yaml = msp(&cara_config, &["status", "ops-basic", "-o", "yaml"]).await;
    let object: Delegation = serde_yaml::from_str(&yaml.ok().stdout).expect("a Delegation");
    assert_eq!(object.spec.plan, "basic");

    // The provider publishes 2.0.0: the diff shows it, nothing changes yet.
    apply(&admin, &publish("joe", "2.0.0")).await;
    wait_condition(&admin, &c, "ops-basic", "UpdateAvailable", "True", None).await;
    msp(&cara_config, &["diff", "ops-basic"])
        .await
        .ok()
        .says("version 2.0.0 is published")
        .says("+ User/joe")
        .says("- User/jane")
        .says(&format!("kubectl -n {} patch delegation ops-basic --type merge -p '{{\"spec\":{{\"planVersion\":\"2.0.0\"}}}}'", c.name()));

    // The provider's view, with read access to its own namespace only.
    let pat_config = viewer(env, &admin, &p, "pat", "customerdelegations").await;
    let customers = eventually(&pat_config, &["customers", "-n", &p], |r| {
        r.code == 0 && r.stdout.contains(&customer_tenant) && r.stdout.contains("True")
    })
    .await;
    customers
        .says("CUSTOMER")
        .says("ops")
        .says("basic")
        .says(&format!("{}/ops-basic", c.name()));
    msp(&pat_config, &["customers", "-n", &c]).await.failed(
        1,
        &format!(
            "you may not list customerdelegations in namespace {}",
            c.name()
        ),
    );
}

#[tokio::test]
async fn a_namespace_viewer_is_told_who_must_create_the_catalog() {
    let env = env();
    let admin = env.client().await;
    let c = env
        .namespace_with_labels("plug-view", &[(TENANT, &unique_name("plug-v"))])
        .await;
    let config = viewer(env, &admin, &c, "vic", "offercatalogs").await;
    msp(&config, &["offers", "-n", &c])
        .await
        .failed(
            1,
            &format!("you may not create offercatalogs in namespace {}", c.name()),
        )
        .failed(1, &format!("run `kubectl msp offers -n {}` once", c.name()));
    // A Delegation that does not exist: said so, with where to look.
    msp(&config, &["status", "nothing", "-n", &c])
        .await
        .failed(
            1,
            &format!("Delegation nothing not found in namespace {}", c.name()),
        )
        .failed(1, &format!("`kubectl msp providers -n {}` lists", c.name()));
    // Activations are not hers to change.
    msp(&config, &["approve", "nothing", "-n", &c])
        .await
        .failed(
            1,
            &format!("Activation nothing not found in namespace {}", c.name()),
        );
}

/// Just-in-time access through the plugin: an on-call engineer asks, may not
/// approve their own request, a lead approves, and the customer sees it.
#[tokio::test]
async fn an_engineer_activates_and_a_lead_approves_with_the_plugin() {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name("plug-jit-prov");
    let p = env
        .namespace_with_labels("plug-jit-p", &[(TENANT, &provider_tenant)])
        .await;
    let c = env
        .namespace_with_labels("plug-jit-c", &[(TENANT, &unique_name("plug-jit-cust"))])
        .await;
    let (oncall, leads) = (unique_name("oncall"), unique_name("leads"));
    let mut plan = fixtures::plan(
        "jit",
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::Group,
            &oncall,
            fixtures::READER_ROLE,
        )],
    );
    plan.eligible_authorizations = Some(vec![fixtures::eligible(
        fixtures::person(PersonKind::Group, &oncall),
        "msp-operator:operator",
        "1h",
        vec![fixtures::person(PersonKind::Group, &leads)],
    )]);
    apply(
        &admin,
        &fixtures::offer(&p, "support", &provider_tenant, vec![plan]),
    )
    .await;
    let d = fixtures::delegation(&c, "support", (&p, "support"), "jit", "1.0.0", None);
    apply(
        &admin,
        &fixtures::acknowledging(d, &["msp-operator:operator"]),
    )
    .await;
    wait_condition(&admin, &c, "support", "Ready", "True", None).await;
    let (alice, bob) = (unique_name("alice"), unique_name("bob"));
    wait_allowed(
        &env.user_client(&alice, &[&oncall]).await,
        &c,
        "create",
        "activations",
    )
    .await;
    wait_allowed(
        &env.user_client(&bob, &[&leads]).await,
        &c,
        "patch",
        "activations",
    )
    .await;
    let alice_config = kubeconfig(env, &alice, &[&oncall], Some(&c));
    let bob_config = kubeconfig(env, &bob, &[&leads], Some(&c));

    let group = format!("Group/{oncall}");
    let asked = msp(
        &alice_config,
        &[
            "activate",
            "support",
            "--role",
            "msp-operator:operator",
            "--duration",
            "30m",
            "--principal",
            &group,
        ],
    )
    .await;
    asked
        .ok()
        .says("Pending (AwaitingApproval)")
        .says("kubectl msp approve");
    let name = asked
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("activation.msp-operator.io/")?
                .strip_suffix(" created")
        })
        .expect("the created name")
        .to_string();
    let a = Api::<Activation>::namespaced(admin.clone(), &c)
        .get(&name)
        .await
        .expect("activation");
    assert_eq!(a.spec.requester.as_deref(), Some(alice.as_str()));

    // Nobody decides on their own request; a lead approves as the group.
    msp(&alice_config, &["approve", &name])
        .await
        .failed(1, "someone else must decide");
    let leads_principal = format!("Group/{leads}");
    msp(
        &bob_config,
        &["approve", &name, "--principal", &leads_principal],
    )
    .await
    .ok()
    .says(&format!(
        "Your approval of Activation {name} (as {leads_principal}) is recorded"
    ))
    .says(&format!(
        "Activation {name} is Active: msp-operator:operator is granted to {alice}"
    ));
    msp(
        &bob_config,
        &["deny", &name, "--principal", &leads_principal],
    )
    .await
    .failed(1, "you already decided");

    // The customer sees it in the Delegation's status.
    msp(env.kubeconfig_path(), &["status", "support", "-n", &c])
        .await
        .ok()
        .says(&name)
        .says(&alice)
        .says("Active, expires in");

    // A second lead's decision is appended to the list; a denial ends it.
    let ben_config = kubeconfig(env, &unique_name("ben"), &[&leads], Some(&c));
    msp(
        &ben_config,
        &["deny", &name, "--principal", &leads_principal],
    )
    .await
    .ok()
    .says(&format!(
        "Your denial of Activation {name} (as {leads_principal}) is recorded"
    ));
    let a = Api::<Activation>::namespaced(admin.clone(), &c)
        .get(&name)
        .await
        .expect("activation");
    let decisions: Vec<ApprovalDecision> = a
        .spec
        .approvals
        .iter()
        .flatten()
        .map(|a| a.decision)
        .collect();
    assert_eq!(
        decisions,
        [ApprovalDecision::Approve, ApprovalDecision::Deny]
    );
}

#[tokio::test]
async fn help_reads_well_and_bad_usage_exits_2() {
    let nowhere = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such.kubeconfig");
    let top = msp(&nowhere, &["--help"]).await;
    top.ok().says("Usage: kubectl msp").says("Examples:");
    for command in [
        "offers",
        "accept",
        "diff",
        "providers",
        "customers",
        "status",
        "activate",
        "approve",
        "deny",
    ] {
        msp(&nowhere, &[command, "--help"])
            .await
            .ok()
            .says(&format!("Usage: kubectl msp {command}"))
            .says("Example:");
    }
    msp(&nowhere, &["accept", "only-an-offer"])
        .await
        .failed(2, "PLAN");
    msp(&nowhere, &["approve", "x", "--principal", "Robot/r2"])
        .await
        .failed(2, "not User or Group");
    // The context is the kubeconfig's: a wrong one is named.
    let config = kubeconfig(TestEnv::shared(), "nobody", &[], None);
    msp(&config, &["offers", "--context", "nope"])
        .await
        .failed(1, "cannot use --context nope");
    msp(&nowhere, &["offers"])
        .await
        .failed(1, "cannot read --kubeconfig");
}
