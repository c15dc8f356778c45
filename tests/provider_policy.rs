//! Allowed providers (ClusterProviderPolicy, ProviderPolicy) against a real
//! API server: Deny refuses at `kubectl apply` and revokes what a changed
//! policy no longer allows; Audit warns and reports; roles can be limited in
//! selected namespaces; a customer's policy narrows and never widens. Access
//! is checked as the provider's users, with their own client certificates.
//!
//! Platform policies are cluster-wide objects and the API server is shared
//! with other tests, so each test's policies select only its own namespaces
//! (label `msp-tests/policy-world`).

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_for};
use std::collections::BTreeMap;
use support::*;

const TENANT: &str = "msp-operator.io/tenant";
const WORLD: &str = "msp-tests/policy-world";
/// Can delete pods and change ConfigMaps; more than the reader.
const OPERATOR_ROLE: &str = "msp-operator:operator";

/// Two providers, `x` (user `xavier`) and `y` (user `yuri`), each with a
/// reader offer `o`; one customer tenant with a production namespace `prod`
/// and a staging namespace `stage`, both marked with this world's label.
struct World {
    id: String,
    x: TestNamespace,
    y: TestNamespace,
    x_tenant: String,
    y_tenant: String,
    prod: TestNamespace,
    stage: TestNamespace,
    xavier: String,
    yuri: String,
}

async fn world(name: &str) -> World {
    let env = env();
    let id = unique_name(name);
    let x_tenant = unique_name(&format!("{name}-x"));
    let y_tenant = unique_name(&format!("{name}-y"));
    let customer = unique_name(&format!("{name}-cust"));
    let w = World {
        x: env
            .namespace_with_labels(&format!("{name}-x"), &[(TENANT, &x_tenant)])
            .await,
        y: env
            .namespace_with_labels(&format!("{name}-y"), &[(TENANT, &y_tenant)])
            .await,
        prod: env
            .namespace_with_labels(
                &format!("{name}-prod"),
                &[(TENANT, &customer), (WORLD, &id), ("env", "production")],
            )
            .await,
        stage: env
            .namespace_with_labels(
                &format!("{name}-stage"),
                &[(TENANT, &customer), (WORLD, &id), ("env", "staging")],
            )
            .await,
        id,
        x_tenant,
        y_tenant,
        xavier: unique_name("xavier"),
        yuri: unique_name("yuri"),
    };
    let admin = env.client().await;
    apply(
        &admin,
        &fixtures::reader_offer(&w.x, &w.x_tenant, &w.xavier),
    )
    .await;
    apply(&admin, &fixtures::reader_offer(&w.y, &w.y_tenant, &w.yuri)).await;
    w
}

/// A Delegation `name` in `namespace` of provider namespace `offer_ns`'s
/// reader offer, covering `namespaces`.
fn delegation(namespace: &str, name: &str, offer_ns: &str, namespaces: &[&str]) -> Delegation {
    fixtures::delegation(
        namespace,
        name,
        (offer_ns, "o"),
        "p",
        "1.0.0",
        Some(namespaces.to_vec()),
    )
}

fn rules(mode: PolicyMode, providers: Option<&[&str]>, roles: Option<&[&str]>) -> PolicyRules {
    PolicyRules {
        mode,
        allowed_providers: providers.map(|p| {
            p.iter()
                .map(|t| AllowedProvider {
                    tenant: TenantId(t.to_string()),
                    roles: None,
                })
                .collect()
        }),
        allowed_roles: roles.map(|r| r.iter().map(|r| RoleName(r.to_string())).collect()),
    }
}

/// A platform policy selecting this world's namespaces with `extra` labels.
fn cluster_policy(
    w: &World,
    name: &str,
    extra: &[(&str, &str)],
    rules: PolicyRules,
) -> ClusterProviderPolicy {
    let mut labels = BTreeMap::from([(WORLD.to_string(), w.id.clone())]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ClusterProviderPolicy::new(
        &format!("{}-{name}", w.id),
        ClusterProviderPolicySpec {
            namespace_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(labels),
                    match_expressions: None,
                },
            ),
            rules,
        },
    )
}

