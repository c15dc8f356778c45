//! Delegation behaviour against a real API server, proven as the affected
//! users: the provider principal's access before, during and after a
//! delegation; refusals and their reasons; version consent; drift repair and
//! pruning; the provider's removal right; and the confused-deputy policy.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use msp_operator::api::*;
use msp_testenv::{TestNamespace, wait_until};
use std::collections::BTreeMap;
use support::*;

const TENANT: &str = "msp-operator.io/tenant";

/// A provider namespace and two customer namespaces of one tenant, plus a
/// namespace of another tenant.
struct World {
    provider: TestNamespace,
    customer: TestNamespace,
    customer_b: TestNamespace,
    stranger: TestNamespace,
    provider_tenant: String,
}

async fn world(name: &str) -> World {
    let env = env();
    let provider_tenant = msp_testenv::unique_name(&format!("{name}-prov"));
    let customer_tenant = msp_testenv::unique_name(&format!("{name}-cust"));
    let stranger_tenant = msp_testenv::unique_name(&format!("{name}-other"));
    World {
        provider: env
            .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
            .await,
        customer: env
            .namespace_with_labels(&format!("{name}-c"), &[(TENANT, &customer_tenant)])
            .await,
        customer_b: env
            .namespace_with_labels(&format!("{name}-cb"), &[(TENANT, &customer_tenant)])
            .await,
        stranger: env
            .namespace_with_labels(&format!("{name}-x"), &[(TENANT, &stranger_tenant)])
            .await,
        provider_tenant,
    }
}

#[tokio::test]
async fn grants_exactly_the_accepted_plan_and_removes_it_completely() {
    let env = env();
    let admin = env.client().await;
    let w = world("grant").await;
    let alice_name = msp_testenv::unique_name("alice");
    let alice = env.user_client(&alice_name, &[]).await;

    apply(
        &admin,
        &offer(
            &w.provider,
            "monitoring",
            &w.provider_tenant,
            vec![plan(
                "basic",
                "1.0.0",
                vec![auth(
                    PrincipalKind::User,
                    &alice_name,
                    "msp-operator:reader",
                )],
            )],
        ),
    )
    .await;
    for ns in [&w.customer, &w.customer_b, &w.stranger] {
        assert!(!can_list_pods(&alice, ns).await, "no access before consent");
    }

    apply(
        &admin,
        &delegation(
            &w.customer,
            "monitoring",
            (&w.provider, "monitoring"),
            "basic",
            "1.0.0",
            Some(vec![&w.customer, &w.customer_b]),
        ),
    )
    .await;
    let ready = wait_condition(
        &admin,
        &w.customer,
        "monitoring",
        "Ready",
        "True",
        Some("Granted"),
    )
    .await;
    let status = ready.status.clone().expect("status");
    assert_eq!(status.applied_version.as_deref(), Some("1.0.0"));
    assert_eq!(status.latest_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        status.managed_by_tenant.as_deref(),
        Some(w.provider_tenant.as_str())
    );
    assert_eq!(status.namespaces.len(), 2);
    assert!(status.namespaces.iter().all(|n| n.ready && n.bindings == 1));
    assert_eq!(
        condition(&ready, "Accepted").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        condition(&ready, "UpdateAvailable").map(|c| c.0),
        Some("False".into())
    );
    assert!(condition(&ready, "Stalled").is_none() && condition(&ready, "Reconciling").is_none());
    let labels = ready.labels();
    assert_eq!(
        labels.get("msp-operator.io/offer").map(String::as_str),
        Some("monitoring")
    );
    assert_eq!(
        labels.get("msp-operator.io/plan").map(String::as_str),
        Some("basic")
    );
    assert_eq!(
        labels
            .get("msp-operator.io/offer-namespace")
            .map(String::as_str),
        Some(w.provider.name())
    );

    wait_event(&admin, &w.customer, "monitoring", "Registered").await;
    // The provider sees its customers on the offer.
    let published = msp_testenv::wait_for(
        &Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider),
        "monitoring",
        TIMEOUT,
        "plan adoption in the offer status",
        |o| {
            o.status.as_ref().is_some_and(|s| {
                s.plans
                    .iter()
                    .any(|p| p.name == "basic" && p.delegations == 1 && p.ready_delegations == 1)
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        published
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.as_str()),
        Some("Published")
    );

    // As the provider principal: reads in both delegated namespaces, nothing
    // elsewhere, and no writes (the reader role).
    wait_access(&alice, &w.customer, true).await;
    wait_access(&alice, &w.customer_b, true).await;
    assert!(!can_list_pods(&alice, &w.stranger).await);
    assert!(!can_list_pods(&alice, &w.provider).await);
    let denied = Api::<ConfigMap>::namespaced(alice.clone(), &w.customer)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("nope".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(denied, Err(kube::Error::Api(s)) if s.code == 403));
    let bindings = managed_bindings(&admin, &w.customer, "monitoring").await;
    assert_eq!(bindings.len(), 2);
    for binding in &bindings {
        assert_eq!(binding.role_ref.name, "msp-operator:reader");
        let subjects = binding.subjects.clone().expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].name, alice_name);
        assert_eq!(
            binding
                .labels()
                .get("msp-operator.io/offer")
                .map(String::as_str),
            Some("monitoring")
        );
    }

    // Removal: every grant goes, in every namespace.
    Api::<Delegation>::namespaced(admin.clone(), &w.customer)
        .delete("monitoring", &DeleteParams::default())
        .await
        .expect("delete delegation");
    wait_access(&alice, &w.customer, false).await;
    wait_access(&alice, &w.customer_b, false).await;
    wait_gone(
        &Api::<Delegation>::namespaced(admin.clone(), &w.customer),
        "monitoring",
    )
    .await;
    assert!(
        managed_bindings(&admin, &w.customer, "monitoring")
            .await
            .is_empty()
    );
}

