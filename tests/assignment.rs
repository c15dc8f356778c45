//! Restricted role assignment against a real API server, as the provider's
//! user with its own client certificate: under a role-assigner
//! authorization it may bind exactly the listed ClusterRoles to
//! ServiceAccounts of a delegated namespace, and nothing else — another
//! role, a user or group, a ServiceAccount of another namespace, a binding
//! without the labels, the customer's own bindings, a ClusterRoleBinding,
//! another namespace. What it made shows in the Delegation's status and
//! Events, and goes with the consent.

mod support;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_for};
use std::collections::BTreeMap;
use support::*;

const TENANT: &str = "msp-operator.io/tenant";
const LISTED: &str = fixtures::READER_ROLE;
const NOT_LISTED: &str = "msp-operator:operator";

struct World {
    provider: TestNamespace,
    c1: TestNamespace,
    c2: TestNamespace,
    /// Of the customer's tenant, not delegated.
    c3: TestNamespace,
    robot: String,
}

async fn world(name: &str) -> World {
    let env = env();
    let provider_tenant = unique_name(&format!("{name}-prov"));
    let customer = unique_name(&format!("{name}-cust"));
    let w = World {
        provider: env
            .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
            .await,
        c1: env
            .namespace_with_labels(&format!("{name}-c1"), &[(TENANT, &customer)])
            .await,
        c2: env
            .namespace_with_labels(&format!("{name}-c2"), &[(TENANT, &customer)])
            .await,
        c3: env
            .namespace_with_labels(&format!("{name}-c3"), &[(TENANT, &customer)])
            .await,
        robot: unique_name("robot"),
    };
    let admin = env.client().await;
    // 1.0.0 lets the robot bind the reader role to ServiceAccounts, and
    // grants it the operator role itself (so Kubernetes' own escalation
    // check would let it bind that one too: the admission policy must not).
    let with_assigner = fixtures::plan(
        "automation",
        "1.0.0",
        vec![
            fixtures::assigner(PrincipalKind::User, &w.robot, &[LISTED]),
            fixtures::auth(PrincipalKind::User, &w.robot, NOT_LISTED),
        ],
    );
    apply(
        &admin,
        &fixtures::offer(&w.provider, "auto", &provider_tenant, vec![with_assigner]),
    )
    .await;
    w
}

fn delegation(w: &World, namespace: &str, name: &str, namespaces: &[&str]) -> Delegation {
    let d = fixtures::delegation(
        namespace,
        name,
        (&w.provider, "auto"),
        "automation",
        "1.0.0",
        Some(namespaces.to_vec()),
    );
    fixtures::acknowledging(d, &[NOT_LISTED])
}

/// A RoleBinding a provider makes: `role` to `subjects` in `namespace`,
/// labeled as made under Delegation `under` (namespace/name) when given.
fn provider_binding(
    namespace: &str,
    name: &str,
    role: (&str, &str),
    subjects: Vec<Subject>,
    under: Option<(&str, &str)>,
) -> RoleBinding {
    let labels = under.map(|(dns, d)| {
        BTreeMap::from([
            (
                "msp-operator.io/provider-assigned".to_string(),
                "true".to_string(),
            ),
            (
                "msp-operator.io/delegation-namespace".to_string(),
                dns.to_string(),
            ),
            ("msp-operator.io/delegation".to_string(), d.to_string()),
        ])
    });
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels,
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: role.0.into(),
            name: role.1.into(),
        },
        subjects: Some(subjects),
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
        api_group: Some(String::new()),
    }
}

fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

/// The message of a refused create, asserting it was refused.
async fn refused(client: &Client, rb: &RoleBinding) -> String {
    let namespace = rb.metadata.namespace.clone().expect("namespace");
    match Api::<RoleBinding>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), rb)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            s.message
        }
        Ok(_) => panic!("the provider created {rb:?}"),
        Err(e) => panic!("{e}"),
    }
}

