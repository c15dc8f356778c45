//! Just-in-time access (eligible authorizations and Activations) against a
//! real API server, each step taken by the affected user with their own
//! client certificate: who may ask, who may approve, what is granted to
//! whom, and that it ends at its deadline or with its source.

mod support;

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_for};
use std::time::{Duration, Instant};
use support::*;

const TENANT: &str = "msp-operator.io/tenant";
/// Grants `delete pods`, which the permanent reader role does not.
const JIT_ROLE: &str = "msp-operator:operator";

/// A provider namespace, two customer namespaces of one tenant, and the
/// people: `alice` and `dave` in the eligible group, `bob` in the approver
/// group, `mallory` in neither, `carol` a customer admin of the first
/// namespace.
struct World {
    provider: TestNamespace,
    c1: TestNamespace,
    c2: TestNamespace,
    provider_tenant: String,
    oncall: String,
    leads: String,
    alice: String,
    bob: String,
}

async fn world(name: &str) -> World {
    let env = env();
    let provider_tenant = unique_name(&format!("{name}-prov"));
    let customer_tenant = unique_name(&format!("{name}-cust"));
    World {
        provider: env
            .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
            .await,
        c1: env
            .namespace_with_labels(&format!("{name}-c"), &[(TENANT, &customer_tenant)])
            .await,
        c2: env
            .namespace_with_labels(&format!("{name}-c2"), &[(TENANT, &customer_tenant)])
            .await,
        provider_tenant,
        oncall: unique_name("oncall"),
        leads: unique_name("leads"),
        alice: unique_name("alice"),
        bob: unique_name("bob"),
    }
}

fn group(name: &str) -> Person {
    fixtures::person(PersonKind::Group, name)
}

fn user(name: &str) -> Person {
    fixtures::person(PersonKind::User, name)
}

/// An offer whose plan `jit` lets group `oncall` read permanently and
/// activate [`JIT_ROLE`] for up to an hour, approved by `approvers`.
fn offer(w: &World, version: &str, approvers: Vec<Person>, eligible: bool) -> ManagedServiceOffer {
    let mut plan = fixtures::plan(
        "jit",
        version,
        vec![fixtures::auth(
            PrincipalKind::Group,
            &w.oncall,
            "msp-operator:reader",
        )],
    );
    plan.eligible_authorizations = eligible.then(|| {
        vec![EligibleAuthorization {
            principal_display_name: Some("On-call engineers".into()),
            require_justification: true,
            ..fixtures::eligible(group(&w.oncall), JIT_ROLE, "1h", approvers)
        }]
    });
    fixtures::offer(&w.provider, "support", &w.provider_tenant, vec![plan])
}

fn delegation(w: &World, version: &str, terms: Option<ActivationTerms>) -> Delegation {
    let mut d = fixtures::delegation(
        &w.c1,
        "support",
        (&w.provider, "support"),
        "jit",
        version,
        Some(vec![&w.c1, &w.c2]),
    );
    d.spec.activation_terms = terms;
    // The eligible role can run workloads: accepted knowingly, as for a
    // permanent one.
    fixtures::acknowledging(d, &[JIT_ROLE])
}

fn activation(w: &World, name: &str, duration: &str, justification: Option<&str>) -> Activation {
    let mut a = fixtures::activation(&w.c1, name, "support", group(&w.oncall), JIT_ROLE, duration);
    a.spec.justification = justification.map(String::from);
    a
}

async fn can_delete_pods(client: &Client, namespace: &str) -> bool {
    can(client, namespace, "delete", "", "pods").await
}

