//! The views of both sides against a real API server, each as the user who
//! would read it: a customer's catalog shows its tenant every Public plan
//! and the Private plans naming it, and nothing of another tenant's; a
//! provider's "My customers" shows each customer Delegation in the
//! provider's namespace, to a user with read access there only; a pending
//! update says what would change. Negative cases included: no audience, no
//! other tenant, no offer, no customer namespace is readable.

mod support;

use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::{TestNamespace, unique_name, wait_for};
use support::*;

const TENANT: &str = "msp-operator.io/tenant";

/// A provider with an offer `o` of three plans: `public`, `vip` (Private,
/// for the customer tenant and a tenant named `secret`), `other` (Private,
/// for tenant `other` only); a customer namespace whose user has `edit`,
/// and a provider user who may only view the provider's namespace.
struct World {
    provider: TestNamespace,
    customer: TestNamespace,
    outsider: TestNamespace,
    customer_tenant: String,
    secret: String,
    other: String,
    customer_user: Client,
    outsider_user: Client,
    provider_user: Client,
}

fn private(name: &str, audience: &[&str]) -> Plan {
    let mut plan = fixtures::plan(
        name,
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::Group,
            "ops",
            fixtures::READER_ROLE,
        )],
    );
    plan.visibility = Visibility::Private;
    plan.audience = Some(audience.iter().map(|t| TenantId(t.to_string())).collect());
    plan
}

async fn world(name: &str) -> World {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name(&format!("{name}-prov"));
    let customer_tenant = unique_name(&format!("{name}-cust"));
    let outsider_tenant = unique_name(&format!("{name}-out"));
    let secret = unique_name("secret");
    let other = unique_name("other");
    let provider = env
        .namespace_with_labels(&format!("{name}-p"), &[(TENANT, &provider_tenant)])
        .await;
    let customer = env
        .namespace_with_labels(&format!("{name}-c"), &[(TENANT, &customer_tenant)])
        .await;
    let outsider = env
        .namespace_with_labels(&format!("{name}-o"), &[(TENANT, &outsider_tenant)])
        .await;
    let public = fixtures::plan(
        "public",
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::Group,
            "ops",
            fixtures::READER_ROLE,
        )],
    );
    let offer = fixtures::offer(
        &provider,
        "o",
        &provider_tenant,
        vec![
            public,
            private("vip", &[&customer_tenant, &secret]),
            private("other", &[&other]),
        ],
    );
    apply(&admin, &offer).await;
    let customer_name = unique_name("cathy");
    let outsider_name = unique_name("oscar");
    let provider_name = unique_name("pia");
    for (ns, user, role) in [
        (&customer, &customer_name, "edit"),
        (&outsider, &outsider_name, "edit"),
        (&provider, &provider_name, "view"),
    ] {
        apply(
            &admin,
            &fixtures::role_binding(ns, user, ("ClusterRole", role), ("User", user)),
        )
        .await;
    }
    World {
        customer_user: env.user_client(&customer_name, &[]).await,
        outsider_user: env.user_client(&outsider_name, &[]).await,
        provider_user: env.user_client(&provider_name, &[]).await,
        provider,
        customer,
        outsider,
        customer_tenant,
        secret,
        other,
    }
}