fn delegable_role(name: &str, rules: Vec<PolicyRule>, labeled: bool) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labeled.then(|| {
                BTreeMap::from([("msp-operator.io/delegable".to_string(), "true".to_string())])
            }),
            ..Default::default()
        },
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn read_pods() -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["pods".into()]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn refusals_grant_nothing_and_name_the_field_and_fix() {
    let env = env();
    let admin = env.client().await;
    let w = world("refuse").await;
    let mut private = plan(
        "private",
        "1.0.0",
        vec![auth(PrincipalKind::User, "p-user", "msp-operator:reader")],
    );
    private.visibility = Visibility::Private;
    private.audience = Some(vec![TenantId("someone-else".into())]);
    apply(
        &admin,
        &offer(
            &w.provider,
            "svc",
            &w.provider_tenant,
            vec![
                plan(
                    "open",
                    "1.0.0",
                    vec![auth(PrincipalKind::User, "p-user", "msp-operator:reader")],
                ),
                plan(
                    "admin",
                    "1.0.0",
                    vec![auth(PrincipalKind::User, "p-user", "admin")],
                ),
                plan(
                    "god",
                    "1.0.0",
                    vec![auth(PrincipalKind::User, "p-user", "cluster-admin")],
                ),
                private,
            ],
        ),
    )
    .await;
    let cases: Vec<(&str, Delegation, &str, &str)> = vec![
        (
            "no-offer",
            delegation(
                &w.customer,
                "no-offer",
                (&w.provider, "missing"),
                "open",
                "1.0.0",
                None,
            ),
            "OfferNotFound",
            "spec.offerRef",
        ),
        (
            "no-plan",
            delegation(
                &w.customer,
                "no-plan",
                (&w.provider, "svc"),
                "gold",
                "1.0.0",
                None,
            ),
            "PlanNotFound",
            "spec.plan",
        ),
        (
            "bad-version",
            delegation(
                &w.customer,
                "bad-version",
                (&w.provider, "svc"),
                "open",
                "9.9.9",
                None,
            ),
            "VersionNotPublished",
            "set spec.planVersion to 1.0.0",
        ),
        (
            "not-audience",
            delegation(
                &w.customer,
                "not-audience",
                (&w.provider, "svc"),
                "private",
                "1.0.0",
                None,
            ),
            "NotInAudience",
            "not in its audience",
        ),
        (
            "foreign",
            delegation(
                &w.customer,
                "foreign",
                (&w.provider, "svc"),
                "open",
                "1.0.0",
                Some(vec![&w.customer, &w.stranger]),
            ),
            "ForeignNamespace",
            "remove it from spec.namespaces",
        ),
        (
            "unlabeled-role",
            delegation(
                &w.customer,
                "unlabeled-role",
                (&w.provider, "svc"),
                "admin",
                "1.0.0",
                None,
            ),
            "RoleNotDelegable",
            "msp-operator.io/delegable",
        ),
        (
            "cluster-admin",
            delegation(
                &w.customer,
                "cluster-admin",
                (&w.provider, "svc"),
                "god",
                "1.0.0",
                None,
            ),
            "RoleNotDelegable",
            "cluster-admin is never delegable",
        ),
        (
            "same-tenant",
            delegation(
                &w.provider,
                "same-tenant",
                (&w.provider, "svc"),
                "open",
                "1.0.0",
                None,
            ),
            "SameTenant",
            "cannot delegate to itself",
        ),
    ];
    for (_, d, _, _) in &cases {
        apply(&admin, d).await;
    }
    let p_user = env.user_client("p-user", &[]).await;
    for (name, d, reason, hint) in &cases {
        let ns = d.namespace().expect("ns");
        let got = wait_condition(&admin, &ns, name, "Ready", "False", Some(reason)).await;
        let (status, _, message) = condition(&got, "Accepted").expect("Accepted");
        assert_eq!(status, "False", "{name}");
        assert!(
            message.contains(hint),
            "{name}: {message:?} should mention {hint:?}"
        );
        assert_eq!(
            condition(&got, "Stalled").map(|c| c.0),
            Some("True".into()),
            "{name}"
        );
        assert!(
            managed_bindings(&admin, &ns, name).await.is_empty(),
            "{name} granted something"
        );
    }
    for ns in [&w.customer, &w.provider, &w.stranger] {
        assert!(
            !can_list_pods(&p_user, ns).await,
            "nothing may be granted in {}",
            ns.name()
        );
    }
}