/// Waits until activation `name` in `namespace` is in `phase` (and, when
/// given, for `reason`); fails at once, with the reason and message, when it
/// ends otherwise (an ended activation never changes again).
async fn wait_phase(
    client: &Client,
    namespace: &str,
    name: &str,
    phase: ActivationPhase,
    reason: Option<&str>,
) -> Activation {
    let api: Api<Activation> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + TIMEOUT;
    let mut last = String::from("not found");
    loop {
        if let Ok(Some(a)) = api.get_opt(name).await {
            let status = a.status.clone().unwrap_or_default();
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            let (why, message) = ready
                .map(|c| (c.reason.clone(), c.message.clone()))
                .unwrap_or_default();
            if status.phase == Some(phase) && reason.is_none_or(|r| r == why) {
                return a;
            }
            last = format!("{:?} {why}: {message}", status.phase);
            assert!(
                !status.phase.is_some_and(ActivationPhase::is_final),
                "activation {namespace}/{name} ended {last}, not {phase:?} {reason:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "activation {namespace}/{name} never became {phase:?} {reason:?}; last {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_message(a: &Activation) -> String {
    a.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Adds `approval` to activation `name` as `client` (read, append, replace;
/// again on a conflict with the operator's status writes).
async fn decide(
    client: &Client,
    namespace: &str,
    name: &str,
    approval: Approval,
) -> Result<Activation, kube::Error> {
    let api: Api<Activation> = Api::namespaced(client.clone(), namespace);
    loop {
        let mut current = api.get(name).await?;
        current
            .spec
            .approvals
            .get_or_insert_with(Vec::new)
            .push(approval.clone());
        match api.replace(name, &PostParams::default(), &current).await {
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            other => return other,
        }
    }
}

fn refused_with(result: Result<Activation, kube::Error>, code: u16, text: &str) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, code, "{}", s.message);
            assert!(s.message.contains(text), "{:?} lacks {text:?}", s.message);
        }
        other => panic!("expected refusal ({text}), got {other:?}"),
    }
}

/// Waits until `client`'s right to delete pods in `namespace` is
/// `expected`; returns when it became so.
async fn wait_delete_pods(client: &Client, namespace: &str, expected: bool) -> Instant {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if can_delete_pods(client, namespace).await == expected {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "delete pods in {namespace} never became {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `client` may create Activations in `namespace` (RBAC takes
/// a moment to see a new binding).
async fn wait_may_request(client: &Client, namespace: &str) {
    wait_can(
        client,
        namespace,
        ("create", "msp-operator.io", "activations"),
        true,
    )
    .await;
}

/// Publishes the offer and has the customer's admin accept it.
/// Waits until the operator has seen `version` of the offer (the
/// Delegation's `status.latestVersion`).
async fn wait_latest(client: &Client, w: &World, version: &str) {
    let api: Api<Delegation> = Api::namespaced(client.clone(), &w.c1);
    wait_for(
        &api,
        "support",
        TIMEOUT,
        &format!("latest {version}"),
        |d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.latest_version.as_deref() == Some(version))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn accepted(w: &World, approvers: Vec<Person>, terms: Option<ActivationTerms>) {
    let admin = env().client().await;
    apply(&admin, &offer(w, "1.0.0", approvers, true)).await;
    apply(&admin, &delegation(w, "1.0.0", terms)).await;
    wait_condition(&admin, &w.c1, "support", "Ready", "True", Some("Granted")).await;
}

#[tokio::test]
async fn an_eligible_member_activates_for_a_limited_time_and_only_they_are_granted() {
    let env = env();
    let admin = env.client().await;
    let w = world("jit").await;
    let alice = env.user_client(&w.alice, &[&w.oncall]).await;
    let dave = env.user_client(&unique_name("dave"), &[&w.oncall]).await;
    let mallory = env.user_client(&unique_name("mallory"), &[]).await;
    let carol_name = unique_name("carol");
    let carol = env.user_client(&carol_name, &[]).await;
    accepted(&w, Vec::new(), None).await;
    // Carol administers Activations in the customer namespace (as the
    // built-in admin and edit roles do through aggregation).
    apply(
        &admin,
        &fixtures::role_binding(
            &w.c1,
            "carol-activations",
            ("ClusterRole", "msp-operator:activations-edit"),
            ("User", &carol_name),
        ),
    )
    .await;

    // Eligible is not granted: the group reads, nobody may delete pods.
    wait_access(&alice, &w.c1, true).await;
    wait_may_request(&alice, &w.c1).await;
    for ns in [&w.c1, &w.c2] {
        assert!(!can_delete_pods(&alice, ns).await);
        assert!(!can_delete_pods(&dave, ns).await);
    }

    // Only eligible principals may ask, and only as who they are.
    let api = |c: &Client| Api::<Activation>::namespaced(c.clone(), &w.c1);
    let not_member = api(&mallory)
        .create(
            &PostParams::default(),
            &activation(&w, "m", "1m", Some("x")),
        )
        .await;
    refused_with(not_member, 403, "forbidden");
    let not_my_group = api(&carol)
        .create(
            &PostParams::default(),
            &activation(&w, "c", "1m", Some("x")),
        )
        .await;
    refused_with(not_my_group, 403, "are not Group");
    let mut as_alice = activation(&w, "c2", "1m", Some("x"));
    as_alice.spec.principal = user(&w.alice);
    refused_with(
        api(&carol).create(&PostParams::default(), &as_alice).await,
        403,
        "are not User",
    );
    let mut pre_approved = activation(&w, "c3", "1m", Some("x"));
    pre_approved.spec.principal = user(&carol_name);
    pre_approved.spec.approvals = Some(vec![Approval {
        approver: carol_name.clone(),
        principal: user(&carol_name),
        decision: ApprovalDecision::Approve,
    }]);
    refused_with(
        api(&carol)
            .create(&PostParams::default(), &pre_approved)
            .await,
        422,
        "must be empty",
    );
    // Bad input is refused at apply, naming the field.
    refused_with(
        api(&alice)
            .create(
                &PostParams::default(),
                &activation(&w, "long", "9h", Some("x")),
            )
            .await,
        422,
        "spec.duration must be between 10s and 8h",
    );
    // An Activation naming no Delegation grants nothing and says so.
    let mut unknown = activation(&w, "unknown", "1m", Some("x"));
    unknown.spec.delegation = "no-such-delegation".into();
    api(&alice)
        .create(&PostParams::default(), &unknown)
        .await
        .expect("create");
    let denied = wait_phase(
        &admin,
        &w.c1,
        "unknown",
        ActivationPhase::Denied,
        Some("DelegationNotAccepted"),
    )
    .await;
    assert!(
        ready_message(&denied).contains("spec.delegation"),
        "{}",
        ready_message(&denied)
    );

    // Alice asks for 20 seconds; she alone is granted, in both namespaces.
    let mut asked = activation(&w, "incident", "20s", Some("incident 4711"));
    asked.spec.requester = Some("someone-else".into());
    let created = api(&alice)
        .create(&PostParams::default(), &asked)
        .await
        .expect("alice activates");
    assert_eq!(
        created.spec.requester.as_deref(),
        Some(w.alice.as_str()),
        "the requester is who the API server authenticated, whatever was sent"
    );
    let active = wait_phase(
        &admin,
        &w.c1,
        "incident",
        ActivationPhase::Active,
        Some("Activated"),
    )
    .await;
    let status = active.status.clone().expect("status");
    let expires_at = status.expires_at.clone().expect("expiresAt").0;
    assert_eq!(status.namespaces, {
        let mut ns = vec![w.c1.to_string(), w.c2.to_string()];
        ns.sort();
        ns
    });
    for ns in [&w.c1, &w.c2] {
        wait_delete_pods(&alice, ns, true).await;
        assert!(
            !can_delete_pods(&dave, ns).await,
            "dave is in the group but did not ask"
        );
    }
    let bindings: Vec<_> = managed_bindings(&admin, &w.c1, "support")
        .await
        .into_iter()
        .filter(|b| {
            b.labels()
                .get("msp-operator.io/activation")
                .map(String::as_str)
                == Some("incident")
        })
        .collect();
    assert_eq!(bindings.len(), 2, "one binding per delegated namespace");
    for b in &bindings {
        assert_eq!(b.role_ref.name, JIT_ROLE);
        let subjects = b.subjects.clone().unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (subjects[0].kind.as_str(), subjects[0].name.as_str()),
            ("User", w.alice.as_str())
        );
    }
    // The requester cannot stretch it: the spec is immutable, the status is
    // the operator's.
    let mut longer = api(&alice).get("incident").await.expect("get");
    longer.spec.duration = "1h".into();
    refused_with(
        api(&alice)
            .replace("incident", &PostParams::default(), &longer)
            .await,
        403,
        "forbidden",
    );

    // At the deadline the grant is gone.
    let lost = wait_delete_pods(&alice, &w.c1, false).await;
    let lateness =
        Timestamp::now().duration_since(expires_at).as_secs_f64() - lost.elapsed().as_secs_f64();
    eprintln!("revocation lateness after expiresAt: {:.3}s", lateness);
    // Revoked from REVOKE_AHEAD before the deadline on: never after it by
    // more than a reconcile, never earlier than that.
    let ahead = msp_operator::activation::REVOKE_AHEAD.as_secs_f64();
    assert!(
        lateness > -ahead - 0.5,
        "access ended {lateness:.3}s before expiresAt"
    );
    assert!(
        lateness < 5.0,
        "access outlived expiresAt by {lateness:.3}s"
    );
    assert!(!can_delete_pods(&alice, &w.c2).await);
    assert!(
        can_list_pods(&alice, &w.c1).await,
        "the permanent reader stays"
    );
    wait_phase(
        &admin,
        &w.c1,
        "incident",
        ActivationPhase::Expired,
        Some("Expired"),
    )
    .await;
    // Granted at first sight: one Activated Event says what was requested.
    for reason in ["Activated", "Expired"] {
        wait_event(&admin, &w.c1, "incident", reason).await;
        wait_event(&admin, &w.c1, "support", reason).await;
    }
}

#[tokio::test]
async fn approvals_are_real_not_self_service_and_a_denial_is_final() {
    let env = env();
    let admin = env.client().await;
    let w = world("appr").await;
    // Alice is eligible and also in the approver group (two groups: she
    // authenticates by impersonation, see TestEnv::user_client).
    let alice = env.user_client(&w.alice, &[&w.oncall, &w.leads]).await;
    let bob = env.user_client(&w.bob, &[&w.leads]).await;
    let terms = ActivationTerms {
        max_duration: Some("30m".into()),
        approvers: None,
    };
    accepted(&w, vec![group(&w.leads)], Some(terms)).await;
    wait_may_request(&alice, &w.c1).await;
    let api = |c: &Client| Api::<Activation>::namespaced(c.clone(), &w.c1);

    // Requests outside the terms are denied, naming the field and the fix.
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "silent", "10m", None),
        )
        .await
        .expect("create");
    let silent = wait_phase(
        &admin,
        &w.c1,
        "silent",
        ActivationPhase::Denied,
        Some("JustificationRequired"),
    )
    .await;
    assert!(
        ready_message(&silent).contains("spec.justification"),
        "{}",
        ready_message(&silent)
    );
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "long", "45m", Some("x")),
        )
        .await
        .expect("create");
    let long = wait_phase(
        &admin,
        &w.c1,
        "long",
        ActivationPhase::Denied,
        Some("DurationTooLong"),
    )
    .await;
    assert!(
        ready_message(&long).contains("30m"),
        "the customer's shorter maximum: {}",
        ready_message(&long)
    );

    // Pending grants nothing.
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "fix", "10m", Some("disk full")),
        )
        .await
        .expect("create");
    wait_phase(
        &admin,
        &w.c1,
        "fix",
        ActivationPhase::Pending,
        Some("AwaitingApproval"),
    )
    .await;
    assert!(!can_delete_pods(&alice, &w.c1).await);
    wait_event(&admin, &w.c1, "fix", "Requested").await;

    // Self-approval is refused, also as a member of the approver group.
    let own = decide(
        &alice,
        &w.c1,
        "fix",
        Approval {
            approver: w.alice.clone(),
            principal: group(&w.leads),
            decision: ApprovalDecision::Approve,
        },
    )
    .await;
    refused_with(own, 403, "never approve or deny their own");
    // An approval names who gives it, as who they are.
    let forged = decide(
        &bob,
        &w.c1,
        "fix",
        Approval {
            approver: "erin".into(),
            principal: group(&w.leads),
            decision: ApprovalDecision::Approve,
        },
    )
    .await;
    refused_with(forged, 403, "your own user name");
    let other_group = decide(
        &bob,
        &w.c1,
        "fix",
        Approval {
            approver: w.bob.clone(),
            principal: group(&w.oncall),
            decision: ApprovalDecision::Approve,
        },
    )
    .await;
    refused_with(other_group, 403, "a group you belong to");
    assert!(
        !can_delete_pods(&alice, &w.c1).await,
        "nothing granted by refused approvals"
    );

    // Bob approves: granted to Alice.
    decide(
        &bob,
        &w.c1,
        "fix",
        Approval {
            approver: w.bob.clone(),
            principal: group(&w.leads),
            decision: ApprovalDecision::Approve,
        },
    )
    .await
    .expect("bob approves");
    let active = wait_phase(&admin, &w.c1, "fix", ActivationPhase::Active, None).await;
    assert_eq!(
        active.status.expect("status").approved_by,
        vec![w.bob.clone()]
    );
    wait_delete_pods(&alice, &w.c1, true).await;
    wait_event(&admin, &w.c1, "fix", "Approved").await;
    // An approval, once given, cannot be taken out of the record.
    let mut edited = api(&bob).get("fix").await.expect("get");
    edited.spec.approvals = Some(Vec::new());
    refused_with(
        api(&bob)
            .replace("fix", &PostParams::default(), &edited)
            .await,
        422,
        "can only be added to",
    );

    // A denial is final.
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "again", "10m", Some("more")),
        )
        .await
        .expect("create");
    decide(
        &bob,
        &w.c1,
        "again",
        Approval {
            approver: w.bob.clone(),
            principal: group(&w.leads),
            decision: ApprovalDecision::Deny,
        },
    )
    .await
    .expect("bob denies");
    wait_phase(
        &admin,
        &w.c1,
        "again",
        ActivationPhase::Denied,
        Some("DeniedByApprover"),
    )
    .await;
    let approve_after = decide(
        &bob,
        &w.c1,
        "again",
        Approval {
            approver: w.bob.clone(),
            principal: user(&w.bob),
            decision: ApprovalDecision::Approve,
        },
    )
    .await
    .expect("the record takes it");
    assert!(approve_after.spec.approvals.is_some_and(|a| a.len() == 2));
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_phase(
        &admin,
        &w.c1,
        "again",
        ActivationPhase::Denied,
        Some("DeniedByApprover"),
    )
    .await;
    wait_event(&admin, &w.c1, "again", "Denied").await;
}

