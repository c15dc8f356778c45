//! The status of an offer (pure): whether every plan can be granted (the
//! same authorization rules the Delegation controller enforces, reported to
//! the provider with the field to fix), and each plan's adoption.

use crate::api::{Delegation, ManagedServiceOffer, ManagedServiceOfferStatus, PlanStatus};
use crate::domain::authorization::{self, Problem};
use crate::domain::conditions::{Conditions, Reason, delegation_ready, types};
use crate::domain::delegability::RoleCatalog;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::sync::Arc;

/// The status `offer` should have, given its `delegations`, the cluster's
/// roles and the tenant of its namespace (`at` stamps conditions whose
/// status changes).
pub fn compute(
    offer: &ManagedServiceOffer,
    delegations: &[Arc<Delegation>],
    roles: &RoleCatalog<'_>,
    namespace_tenant: Option<&str>,
    at: Time,
) -> ManagedServiceOfferStatus {
    let namespace = offer.namespace().unwrap_or_default();
    let mut problems = Vec::new();
    if let Some(tenant) = namespace_tenant
        && tenant != offer.spec.provider.tenant
    {
        problems.push(format!(
            "spec.provider.tenant {:?} is not the tenant of namespace {namespace:?}; set it to {tenant:?}",
            offer.spec.provider.tenant
        ));
    }
    let mut plans = Vec::new();
    for plan in &offer.spec.plans {
        for (index, grant) in plan.authorizations.iter().enumerate() {
            for problem in authorization::problems(grant, &namespace, &|r| roles.check(r)) {
                problems.push(match problem {
                    Problem::ForeignNamespace { namespace: ns } => format!(
                        "spec.plans[{}].authorizations[{index}].principal.namespace must be {namespace:?} (the offer's namespace), not {ns:?}",
                        plan.name
                    ),
                    Problem::Role(refusal) => format!(
                        "spec.plans[{}].authorizations[{index}].roleRef {:?}: {refusal}",
                        plan.name, grant.role_ref
                    ),
                    Problem::DelegatedRole { role, refusal } => format!(
                        "spec.plans[{}].authorizations[{index}].delegatedRoles {role:?}: {refusal}",
                        plan.name
                    ),
                    principal => format!(
                        "spec.plans[{}].authorizations[{index}].principal: {principal}",
                        plan.name
                    ),
                });
            }
        }
        for (index, eligible) in plan.eligible_authorizations.iter().flatten().enumerate() {
            if let Err(refusal) = roles.check(&eligible.role_ref) {
                problems.push(format!(
                    "spec.plans[{}].eligibleAuthorizations[{index}].roleRef {:?}: {refusal}",
                    plan.name, eligible.role_ref
                ));
            }
        }
        let of_plan: Vec<&Arc<Delegation>> = delegations
            .iter()
            .filter(|d| d.spec.plan == plan.name)
            .collect();
        plans.push(PlanStatus {
            name: plan.name.clone(),
            version: plan.version.clone(),
            delegations: of_plan.len() as i32,
            ready_delegations: of_plan.iter().filter(|d| delegation_ready(d)).count() as i32,
        });
    }
    let previous = offer
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut conditions = Conditions::new(previous, offer.metadata.generation, at);
    if problems.is_empty() {
        conditions.set(
            types::READY,
            true,
            Reason::Published,
            format!("{} plan(s) published", plans.len()),
        );
    } else {
        let message = format!(
            "{}; customers cannot accept the affected plans until this is fixed",
            problems.join("; ")
        );
        conditions.set(
            types::READY,
            false,
            Reason::InvalidAuthorization,
            message.clone(),
        );
        conditions.set(types::STALLED, true, Reason::InvalidAuthorization, message);
    }
    ManagedServiceOfferStatus {
        observed_generation: offer.metadata.generation,
        conditions: conditions.finish(),
        plans,
    }
}

/// True when `next` differs from `current` only in adoption counts.
pub fn counts_only(current: &ManagedServiceOfferStatus, next: &ManagedServiceOfferStatus) -> bool {
    current.observed_generation == next.observed_generation
        && current.conditions == next.conditions
        && current.plans.len() == next.plans.len()
}

