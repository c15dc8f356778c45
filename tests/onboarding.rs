//! Tenant-wide onboarding (a Delegation with `spec.namespaceSelector`)
//! against a real API server: it grants in the matching namespaces of the
//! customer's tenant only, follows labels and tenants as they change, and
//! refuses a creator or consenter without cluster-wide rights — the only
//! rights that cover namespaces created later. Access is checked as the
//! provider's user with its own client certificate.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_for};
use std::collections::BTreeMap;
use support::*;

const TENANT: &str = "msp-operator.io/tenant";

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// A Delegation in `namespace` of `offer_ns`'s reader offer for every
/// namespace of the customer's tenant labeled `tier=<tier>`.
fn tenant_wide(namespace: &str, name: &str, offer_ns: &str, tier: &str) -> Delegation {
    let mut d = fixtures::delegation(namespace, name, (offer_ns, "o"), "p", "1.0.0", None);
    d.spec.namespace_selector = Some(selector(&[("tier", tier)]));
    d
}

async fn can_read(client: &Client, namespace: &str) -> bool {
    can_list::<ConfigMap>(client, namespace).await
}

/// Waits until `client` may (or may not) read ConfigMaps in `namespace`.
async fn wait_read(client: &Client, namespace: &str, expected: bool) {
    wait_can_list::<ConfigMap>(client, namespace, expected).await
}

/// Sets `labels` on namespace `name` (merge patch).
async fn label(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": { "labels": labels } })),
        )
        .await
        .expect("label namespace");
}