#[tokio::test]
async fn access_ends_with_its_activation_its_delegation_or_its_eligibility() {
    let env = env();
    let admin = env.client().await;
    let w = world("jitend").await;
    let alice = env.user_client(&w.alice, &[&w.oncall]).await;
    accepted(&w, Vec::new(), None).await;
    wait_may_request(&alice, &w.c1).await;
    let api = |c: &Client| Api::<Activation>::namespaced(c.clone(), &w.c1);

    // Deleting the activation (the customer may) revokes at once.
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "one", "1h", Some("x")),
        )
        .await
        .expect("create");
    wait_phase(&admin, &w.c1, "one", ActivationPhase::Active, None).await;
    wait_delete_pods(&alice, &w.c2, true).await;
    api(&admin)
        .delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    wait_delete_pods(&alice, &w.c2, false).await;

    // A plan version without the eligible authorization, once accepted,
    // revokes the active grant.
    api(&alice)
        .create(
            &PostParams::default(),
            &activation(&w, "two", "1h", Some("x")),
        )
        .await
        .expect("create");
    wait_phase(&admin, &w.c1, "two", ActivationPhase::Active, None).await;
    wait_delete_pods(&alice, &w.c1, true).await;
    apply(&admin, &offer(&w, "2.0.0", Vec::new(), false)).await;
    wait_latest(&admin, &w, "2.0.0").await;
    assert!(
        can_delete_pods(&alice, &w.c1).await,
        "a published version changes nothing"
    );
    apply(&admin, &delegation(&w, "2.0.0", None)).await;
    wait_phase(
        &admin,
        &w.c1,
        "two",
        ActivationPhase::Revoked,
        Some("ConsentChanged"),
    )
    .await;
    wait_delete_pods(&alice, &w.c1, false).await;
    wait_event(&admin, &w.c1, "two", "Revoked").await;
    assert!(
        can_list_pods(&alice, &w.c1).await,
        "the permanent reader stays"
    );
    // Without eligible authorizations, nobody may ask any more.
    msp_testenv::wait_until(TIMEOUT, "requester right gone", || {
        let api = api(&alice);
        let a = activation(&w, "three", "10m", Some("x"));
        async move {
            match api.create(&PostParams::default(), &a).await {
                Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("refused");

    // Back to 3.0.0 with the eligible authorization; deleting the
    // Delegation revokes the active grant with everything else.
    apply(&admin, &offer(&w, "3.0.0", Vec::new(), true)).await;
    apply(&admin, &delegation(&w, "3.0.0", None)).await;
    wait_condition(&admin, &w.c1, "support", "Ready", "True", Some("Granted")).await;
    let created = msp_testenv::wait_until(TIMEOUT, "requester right back", || {
        let api = api(&alice);
        let a = activation(&w, "four", "1h", Some("x"));
        async move {
            api.create(&PostParams::default(), &a)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    created.expect("created");
    wait_phase(&admin, &w.c1, "four", ActivationPhase::Active, None).await;
    wait_delete_pods(&alice, &w.c2, true).await;
    Api::<Delegation>::namespaced(admin.clone(), &w.c1)
        .delete("support", &DeleteParams::default())
        .await
        .expect("delete delegation");
    wait_delete_pods(&alice, &w.c2, false).await;
    wait_phase(
        &admin,
        &w.c1,
        "four",
        ActivationPhase::Revoked,
        Some("DelegationNotAccepted"),
    )
    .await;
}

#[tokio::test]
async fn a_named_user_activates_and_a_role_that_stops_being_delegable_revokes() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
    use kube::api::{Patch, PatchParams};
    let env = env();
    let admin = env.client().await;
    let w = world("jitrole").await;
    let alice = env.user_client(&w.alice, &[]).await;
    let role = unique_name("jit-pod-deleter");
    let deleter = fixtures::delegable_cluster_role(
        &role,
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into(), "delete".into()],
            ..Default::default()
        }],
    );
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let params = PatchParams::apply("msp-tests").force();
    roles
        .patch(&role, &params, &Patch::Apply(&deleter))
        .await
        .expect("role");
    // Alice herself (kind User) is eligible.
    let mut plan = fixtures::plan(
        "jit",
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::User,
            &w.alice,
            "msp-operator:reader",
        )],
    );
    plan.eligible_authorizations = Some(vec![fixtures::eligible(
        user(&w.alice),
        &role,
        "1h",
        Vec::new(),
    )]);
    apply(
        &admin,
        &fixtures::offer(&w.provider, "support", &w.provider_tenant, vec![plan]),
    )
    .await;
    apply(
        &admin,
        &fixtures::delegation(
            &w.c1,
            "support",
            (&w.provider, "support"),
            "jit",
            "1.0.0",
            None,
        ),
    )
    .await;
    wait_condition(&admin, &w.c1, "support", "Ready", "True", Some("Granted")).await;
    wait_may_request(&alice, &w.c1).await;
    let mut mine = fixtures::activation(&w.c1, "mine", "support", user(&w.alice), &role, "1h");
    mine.spec.justification = Some("x".into());
    Api::<Activation>::namespaced(alice.clone(), &w.c1)
        .create(&PostParams::default(), &mine)
        .await
        .expect("alice activates as herself");
    wait_phase(&admin, &w.c1, "mine", ActivationPhase::Active, None).await;
    wait_delete_pods(&alice, &w.c1, true).await;

    // The platform takes the role out of the catalog: the consent can no
    // longer be granted, and the active grant goes with it.
    let mut plain = deleter.clone();
    plain.metadata.labels = None;
    roles
        .patch(&role, &params, &Patch::Apply(&plain))
        .await
        .expect("undelegable");
    wait_delete_pods(&alice, &w.c1, false).await;
    wait_phase(
        &admin,
        &w.c1,
        "mine",
        ActivationPhase::Revoked,
        Some("DelegationNotAccepted"),
    )
    .await;
}

