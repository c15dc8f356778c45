//! The customer catalog: which offers and plans a tenant may accept, as
//! that tenant may see them (pure).
//!
//! A Private plan's audience is the list of a provider's customers, so the
//! projection decides visibility here and copies nothing of the audience:
//! a tenant sees every Public plan and the Private plans that name it,
//! never which other tenants a plan names.

use crate::api::{
    CatalogAuthorization, CatalogEligibleAuthorization, CatalogOffer, CatalogPlan,
    ManagedServiceOffer, Plan, PrincipalKind, Visibility,
};
use kube::ResourceExt;
use std::sync::Arc;

/// The most plans one catalog lists (keeps the object well inside etcd's
/// size limit: a plan with 20 authorizations is about 3 KiB).
pub const MAX_CATALOG_PLANS: usize = 300;

/// What a tenant's catalog lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// Offers with at least one plan the tenant may accept, sorted.
    pub offers: Vec<CatalogOffer>,
    /// Plans listed.
    pub plan_count: usize,
    /// Plans were left out because of [`MAX_CATALOG_PLANS`].
    pub truncated: bool,
}

/// True when `tenant` may accept `plan`: it is Public, or Private with the
/// tenant in its audience.
pub fn visible_to(plan: &Plan, tenant: &str) -> bool {
    plan.visibility == Visibility::Public || plan.audience.iter().flatten().any(|t| t.0 == tenant)
}

/// The catalog of `tenant`: every live offer (of `provider` only, when
/// given) with the plans the tenant may accept, sorted by namespace and
/// name. An offer of the tenant's own is left out (a tenant cannot
/// delegate to itself).
pub fn project(
    tenant: &str,
    provider: Option<&str>,
    offers: &[Arc<ManagedServiceOffer>],
) -> Projection {
    let mut listed: Vec<&Arc<ManagedServiceOffer>> = offers
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.spec.provider.tenant != tenant)
        .filter(|o| provider.is_none_or(|p| o.spec.provider.tenant == p))
        .collect();
    listed.sort_by_key(|o| (o.namespace().unwrap_or_default(), o.name_any()));
    let mut projection = Projection::default();
    for offer in listed {
        let plans: Vec<CatalogPlan> = offer
            .spec
            .plans
            .iter()
            .filter(|p| visible_to(p, tenant))
            .map(plan_view)
            .collect();
        if plans.is_empty() {
            continue;
        }
        let room = MAX_CATALOG_PLANS - projection.plan_count;
        if plans.len() > room {
            projection.truncated = true;
            break;
        }
        projection.plan_count += plans.len();
        projection.offers.push(CatalogOffer {
            namespace: offer.namespace().unwrap_or_default(),
            name: offer.name_any(),
            display_name: offer.spec.display_name.clone(),
            description: offer.spec.description.clone(),
            provider_tenant: offer.spec.provider.tenant.clone(),
            provider_display_name: offer.spec.provider.display_name.clone(),
            plans,
        });
    }
    projection
}

/// A plan as a customer sees it: everything but its audience.
fn plan_view(plan: &Plan) -> CatalogPlan {
    CatalogPlan {
        name: plan.name.clone(),
        display_name: plan.display_name.clone(),
        description: plan.description.clone(),
        version: plan.version.clone(),
        visibility: Some(plan.visibility),
        authorizations: plan
            .authorizations
            .iter()
            .map(|a| CatalogAuthorization {
                principal_kind: Some(a.principal.kind),
                principal: match (a.principal.kind, &a.principal.namespace) {
                    (PrincipalKind::ServiceAccount, Some(ns)) => {
                        format!("{ns}/{}", a.principal.name)
                    }
                    _ => a.principal.name.clone(),
                },
                principal_display_name: a.principal_display_name.clone(),
                role_ref: a.role_ref.clone(),
                delegated_roles: a
                    .delegated_roles
                    .iter()
                    .flatten()
                    .map(|r| r.0.clone())
                    .collect(),
            })
            .collect(),
        eligible_authorizations: plan
            .eligible_authorizations
            .iter()
            .flatten()
            .map(|e| CatalogEligibleAuthorization {
                principal_kind: Some(e.principal.kind),
                principal: e.principal.name.clone(),
                principal_display_name: e.principal_display_name.clone(),
                role_ref: e.role_ref.clone(),
                max_duration: e.max_duration.clone(),
                approval_required: !e.approvers().is_empty(),
                justification_required: e.require_justification,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn offer(
        namespace: &str,
        name: &str,
        provider: &str,
        plans: Vec<Plan>,
    ) -> Arc<ManagedServiceOffer> {
        Arc::new(fixtures::offer(namespace, name, provider, plans))
    }

    fn public(name: &str) -> Plan {
        let reader = fixtures::auth(PrincipalKind::Group, "ops", "view");
        fixtures::plan(name, "1.0.0", vec![reader])
    }

    fn private(name: &str, audience: &[&str]) -> Plan {
        let mut p = public(name);
        p.visibility = Visibility::Private;
        p.audience = Some(
            audience
                .iter()
                .map(|t| crate::api::TenantId(t.to_string()))
                .collect(),
        );
        p
    }

    #[test]
    fn a_tenant_sees_public_plans_and_private_plans_naming_it_and_no_audience() {
        let offers = vec![offer(
            "p",
            "o",
            "prov",
            vec![
                public("public"),
                private("for-a", &["tenant-a", "tenant-b"]),
                private("for-b", &["tenant-b"]),
            ],
        )];
        let a = project("tenant-a", None, &offers);
        let plans: Vec<&str> = a.offers[0].plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(plans, ["public", "for-a"]);
        let text = serde_json::to_string(&a.offers).expect("json");
        assert!(
            !text.contains("tenant-b"),
            "another tenant's name leaked: {text}"
        );
        assert!(!text.contains("audience"), "an audience leaked: {text}");
        assert_eq!(a.plan_count, 2);
        assert!(!a.truncated);
    }

    #[test]
    fn an_offer_with_nothing_visible_is_left_out_and_so_is_the_tenants_own() {
        let offers = vec![
            offer(
                "p",
                "private-only",
                "prov",
                vec![private("x", &["tenant-b"])],
            ),
            offer("a", "own", "tenant-a", vec![public("public")]),
        ];
        assert!(project("tenant-a", None, &offers).offers.is_empty());
    }

    #[test]
    fn the_provider_filter_and_the_order() {
        let offers = vec![
            offer("z", "o", "prov-z", vec![public("p")]),
            offer("b", "o", "prov-b", vec![public("p")]),
            offer("b", "a", "prov-b", vec![public("p")]),
        ];
        let all = project("t", None, &offers);
        let names: Vec<String> = all
            .offers
            .iter()
            .map(|o| format!("{}/{}", o.namespace, o.name))
            .collect();
        assert_eq!(names, ["b/a", "b/o", "z/o"]);
        let one = project("t", Some("prov-z"), &offers);
        assert_eq!(one.offers.len(), 1);
        assert_eq!(one.offers[0].provider_tenant, "prov-z");
    }

    #[test]
    fn a_catalog_stops_at_its_bound_and_says_so() {
        let plans: Vec<Plan> = (0..50).map(|i| public(&format!("p{i}"))).collect();
        let offers: Vec<_> = (0..7)
            .map(|i| offer("p", &format!("o{i}"), "prov", plans.clone()))
            .collect();
        let got = project("t", None, &offers);
        assert!(got.truncated);
        assert_eq!(got.plan_count, 300);
        assert_eq!(got.offers.len(), 6);
    }
}