/// Creates or replaces `policy` (server-side apply) and waits until the
/// operator has processed it.
async fn put_cluster_policy(policy: &ClusterProviderPolicy) {
    let admin = env().client().await;
    let api: Api<ClusterProviderPolicy> = Api::all(admin);
    let mut body = serde_json::to_value(policy).expect("json");
    body["apiVersion"] = "msp-operator.io/v1alpha1".into();
    body["kind"] = "ClusterProviderPolicy".into();
    api.patch(
        &policy.name_any(),
        &PatchParams::apply("msp-tests").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("apply policy");
    wait_processed(&api, &policy.name_any()).await;
}

async fn wait_processed<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource<DynamicType = ()>
        + ProviderPolicyKind
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    wait_for(
        api,
        name,
        TIMEOUT,
        "the operator to process the policy",
        |p| {
            p.policy_status()
                .is_some_and(|s| s.observed_generation == p.meta().generation)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn delete_cluster_policy(name: &str) {
    let admin = env().client().await;
    let _ = Api::<ClusterProviderPolicy>::all(admin)
        .delete(name, &DeleteParams::default())
        .await;
}

async fn can_read(client: &Client, namespace: &str) -> bool {
    can_list::<ConfigMap>(client, namespace).await
}

/// Waits until `client` may (or may not) read ConfigMaps in `namespace`.
async fn wait_read(client: &Client, namespace: &str, expected: bool) {
    wait_can_list::<ConfigMap>(client, namespace, expected).await
}

/// The error message of a create that admission refused.
async fn refused_create(client: &Client, d: &Delegation) -> String {
    let api: Api<Delegation> = Api::namespaced(client.clone(), &d.namespace().expect("ns"));
    match api.create(&PostParams::default(), d).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "refused as Forbidden: {s:?}");
            assert!(
                api.get_opt(&d.name_any()).await.expect("get").is_none(),
                "nothing was created"
            );
            s.message
        }
        other => panic!("expected a refusal at admission, got {other:?}"),
    }
}

#[tokio::test]
async fn deny_refuses_at_apply_and_revokes_what_a_changed_policy_no_longer_allows() {
    let env = env();
    let admin = env.client().await;
    let w = world("deny").await;
    let xavier = env.user_client(&w.xavier, &[]).await;
    let yuri = env.user_client(&w.yuri, &[]).await;

    // Granted before any policy.
    create(
        &admin,
        &delegation(&w.prod, "by-x", &w.x, &[&w.prod, &w.stage]),
    )
    .await;
    wait_condition(&admin, &w.prod, "by-x", "Ready", "True", None).await;
    assert!(can_read(&xavier, &w.prod).await && can_read(&xavier, &w.stage).await);

    // The platform now allows provider y only: x's grants go, everywhere.
    let policy = cluster_policy(
        &w,
        "only-y",
        &[],
        rules(PolicyMode::Deny, Some(&[&w.y_tenant]), None),
    );
    put_cluster_policy(&policy).await;
    let d = wait_condition(
        &admin,
        &w.prod,
        "by-x",
        "Ready",
        "False",
        Some("ProviderNotAllowed"),
    )
    .await;
    let (_, _, message) = condition(&d, "Accepted").expect("Accepted");
    assert!(
        message.contains(&policy.name_any())
            && message.contains(&w.x_tenant)
            && message.contains("spec.allowedProviders"),
        "names the policy, the provider and the fix: {message}"
    );
    wait_read(&xavier, &w.prod, false).await;
    wait_read(&xavier, &w.stage, false).await;
    assert!(managed_bindings(&admin, &w.prod, "by-x").await.is_empty());
    wait_event(&admin, &w.prod, "by-x", "ProviderNotAllowed").await;

    // A new Delegation to x is refused at apply; one to y is admitted.
    let message = refused_create(&admin, &delegation(&w.stage, "by-x-2", &w.x, &[&w.stage])).await;
    assert!(
        message.contains(&format!("ClusterProviderPolicy {}", policy.name_any()))
            && message.contains(&format!("{}/o", w.x.name()))
            && message.contains("spec.allowedProviders"),
        "{message}"
    );
    create(&admin, &delegation(&w.stage, "by-y", &w.y, &[&w.stage])).await;
    wait_condition(&admin, &w.stage, "by-y", "Ready", "True", None).await;
    assert!(can_read(&yuri, &w.stage).await);
    assert!(!can_read(&yuri, &w.prod).await, "only where delegated");

    // Allowing x again restores what the customer consented to.
    let both = cluster_policy(
        &w,
        "only-y",
        &[],
        rules(PolicyMode::Deny, Some(&[&w.y_tenant, &w.x_tenant]), None),
    );
    put_cluster_policy(&both).await;
    wait_condition(&admin, &w.prod, "by-x", "Ready", "True", None).await;
    wait_read(&xavier, &w.prod, true).await;
    wait_read(&xavier, &w.stage, true).await;

    // And deleting the policy leaves it granted.
    delete_cluster_policy(&policy.name_any()).await;
    create(&admin, &delegation(&w.stage, "by-x-3", &w.x, &[&w.stage])).await;
    wait_condition(&admin, &w.stage, "by-x-3", "Ready", "True", None).await;
}

