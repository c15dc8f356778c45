//! Test object builders, shared by the unit tests beside the code, the
//! integration tests in `tests/` and the benchmark, so that every test spells
//! an offer or a delegation the same way.
//!
//! They build objects only; nothing here talks to an API server. Objects
//! carry no `uid` (the API server assigns it, and a server-side apply that
//! sets one would be refused); unit tests that need one use [`with_uid`].

use crate::api::{
    Authorization, Delegation, DelegationSpec, ManagedServiceOffer, ManagedServiceOfferSpec,
    NamespaceName, OfferRef, Plan, Principal, PrincipalKind, Provider, RoleName, Visibility,
};
use crate::domain::consent::AcceptedPlan;

/// A ClusterRole named `name` with `rules`, labeled delegable.
pub fn delegable_cluster_role(
    name: &str,
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
) -> k8s_openapi::api::rbac::v1::ClusterRole {
    k8s_openapi::api::rbac::v1::ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [(
                    crate::domain::delegability::DELEGABLE_LABEL.to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A RoleBinding `namespace/name` of `role` (`(kind, name)`, a Role or a
/// ClusterRole) to one subject (`(kind, name)`, a User or a Group).
pub fn role_binding(
    namespace: &str,
    name: &str,
    (role_kind, role): (&str, &str),
    (subject_kind, subject): (&str, &str),
) -> k8s_openapi::api::rbac::v1::RoleBinding {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: crate::domain::RBAC_GROUP.into(),
            kind: role_kind.into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: subject_kind.into(),
            name: subject.into(),
            api_group: Some(crate::domain::RBAC_GROUP.into()),
            namespace: None,
        }]),
    }
}

/// The read-only role the examples and most tests grant.
pub const READER_ROLE: &str = "msp-operator:reader";

/// An authorization of `kind/name` to `role`.
pub fn auth(kind: PrincipalKind, name: &str, role: &str) -> Authorization {
    Authorization {
        principal: Principal {
            kind,
            name: name.into(),
            namespace: None,
        },
        principal_display_name: Some(format!("{name} at the provider")),
        role_ref: role.into(),
        delegated_roles: None,
    }
}

/// A role-assigner authorization of `kind/name`: it may bind `roles` to
/// ServiceAccounts of each delegated namespace.
pub fn assigner(kind: PrincipalKind, name: &str, roles: &[&str]) -> Authorization {
    Authorization {
        delegated_roles: Some(roles.iter().map(|r| RoleName((*r).into())).collect()),
        ..auth(kind, name, crate::api::ROLE_ASSIGNER_ROLE)
    }
}

/// A Public plan.
pub fn plan(name: &str, version: &str, authorizations: Vec<Authorization>) -> Plan {
    Plan {
        name: name.into(),
        display_name: None,
        description: None,
        version: version.into(),
        visibility: Visibility::Public,
        audience: None,
        authorizations,
        eligible_authorizations: None,
    }
}

/// An offer of `tenant` in `namespace`.
pub fn offer(namespace: &str, name: &str, tenant: &str, plans: Vec<Plan>) -> ManagedServiceOffer {
    let mut offer = ManagedServiceOffer::new(
        name,
        ManagedServiceOfferSpec {
            display_name: format!("{name} by {tenant}"),
            description: None,
            provider: Provider {
                display_name: None,
                tenant: tenant.into(),
            },
            plans,
        },
    );
    offer.metadata.namespace = Some(namespace.into());
    offer
}

/// The offer most tests need: `o` of `tenant` in `namespace`, with one
/// Public plan `p` at 1.0.0 that grants `user` the [`READER_ROLE`].
pub fn reader_offer(namespace: &str, tenant: &str, user: &str) -> ManagedServiceOffer {
    offer(
        namespace,
        "o",
        tenant,
        vec![plan(
            "p",
            "1.0.0",
            vec![auth(PrincipalKind::User, user, READER_ROLE)],
        )],
    )
}