#[tokio::test]
async fn grants_follow_the_accepted_version_until_the_customer_raises_it() {
    let env = env();
    let admin = env.client().await;
    let w = world("versions").await;
    let user = msp_testenv::unique_name("vuser");
    let provider_client = env.user_client(&user, &[]).await;
    let v1 = offer(
        &w.provider,
        "ops",
        &w.provider_tenant,
        vec![plan(
            "std",
            "1.0.0",
            vec![auth(PrincipalKind::User, &user, "msp-operator:reader")],
        )],
    );
    apply(&admin, &v1).await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "ops",
            (&w.provider, "ops"),
            "std",
            "1.0.0",
            None,
        ),
    )
    .await;
    wait_condition(&admin, &w.customer, "ops", "Ready", "True", None).await;

    // The provider publishes 2.0.0 with a stronger role: nothing changes for
    // the customer until it consents.
    let v2 = offer(
        &w.provider,
        "ops",
        &w.provider_tenant,
        vec![plan(
            "std",
            "2.0.0",
            vec![auth(PrincipalKind::User, &user, "msp-operator:operator")],
        )],
    );
    apply(&admin, &v2).await;
    let d = wait_condition(
        &admin,
        &w.customer,
        "ops",
        "UpdateAvailable",
        "True",
        Some("NewerVersionPublished"),
    )
    .await;
    assert!(
        condition(&d, "UpdateAvailable")
            .expect("cond")
            .2
            .contains("2.0.0")
    );
    assert_eq!(
        d.status
            .as_ref()
            .and_then(|s| s.applied_version.clone())
            .as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        d.status
            .as_ref()
            .and_then(|s| s.latest_version.clone())
            .as_deref(),
        Some("2.0.0")
    );
    // Informed consent: the status says what accepting 2.0.0 would change.
    assert_eq!(
        d.status.as_ref().and_then(|s| s.pending_update.clone()),
        Some(PendingUpdate {
            version: "2.0.0".into(),
            added: vec![auth(PrincipalKind::User, &user, "msp-operator:operator")],
            removed: vec![auth(PrincipalKind::User, &user, "msp-operator:reader")],
            ..PendingUpdate::default()
        })
    );
    assert_eq!(condition(&d, "Ready").map(|c| c.0), Some("True".into()));
    let bindings = managed_bindings(&admin, &w.customer, "ops").await;
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].role_ref.name, "msp-operator:reader");
    let configmaps: Api<ConfigMap> = Api::namespaced(provider_client.clone(), &w.customer);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("by-provider".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        matches!(configmaps.create(&PostParams::default(), &cm).await, Err(kube::Error::Api(s)) if s.code == 403)
    );

    // The customer accepts 2.0.0, knowingly: its role can run workloads.
    apply(
        &admin,
        &msp_operator::fixtures::acknowledging(
            delegation(
                &w.customer,
                "ops",
                (&w.provider, "ops"),
                "std",
                "2.0.0",
                None,
            ),
            &["msp-operator:operator"],
        ),
    )
    .await;
    let d = wait_condition(
        &admin,
        &w.customer,
        "ops",
        "UpdateAvailable",
        "False",
        Some("UpToDate"),
    )
    .await;
    assert_eq!(
        d.status
            .as_ref()
            .and_then(|s| s.applied_version.clone())
            .as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        d.status.as_ref().and_then(|s| s.pending_update.clone()),
        None,
        "nothing is pending once accepted"
    );
    wait_until(
        TIMEOUT,
        "the provider to create a configmap under 2.0.0",
        || {
            let configmaps = configmaps.clone();
            let cm = cm.clone();
            async move {
                configmaps
                    .create(&PostParams::default(), &cm)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
    .expect("operator role granted");
    let bindings = managed_bindings(&admin, &w.customer, "ops").await;
    assert_eq!(bindings.len(), 1, "the 1.0.0 binding is pruned");
    assert_eq!(bindings[0].role_ref.name, "msp-operator:operator");

    // The offer goes away: accepted grants stay and the status says so.
    Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider)
        .delete("ops", &DeleteParams::default())
        .await
        .expect("delete offer");
    let d = wait_condition(
        &admin,
        &w.customer,
        "ops",
        "OfferAvailable",
        "False",
        Some("OfferDeleted"),
    )
    .await;
    assert!(
        condition(&d, "OfferAvailable")
            .expect("cond")
            .2
            .contains("stay in force")
    );
    assert_eq!(condition(&d, "Ready").map(|c| c.0), Some("True".into()));
    assert!(can_list_pods(&provider_client, &w.customer).await);
}

#[tokio::test]
async fn drift_is_repaired_and_what_no_longer_belongs_is_pruned() {
    let env = env();
    let admin = env.client().await;
    let w = world("drift").await;
    let user = msp_testenv::unique_name("duser");
    let provider_client = env.user_client(&user, &[]).await;
    let role_name = msp_testenv::unique_name("drift-pod-reader");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .create(
            &PostParams::default(),
            &delegable_role(&role_name, vec![read_pods()], true),
        )
        .await
        .expect("role");
    apply(
        &admin,
        &offer(
            &w.provider,
            "o",
            &w.provider_tenant,
            vec![plan(
                "p",
                "1.0.0",
                vec![auth(PrincipalKind::User, &user, &role_name)],
            )],
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "d",
            (&w.provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&w.customer, &w.customer_b]),
        ),
    )
    .await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    wait_access(&provider_client, &w.customer_b, true).await;

    // Deleted binding: restored.
    let binding = managed_bindings(&admin, &w.customer, "d")
        .await
        .into_iter()
        .find(|b| b.namespace().as_deref() == Some(w.customer.name()))
        .expect("binding");
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &w.customer);
    bindings
        .delete(&binding.name_any(), &DeleteParams::default())
        .await
        .expect("delete");
    wait_until(TIMEOUT, "the binding to be recreated", || {
        let bindings = bindings.clone();
        let name = binding.name_any();
        let old_uid = binding.uid();
        async move {
            match bindings.get_opt(&name).await {
                Ok(Some(b)) if b.uid() != old_uid => Ok(()),
                other => Err(format!("{:?}", other.map(|o| o.map(|b| b.uid())))),
            }
        }
    })
    .await
    .expect("restored");

    // Edited binding (a subject swapped in): restored to exactly the grant.
    let mut edited = bindings.get(&binding.name_any()).await.expect("get");
    edited.subjects = Some(vec![Subject {
        kind: "User".into(),
        name: "mallory".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Default::default()
    }]);
    bindings
        .replace(&binding.name_any(), &PostParams::default(), &edited)
        .await
        .expect("edit");
    wait_until(TIMEOUT, "the subject to be restored", || {
        let bindings = bindings.clone();
        let name = binding.name_any();
        let user = user.clone();
        async move {
            let b = bindings.get(&name).await.map_err(|e| e.to_string())?;
            let subjects = b.subjects.unwrap_or_default();
            if subjects.len() == 1 && subjects[0].name == user {
                Ok(())
            } else {
                Err(format!("{subjects:?}"))
            }
        }
    })
    .await
    .expect("repaired");
    wait_event(&admin, &w.customer, "d", "DriftCorrected").await;

    // A namespace leaves the scope: its grant is pruned, the other stays.
    apply(
        &admin,
        &delegation(
            &w.customer,
            "d",
            (&w.provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&w.customer]),
        ),
    )
    .await;
    wait_access(&provider_client, &w.customer_b, false).await;
    assert!(can_list_pods(&provider_client, &w.customer).await);

    // The role stops being delegable: revoked (fail closed) and reported.
    let mut role = roles.get(&role_name).await.expect("role");
    role.metadata.labels = None;
    roles
        .replace(&role_name, &PostParams::default(), &role)
        .await
        .expect("unlabel");
    let d = wait_condition(
        &admin,
        &w.customer,
        "d",
        "Ready",
        "False",
        Some("RoleNotDelegable"),
    )
    .await;
    assert!(
        condition(&d, "Ready")
            .expect("ready")
            .2
            .contains(&role_name)
    );
    wait_access(&provider_client, &w.customer, false).await;
    assert!(managed_bindings(&admin, &w.customer, "d").await.is_empty());
    roles
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("cleanup role");
}

