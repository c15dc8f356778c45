//! Upgrading from 0.1.0, which wrote one RoleBinding per authorization and
//! namespace, to one RoleBinding per role and namespace: the new operator
//! creates the grouped bindings before it removes the old ones, so no
//! still-consented principal loses access for a moment — watched as those
//! principals, with their own client certificates, all through the upgrade.
//! A test binary of its own, so the operator starts after the old objects.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use msp_operator::api::PrincipalKind;
use msp_operator::domain::names;
use msp_operator::fixtures::READER_ROLE;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use support::*;

/// The name 0.1.0 gave the binding of one principal to one ClusterRole.
fn binding_name_0_1_0(delegation_ns: &str, delegation: &str, user: &str, role: &str) -> String {
    let principal = format!("User//{user}");
    let hash = names::stable_hash(&[delegation_ns, delegation, &principal, "ClusterRole", role]);
    format!("msp-{delegation}-{:012x}", hash & 0xffff_ffff_ffff)
}

/// A binding as 0.1.0 wrote it: one subject, the managed labels.
fn binding_0_1_0(customer: &str, ns: &str, provider: &str, user: &str) -> RoleBinding {
    let mut binding = msp_operator::fixtures::role_binding(
        ns,
        &binding_name_0_1_0(customer, "d", user, READER_ROLE),
        ("ClusterRole", READER_ROLE),
        ("User", user),
    );
    binding.metadata.labels = Some(BTreeMap::from([
        (
            names::MANAGED_BY_LABEL.to_string(),
            names::MANAGED_BY.to_string(),
        ),
        (names::DELEGATION_NAMESPACE_LABEL.into(), customer.into()),
        (names::DELEGATION_LABEL.into(), "d".into()),
        (names::OFFER_NAMESPACE_LABEL.into(), provider.into()),
        (names::OFFER_LABEL.into(), "o".into()),
        (names::PLAN_LABEL.into(), "p".into()),
    ]));
    binding
}

#[tokio::test]
async fn upgrading_from_per_authorization_bindings_never_drops_access() {
    let env = install();
    let admin = env.client().await;
    let provider_tenant = msp_testenv::unique_name("upg-prov");
    let customer_tenant = msp_testenv::unique_name("upg-cust");
    let tenant_label = [("msp-operator.io/tenant", customer_tenant.as_str())];
    let provider = env
        .namespace_with_labels("upg-p", &[("msp-operator.io/tenant", &provider_tenant)])
        .await;
    let customer = env.namespace_with_labels("upg-c", &tenant_label).await;
    let customer_b = env.namespace_with_labels("upg-cb", &tenant_label).await;
    let users = [
        msp_testenv::unique_name("upg-alice"),
        msp_testenv::unique_name("upg-bob"),
    ];
    apply(
        &admin,
        &offer(
            &provider,
            "o",
            &provider_tenant,
            vec![plan(
                "p",
                "1.0.0",
                users
                    .iter()
                    .map(|u| auth(PrincipalKind::User, u, READER_ROLE))
                    .collect(),
            )],
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(
            &customer,
            "d",
            (&provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&customer, &customer_b]),
        ),
    )
    .await;
    // What 0.1.0 left: one binding per (user, namespace).
    let mut old = Vec::new();
    for ns in [&customer, &customer_b] {
        for user in &users {
            let binding = binding_0_1_0(&customer, ns, &provider, user);
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .create(&PostParams::default(), &binding)
                .await
                .expect("0.1.0 binding");
            old.push((ns.to_string(), binding.name_any()));
        }
    }
    let clients: Vec<Client> =
        futures::future::join_all(users.iter().map(|u| env.user_client(u, &[]))).await;
    for client in &clients {
        for ns in [&customer, &customer_b] {
            assert!(can_list::<ConfigMap>(client, ns).await, "0.1.0 access");
        }
    }

    // Each principal lists config maps in both namespaces, back to back,
    // from before the new operator starts until it has converged.
    let stop = Arc::new(AtomicBool::new(false));
    let denied = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let watchers: Vec<_> = clients
        .iter()
        .flat_map(|client| {
            [customer.to_string(), customer_b.to_string()].map(|ns| {
                let (client, stop, denied, samples) = (
                    client.clone(),
                    stop.clone(),
                    denied.clone(),
                    samples.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Acquire) {
                        if !can_list::<ConfigMap>(&client, &ns).await {
                            denied.fetch_add(1, Ordering::AcqRel);
                        }
                        samples.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
        })
        .collect();
    start_operator();
    wait_condition(&admin, &customer, "d", "Ready", "True", Some("Granted")).await;
    // Converged: the old bindings are gone, one per namespace holds both.
    msp_testenv::wait_until(TIMEOUT, "the 0.1.0 bindings to be replaced", || {
        let admin = admin.clone();
        let customer = customer.to_string();
        async move {
            let bindings = managed_bindings(&admin, &customer, "d").await;
            match bindings.len() {
                2 => Ok(bindings),
                n => Err(format!("{n} bindings")),
            }
        }
    })
    .await
    .expect("grouped bindings");
    stop.store(true, Ordering::Release);
    for watcher in watchers {
        watcher.await.expect("watcher");
    }
    let bindings = managed_bindings(&admin, &customer, "d").await;
    for binding in &bindings {
        assert!(
            !old.contains(&(binding.namespace().unwrap_or_default(), binding.name_any())),
            "{} is a 0.1.0 binding",
            binding.name_any()
        );
        let mut subjects: Vec<String> = binding
            .subjects
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect();
        subjects.sort();
        let mut expected = users.to_vec();
        expected.sort();
        assert_eq!(subjects, expected, "one binding holds every reader");
    }
    let (samples, denied) = (
        samples.load(Ordering::Acquire),
        denied.load(Ordering::Acquire),
    );
    eprintln!("upgrade: {samples} access checks by the principals, {denied} denied");
    assert!(samples > 0);
    assert_eq!(
        denied, 0,
        "a consented principal lost access during the upgrade"
    );
}