/// True when every delegation of every plan is Ready.
pub fn settled(status: &ManagedServiceOfferStatus) -> bool {
    status
        .plans
        .iter()
        .all(|p| p.ready_delegations == p.delegations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DelegationStatus, PrincipalKind};
    use crate::domain::delegability::DELEGABLE_LABEL;
    use crate::fixtures::{self, auth};
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    fn reader() -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some("reader".into()),
                labels: Some([(DELEGABLE_LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            rules: Some(Vec::new()),
            ..Default::default()
        })
    }

    fn delegation(plan: &str, ready: bool) -> Arc<Delegation> {
        let mut d = fixtures::delegation("c", plan, ("p", "o"), plan, "1.0.0", None);
        let mut c = Conditions::new(&[], Some(1), at(1));
        c.set(types::READY, ready, Reason::Granted, "");
        d.status = Some(DelegationStatus {
            conditions: c.finish(),
            ..DelegationStatus::default()
        });
        Arc::new(d)
    }

    #[test]
    fn a_valid_offer_is_published_with_its_adoption() {
        let offer = fixtures::offer(
            "p",
            "o",
            "acme",
            vec![
                fixtures::plan("a", "1.0.0", vec![auth(PrincipalKind::User, "u", "reader")]),
                fixtures::plan("b", "2.0.0", vec![auth(PrincipalKind::User, "u", "reader")]),
            ],
        );
        let roles = [reader()];
        let catalog = RoleCatalog::new(&roles);
        let delegations = [
            delegation("a", true),
            delegation("a", false),
            delegation("b", true),
        ];
        let s = compute(&offer, &delegations, &catalog, Some("acme"), at(5));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(
            (
                s.conditions[0].status.as_str(),
                s.conditions[0].reason.as_str()
            ),
            ("True", "Published")
        );
        let counts: Vec<_> = s
            .plans
            .iter()
            .map(|p| (p.name.as_str(), p.delegations, p.ready_delegations))
            .collect();
        assert_eq!(counts, vec![("a", 2, 1), ("b", 1, 1)]);
        assert!(!settled(&s));
    }

    #[test]
    fn problems_name_the_plan_the_index_and_the_field() {
        let mut foreign = auth(PrincipalKind::ServiceAccount, "robot", "reader");
        foreign.principal.namespace = Some("elsewhere".into());
        let offer = fixtures::offer(
            "p",
            "o",
            "acme",
            vec![fixtures::plan(
                "a",
                "1.0.0",
                vec![foreign, auth(PrincipalKind::User, "u", "cluster-admin")],
            )],
        );
        let mut offer = offer;
        offer.spec.plans[0].eligible_authorizations = Some(vec![fixtures::eligible(
            fixtures::person(crate::api::PersonKind::Group, "oncall"),
            "admin",
            "1h",
            Vec::new(),
        )]);
        let roles = [reader()];
        let s = compute(&offer, &[], &RoleCatalog::new(&roles), Some("acme"), at(5));
        let ready = &s.conditions[0];
        assert!(
            ready
                .message
                .contains("spec.plans[a].eligibleAuthorizations[0].roleRef \"admin\""),
            "{}",
            ready.message
        );
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidAuthorization")
        );
        assert!(
            ready
                .message
                .contains("spec.plans[a].authorizations[0].principal.namespace must be \"p\""),
            "{}",
            ready.message
        );
        assert!(
            ready
                .message
                .contains("spec.plans[a].authorizations[1].roleRef \"cluster-admin\""),
            "{}",
            ready.message
        );
        assert_eq!(s.conditions[1].type_, types::STALLED);
    }

    #[test]
    fn count_changes_alone_are_told_apart_from_real_changes() {
        let mut offer = fixtures::reader_offer("p", "acme", "u");
        let roles = [reader()];
        let catalog = RoleCatalog::new(&roles);
        let before = compute(&offer, &[delegation("p", false)], &catalog, None, at(5));
        offer.status = Some(before.clone());
        let after = compute(&offer, &[delegation("p", true)], &catalog, None, at(6));
        assert!(counts_only(&before, &after));
        assert!(settled(&after));
        let mut newer = offer.clone();
        newer.metadata.generation = Some(2);
        assert!(!counts_only(
            &before,
            &compute(&newer, &[], &catalog, None, at(7))
        ));
    }
}

#[cfg(test)]
mod provider_tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn an_offer_claiming_another_tenant_is_not_published() {
        let offer = fixtures::reader_offer("p", "contoso", "u");
        let at = Time(Timestamp::from_second(1).expect("time"));
        let s = compute(&offer, &[], &RoleCatalog::new(&[]), Some("acme"), at);
        let ready = &s.conditions[0];
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("spec.provider.tenant \"contoso\" is not the tenant of namespace \"p\"; set it to \"acme\""),
            "{}",
            ready.message
        );
    }
}