#[tokio::test]
async fn the_removal_right_reaches_exactly_one_delegation() {
    let env = env();
    let admin = env.client().await;
    let w = world("deleter").await;
    let bob = msp_testenv::unique_name("bob");
    let bob_client = env.user_client(&bob, &[]).await;
    apply(
        &admin,
        &offer(
            &w.provider,
            "o",
            &w.provider_tenant,
            vec![plan(
                "p",
                "1.0.0",
                vec![auth(PrincipalKind::User, &bob, DELEGATION_DELETER_ROLE)],
            )],
        ),
    )
    .await;
    apply(
        &admin,
        &offer(
            &w.provider,
            "other",
            &w.provider_tenant,
            vec![plan(
                "p",
                "1.0.0",
                vec![auth(PrincipalKind::User, "someone", "msp-operator:reader")],
            )],
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "mine",
            (&w.provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&w.customer, &w.customer_b]),
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "theirs",
            (&w.provider, "other"),
            "p",
            "1.0.0",
            None,
        ),
    )
    .await;
    wait_condition(&admin, &w.customer, "mine", "Ready", "True", None).await;
    wait_condition(&admin, &w.customer, "theirs", "Ready", "True", None).await;

    let roles: Vec<Role> = Api::<Role>::namespaced(admin.clone(), &w.customer)
        .list(&kube::api::ListParams::default().labels("msp-operator.io/delegation=mine"))
        .await
        .expect("roles")
        .items;
    assert_eq!(
        roles.len(),
        1,
        "one Role, only in the Delegation's namespace"
    );
    assert!(
        Api::<Role>::namespaced(admin.clone(), &w.customer_b)
            .list(&kube::api::ListParams::default().labels("msp-operator.io/delegation=mine"))
            .await
            .expect("roles")
            .items
            .is_empty()
    );

    let as_bob: Api<Delegation> = Api::namespaced(bob_client.clone(), &w.customer);
    wait_until(TIMEOUT, "bob to read his delegation", || {
        let as_bob = as_bob.clone();
        async move {
            as_bob
                .get("mine")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
    .expect("bob can get it");
    assert!(matches!(as_bob.get("theirs").await, Err(kube::Error::Api(s)) if s.code == 403));
    assert!(
        matches!(as_bob.delete("theirs", &DeleteParams::default()).await, Err(kube::Error::Api(s)) if s.code == 403)
    );
    assert!(
        matches!(as_bob.list(&Default::default()).await, Err(kube::Error::Api(s)) if s.code == 403)
    );
    as_bob
        .delete("mine", &DeleteParams::default())
        .await
        .expect("bob removes his delegation");
    wait_until(TIMEOUT, "the delegation and its Role to be gone", || {
        let admin = admin.clone();
        let ns = w.customer.name().to_string();
        async move {
            let left = Api::<Role>::namespaced(admin.clone(), &ns)
                .list(&kube::api::ListParams::default().labels("msp-operator.io/delegation=mine"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let exists = Api::<Delegation>::namespaced(admin, &ns)
                .get_opt("mine")
                .await
                .map_err(|e| e.to_string())?
                .is_some();
            if left == 0 && !exists {
                Ok(())
            } else {
                Err(format!("roles left {left}, delegation exists {exists}"))
            }
        }
    })
    .await
    .expect("removed");
    assert!(
        Api::<Delegation>::namespaced(admin, &w.customer)
            .get_opt("theirs")
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test]
async fn a_user_cannot_make_the_operator_bind_where_they_could_not() {
    let env = env();
    let admin = env.client().await;
    let w = world("deputy").await;
    let carol = msp_testenv::unique_name("carol");
    let carol_client = env.user_client(&carol, &[]).await;
    apply(&admin, &reader_offer(&w.provider, &w.provider_tenant, "x")).await;
    // Carol may manage Delegations in the customer namespace, and may create
    // RoleBindings there, but not in customer_b.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("delegation-admin".into()),
            namespace: Some(w.customer.name().into()),
            ..Default::default()
        },
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["msp-operator.io".into()]),
                resources: Some(vec!["delegations".into()]),
                verbs: vec![
                    "create".into(),
                    "get".into(),
                    "update".into(),
                    "patch".into(),
                ],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                resources: Some(vec!["rolebindings".into()]),
                verbs: vec!["create".into()],
                ..Default::default()
            },
            // Kubernetes' own rule: she may grant the reader role because
            // she may bind it (tests/attacks.rs shows the refusal without).
            PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                resources: Some(vec!["clusterroles".into()]),
                verbs: vec!["bind".into()],
                resource_names: Some(vec!["msp-operator:reader".into()]),
                ..Default::default()
            },
        ]),
    };
    create(&admin, &role).await;
    create(
        &admin,
        &RoleBinding {
            metadata: ObjectMeta {
                name: Some("carol".into()),
                namespace: Some(w.customer.name().into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "delegation-admin".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: carol.clone(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        },
    )
    .await;
    let as_carol: Api<Delegation> = Api::namespaced(carol_client, &w.customer);
    let wide = delegation(
        &w.customer,
        "wide",
        (&w.provider, "o"),
        "p",
        "1.0.0",
        Some(vec![&w.customer, &w.customer_b]),
    );
    let refused = wait_until(TIMEOUT, "carol's RBAC to take effect", || {
        let as_carol = as_carol.clone();
        let wide = wide.clone();
        async move {
            match as_carol.create(&PostParams::default(), &wide).await {
                Err(kube::Error::Api(s)) if s.message.contains("you may not in namespace") => Ok(s),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("refused by the admission policy");
    assert!(
        refused.message.contains(w.customer_b.name()),
        "{}",
        refused.message
    );
    assert!(
        !refused
            .message
            .contains(&format!("namespace {}", w.customer.name())),
        "{}",
        refused.message
    );
    // Within her rights it works.
    let narrow = delegation(
        &w.customer,
        "narrow",
        (&w.provider, "o"),
        "p",
        "1.0.0",
        None,
    );
    as_carol
        .create(&PostParams::default(), &narrow)
        .await
        .expect("allowed for her own namespace");
    wait_condition(&admin, &w.customer, "narrow", "Ready", "True", None).await;
    // Widening it later is checked too.
    let mut widened = as_carol.get("narrow").await.expect("get");
    widened.spec.namespaces = Some(vec![NamespaceName(w.customer_b.name().into())]);
    let err = as_carol
        .replace("narrow", &PostParams::default(), &widened)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains(w.customer_b.name()), "{err}");
}

/// Publishes offer `o` in the world's provider namespace: plan `p` 1.0.0,
/// reader for `group`.
async fn reader_offer_of(admin: &kube::Client, w: &World, group: &str) {
    apply(
        admin,
        &offer(
            &w.provider,
            "o",
            &w.provider_tenant,
            vec![plan(
                "p",
                "1.0.0",
                vec![auth(PrincipalKind::Group, group, "msp-operator:reader")],
            )],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_converged_delegation_costs_no_writes() {
    let env = env();
    let Some(plane) = env.local() else {
        eprintln!("skipped: counting writes needs the local control plane's audit log");
        return;
    };
    let admin = env.client().await;
    let w = world("quiet").await;
    reader_offer_of(&admin, &w, "quiet-team").await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "d",
            (&w.provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&w.customer, &w.customer_b]),
        ),
    )
    .await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    // The customer's catalog and the provider's record of the Delegation
    // are written once, and then never again at rest either.
    let catalogs: Api<OfferCatalog> = Api::namespaced(admin.clone(), &w.customer);
    catalogs
        .create(
            &PostParams::default(),
            &OfferCatalog::new(CATALOG_NAME, OfferCatalogSpec::default()),
        )
        .await
        .expect("create catalog");
    msp_testenv::wait_for(&catalogs, CATALOG_NAME, TIMEOUT, "catalog status", |c| {
        c.status.as_ref().is_some_and(|s| s.plan_count == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let records: Api<CustomerDelegation> = Api::namespaced(admin.clone(), &w.provider);
    let record = CustomerDelegation::name_for(&w.customer, "d");
    msp_testenv::wait_for(&records, &record, TIMEOUT, "the provider's record", |r| {
        r.spec.ready
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // Only this test's objects: the operator serves every test of the binary.
    let ours = [w.provider.name(), w.customer.name(), w.customer_b.name()];
    let mine = |writes: Vec<String>| -> Vec<String> {
        writes
            .into_iter()
            .filter(|line| ours.iter().any(|ns| line.contains(&format!(" {ns}/"))))
            .collect()
    };
    let before = mine(plane.writes_by(OPERATOR_USER));
    // Labels and finalizer came with the create
    // (deploy/delegation-metadata.yaml): the operator wrote the Delegation's
    // status only, never the object.
    let object_writes: Vec<&String> = before
        .iter()
        .filter(|l| l.contains(" delegations ") || l.contains(" delegations/finalizers "))
        .collect();
    assert!(
        object_writes.is_empty(),
        "the operator wrote the Delegation itself: {object_writes:#?}"
    );
    // The provider's record costs at most one write per status write of
    // the Delegation (it changes only when what the status says does).
    let record_writes = before
        .iter()
        .filter(|l| l.contains(" customerdelegations "))
        .count();
    let status_writes = before
        .iter()
        .filter(|l| l.starts_with("patch delegations/status "))
        .count();
    assert!(
        (1..=status_writes).contains(&record_writes),
        "{record_writes} record writes for {status_writes} status writes: {before:#?}"
    );
    // Events that reach the operator without changing anything: an annotation
    // on the delegation, a label on the offer (every catalog is checked
    // again), a label on a namespace.
    let delegations: Api<Delegation> = Api::namespaced(admin.clone(), &w.customer);
    delegations
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .expect("annotate");
    Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider)
        .patch(
            "o",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "1"}}})),
        )
        .await
        .expect("label offer");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(
            w.customer.name(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "1"}}})),
        )
        .await
        .expect("label namespace");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = mine(plane.writes_by(OPERATOR_USER));
    let new: Vec<&String> = after.iter().skip(before.len()).collect();
    assert!(
        new.is_empty(),
        "a converged delegation made writes: {new:#?}"
    );
}