/// An activation beginning grants something new: the Delegation reports no
/// drift for it. Its grant deleted behind the operator's back is drift:
/// restored, and reported once (`DriftCorrected`, "restored 1 grant
/// object(s)"), never also for the grant's beginning.
#[tokio::test]
async fn an_activation_beginning_is_no_drift_and_its_deleted_grant_is() {
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let env = env();
    let admin = env.client().await;
    let w = world("jitdrift").await;
    let alice = env.user_client(&w.alice, &[&w.oncall]).await;
    accepted(&w, Vec::new(), None).await;
    wait_may_request(&alice, &w.c1).await;
    Api::<Activation>::namespaced(alice.clone(), &w.c1)
        .create(
            &PostParams::default(),
            &activation(&w, "drift", "30m", Some("INC-7")),
        )
        .await
        .expect("alice activates");
    wait_phase(&admin, &w.c1, "drift", ActivationPhase::Active, None).await;
    for ns in [&w.c1, &w.c2] {
        wait_delete_pods(&alice, ns, true).await;
    }

    // Deleted in one namespace: restored.
    let name = msp_operator::domain::names::activation_binding_name(&w.c1, "support", "drift");
    Api::<RoleBinding>::namespaced(admin.clone(), &w.c1)
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the activation's grant");
    wait_event(&admin, &w.c1, "support", "DriftCorrected").await;
    wait_delete_pods(&alice, &w.c1, true).await;

    // One correction of one object: the beginning was not counted (it would
    // show as a second occurrence of the same Event, or a second Event).
    let events = Api::<Event>::namespaced(admin.clone(), &w.c1)
        .list(&Default::default())
        .await
        .expect("events");
    let corrections: Vec<(String, i32)> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("support"))
        .filter(|e| e.reason.as_deref() == Some("DriftCorrected"))
        .map(|e| {
            (
                e.note.clone().unwrap_or_default(),
                e.series.as_ref().map_or(1, |s| s.count),
            )
        })
        .collect();
    assert_eq!(
        corrections,
        vec![(
            "restored 1 grant object(s) that were edited or deleted".to_string(),
            1
        )],
        "one correction, for the deleted grant alone"
    );
}