/// Whether ServiceAccount `namespace/name` may list ConfigMaps there, as
/// the API server decides.
async fn sa_can_read(admin: &Client, namespace: &str, name: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{name}")),
            groups: Some(vec!["system:serviceaccounts".into()]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some("list".into()),
                resource: Some("configmaps".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("review")
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until whether ServiceAccount `namespace/name` may list ConfigMaps
/// there is `expected` (the authorizer sees a RoleBinding change a moment
/// after it is made).
async fn wait_sa_can_read(admin: &Client, namespace: &str, name: &str, expected: bool) {
    let what = format!("{namespace}/{name} may read == {expected}");
    msp_testenv::wait_until(TIMEOUT, &what, || async {
        if sa_can_read(admin, namespace, name).await == expected {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn wait_assignments(admin: &Client, ns: &str, name: &str, expected: usize) -> Delegation {
    let api: Api<Delegation> = Api::namespaced(admin.clone(), ns);
    wait_for(
        &api,
        name,
        TIMEOUT,
        &format!("{expected} provider assignments"),
        |d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.provider_assignments.len() == expected)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn a_role_assigner_binds_exactly_the_listed_roles_to_its_namespaces_service_accounts() {
    let env = env();
    let admin = env.client().await;
    let w = world("assign").await;
    // The customer's own binding, which the provider must not touch.
    apply(
        &admin,
        &fixtures::role_binding(
            &w.c1,
            "customers-own",
            ("ClusterRole", "view"),
            ("User", "carol"),
        ),
    )
    .await;
    create(&admin, &delegation(&w, &w.c1, "auto", &[&w.c1, &w.c2])).await;
    wait_condition(&admin, &w.c1, "auto", "Ready", "True", None).await;
    let robot = env.user_client(&w.robot, &[]).await;
    let under = Some((&*w.c1, "auto"));

    // Allowed: the listed role, to a ServiceAccount of the same namespace,
    // in each delegated namespace.
    for ns in [&*w.c1, &*w.c2] {
        let rb = provider_binding(
            ns,
            "ci",
            ("ClusterRole", LISTED),
            vec![service_account(ns, "deployer")],
            under,
        );
        Api::<RoleBinding>::namespaced(robot.clone(), ns)
            .create(&PostParams::default(), &rb)
            .await
            .unwrap_or_else(|e| panic!("the provider may bind {LISTED} in {ns}: {e}"));
        wait_sa_can_read(&admin, ns, "deployer", true).await;
    }

    // Every other shape is refused, naming the rule.
    let sa = || vec![service_account(&w.c1, "deployer")];
    let cases = [
        (
            provider_binding(&w.c1, "x1", ("ClusterRole", NOT_LISTED), sa(), under),
            "delegatedRoles",
        ),
        // A role it holds nothing of: Kubernetes' escalation check refuses
        // first.
        (
            provider_binding(&w.c1, "x2", ("ClusterRole", "admin"), sa(), under),
            "not currently held",
        ),
        (
            provider_binding(
                &w.c1,
                "x3",
                ("ClusterRole", LISTED),
                vec![user("mallory")],
                under,
            ),
            "only to ServiceAccounts of namespace",
        ),
        (
            provider_binding(
                &w.c1,
                "x4",
                ("ClusterRole", LISTED),
                vec![service_account(&w.c2, "deployer")],
                under,
            ),
            "only to ServiceAccounts of namespace",
        ),
        (
            provider_binding(&w.c1, "x5", ("ClusterRole", LISTED), sa(), None),
            "msp-operator.io/provider-assigned=true",
        ),
        (
            provider_binding(
                &w.c1,
                "x6",
                ("ClusterRole", LISTED),
                sa(),
                Some((&*w.c1, "someone-else")),
            ),
            "must name the Delegation",
        ),
    ];
    for (rb, rule) in &cases {
        let message = refused(&robot, rb).await;
        assert!(message.contains(rule), "{rule:?} not in: {message}");
    }
    // Not in a namespace the Delegation does not cover (RBAC: no rights).
    let elsewhere = provider_binding(
        &w.c3,
        "ci",
        ("ClusterRole", LISTED),
        vec![service_account(&w.c3, "deployer")],
        under,
    );
    refused(&robot, &elsewhere).await;
    // No ClusterRoleBinding (RBAC: no cluster-wide rights).
    let crb = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(unique_name("robot-crb")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: LISTED.into(),
        },
        subjects: Some(sa()),
    };
    let answer = Api::<ClusterRoleBinding>::all(robot.clone())
        .create(&PostParams::default(), &crb)
        .await;
    assert!(
        matches!(&answer, Err(kube::Error::Api(s)) if s.code == 403),
        "{answer:?}"
    );
    // The customer's own binding is not the provider's to delete.
    let answer = Api::<RoleBinding>::namespaced(robot.clone(), &w.c1)
        .delete("customers-own", &DeleteParams::default())
        .await;
    assert!(
        matches!(&answer, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("provider-assigned")),
        "{answer:?}"
    );

    // The customer sees both in the status, and an Event for each.
    let d = wait_assignments(&admin, &w.c1, "auto", 2).await;
    let shown: Vec<(String, String, Vec<String>)> = d
        .status
        .expect("status")
        .provider_assignments
        .into_iter()
        .map(|a| (a.namespace, a.role_ref, a.service_accounts))
        .collect();
    let mut expected = vec![
        (
            w.c1.to_string(),
            LISTED.to_string(),
            vec!["deployer".to_string()],
        ),
        (
            w.c2.to_string(),
            LISTED.to_string(),
            vec!["deployer".to_string()],
        ),
    ];
    expected.sort();
    assert_eq!(shown, expected);
    wait_event(&admin, &w.c1, "auto", "ProviderAssigned").await;

    // Deleting the Delegation removes what the provider made.
    Api::<Delegation>::namespaced(admin.clone(), &w.c1)
        .delete("auto", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&Api::<Delegation>::namespaced(admin.clone(), &w.c1), "auto").await;
    for ns in [&*w.c1, &*w.c2] {
        assert!(
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .get_opt("ci")
                .await
                .expect("get")
                .is_none(),
            "the provider's binding in {ns} outlived the Delegation"
        );
        wait_sa_can_read(&admin, ns, "deployer", false).await;
    }
    assert!(
        Api::<RoleBinding>::namespaced(admin.clone(), &w.c1)
            .get_opt("customers-own")
            .await
            .expect("get")
            .is_some(),
        "the customer's own binding stays"
    );
}

#[tokio::test]
async fn what_the_provider_made_goes_when_the_authorization_leaves_the_accepted_version() {
    let env = env();
    let admin = env.client().await;
    let w = world("unassign").await;
    create(&admin, &delegation(&w, &w.c1, "auto", &[&w.c1])).await;
    wait_condition(&admin, &w.c1, "auto", "Ready", "True", None).await;
    let robot = env.user_client(&w.robot, &[]).await;
    let rb = provider_binding(
        &w.c1,
        "ci",
        ("ClusterRole", LISTED),
        vec![service_account(&w.c1, "deployer")],
        Some((&*w.c1, "auto")),
    );
    Api::<RoleBinding>::namespaced(robot.clone(), &w.c1)
        .create(&PostParams::default(), &rb)
        .await
        .expect("assign");
    wait_assignments(&admin, &w.c1, "auto", 1).await;

    // 2.0.0 grants the robot the reader role itself, no assigner right.
    let without = fixtures::plan(
        "automation",
        "2.0.0",
        vec![fixtures::auth(PrincipalKind::User, &w.robot, LISTED)],
    );
    let tenant = Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider)
        .get("auto")
        .await
        .expect("offer")
        .spec
        .provider
        .tenant;
    apply(
        &admin,
        &fixtures::offer(&w.provider, "auto", &tenant, vec![without]),
    )
    .await;
    let mut raised = delegation(&w, &w.c1, "auto", &[&w.c1]);
    raised.spec.plan_version = "2.0.0".into();
    apply(&admin, &raised).await;
    wait_condition(&admin, &w.c1, "auto", "Ready", "True", None).await;
    wait_assignments(&admin, &w.c1, "auto", 0).await;
    assert!(
        Api::<RoleBinding>::namespaced(admin.clone(), &w.c1)
            .get_opt("ci")
            .await
            .expect("get")
            .is_none(),
        "the provider's binding outlived its authorization"
    );
    wait_sa_can_read(&admin, &w.c1, "deployer", false).await;
    wait_event(&admin, &w.c1, "auto", "ProviderAssignmentRemoved").await;
    // And the right to make more is gone with it.
    let again = refused(&robot, &rb).await;
    assert!(!again.is_empty());
}