#[tokio::test]
async fn kubectl_apply_refuses_bad_offers_with_the_rule_message() {
    let env = env();
    let admin = env.client().await;
    let w = world("cel").await;
    let ns = w.provider.name();
    let tenant = &w.provider_tenant;
    let offer_yaml = |tenant: &str, version: &str, visibility: &str, role: &str, extra: &str| {
        format!(
            "apiVersion: msp-operator.io/v1alpha1\nkind: ManagedServiceOffer\nmetadata: {{name: cel, namespace: {ns}}}\nspec:\n  displayName: CEL\n  provider: {{tenant: {tenant}}}\n  plans:\n  - name: p\n    version: {version}\n    visibility: {visibility}\n{extra}    authorizations:\n    - principal: {{kind: User, name: u}}\n      roleRef: {role}\n"
        )
    };
    let (ok, out) = kubectl_apply(
        env,
        &offer_yaml(tenant, "1.0.0", "Public", "msp-operator:reader", ""),
    );
    assert!(ok, "{out}");
    let cases = [
        (
            offer_yaml(
                tenant,
                "1.0.0",
                "Private",
                "msp-operator:reader",
                "    audience: [x]\n",
            ),
            "a Public plan can never become Private",
        ),
        (
            offer_yaml(tenant, "1.0.0", "Public", "msp-operator:operator", ""),
            "spec.plans[].eligibleAuthorizations can only change together with a higher spec.plans[].version",
        ),
        (
            offer_yaml(tenant, "0.9.0", "Public", "msp-operator:reader", ""),
            "version must not decrease",
        ),
        (
            offer_yaml("someone-else", "1.0.0", "Public", "msp-operator:reader", ""),
            "spec.provider.tenant is immutable",
        ),
    ];
    for (yaml, message) in cases {
        let (ok, out) = kubectl_apply(env, &yaml);
        assert!(
            !ok && out.contains(message),
            "expected {message:?}, kubectl said: {out}"
        );
    }
    // Raising the version makes the same change acceptable.
    let (ok, out) = kubectl_apply(
        env,
        &offer_yaml(tenant, "1.1.0", "Public", "msp-operator:operator", ""),
    );
    assert!(ok, "{out}");
    // New objects are validated too.
    let fresh = offer_yaml(tenant, "1.0.0", "Private", "msp-operator:reader", "")
        .replace("name: cel,", "name: cel2,");
    let (ok, out) = kubectl_apply(env, &fresh);
    assert!(
        !ok && out.contains("a Private plan needs spec.plans[].audience"),
        "{out}"
    );
    let bad_name = offer_yaml(tenant, "1.0.0", "Public", "msp-operator:reader", "")
        .replace("- name: p\n", "- name: Bad Name\n")
        .replace("name: cel,", "name: cel3,");
    let (ok, out) = kubectl_apply(env, &bad_name);
    assert!(!ok && out.contains("spec.plans[0].name"), "{out}");
    let _ = admin;
}