/// Creates the catalog of `namespace` as `client` (once its RBAC is in
/// force) and waits for its status.
async fn catalog(client: &Client, namespace: &str) -> OfferCatalog {
    wait_can_list::<OfferCatalog>(client, namespace, true).await;
    let api: Api<OfferCatalog> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(CATALOG_NAME).await.expect("get").is_none() {
        let catalog = OfferCatalog::new(CATALOG_NAME, OfferCatalogSpec::default());
        api.create(&PostParams::default(), &catalog)
            .await
            .expect("create catalog");
    }
    wait_for(&api, CATALOG_NAME, TIMEOUT, "catalog status", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == c.metadata.generation)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn plans_of(catalog: &OfferCatalog, offer_ns: &str) -> Vec<String> {
    catalog
        .status
        .iter()
        .flat_map(|s| s.offers.iter())
        .filter(|o| o.namespace == offer_ns)
        .flat_map(|o| o.plans.iter().map(|p| p.name.clone()))
        .collect()
}

#[tokio::test]
async fn a_customer_catalog_lists_what_its_tenant_may_accept_and_nothing_of_others() {
    let w = world("vwcat").await;
    let mine = catalog(&w.customer_user, &w.customer).await;
    assert_eq!(plans_of(&mine, &w.provider), ["public", "vip"]);
    let status = mine.status.as_ref().expect("status");
    assert_eq!(status.tenant.as_deref(), Some(w.customer_tenant.as_str()));
    let text = serde_json::to_string(&mine).expect("json");
    for leak in [&w.secret, &w.other, "audience"] {
        assert!(!text.contains(leak), "the catalog shows {leak:?}: {text}");
    }

    // Another tenant's catalog: the Public plan only; and neither can read
    // the other's catalog, nor any offer.
    let theirs = catalog(&w.outsider_user, &w.outsider).await;
    assert_eq!(plans_of(&theirs, &w.provider), ["public"]);
    assert!(!can_list::<OfferCatalog>(&w.customer_user, &w.outsider).await);
    assert!(!can_list::<OfferCatalog>(&w.outsider_user, &w.customer).await);
    for (user, ns) in [
        (&w.customer_user, &w.provider),
        (&w.customer_user, &w.customer),
        (&w.outsider_user, &w.provider),
    ] {
        assert!(
            !can_list::<ManagedServiceOffer>(user, ns).await,
            "a customer reads offers in {}",
            ns.name()
        );
        assert!(
            !can_list::<CustomerDelegation>(user, &w.provider).await,
            "a customer reads the provider's customers"
        );
    }
    let everywhere = Api::<OfferCatalog>::all(w.customer_user.clone())
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(everywhere, Err(kube::Error::Api(ref s)) if s.code == 403),
        "a customer lists catalogs cluster-wide: {everywhere:?}"
    );

    // Asking for another tenant's Private plan anyway: refused, and neither
    // the refusal nor its Events name the plan's audience.
    let admin = env().client().await;
    let probe = fixtures::delegation(
        &w.outsider,
        "probe",
        (&w.provider, "o"),
        "vip",
        "1.0.0",
        None,
    );
    create(&admin, &probe).await;
    wait_condition(
        &admin,
        &w.outsider,
        "probe",
        "Ready",
        "False",
        Some("NotInAudience"),
    )
    .await;
    wait_event(&admin, &w.outsider, "probe", "NotInAudience").await;
    let seen = Api::<Delegation>::namespaced(w.outsider_user.clone(), &w.outsider)
        .get("probe")
        .await
        .expect("a viewer reads the Delegations of the namespace");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(
        w.outsider_user.clone(),
        &w.outsider,
    )
    .list(&ListParams::default())
    .await
    .expect("events");
    let text = format!(
        "{}{}",
        serde_json::to_string(&seen).expect("json"),
        serde_json::to_string(&events.items).expect("json")
    );
    for leak in [&w.customer_tenant, &w.secret] {
        assert!(
            !text.contains(leak.as_str()),
            "the refusal shows {leak:?}: {text}"
        );
    }

    // One catalog per namespace, by name.
    let api: Api<OfferCatalog> = Api::namespaced(w.customer_user.clone(), &w.customer);
    let other = OfferCatalog::new("mine", OfferCatalogSpec::default());
    let refused = api.create(&PostParams::default(), &other).await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.message.contains("must be named \"catalog\"")),
        "{refused:?}"
    );

    // The catalog follows the offer: a Private plan that comes to name the
    // tenant appears, and is the only change.
    let offers: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &w.provider);
    let mut offer = offers.get("o").await.expect("offer");
    for plan in &mut offer.spec.plans {
        if plan.name == "other" {
            plan.audience
                .get_or_insert_with(Vec::new)
                .push(TenantId(w.customer_tenant.clone()));
        }
    }
    apply(&admin, &offer).await;
    let catalogs: Api<OfferCatalog> = Api::namespaced(w.customer_user.clone(), &w.customer);
    let provider = w.provider.name().to_string();
    let updated = wait_for(&catalogs, CATALOG_NAME, TIMEOUT, "the new plan", |c| {
        plans_of(c, &provider).len() == 3
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let text = serde_json::to_string(&updated).expect("json");
    assert!(
        !text.contains(&w.other),
        "now shared, still not named: {text}"
    );

    // A namespace that moves to another tenant: its catalog is that
    // tenant's from then on.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(
            w.outsider.name(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"metadata": {"labels": {TENANT: w.customer_tenant}}}),
            ),
        )
        .await
        .expect("relabel");
    let moved: Api<OfferCatalog> = Api::namespaced(w.outsider_user.clone(), &w.outsider);
    let tenant = w.customer_tenant.clone();
    let moved = wait_for(
        &moved,
        CATALOG_NAME,
        TIMEOUT,
        "the new tenant's catalog",
        |c| c.status.as_ref().and_then(|s| s.tenant.as_deref()) == Some(tenant.as_str()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(plans_of(&moved, &provider), ["public", "vip", "other"]);
}

#[tokio::test]
async fn my_customers_shows_the_provider_each_delegation_without_customer_access() {
    let w = world("vwcus").await;
    let admin = env().client().await;
    let delegation = fixtures::delegation(
        &w.customer,
        "d",
        (&w.provider, "o"),
        "public",
        "1.0.0",
        None,
    );
    create(&admin, &delegation).await;
    wait_condition(&admin, &w.customer, "d", "Ready", "True", None).await;

    // The provider's user, with view in its own namespace only.
    wait_can_list::<CustomerDelegation>(&w.provider_user, &w.provider, true).await;
    let records: Api<CustomerDelegation> = Api::namespaced(w.provider_user.clone(), &w.provider);
    let name = CustomerDelegation::name_for(&w.customer, "d");
    let customer_tenant = w.customer_tenant.clone();
    let record = wait_for(&records, &name, TIMEOUT, "a Ready record", |r| {
        r.spec.ready && r.spec.customer_tenant == customer_tenant
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(record.spec.offer, "o");
    assert_eq!(record.spec.plan, "public");
    assert_eq!(record.spec.applied_version.as_deref(), Some("1.0.0"));
    assert_eq!(record.spec.namespaces, vec![w.customer.name().to_string()]);
    assert_eq!(record.spec.reason, "Granted");
    assert!(record.spec.accepted_since.is_some());
    assert_eq!(record.spec.pending_version, None);
    assert!(!can_list::<Delegation>(&w.provider_user, &w.customer).await);
    assert!(!can_list::<CustomerDelegation>(&w.provider_user, &w.outsider).await);
    assert!(
        !can(
            &w.provider_user,
            &w.provider,
            "delete",
            "msp-operator.io",
            "customerdelegations"
        )
        .await,
        "the record is the operator's"
    );

    // A newer version: the customer's Delegation says what would change,
    // and the provider sees that an update waits.
    let offers: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &w.provider);
    let mut offer = offers.get("o").await.expect("offer");
    let plan = offer
        .spec
        .plans
        .iter_mut()
        .find(|p| p.name == "public")
        .expect("plan");
    plan.version = "1.1.0".into();
    plan.authorizations.push(fixtures::auth(
        PrincipalKind::User,
        "night-shift",
        fixtures::READER_ROLE,
    ));
    apply(&admin, &offer).await;
    let waiting = wait_condition(&admin, &w.customer, "d", "UpdateAvailable", "True", None).await;
    let update = waiting
        .status
        .and_then(|s| s.pending_update)
        .expect("pending update");
    assert_eq!(update.version, "1.1.0");
    assert_eq!(update.added.len(), 1);
    assert_eq!(update.added[0].principal.name, "night-shift");
    assert!(update.removed.is_empty());
    wait_for(&records, &name, TIMEOUT, "the waiting update", |r| {
        r.spec.pending_version.as_deref() == Some("1.1.0")
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    // Removed by someone: restored. The Delegation deleted: gone.
    let admin_records: Api<CustomerDelegation> = Api::namespaced(admin.clone(), &w.provider);
    admin_records
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete record");
    wait_for(&records, &name, TIMEOUT, "the record restored", |r| {
        r.spec.ready
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    Api::<Delegation>::namespaced(admin.clone(), &w.customer)
        .delete("d", &DeleteParams::default())
        .await
        .expect("delete delegation");
    wait_gone(&admin_records, &name).await;
}