/// A delegation in `namespace` accepting `offer_ns/offer` plan `plan` at
/// `version`, for `namespaces` (its own namespace when `None`).
pub fn delegation(
    namespace: &str,
    name: &str,
    (offer_ns, offer): (&str, &str),
    plan: &str,
    version: &str,
    namespaces: Option<Vec<&str>>,
) -> Delegation {
    let mut delegation = Delegation::new(
        name,
        DelegationSpec {
            offer_ref: OfferRef {
                namespace: offer_ns.into(),
                name: offer.into(),
            },
            plan: plan.into(),
            plan_version: version.into(),
            namespaces: namespaces
                .map(|list| list.into_iter().map(|n| NamespaceName(n.into())).collect()),
            acknowledged_workload_roles: None,
            activation_terms: None,
            namespace_selector: None,
        },
    );
    delegation.metadata.namespace = Some(namespace.into());
    delegation
}

/// `delegation`, acknowledging that `roles` can run workloads.
pub fn acknowledging(mut delegation: Delegation, roles: &[&str]) -> Delegation {
    delegation.spec.acknowledged_workload_roles =
        Some(roles.iter().map(|r| RoleName((*r).into())).collect());
    delegation
}

/// `object` as the API server would return it: with a uid.
pub fn with_uid(mut delegation: Delegation, uid: &str) -> Delegation {
    delegation.metadata.uid = Some(uid.into());
    delegation
}

/// The consent to plan `plan` at `version` of offer `offer_ns/offer` by
/// provider tenant `tenant`.
pub fn accepted(
    (offer_ns, offer): (&str, &str),
    tenant: &str,
    plan: &str,
    version: &str,
    authorizations: Vec<Authorization>,
) -> AcceptedPlan {
    AcceptedPlan {
        offer_namespace: offer_ns.into(),
        offer_name: offer.into(),
        provider_tenant: tenant.into(),
        plan: plan.into(),
        version: version.into(),
        authorizations,
        eligible_authorizations: Vec::new(),
        offer_uid: None,
        digest: None,
        stamp: None,
    }
}

/// A user or group principal.
pub fn person(kind: crate::api::PersonKind, name: &str) -> crate::api::Person {
    crate::api::Person {
        kind,
        name: name.into(),
    }
}

/// An eligible authorization: `principal` may activate `role` for up to
/// `max_duration`, approved by one of `approvers` (none: no approval).
pub fn eligible(
    principal: crate::api::Person,
    role: &str,
    max_duration: &str,
    approvers: Vec<crate::api::Person>,
) -> crate::api::EligibleAuthorization {
    crate::api::EligibleAuthorization {
        principal,
        principal_display_name: None,
        role_ref: role.into(),
        max_duration: max_duration.into(),
        approvers: (!approvers.is_empty()).then_some(approvers),
        require_justification: false,
    }
}

/// An Activation in `namespace` of `role` under Delegation `delegation`, as
/// `principal`, for `duration`.
pub fn activation(
    namespace: &str,
    name: &str,
    delegation: &str,
    principal: crate::api::Person,
    role: &str,
    duration: &str,
) -> crate::api::Activation {
    let mut activation = crate::api::Activation::new(
        name,
        crate::api::ActivationSpec {
            delegation: delegation.into(),
            principal,
            role_ref: role.into(),
            duration: duration.into(),
            justification: None,
            requester: None,
            approvals: None,
        },
    );
    activation.metadata.namespace = Some(namespace.into());
    activation
}

/// The decision accepting `plan` (of provider tenant `acme`, customer
/// tenant `fabrikam`) in `namespaces` with their states.
pub fn accepted_decision(
    plan: AcceptedPlan,
    namespaces: &[(&str, crate::delegation::validate::NamespaceState)],
) -> crate::delegation::validate::Decision {
    crate::delegation::validate::Decision {
        customer_tenant: "fabrikam".into(),
        managed_by_tenant: Some("acme".into()),
        latest_version: Some(plan.version.clone()),
        latest_authorizations: Vec::new(),
        latest_eligible: Vec::new(),
        offer_present: true,
        outcome: Ok(crate::delegation::validate::Accepted {
            plan,
            new_snapshot: false,
            namespaces: namespaces
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            activations: Vec::new(),
            audited: Vec::new(),
        }),
    }
}