#[tokio::test]
async fn namespaces_that_appear_later_or_change_tenant_are_followed() {
    let env = env();
    let admin = env.client().await;
    let w = world("nsmove").await;
    let user = msp_testenv::unique_name("nsuser");
    let provider_client = env.user_client(&user, &[]).await;
    let tenant = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .get(&w.customer)
        .await
        .expect("ns")
        .labels()
        .get(TENANT)
        .cloned()
        .expect("tenant label");
    let late = msp_testenv::unique_name("nsmove-late");
    apply(
        &admin,
        &reader_offer(&w.provider, &w.provider_tenant, &user),
    )
    .await;
    apply(
        &admin,
        &delegation(
            &w.customer,
            "d",
            (&w.provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&w.customer, &late]),
        ),
    )
    .await;
    // One namespace is missing: the other is granted anyway.
    let d = wait_condition(
        &admin,
        &w.customer,
        "d",
        "Ready",
        "False",
        Some("Progressing"),
    )
    .await;
    let missing = d
        .status
        .as_ref()
        .expect("status")
        .namespaces
        .iter()
        .find(|n| n.name == late)
        .cloned()
        .expect("late ns status");
    assert!(
        !missing.ready
            && missing
                .message
                .unwrap_or_default()
                .contains("does not exist")
    );
    wait_access(&provider_client, &w.customer, true).await;

    // It appears (same tenant): granted.
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(late.clone()),
            labels: Some(BTreeMap::from([(TENANT.to_string(), tenant.clone())])),
            ..Default::default()
        },
        ..Default::default()
    };
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create late namespace");
    wait_condition(&admin, &w.customer, "d", "Ready", "True", Some("Granted")).await;
    wait_access(&provider_client, &late, true).await;

    // It moves to another tenant: consent no longer covers it, nothing is granted.
    namespaces
        .patch(
            &late,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {TENANT: "someone-else"}}})),
        )
        .await
        .expect("relabel");
    wait_condition(
        &admin,
        &w.customer,
        "d",
        "Ready",
        "False",
        Some("ForeignNamespace"),
    )
    .await;
    wait_access(&provider_client, &late, false).await;
    wait_access(&provider_client, &w.customer, false).await;
    namespaces
        .delete(&late, &DeleteParams::default())
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn an_offer_cannot_name_another_namespaces_service_account() {
    let env = env();
    let admin = env.client().await;
    let w = world("sa-policy").await;
    let with_sa = |namespace: Option<&str>| {
        let mut authorization = auth(
            PrincipalKind::ServiceAccount,
            "robot",
            "msp-operator:reader",
        );
        authorization.principal.namespace = namespace.map(str::to_string);
        offer(
            &w.provider,
            "sa",
            &w.provider_tenant,
            vec![plan("p", "1.0.0", vec![authorization])],
        )
    };
    let api: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &w.provider);
    let err = api
        .create(&PostParams::default(), &with_sa(Some(w.customer.name())))
        .await
        .expect_err("a foreign ServiceAccount namespace is refused");
    assert!(
        err.to_string().contains("must be the offer namespace"),
        "{err}"
    );
    api.create(&PostParams::default(), &with_sa(Some(w.provider.name())))
        .await
        .expect("its own namespace is accepted");
    api.delete("sa", &DeleteParams::default())
        .await
        .expect("delete");
    api.create(&PostParams::default(), &with_sa(None))
        .await
        .expect("an omitted namespace (the offer's) is accepted");
}

/// The operator's one apply of a Delegation (its labels and finalizer)
/// carries the Delegation's uid: an apply racing a deletion, from a cache
/// that still shows the Delegation, is refused (409) and never creates the
/// Delegation again.
#[tokio::test]
async fn the_metadata_apply_never_recreates_a_deleted_delegation() {
    let env = env();
    let admin = env.client().await;
    let w = world("revive").await;
    let api: Api<Delegation> = Api::namespaced(admin.clone(), &w.customer);
    apply(
        &admin,
        &delegation(
            &w.customer,
            "d",
            (&w.provider, "absent"),
            "basic",
            "1.0.0",
            None,
        ),
    )
    .await;
    let seen = api.get("d").await.expect("the delegation");
    api.delete("d", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "d").await;

    let labels = BTreeMap::from([("msp-operator.io/offer".to_string(), "absent".to_string())]);
    let patch = msp_operator::delegation::apply::metadata_patch(&seen, &labels);
    let answer = api
        .patch(
            "d",
            &PatchParams::apply("msp-operator").force(),
            &Patch::Apply(&patch),
        )
        .await;
    match answer {
        Err(kube::Error::Api(status)) => assert_eq!(
            status.code, 409,
            "a stale apply is a uid conflict: {status:?}"
        ),
        other => panic!("a stale apply must be refused, got {other:?}"),
    }
    assert!(
        api.get_opt("d").await.expect("read").is_none(),
        "the deleted Delegation stays deleted"
    );
}

/// Where the metadata policy was not in force (an older cluster, a Delegation
/// created before it, an admin's edit), the operator sets the labels and the
/// cleanup finalizer itself, and they then work as ever: deletion waits
/// until the grants are gone.
#[tokio::test]
async fn labels_and_finalizer_missing_at_admission_are_set_by_the_operator() {
    let env = env();
    let admin = env.client().await;
    let w = world("meta").await;
    reader_offer_of(&admin, &w, "meta-team").await;
    apply(
        &admin,
        &delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None),
    )
    .await;
    let delegations: Api<Delegation> = Api::namespaced(admin.clone(), &w.customer);
    let created = delegations.get("d").await.expect("get");
    assert!(
        created
            .finalizers()
            .iter()
            .any(|f| f == msp_operator::domain::names::FINALIZER)
            && created.labels().get("msp-operator.io/offer") == Some(&"o".to_string()),
        "set at admission: {:?} {:?}",
        created.finalizers(),
        created.labels()
    );
    // A finalizer of the creator's own is kept beside ours (dry run: nothing
    // is stored).
    let mut held = delegation(&w.customer, "held", (&w.provider, "o"), "p", "1.0.0", None);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let admitted = delegations
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &held,
        )
        .await
        .expect("dry-run create");
    assert_eq!(
        admitted.finalizers(),
        ["example.com/hold", msp_operator::domain::names::FINALIZER]
    );
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    // An admin strips both (a cluster admin may; customers may not remove
    // the finalizer, see tests/attacks.rs).
    delegations
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(serde_json::json!([
                    {"op": "remove", "path": "/metadata/finalizers"},
                    {"op": "remove", "path": "/metadata/labels/msp-operator.io~1plan"},
                ]))
                .expect("patch"),
            ),
        )
        .await
        .expect("strip");
    let restored = msp_testenv::wait_for(&delegations, "d", TIMEOUT, "labels and finalizer", |d| {
        d.finalizers()
            .iter()
            .any(|f| f == msp_operator::domain::names::FINALIZER)
            && d.labels().get("msp-operator.io/plan") == Some(&"p".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        restored
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|m| m.manager.as_deref() == Some("msp-operator")
                && m.operation.as_deref() == Some("Apply")),
        "restored by the operator's apply"
    );
    // The restored finalizer holds deletion until the grants are gone.
    assert!(!managed_bindings(&admin, &w.customer, "d").await.is_empty());
    delegations
        .delete("d", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&delegations, "d").await;
    assert!(managed_bindings(&admin, &w.customer, "d").await.is_empty());
}