/// Waits until the Delegation's status lists exactly `expected` namespaces.
async fn wait_namespaces(client: &Client, ns: &str, name: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|n| n.to_string()).collect();
    expected.sort();
    let api: Api<Delegation> = Api::namespaced(client.clone(), ns);
    wait_for(
        &api,
        name,
        TIMEOUT,
        &format!("namespaces {expected:?}"),
        |d| {
            d.status.as_ref().is_some_and(|s| {
                s.namespaces
                    .iter()
                    .map(|n| n.name.clone())
                    .collect::<Vec<_>>()
                    == expected
                    && s.namespaces.iter().all(|n| n.ready)
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn a_tenant_wide_delegation_follows_labels_and_tenants() {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name("onb-prov");
    let customer = unique_name("onb-cust");
    let elsewhere = unique_name("onb-other");
    let provider = env
        .namespace_with_labels("onb-p", &[(TENANT, &provider_tenant)])
        .await;
    let home = env
        .namespace_with_labels("onb-home", &[(TENANT, &customer)])
        .await;
    let web: TestNamespace = env
        .namespace_with_labels("onb-web", &[(TENANT, &customer), ("tier", "web")])
        .await;
    let db = env
        .namespace_with_labels("onb-db", &[(TENANT, &customer), ("tier", "db")])
        .await;
    // Labeled alike, but another tenant's.
    let foreign = env
        .namespace_with_labels("onb-foreign", &[(TENANT, &elsewhere), ("tier", "web")])
        .await;
    let user = unique_name("onb-reader");
    apply(
        &admin,
        &fixtures::reader_offer(&provider, &provider_tenant, &user),
    )
    .await;
    let reader = env.user_client(&user, &[]).await;

    create(&admin, &tenant_wide(&home, "all-web", &provider, "web")).await;
    wait_condition(&admin, &home, "all-web", "Ready", "True", None).await;
    wait_namespaces(&admin, &home, "all-web", &[&web]).await;
    assert!(can_read(&reader, &web).await);
    for other in [&*home, &*db, &*foreign] {
        assert!(!can_read(&reader, other).await, "not in {other}");
    }

    // A namespace created later joins.
    let late = env
        .namespace_with_labels("onb-late", &[(TENANT, &customer), ("tier", "web")])
        .await;
    wait_read(&reader, &late, true).await;
    // A namespace labeled later joins; one that stops matching leaves.
    label(&admin, &db, &[("tier", "web")]).await;
    wait_read(&reader, &db, true).await;
    label(&admin, &web, &[("tier", "frontend")]).await;
    wait_read(&reader, &web, false).await;
    // A namespace that moves to another tenant leaves, labels and all.
    label(&admin, &late, &[(TENANT, &elsewhere)]).await;
    wait_read(&reader, &late, false).await;
    wait_namespaces(&admin, &home, "all-web", &[&db]).await;
    // A deleted namespace leaves the status.
    Api::<Namespace>::all(admin.clone())
        .delete(&db, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_namespaces(&admin, &home, "all-web", &[]).await;

    // Deleting the Delegation removes everything it granted.
    label(&admin, &web, &[("tier", "web")]).await;
    wait_read(&reader, &web, true).await;
    Api::<Delegation>::namespaced(admin.clone(), &home)
        .delete("all-web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_read(&reader, &web, false).await;
    assert!(managed_bindings(&admin, &home, "all-web").await.is_empty());
}

#[tokio::test]
async fn only_cluster_wide_rights_may_delegate_namespaces_of_the_future() {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name("onb2-prov");
    let customer = unique_name("onb2-cust");
    let provider = env
        .namespace_with_labels("onb2-p", &[(TENANT, &provider_tenant)])
        .await;
    let home = env
        .namespace_with_labels("onb2-home", &[(TENANT, &customer), ("tier", "web")])
        .await;
    let user = unique_name("onb2-reader");
    apply(
        &admin,
        &fixtures::reader_offer(&provider, &provider_tenant, &user),
    )
    .await;
    let reader = env.user_client(&user, &[]).await;

    // Both fields at once: refused by the schema.
    let mut both = tenant_wide(&home, "both", &provider, "web");
    both.spec.namespaces = Some(vec![NamespaceName(home.to_string())]);
    let refused = Api::<Delegation>::namespaced(admin.clone(), &home)
        .create(&PostParams::default(), &both)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.message.contains("exclude each other")),
        "{refused:?}"
    );

    // Who may write Delegations at all (not part of the built-in roles).
    let binder = unique_name("binder");
    let writes_delegations = format!("{binder}-dlg");
    let mut with_crud = cluster_role(
        &writes_delegations,
        "delegations",
        &["create", "delete", "get"],
    );
    with_crud.rules.as_mut().expect("rules")[0].api_groups = Some(vec!["msp-operator.io".into()]);
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &with_crud)
        .await
        .expect("cluster role");
    // A namespace admin may delegate her namespace, but not the tenant's
    // namespaces of the future.
    let carol = unique_name("carol");
    apply(
        &admin,
        &fixtures::role_binding(
            &home,
            "carol-admin",
            ("ClusterRole", "admin"),
            ("User", &carol),
        ),
    )
    .await;
    apply(
        &admin,
        &fixtures::role_binding(
            &home,
            "carol-delegations",
            ("ClusterRole", &writes_delegations),
            ("User", &carol),
        ),
    )
    .await;
    let carol_client = env.user_client(&carol, &[]).await;
    let refused = Api::<Delegation>::namespaced(carol_client, &home)
        .create(
            &PostParams::default(),
            &tenant_wide(&home, "carols", &provider, "web"),
        )
        .await;
    match refused {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message.contains("spec.namespaceSelector")
                && s.message.contains("cluster-wide"),
            "{s:?}"
        ),
        other => panic!("a namespace admin created a tenant-wide Delegation: {other:?}"),
    }

    // Someone who may create RoleBindings everywhere but could not grant the
    // plan's role everywhere (only in the one namespace that matches today):
    // admitted, and the consent check refuses it, because the selector
    // reaches namespaces where it could not.
    apply(
        &admin,
        &fixtures::role_binding(
            &home,
            "binder-reads",
            ("ClusterRole", fixtures::READER_ROLE),
            ("User", &binder),
        ),
    )
    .await;
    let binder_role = cluster_role(&binder, "rolebindings", &["create", "get", "list"]);
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &binder_role)
        .await
        .expect("cluster role");
    bind_cluster_role(&admin, &binder, &binder, &binder).await;
    bind_cluster_role(&admin, &writes_delegations, &writes_delegations, &binder).await;
    let delegations = Api::<Delegation>::namespaced(env.user_client(&binder, &[]).await, &home);
    msp_testenv::wait_until(TIMEOUT, "the binder's rights to apply", || {
        let delegations = delegations.clone();
        let home = home.to_string();
        let provider = provider.to_string();
        async move {
            delegations
                .create(
                    &PostParams::default(),
                    &tenant_wide(&home, "binders", &provider, "web"),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let d = wait_condition(
        &admin,
        &home,
        "binders",
        "Ready",
        "False",
        Some("ConsentExceedsConsenter"),
    )
    .await;
    let (_, _, message) = condition(&d, "Accepted").expect("Accepted");
    assert!(message.contains("in every namespace"), "{message}");
    assert!(!can_read(&reader, &home).await);
    assert!(managed_bindings(&admin, &home, "binders").await.is_empty());

    // Holding the role's rights cluster-wide, the same consenter may.
    bind_cluster_role(
        &admin,
        &format!("{binder}-reader"),
        fixtures::READER_ROLE,
        &binder,
    )
    .await;
    delegations
        .delete("binders", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(
        &Api::<Delegation>::namespaced(admin.clone(), &home),
        "binders",
    )
    .await;
    delegations
        .create(
            &PostParams::default(),
            &tenant_wide(&home, "binders", &provider, "web"),
        )
        .await
        .expect("create");
    wait_condition(&admin, &home, "binders", "Ready", "True", None).await;
    wait_read(&reader, &home, true).await;
    for name in [
        binder.clone(),
        format!("{binder}-dlg"),
        format!("{binder}-reader"),
    ] {
        let _ = Api::<ClusterRoleBinding>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
    }
    for name in [binder.clone(), format!("{binder}-dlg")] {
        let _ = Api::<ClusterRole>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
    }
}

/// A ClusterRole `name` with `verbs` on RBAC `resource`.
fn cluster_role(name: &str, resource: &str, verbs: &[&str]) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
            resources: Some(vec![resource.into()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }]),
        aggregation_rule: None,
    }
}

/// Binds ClusterRole `role` to user `user` cluster-wide, as `name`.
async fn bind_cluster_role(admin: &Client, name: &str, role: &str, user: &str) {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
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
        .await
        .expect("cluster role binding");
}
