//! Attacks on msp-operator's promises, each made by the attacker with its own
//! credentials against the real API server: a hostile provider, a hostile
//! customer-side user, and a stolen operator token. Every test shows the
//! attack failing and, where it matters, what the attacker can and cannot do
//! afterwards. The README's "Security model" section states the invariants
//! these tests hold.

mod support;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

const TENANT: &str = "msp-operator.io/tenant";
const RBAC: &str = "rbac.authorization.k8s.io";

/// A provider namespace and a customer namespace, of two tenants.
struct World {
    provider: TestNamespace,
    customer: TestNamespace,
    provider_tenant: String,
}

async fn world(name: &str) -> World {
    let env = env();
    let provider_tenant = unique_name(&format!("{name}-prov"));
    let customer_tenant = unique_name(&format!("{name}-cust"));
    World {
        provider: env
            .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
            .await,
        customer: env
            .namespace_with_labels(&format!("{name}-c"), &[(TENANT, &customer_tenant)])
            .await,
        provider_tenant,
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// Gives `user` the `rules` in `namespace` (a Role and its RoleBinding).
async fn allow(admin: &Client, namespace: &str, user: &str, rules: Vec<PolicyRule>) {
    let name = unique_name("allow");
    apply(
        admin,
        &Role {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            rules: Some(rules),
        },
    )
    .await;
    apply(
        admin,
        &fixtures::role_binding(namespace, &name, ("Role", &name), ("User", user)),
    )
    .await;
}

/// The offers of the world's provider namespace, as a provider user who may
/// create and read offers there and nothing else.
async fn provider_offers(admin: &Client, w: &World) -> Api<ManagedServiceOffer> {
    let user = unique_name("provider");
    let offers = rule(
        "msp-operator.io",
        &["managedserviceoffers"],
        &["create", "get"],
    );
    allow(admin, &w.provider, &user, vec![offers]).await;
    Api::namespaced(install().user_client(&user, &[]).await, &w.provider)
}

/// A delegable ClusterRole named `name` with `rules`.
async fn delegable_role(admin: &Client, name: &str, rules: Vec<PolicyRule>) {
    let role = fixtures::delegable_cluster_role(name, rules);
    Api::<ClusterRole>::all(admin.clone())
        .patch(
            name,
            &PatchParams::apply("msp-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .expect("cluster role");
}

/// Whether `client` may list ConfigMaps in `ns`.
async fn can_list_configmaps(client: &Client, ns: &str) -> bool {
    can_list::<ConfigMap>(client, ns).await
}

/// Waits until delegation `ns/name` has no managed RoleBinding left.
async fn no_grants_left(admin: &Client, ns: &str, name: &str, timeout: Duration) {
    wait_until(
        timeout,
        &format!("no grant of {ns}/{name} left"),
        || async {
            match managed_bindings(admin, ns, name).await.len() {
                0 => Ok(()),
                left => Err(format!("{left} left")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The API server's refusal of `result`, which must be one.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(s)) => s.message,
        other => panic!("{what} must be refused, got {other:?}"),
    }
}

/// Retries `attempt` until the API server refuses it with a message
/// containing `expected` (RBAC and policies take a moment to apply).
async fn refused_with<F, Fut, T>(what: &str, expected: &str, attempt: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
    T: std::fmt::Debug,
{
    wait_until(TIMEOUT, what, || {
        let attempt = attempt();
        async move {
            match attempt.await {
                Err(kube::Error::Api(s)) if s.message.contains(expected) => Ok(s.message),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Finding 1: a user who may create RoleBindings, but who neither holds a
/// role's permissions nor may bind it, cannot obtain that role through an
/// offer and a Delegation, on create or by raising the plan version.
#[tokio::test]
async fn consent_cannot_grant_more_than_the_consenter_could() {
    let env = env();
    let admin = env.client().await;
    let w = world("escalate").await;
    let mallory = unique_name("mallory");
    let group = unique_name("mallory-crew");
    let as_mallory = env.user_client(&mallory, &[&group]).await;
    let harmless = unique_name("harmless");
    let powerful = unique_name("powerful");
    delegable_role(
        &admin,
        &harmless,
        vec![rule("", &["pods"], &["get", "list"])],
    )
    .await;
    delegable_role(
        &admin,
        &powerful,
        vec![rule("", &["configmaps"], &["get", "list"])],
    )
    .await;
    // Mallory publishes offers in her provider namespace and may create
    // Delegations and RoleBindings in the customer namespace, and read pods
    // there (she holds `harmless`), but not configmaps (`powerful`).
    allow(
        &admin,
        &w.provider,
        &mallory,
        vec![rule(
            "msp-operator.io",
            &["managedserviceoffers"],
            &["create", "get", "update", "patch"],
        )],
    )
    .await;
    allow(
        &admin,
        &w.customer,
        &mallory,
        vec![
            rule(
                "msp-operator.io",
                &["delegations"],
                &["create", "get", "update", "patch"],
            ),
            rule(RBAC, &["rolebindings"], &["create", "get", "list"]),
            rule("", &["pods"], &["get", "list"]),
        ],
    )
    .await;

    // Kubernetes refuses her the RoleBinding itself.
    let direct = fixtures::role_binding(
        &w.customer,
        "direct",
        ("ClusterRole", &powerful),
        ("Group", &group),
    );
    let rbs: Api<RoleBinding> = Api::namespaced(as_mallory.clone(), &w.customer);
    refused_with(
        "a direct RoleBinding",
        "attempting to grant RBAC permissions not currently held",
        || {
            let (rbs, direct) = (&rbs, &direct);
            async move { rbs.create(&PostParams::default(), direct).await }
        },
    )
    .await;

    // Through consent: the same grant, refused.
    let offers: Api<ManagedServiceOffer> = Api::namespaced(as_mallory.clone(), &w.provider);
    let evil = fixtures::offer(
        &w.provider,
        "evil",
        &w.provider_tenant,
        vec![fixtures::plan(
            "p",
            "1.0.0",
            vec![auth(PrincipalKind::Group, &group, &powerful)],
        )],
    );
    offers
        .create(&PostParams::default(), &evil)
        .await
        .expect("her offer");
    let delegations: Api<Delegation> = Api::namespaced(as_mallory.clone(), &w.customer);
    let consent = delegation(
        &w.customer,
        "evil",
        (&w.provider, "evil"),
        "p",
        "1.0.0",
        None,
    );
    delegations
        .create(&PostParams::default(), &consent)
        .await
        .expect("admitted: she may create RoleBindings here");
    let refused = wait_condition(
        &admin,
        &w.customer,
        "evil",
        "Ready",
        "False",
        Some("ConsentExceedsConsenter"),
    )
    .await;
    let (_, _, message) = condition(&refused, "Accepted").expect("Accepted");
    assert!(
        message.contains(&mallory) && message.contains(&powerful),
        "{message}"
    );
    assert!(
        managed_bindings(&admin, &w.customer, "evil")
            .await
            .is_empty(),
        "refusal grants nothing"
    );
    assert!(!can_list_configmaps(&as_mallory, &w.customer).await);

    // She cannot pass the consent off as someone else's: the recorder
    // writes the identity the API server authenticated over whatever she
    // claims ...
    let mut forged = delegation(
        &w.customer,
        "forged",
        (&w.provider, "evil"),
        "p",
        "1.0.0",
        None,
    );
    let claim = BTreeMap::from([(
        "msp-operator.io/consented-by".to_string(),
        "msp-testenv:admin".to_string(),
    )]);
    forged.metadata.annotations = Some(claim.clone());
    let recorded = delegations
        .create(&PostParams::default(), &forged)
        .await
        .expect("admitted, as hers");
    assert_eq!(
        recorded.annotations().get("msp-operator.io/consented-by"),
        Some(&mallory)
    );
    wait_condition(
        &admin,
        &w.customer,
        "forged",
        "Ready",
        "False",
        Some("ConsentExceedsConsenter"),
    )
    .await;
    // ... and refuses a record changed afterwards to name someone else.
    let message = refusal(
        delegations
            .patch(
                "evil",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": claim}})),
            )
            .await,
        "a consenter changed to someone else",
    );
    assert!(
        message.contains(&format!("set it to \"{mallory}\"")),
        "{message}"
    );

    // Within her rights it works: a plan of `harmless`, which she holds ...
    let mut fair = evil.clone();
    fair.metadata.name = Some("fair".into());
    fair.spec.plans = vec![fixtures::plan(
        "p",
        "1.0.0",
        vec![auth(PrincipalKind::Group, &group, &harmless)],
    )];
    offers
        .create(&PostParams::default(), &fair)
        .await
        .expect("fair offer");
    delegations
        .create(
            &PostParams::default(),
            &delegation(
                &w.customer,
                "fair",
                (&w.provider, "fair"),
                "p",
                "1.0.0",
                None,
            ),
        )
        .await
        .expect("fair delegation");
    wait_condition(&admin, &w.customer, "fair", "Ready", "True", None).await;
    // ... but raising the version to one that adds `powerful` is refused,
    // and fails closed: nothing stays granted.
    let mut v2 = offers.get("fair").await.expect("get");
    v2.spec.plans = vec![fixtures::plan(
        "p",
        "2.0.0",
        vec![
            auth(PrincipalKind::Group, &group, &harmless),
            auth(PrincipalKind::Group, &group, &powerful),
        ],
    )];
    offers
        .replace("fair", &PostParams::default(), &v2)
        .await
        .expect("v2");
    delegations
        .patch(
            "fair",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"planVersion": "2.0.0"}})),
        )
        .await
        .expect("raise");
    wait_condition(
        &admin,
        &w.customer,
        "fair",
        "Ready",
        "False",
        Some("ConsentExceedsConsenter"),
    )
    .await;
    no_grants_left(&admin, &w.customer, "fair", TIMEOUT).await;
    assert!(!can_list_configmaps(&as_mallory, &w.customer).await);

    // Someone who may bind the role consents for the same plan: granted.
    let admin_consent = delegation(
        &w.customer,
        "by-admin",
        (&w.provider, "fair"),
        "p",
        "2.0.0",
        None,
    );
    apply(&admin, &admin_consent).await;
    wait_condition(&admin, &w.customer, "by-admin", "Ready", "True", None).await;
    wait_until(TIMEOUT, "mallory's group reads configmaps", || {
        let client = as_mallory.clone();
        let ns = w.customer.name().to_string();
        async move {
            if can_list_configmaps(&client, &ns).await {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await
    .expect("granted by someone allowed to");
}

/// Finding 2: no `system:` identity and no ServiceAccount of another
/// namespace, under any spelling, can be named in an offer.
#[tokio::test]
async fn everyone_and_someone_else_are_never_principals() {
    let env = env();
    let admin = env.client().await;
    let w = world("system").await;
    let offers = provider_offers(&admin, &w).await;
    for (kind, name, expected) in [
        (
            PrincipalKind::Group,
            "system:authenticated",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::Group,
            "system:unauthenticated",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::Group,
            "system:masters",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::User,
            "system:anonymous",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::User,
            "system:serviceaccount:kube-system:default",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::Group,
            "system:serviceaccounts:kube-system",
            "must not start with \"system:\"",
        ),
        (
            PrincipalKind::ServiceAccount,
            "system:serviceaccount:kube-system:default",
            "must not start with \"system:\"",
        ),
    ] {
        let offer = fixtures::offer(
            &w.provider,
            &unique_name("everyone"),
            &w.provider_tenant,
            vec![fixtures::plan(
                "p",
                "1.0.0",
                vec![auth(kind, name, "msp-operator:reader")],
            )],
        );
        let message = refused_with(&format!("{kind:?} {name}"), expected, || {
            let (offers, offer) = (&offers, &offer);
            async move { offers.create(&PostParams::default(), offer).await }
        })
        .await;
        assert!(message.contains("principal.name"), "{message}");
    }
    let mut elsewhere = auth(
        PrincipalKind::ServiceAccount,
        "default",
        "msp-operator:reader",
    );
    elsewhere.principal.namespace = Some("kube-system".into());
    let offer = fixtures::offer(
        &w.provider,
        "elsewhere",
        &w.provider_tenant,
        vec![fixtures::plan("p", "1.0.0", vec![elsewhere])],
    );
    refused_with(
        "a ServiceAccount of another namespace",
        "must be the offer namespace",
        || {
            let (offers, offer) = (&offers, &offer);
            async move { offers.create(&PostParams::default(), offer).await }
        },
    )
    .await;
}

/// Finding 3: a role that can run workloads (and so act as any
/// ServiceAccount and read any Secret of the namespace) is granted only with
/// the customer's explicit acknowledgment, recorded on the Delegation.
#[tokio::test]
async fn workload_power_needs_the_customers_acknowledgment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let env = env();
    let admin = env.client().await;
    let w = world("workload").await;
    let operator_user = unique_name("oncall");
    let as_provider = env.user_client(&operator_user, &[]).await;
    apply(
        &admin,
        &fixtures::offer(
            &w.provider,
            "ops",
            &w.provider_tenant,
            vec![fixtures::plan(
                "p",
                "1.0.0",
                vec![auth(
                    PrincipalKind::User,
                    &operator_user,
                    "msp-operator:operator",
                )],
            )],
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(&w.customer, "ops", (&w.provider, "ops"), "p", "1.0.0", None),
    )
    .await;
    let refused = wait_condition(
        &admin,
        &w.customer,
        "ops",
        "Ready",
        "False",
        Some("WorkloadAccessNotAcknowledged"),
    )
    .await;
    let (_, _, message) = condition(&refused, "Accepted").expect("Accepted");
    assert!(
        message.contains("add \"msp-operator:operator\" to spec.acknowledgedWorkloadRoles"),
        "{message}"
    );
    assert!(message.contains("deployments"), "{message}");
    let deployments: Api<Deployment> = Api::namespaced(as_provider.clone(), &w.customer);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe"},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/none"}]}
            }
        }
    }))
    .expect("deployment");
    let message = refusal(
        deployments
            .create(&PostParams::default(), &deployment)
            .await,
        "a deployment before the acknowledgment",
    );
    assert!(message.contains("forbidden"), "{message}");

    apply(
        &admin,
        &fixtures::acknowledging(
            delegation(&w.customer, "ops", (&w.provider, "ops"), "p", "1.0.0", None),
            &["msp-operator:operator"],
        ),
    )
    .await;
    wait_condition(&admin, &w.customer, "ops", "Ready", "True", None).await;
    wait_until(TIMEOUT, "the provider may create deployments", || {
        let deployments = deployments.clone();
        let deployment = deployment.clone();
        async move {
            match deployments
                .create(&PostParams::default(), &deployment)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .expect("granted once acknowledged");
}

/// Finding 4: consent records cannot be forged by a customer-side user,
/// and a provider that replaces its offer with the same version and more
/// authorizations gets nothing more; a lost record fails closed.
#[tokio::test]
async fn consent_is_bound_to_its_content_and_records_cannot_be_forged() {
    let env = env();
    let admin = env.client().await;
    let w = world("forge").await;
    let alice = unique_name("alice");
    let bob = unique_name("bob");
    let forger = unique_name("forger");
    let as_alice = env.user_client(&alice, &[]).await;
    let as_bob = env.user_client(&bob, &[]).await;
    let as_forger = env.user_client(&forger, &[]).await;
    apply(
        &admin,
        &fixtures::reader_offer(&w.provider, &w.provider_tenant, &alice),
    )
    .await;
    apply(
        &admin,
        &delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None),
    )
    .await;
    let ready = wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    let digest = ready
        .status
        .as_ref()
        .and_then(|s| s.accepted_digest.clone())
        .expect("acceptedDigest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    wait_access(&as_alice, &w.customer, true).await;

    // A user who may write ControllerRevisions forges a record for Bob.
    allow(
        &admin,
        &w.customer,
        &forger,
        vec![rule(
            "apps",
            &["controllerrevisions"],
            &["create", "update", "patch", "get", "list"],
        )],
    )
    .await;
    let records: Api<ControllerRevision> = Api::namespaced(admin.clone(), &w.customer);
    let genuine = records
        .list(&ListParams::default().labels("msp-operator.io/delegation=d"))
        .await
        .expect("records")
        .items
        .pop()
        .expect("a record");
    let mut forged = genuine.clone();
    forged.metadata = ObjectMeta {
        name: Some("forged".into()),
        namespace: genuine.metadata.namespace.clone(),
        labels: genuine.metadata.labels.clone(),
        owner_references: genuine.metadata.owner_references.clone(),
        ..Default::default()
    };
    let text = serde_json::to_string(&genuine.data)
        .expect("json")
        .replace(&alice, &bob);
    forged.data = serde_json::from_str(&text).expect("data");
    let as_forger_records: Api<ControllerRevision> = Api::namespaced(as_forger, &w.customer);
    let message = refused_with(
        "a forged consent record",
        "written by msp-operator only",
        || {
            let (records, forged) = (&as_forger_records, &forged);
            async move { records.create(&PostParams::default(), forged).await }
        },
    )
    .await;
    assert!(message.contains(&forger), "{message}");
    // Nor by taking an unlabeled revision and labeling it afterwards.
    let mut unlabeled = forged.clone();
    unlabeled.metadata.labels = None;
    unlabeled.metadata.name = Some("later".into());
    as_forger_records
        .create(&PostParams::default(), &unlabeled)
        .await
        .expect("an ordinary revision");
    let message = refusal(
        as_forger_records
            .patch(
                "later",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": genuine.metadata.labels}})),
            )
            .await,
        "labeling a revision as the operator's",
    );
    assert!(
        message.contains("written by msp-operator only"),
        "{message}"
    );

    // The provider deletes the offer and publishes the same version again
    // with Bob added: Bob gets nothing, Alice keeps what was consented.
    Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider)
        .delete("o", &DeleteParams::default())
        .await
        .expect("delete offer");
    let mut replaced = fixtures::reader_offer(&w.provider, &w.provider_tenant, &alice);
    replaced.spec.plans[0].authorizations.push(auth(
        PrincipalKind::User,
        &bob,
        "msp-operator:reader",
    ));
    wait_gone(
        &Api::<ManagedServiceOffer>::namespaced(admin.clone(), &w.provider),
        "o",
    )
    .await;
    apply(&admin, &replaced).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !can_list_pods(&as_bob, &w.customer).await,
        "never granted what was not consented"
    );
    assert!(can_list_pods(&as_alice, &w.customer).await);

    // The record is lost (deleted by someone allowed to): the live offer's
    // different content is not taken on trust; nothing stays granted.
    records
        .delete(&genuine.name_any(), &DeleteParams::default())
        .await
        .expect("delete the record");
    wait_condition(
        &admin,
        &w.customer,
        "d",
        "Ready",
        "False",
        Some("ConsentRecordMissing"),
    )
    .await;
    wait_access(&as_alice, &w.customer, false).await;
    assert!(!can_list_pods(&as_bob, &w.customer).await);
}

/// Finding 5: cleanup cannot be skipped. A customer-side user cannot take the
/// finalizer off; and when someone who may does, and deletes the Delegation,
/// the sweep still removes every grant.
#[tokio::test]
async fn nothing_outlives_its_delegation() {
    let env = env();
    let admin = env.client().await;
    let w = world("orphan").await;
    let alice = unique_name("alice");
    let editor = unique_name("editor");
    let as_alice = env.user_client(&alice, &[]).await;
    let as_editor = env.user_client(&editor, &[]).await;
    apply(
        &admin,
        &fixtures::reader_offer(&w.provider, &w.provider_tenant, &alice),
    )
    .await;
    apply(
        &admin,
        &delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None),
    )
    .await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    wait_access(&as_alice, &w.customer, true).await;

    allow(
        &admin,
        &w.customer,
        &editor,
        vec![rule(
            "msp-operator.io",
            &["delegations"],
            &["get", "update", "patch", "delete"],
        )],
    )
    .await;
    let as_editor_delegations: Api<Delegation> = Api::namespaced(as_editor, &w.customer);
    let strip = serde_json::json!({"metadata": {"finalizers": null}});
    let message = refused_with(
        "removing the cleanup finalizer",
        "only msp-operator removes the msp-operator.io/cleanup finalizer",
        || {
            let (api, strip) = (&as_editor_delegations, &strip);
            async move {
                api.patch("d", &PatchParams::default(), &Patch::Merge(strip))
                    .await
            }
        },
    )
    .await;
    assert!(message.contains("delete the Delegation"), "{message}");

    // A cluster admin strips it and deletes at once: the finalizer path is
    // skipped, the sweep is not.
    let admin_delegations: Api<Delegation> = Api::namespaced(admin.clone(), &w.customer);
    admin_delegations
        .patch("d", &PatchParams::default(), &Patch::Merge(&strip))
        .await
        .expect("strip");
    admin_delegations
        .delete("d", &DeleteParams::default())
        .await
        .expect("delete");
    // The sweep acts on objects older than 30 s, every 10 s.
    no_grants_left(&admin, &w.customer, "d", Duration::from_secs(90)).await;
    assert!(!can_list_pods(&as_alice, &w.customer).await);
}

/// Finding 6: an offer cannot claim another tenant's name as its provider.
#[tokio::test]
async fn a_provider_is_the_tenant_of_its_namespace() {
    let env = env();
    let admin = env.client().await;
    let w = world("spoof").await;
    let offers = provider_offers(&admin, &w).await;
    let spoofed = fixtures::reader_offer(&w.provider, "contoso-msp", "x");
    let message = refused_with(
        "an offer claiming another tenant",
        "spec.provider.tenant must be the tenant of namespace",
        || {
            let (offers, spoofed) = (&offers, &spoofed);
            async move { offers.create(&PostParams::default(), spoofed).await }
        },
    )
    .await;
    assert!(
        message.contains(&format!("set it to \"{}\"", w.provider_tenant)),
        "{message}"
    );
    offers
        .create(
            &PostParams::default(),
            &fixtures::reader_offer(&w.provider, &w.provider_tenant, "x"),
        )
        .await
        .expect("its own tenant");
}

/// Finding 7: the operator's own identity (a stolen token, or a bug) cannot
/// bind cluster-admin, admin or edit, grant to system identities, write
/// Roles other than the deleter, or touch RoleBindings it did not make.
#[tokio::test]
async fn the_operators_own_identity_is_bounded() {
    let env = env();
    let admin = env.client().await;
    let w = world("stolen").await;
    let operator = env.user_client(OPERATOR_USER, &[]).await;
    let rbs: Api<RoleBinding> = Api::namespaced(operator.clone(), &w.customer);
    let managed = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "msp-operator".to_string(),
    )]);
    let binding =
        |name: &str, role: &str, subject: &str, labels: Option<BTreeMap<String, String>>| {
            let mut rb =
                fixtures::role_binding(&w.customer, name, ("ClusterRole", role), ("User", subject));
            rb.metadata.labels = labels;
            rb
        };
    for (what, object, expected) in [
        (
            "cluster-admin",
            binding("a", "cluster-admin", "thief", Some(managed.clone())),
            "never binds ClusterRole cluster-admin",
        ),
        (
            "admin",
            binding("b", "admin", "thief", Some(managed.clone())),
            "never binds ClusterRole admin",
        ),
        (
            "edit",
            binding("c", "edit", "thief", Some(managed.clone())),
            "never binds ClusterRole edit",
        ),
        (
            "a system subject",
            binding(
                "d",
                "msp-operator:reader",
                "system:anonymous",
                Some(managed.clone()),
            ),
            "never grants to a system identity",
        ),
        (
            "an unlabeled binding",
            binding("e", "msp-operator:reader", "thief", None),
            "writes and deletes only rolebindings labeled",
        ),
    ] {
        let message = refusal(rbs.create(&PostParams::default(), &object).await, what);
        assert!(message.contains(expected), "{what}: {message}");
    }
    // Roles: only the one-Delegation deleter shape.
    // Verbs the operator holds (so RBAC lets it through), but no
    // resourceNames: every Delegation of the namespace.
    let roles: Api<Role> = Api::namespaced(operator.clone(), &w.customer);
    let wide = Role {
        metadata: ObjectMeta {
            name: Some("msp-x-deleter-0123abcd".into()),
            namespace: Some(w.customer.name().into()),
            labels: Some(managed.clone()),
            ..Default::default()
        },
        rules: Some(vec![rule(
            "msp-operator.io",
            &["delegations"],
            &["get", "delete"],
        )]),
    };
    let message = refusal(
        roles.create(&PostParams::default(), &wide).await,
        "a wider Role",
    );
    assert!(
        message.contains("writes no Role but the one-Delegation deleter"),
        "{message}"
    );
    // It cannot delete what it did not make.
    let theirs = binding("theirs", "msp-operator:reader", "someone", None);
    apply(&admin, &theirs).await;
    let message = refusal(
        rbs.delete("theirs", &DeleteParams::default()).await,
        "deleting someone else's binding",
    );
    assert!(
        message.contains("writes and deletes only rolebindings labeled"),
        "{message}"
    );
    // A cluster admin is not bounded by it.
    apply(&admin, &binding("by-admin", "edit", "someone", None)).await;
}

/// Finding 8: a refusal that goes away (a role unsafe, then safe again)
/// recovers on that change, not on the ten-minute resync; and refusals do
/// not disclose another customer's private plans.
#[tokio::test]
async fn transient_refusals_recover_on_the_change_and_refusals_disclose_nothing() {
    let env = env();
    let admin = env.client().await;
    let w = world("transient").await;
    let alice = unique_name("alice");
    let as_alice = env.user_client(&alice, &[]).await;
    let role = unique_name("flaky");
    delegable_role(&admin, &role, vec![rule("", &["pods"], &["get", "list"])]).await;
    let mut secret_plan = fixtures::plan(
        "secret-plan",
        "9.9.9",
        vec![auth(PrincipalKind::User, "x", &role)],
    );
    secret_plan.visibility = Visibility::Private;
    secret_plan.audience = Some(vec![TenantId("someone-else".into())]);
    apply(
        &admin,
        &fixtures::offer(
            &w.provider,
            "o",
            &w.provider_tenant,
            vec![
                fixtures::plan("p", "1.0.0", vec![auth(PrincipalKind::User, &alice, &role)]),
                secret_plan,
            ],
        ),
    )
    .await;
    apply(
        &admin,
        &delegation(&w.customer, "d", (&w.provider, "o"), "p", "1.0.0", None),
    )
    .await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    wait_access(&as_alice, &w.customer, true).await;
    // The role turns unsafe: revoked.
    delegable_role(
        &admin,
        &role,
        vec![rule("", &["pods", "secrets"], &["get", "list"])],
    )
    .await;
    wait_condition(
        &admin,
        &w.customer,
        "d",
        "Ready",
        "False",
        Some("RoleNotDelegable"),
    )
    .await;
    wait_access(&as_alice, &w.customer, false).await;
    // Safe again: granted again within the test timeout (the operator here
    // resyncs hourly).
    delegable_role(&admin, &role, vec![rule("", &["pods"], &["get", "list"])]).await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;
    wait_access(&as_alice, &w.customer, true).await;

    apply(
        &admin,
        &delegation(
            &w.customer,
            "typo",
            (&w.provider, "o"),
            "nope",
            "1.0.0",
            None,
        ),
    )
    .await;
    let refused = wait_condition(
        &admin,
        &w.customer,
        "typo",
        "Ready",
        "False",
        Some("PlanNotFound"),
    )
    .await;
    let (_, _, message) = condition(&refused, "Ready").expect("Ready");
    assert!(
        message.contains("\"p\"") || message.contains(": p"),
        "{message}"
    );
    assert!(
        !message.contains("secret-plan"),
        "a private plan's name leaked: {message}"
    );
    apply(
        &admin,
        &delegation(
            &w.customer,
            "peek",
            (&w.provider, "o"),
            "secret-plan",
            "1.0.0",
            None,
        ),
    )
    .await;
    let refused = wait_condition(
        &admin,
        &w.customer,
        "peek",
        "Ready",
        "False",
        Some("NotInAudience"),
    )
    .await;
    let status = refused.status.clone().expect("status");
    assert_eq!(
        status.latest_version, None,
        "no version of a plan it may not see"
    );
    let (_, _, message) = condition(&refused, "Ready").expect("Ready");
    assert!(
        !message.contains("9.9.9") && !message.contains("someone-else"),
        "{message}"
    );
}