/// A refusal revokes everything, so one that may rest on a stale offer
/// cache is first checked against the API server
/// (`msp_operator::delegation::confirm`): a cached offer older than the
/// API server's (by spec), or gone there, is behind; one that differs only
/// in status is not. Then the sequence that raced once in CI: the provider
/// publishes a version and the customer accepts it a moment later, five
/// times; the permanent grant is never deleted and no refusal is ever
/// reported. Which watch event reaches the operator first is not forced
/// here (on a quiet machine the offer's nearly always does); the check
/// above is what the outcome of the race turns on.
#[tokio::test]
async fn a_version_accepted_right_after_it_is_published_never_interrupts_access() {
    use msp_operator::delegation::confirm::offer_cache_behind;
    let env = env();
    let admin = env.client().await;
    let w = world("race").await;
    let group = msp_testenv::unique_name("racers");
    reader_offer_of(&admin, &w, &group).await;
    let d = delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None);
    apply(&admin, &d).await;
    let d = wait_condition(&admin, &w.customer, "d", "Ready", "True", Some("Granted")).await;

    // The check, against the API server.
    let writer = msp_operator::runtime::writer::Writer::new(admin.clone(), 1, "test".into(), None);
    let offers: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &w.provider);
    let current = offers.get("o").await.expect("offer");
    assert!(!offer_cache_behind(&writer, &d, Some(&current)).await);
    let mut status_only = current.clone();
    status_only.metadata.resource_version = Some("1".into());
    status_only.status = None;
    assert!(
        !offer_cache_behind(&writer, &d, Some(&status_only)).await,
        "a status change decides nothing"
    );
    let mut older = current.clone();
    older.metadata.generation = current.metadata.generation.map(|g| g - 1);
    assert!(offer_cache_behind(&writer, &d, Some(&older)).await);
    assert!(
        offer_cache_behind(&writer, &d, None).await,
        "the offer exists though the cache has none"
    );
    let mut elsewhere = d.clone();
    elsewhere.spec.offer_ref.name = "gone".into();
    assert!(offer_cache_behind(&writer, &elsewhere, Some(&current)).await);
    assert!(!offer_cache_behind(&writer, &elsewhere, None).await);

    // The race, end to end.
    let interruptions = Interruptions::watch(&admin, &w.customer, "d").await;
    for minor in 1..=5 {
        let version = format!("1.{minor}.0");
        apply(
            &admin,
            &offer(
                &w.provider,
                "o",
                &w.provider_tenant,
                vec![plan(
                    "p",
                    &version,
                    vec![auth(PrincipalKind::Group, &group, "msp-operator:reader")],
                )],
            ),
        )
        .await;
        let raised = delegation(&w.customer, "d", (&w.provider, "o"), "p", &version, None);
        apply(&admin, &raised).await;
        let now = wait_condition(&admin, &w.customer, "d", "Ready", "True", Some("Granted")).await;
        assert_eq!(
            now.status.and_then(|s| s.applied_version).as_deref(),
            Some(version.as_str())
        );
    }
    interruptions.assert_none().await;
}