#[tokio::test]
async fn audit_warns_at_apply_reports_and_grants_as_consented() {
    let env = env();
    let admin = env.client().await;
    let w = world("audit").await;
    let xavier = env.user_client(&w.xavier, &[]).await;
    let policy = cluster_policy(
        &w,
        "audit-y",
        &[],
        rules(PolicyMode::Audit, Some(&[&w.y_tenant]), None),
    );
    put_cluster_policy(&policy).await;

    let yaml = format!(
        "apiVersion: msp-operator.io/v1alpha1\nkind: Delegation\nmetadata:\n  name: by-x\n  namespace: {}\nspec:\n  offerRef: {{namespace: {}, name: o}}\n  plan: p\n  planVersion: 1.0.0\n",
        w.stage.name(),
        w.x.name()
    );
    let (ok, output) = kubectl_apply(env, &yaml);
    assert!(ok, "Audit admits: {output}");
    assert!(
        output.contains("Warning:")
            && output.contains(&format!("ClusterProviderPolicy {}", policy.name_any()))
            && output.contains("audit mode"),
        "kubectl shows the warning: {output}"
    );
    let d = wait_condition(
        &admin,
        &w.stage,
        "by-x",
        "PolicyViolation",
        "True",
        Some("ProviderNotAllowed"),
    )
    .await;
    assert!(
        condition(&d, "Ready").is_some_and(|(s, _, _)| s == "True"),
        "granted as consented: {:?}",
        d.status
    );
    assert!(can_read(&xavier, &w.stage).await);
    wait_event(&admin, &w.stage, "by-x", "PolicyViolation").await;

    // Allowed now: the condition goes away.
    put_cluster_policy(&cluster_policy(
        &w,
        "audit-y",
        &[],
        rules(PolicyMode::Audit, Some(&[&w.y_tenant, &w.x_tenant]), None),
    ))
    .await;
    let api: Api<Delegation> = Api::namespaced(admin.clone(), &w.stage);
    wait_for(&api, "by-x", TIMEOUT, "PolicyViolation gone", |d| {
        condition(d, "PolicyViolation").is_none()
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    delete_cluster_policy(&policy.name_any()).await;
}

#[tokio::test]
async fn roles_can_be_limited_in_selected_namespaces() {
    let env = env();
    let admin = env.client().await;
    let w = world("roles").await;
    // Provider x also offers plan `ops`: the operator role, more than a reader.
    let mut offer = fixtures::reader_offer(&w.x, &w.x_tenant, &w.xavier);
    offer.spec.plans.push(fixtures::plan(
        "ops",
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::User,
            &w.xavier,
            OPERATOR_ROLE,
        )],
    ));
    apply(&admin, &offer).await;
    let xavier = env.user_client(&w.xavier, &[]).await;
    // In production, no provider holds more than a reader.
    let policy = cluster_policy(
        &w,
        "prod-readers",
        &[("env", "production")],
        rules(PolicyMode::Deny, None, Some(&[fixtures::READER_ROLE])),
    );
    put_cluster_policy(&policy).await;

    let ops = |namespace: &str, name: &str, namespaces: &[&str]| {
        let mut d = delegation(namespace, name, &w.x, namespaces);
        d.spec.plan = "ops".into();
        fixtures::acknowledging(d, &[OPERATOR_ROLE])
    };
    // Staging is not selected: granted.
    create(&admin, &ops(&w.stage, "ops", &[&w.stage])).await;
    wait_condition(&admin, &w.stage, "ops", "Ready", "True", None).await;
    assert!(can(&xavier, &w.stage, "delete", "", "pods").await);
    // Covering production too: refused whole (the roles live in the offer,
    // which admission cannot read, so the operator refuses).
    create(&admin, &ops(&w.stage, "ops-both", &[&w.stage, &w.prod])).await;
    let d = wait_condition(
        &admin,
        &w.stage,
        "ops-both",
        "Ready",
        "False",
        Some("RoleNotAllowed"),
    )
    .await;
    let (_, _, message) = condition(&d, "Accepted").expect("Accepted");
    assert!(
        message.contains(OPERATOR_ROLE)
            && message.contains("authorizations[0]")
            && message.contains(w.prod.name())
            && message.contains(&policy.name_any()),
        "{message}"
    );
    assert!(
        managed_bindings(&admin, &w.stage, "ops-both")
            .await
            .is_empty()
    );
    assert!(!can(&xavier, &w.prod, "delete", "", "pods").await);
    // The reader plan is allowed in production.
    create(&admin, &delegation(&w.prod, "read", &w.x, &[&w.prod])).await;
    wait_condition(&admin, &w.prod, "read", "Ready", "True", None).await;
    assert!(can_read(&xavier, &w.prod).await);
    assert!(!can(&xavier, &w.prod, "delete", "", "pods").await);
    delete_cluster_policy(&policy.name_any()).await;
}