/// The same guard for every other input a refusal can rest on
/// (`msp_operator::delegation::confirm`): a namespace, a ClusterRole or a
/// provider policy the cache holds at an older resourceVersion than the
/// API server, or not at all, is behind; one it holds as the server does
/// is not, and neither is one that exists nowhere. Then the race a
/// customer can start: it moves a namespace into its tenant and names it
/// in its Delegation a moment later, five times. If the Delegation's
/// watch event came first, the cache would still see a namespace of
/// another tenant, and that refusal revokes everything; the grant in the
/// namespace the Delegation already had is never deleted and no refusal
/// is ever reported.
#[tokio::test]
async fn a_namespace_moved_into_the_tenant_and_delegated_at_once_never_interrupts_access() {
    use k8s_openapi::api::core::v1::Namespace;
    use msp_operator::delegation::confirm::{
        SpecVersion, cluster_scoped_behind, namespaces_behind, policies_behind, policy_versions,
        spec_version_of,
    };
    let env = env();
    let admin = env.client().await;
    let w = world("nsrace").await;
    let group = msp_testenv::unique_name("movers");
    reader_offer_of(&admin, &w, &group).await;
    let d = delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None);
    apply(&admin, &d).await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", Some("Granted")).await;

    // The checks, against the API server.
    let writer = msp_operator::runtime::writer::Writer::new(admin.clone(), 1, "test".into(), None);
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let live = namespaces
        .get(w.stranger.name())
        .await
        .expect("namespace")
        .resource_version();
    let at = |name: &str, rv: Option<String>| BTreeMap::from([(name.to_string(), rv)]);
    assert!(!namespaces_behind(&writer, &at(w.stranger.name(), live.clone())).await);
    assert!(namespaces_behind(&writer, &at(w.stranger.name(), Some("1".into()))).await);
    assert!(
        namespaces_behind(&writer, &at(w.stranger.name(), None)).await,
        "the namespace exists though the cache has none"
    );
    assert!(!namespaces_behind(&writer, &at("no-such-namespace-anywhere", None)).await);
    // Over 16 namespaces they are read with one LIST.
    let mut many: BTreeMap<String, Option<String>> = (0..20)
        .map(|i| (format!("no-such-namespace-{i}"), None))
        .collect();
    many.insert(w.stranger.name().to_string(), live.clone());
    assert!(!namespaces_behind(&writer, &many).await);
    many.insert(w.stranger.name().to_string(), Some("1".into()));
    assert!(namespaces_behind(&writer, &many).await);

    let role_name = msp_testenv::unique_name("confirm-role");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let role = roles
        .create(
            &PostParams::default(),
            &ClusterRole {
                metadata: ObjectMeta {
                    name: Some(role_name.clone()),
                    ..ObjectMeta::default()
                },
                ..ClusterRole::default()
            },
        )
        .await
        .expect("role");
    assert!(!cluster_scoped_behind(&roles, &at(&role_name, role.resource_version())).await);
    assert!(cluster_scoped_behind(&roles, &at(&role_name, Some("1".into()))).await);
    assert!(cluster_scoped_behind(&roles, &at(&role_name, None)).await);
    roles
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("delete role");
    assert!(!cluster_scoped_behind(&roles, &at(&role_name, None)).await);
    assert!(
        cluster_scoped_behind(&roles, &at(&role_name, role.resource_version())).await,
        "deleted on the server, still in the cache"
    );

    let policies: Api<ProviderPolicy> = Api::namespaced(admin.clone(), &w.customer);
    let policy = policies
        .create(
            &PostParams::default(),
            &ProviderPolicy::new(
                "audit",
                ProviderPolicySpec {
                    rules: PolicyRules {
                        mode: PolicyMode::Audit,
                        allowed_providers: Some(vec![AllowedProvider {
                            tenant: TenantId(w.provider_tenant.clone()),
                            roles: None,
                        }]),
                        allowed_roles: None,
                    },
                },
            ),
        )
        .await
        .expect("policy");
    let scope = vec![w.customer.name().to_string()];
    let cluster: Vec<(String, SpecVersion)> = Api::<ClusterProviderPolicy>::all(admin.clone())
        .list_metadata(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|p| (p.name_any(), spec_version_of(p)))
        .collect();
    let (uid, generation) = spec_version_of(&policy);
    let mine = |generation: Option<i64>| {
        (
            w.customer.name().to_string(),
            "audit".to_string(),
            (uid.clone(), generation),
        )
    };
    let current = policy_versions(cluster.clone(), [mine(generation)], &scope);
    assert!(!policies_behind(&writer, &current, &scope).await);
    // Its status, written by the operator for admission, decides nothing.
    wait_until(TIMEOUT, "the policy's status", || {
        let policies = policies.clone();
        async move {
            match policies.get("audit").await {
                Ok(p) if p.status.is_some() => Ok(()),
                _ => Err("no status yet".to_string()),
            }
        }
    })
    .await
    .expect("status");
    assert!(!policies_behind(&writer, &current, &scope).await);
    let older = policy_versions(cluster.clone(), [mine(generation.map(|g| g - 1))], &scope);
    assert!(policies_behind(&writer, &older, &scope).await);
    let without = policy_versions(cluster.clone(), Vec::new(), &scope);
    assert!(
        policies_behind(&writer, &without, &scope).await,
        "the policy exists though the cache has none"
    );
    assert!(
        !policies_behind(&writer, &without, &[]).await,
        "policies of other namespaces do not count"
    );
    policies
        .delete("audit", &DeleteParams::default())
        .await
        .expect("delete policy");

    // The race, end to end.
    let tenant = namespaces
        .get(w.customer.name())
        .await
        .expect("customer namespace")
        .labels()
        .get(TENANT)
        .cloned()
        .expect("tenant label");
    let interruptions = Interruptions::watch(&admin, &w.customer, "d").await;
    let other = msp_testenv::unique_name("elsewhere");
    let mut moved = Vec::new();
    for round in 0..5 {
        let ns = env
            .namespace_with_labels(&format!("nsrace-m{round}"), &[(TENANT, &other)])
            .await;
        namespaces
            .patch(
                ns.name(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": { "labels": { TENANT: tenant } } })),
            )
            .await
            .expect("move the namespace");
        moved.push(ns);
        let mut names: Vec<&str> = vec![w.customer.name()];
        names.extend(moved.iter().map(|n| n.name()));
        apply(
            &admin,
            &delegation(
                &w.customer,
                "d",
                (&w.provider, "o"),
                "p",
                "1.0.0",
                Some(names),
            ),
        )
        .await;
        let target = moved[round].name().to_string();
        wait_until(TIMEOUT, &format!("a grant in {target}"), || {
            let admin = admin.clone();
            let customer = w.customer.name().to_string();
            let target = target.clone();
            async move {
                let granted = managed_bindings(&admin, &customer, "d")
                    .await
                    .iter()
                    .any(|b| b.namespace().as_deref() == Some(target.as_str()));
                if granted {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        })
        .await
        .expect("granted in the moved namespace");
    }
    wait_condition(&admin, &w.customer, "d", "Ready", "True", Some("Granted")).await;
    interruptions.assert_none().await;
}

/// A Delegation's interruptions from now on: every grant of it in its own
/// namespace deleted, every `Ready=False` in its status.
struct Interruptions {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    deleted: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refused: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Interruptions {
    /// Starts watching Delegation `name` in `namespace` (and lets the
    /// watches start before anything happens).
    async fn watch(admin: &kube::Client, namespace: &str, name: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let refused = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), namespace);
        let grants = watcher::Config::default().labels(&format!(
            "msp-operator.io/delegation-namespace={namespace},msp-operator.io/delegation={name}"
        ));
        let on_delete = {
            let deleted = deleted.clone();
            tokio::spawn(async move {
                let mut events = std::pin::pin!(watcher::watcher(bindings, grants));
                while let Some(event) = events.next().await {
                    if let Ok(watcher::Event::Delete(rb)) = event
                        && let Ok(mut deleted) = deleted.lock()
                    {
                        deleted.push(rb.name_any());
                    }
                }
            })
        };
        let delegations: Api<Delegation> = Api::namespaced(admin.clone(), namespace);
        let this = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let on_refusal = {
            let refused = refused.clone();
            tokio::spawn(async move {
                let mut events = std::pin::pin!(watcher::watcher(delegations, this));
                while let Some(event) = events.next().await {
                    let Ok(watcher::Event::Apply(d)) = event else {
                        continue;
                    };
                    if let Some((status, reason, message)) = condition(&d, "Ready")
                        && status == "False"
                        && let Ok(mut refused) = refused.lock()
                    {
                        refused.push(format!("{reason}: {message}"));
                    }
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Self {
            tasks: vec![on_delete, on_refusal],
            deleted,
            refused,
        }
    }

    /// After a second more for late events: no grant was deleted and no
    /// refusal reported.
    async fn assert_none(self) {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        for task in &self.tasks {
            task.abort();
        }
        assert_eq!(*self.deleted.lock().expect("deleted"), Vec::<String>::new());
        assert_eq!(*self.refused.lock().expect("refused"), Vec::<String>::new());
    }
}