#[tokio::test]
async fn a_customer_policy_narrows_the_platforms_and_never_widens_it() {
    let env = env();
    let admin = env.client().await;
    let w = world("narrow").await;
    let xavier = env.user_client(&w.xavier, &[]).await;
    // carol administers the production namespace only.
    let carol_name = unique_name("carol");
    apply(
        &admin,
        &fixtures::role_binding(
            &w.prod,
            "carol-admin",
            ("ClusterRole", "admin"),
            ("User", &carol_name),
        ),
    )
    .await;
    let carol = env.user_client(&carol_name, &[]).await;

    // A Delegation from staging covering production, granted.
    create(
        &admin,
        &delegation(&w.stage, "by-x", &w.x, &[&w.stage, &w.prod]),
    )
    .await;
    wait_condition(&admin, &w.stage, "by-x", "Ready", "True", None).await;
    wait_read(&xavier, &w.prod, true).await;

    // carol may not write platform policies...
    let platform = cluster_policy(
        &w,
        "carols",
        &[],
        rules(PolicyMode::Deny, Some(&[&w.y_tenant]), None),
    );
    let refused = Api::<ClusterProviderPolicy>::all(carol.clone())
        .create(&PostParams::default(), &platform)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
    // ...but narrows her namespace to provider y.
    let mine = ProviderPolicy::new(
        "only-y",
        ProviderPolicySpec {
            rules: rules(PolicyMode::Deny, Some(&[&w.y_tenant]), None),
        },
    );
    let api: Api<ProviderPolicy> = Api::namespaced(carol.clone(), &w.prod);
    api.create(&PostParams::default(), &mine)
        .await
        .expect("a namespace admin writes a ProviderPolicy");
    wait_processed(
        &Api::<ProviderPolicy>::namespaced(admin.clone(), &w.prod),
        "only-y",
    )
    .await;

    // The Delegation from staging reaches production: refused whole, naming
    // her policy; x loses access in both namespaces.
    let d = wait_condition(
        &admin,
        &w.stage,
        "by-x",
        "Ready",
        "False",
        Some("ProviderNotAllowed"),
    )
    .await;
    let (_, _, message) = condition(&d, "Accepted").expect("Accepted");
    assert!(
        message.contains(&format!("ProviderPolicy {}/only-y", w.prod.name())),
        "{message}"
    );
    wait_read(&xavier, &w.prod, false).await;
    wait_read(&xavier, &w.stage, false).await;
    // A new one created in production is refused at apply.
    let message = refused_create(&admin, &delegation(&w.prod, "by-x-here", &w.x, &[&w.prod])).await;
    assert!(
        message.contains(&format!(
            "ProviderPolicy only-y of namespace {}",
            w.prod.name()
        )),
        "{message}"
    );

    // The platform allows y only; carol allowing x as well widens nothing.
    let platform = cluster_policy(
        &w,
        "platform",
        &[],
        rules(PolicyMode::Deny, Some(&[&w.y_tenant]), None),
    );
    put_cluster_policy(&platform).await;
    let wider = ProviderPolicy::new(
        "only-y",
        ProviderPolicySpec {
            rules: rules(PolicyMode::Deny, Some(&[&w.y_tenant, &w.x_tenant]), None),
        },
    );
    let mut current = api.get("only-y").await.expect("get");
    current.spec = wider.spec;
    api.replace("only-y", &PostParams::default(), &current)
        .await
        .expect("replace");
    wait_processed(
        &Api::<ProviderPolicy>::namespaced(admin.clone(), &w.prod),
        "only-y",
    )
    .await;
    let d = wait_condition(
        &admin,
        &w.stage,
        "by-x",
        "Ready",
        "False",
        Some("ProviderNotAllowed"),
    )
    .await;
    let (_, _, message) = condition(&d, "Accepted").expect("Accepted");
    assert!(
        message.contains(&format!("ClusterProviderPolicy {}", platform.name_any())),
        "now the platform's policy refuses: {message}"
    );
    assert!(!can_read(&xavier, &w.prod).await);
    delete_cluster_policy(&platform.name_any()).await;
    // With the platform policy gone, carol's own (x and y) allows it again.
    wait_condition(&admin, &w.stage, "by-x", "Ready", "True", None).await;
    wait_read(&xavier, &w.prod, true).await;
}
