//! Deciding what a Delegation may be granted (pure).
//!
//! Input is what the caches hold (the offer, the accepted snapshot, namespace
//! tenancy, role delegability); output is a [`Decision`]: either an accepted
//! plan version with the namespaces it may be granted in, or a refusal whose
//! reason and message name the field and the fix. Refusal grants nothing: a
//! delegation is never partly accepted.

use crate::api::{
    DELEGATION_DELETER_ROLE, Delegation, ManagedServiceOffer, PrincipalKind, Visibility,
};
use crate::conditions::Reason;
use crate::roles::Refusal;
use crate::snapshot::AcceptedPlan;
use kube::ResourceExt;

/// What the caches say about one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Its tenant (label `msp-operator.io/tenant`, else its name).
    pub tenant: String,
    /// It is being deleted.
    pub terminating: bool,
}

/// The tenant of a namespace from its labels: the tenant label, or its name.
pub fn tenant_of(name: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .get(crate::names::TENANT_LABEL)
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Why a delegation is not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Condition reason.
    pub reason: Reason,
    /// Message naming the field and the fix.
    pub message: String,
}

/// State of one delegated namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    /// Exists in the customer's tenant: grant here.
    Grantable,
    /// Does not exist (yet): granted when it appears.
    Missing,
    /// Being deleted: nothing to grant.
    Terminating,
}

/// An accepted delegation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The plan version in force.
    pub plan: AcceptedPlan,
    /// True when the snapshot must still be written (first acceptance of
    /// this version).
    pub new_snapshot: bool,
    /// Every delegated namespace with its state, sorted by name.
    pub namespaces: Vec<(String, NamespaceState)>,
}

/// The outcome for one delegation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The customer's tenant.
    pub customer_tenant: String,
    /// The provider's tenant, when known.
    pub managed_by_tenant: Option<String>,
    /// The plan's latest published version, when the offer and plan exist.
    pub latest_version: Option<String>,
    /// The offer currently exists.
    pub offer_present: bool,
    /// Accepted, or refused.
    pub outcome: Result<Accepted, Refused>,
}

/// What validation reads, all from caches.
pub struct Inputs<'a> {
    /// The delegation.
    pub delegation: &'a Delegation,
    /// The referenced offer, if it exists.
    pub offer: Option<&'a ManagedServiceOffer>,
    /// The snapshot of the requested version, if one was accepted before.
    pub snapshot: Option<AcceptedPlan>,
    /// Namespace facts by name (`None`: no such namespace).
    pub namespace: &'a dyn Fn(&str) -> Option<NamespaceInfo>,
    /// Delegability of a ClusterRole by name.
    pub role: &'a dyn Fn(&str) -> Result<(), Refusal>,
}

fn refused(reason: Reason, message: String) -> Result<Accepted, Refused> {
    Err(Refused { reason, message })
}

/// Decides what `inputs.delegation` may be granted.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let delegation = inputs.delegation;
    let own_namespace = delegation.namespace().unwrap_or_default();
    let customer_tenant = (inputs.namespace)(&own_namespace)
        .map(|n| n.tenant)
        .unwrap_or_else(|| own_namespace.clone());
    let spec = &delegation.spec;
    let offer_key = format!("{}/{}", spec.offer_ref.namespace, spec.offer_ref.name);
    let current_plan = inputs
        .offer
        .and_then(|offer| offer.spec.plans.iter().find(|p| p.name == spec.plan));
    let mut decision = Decision {
        customer_tenant: customer_tenant.clone(),
        managed_by_tenant: inputs
            .snapshot
            .as_ref()
            .map(|s| s.provider_tenant.clone())
            .or_else(|| inputs.offer.map(|o| o.spec.provider.tenant.clone())),
        latest_version: current_plan.map(|p| p.version.clone()),
        offer_present: inputs.offer.is_some(),
        outcome: refused(Reason::Progressing, String::new()),
    };
    decision.outcome = accept(inputs, &customer_tenant, &offer_key, current_plan);
    decision
}

fn accept(
    inputs: &Inputs<'_>,
    customer_tenant: &str,
    offer_key: &str,
    current_plan: Option<&crate::api::Plan>,
) -> Result<Accepted, Refused> {
    let delegation = inputs.delegation;
    let spec = &delegation.spec;
    let (plan, new_snapshot) = match (&inputs.snapshot, inputs.offer, current_plan) {
        (Some(snapshot), _, _) => (snapshot.clone(), false),
        (None, None, _) => {
            return refused(
                Reason::OfferNotFound,
                format!(
                    "spec.offerRef: ManagedServiceOffer {offer_key} does not exist; check spec.offerRef.namespace and spec.offerRef.name"
                ),
            );
        }
        (None, Some(offer), None) => {
            let available: Vec<&str> = offer.spec.plans.iter().map(|p| p.name.as_str()).collect();
            return refused(
                Reason::PlanNotFound,
                format!(
                    "spec.plan: offer {offer_key} has no plan {:?}; its plans are {}",
                    spec.plan,
                    available.join(", ")
                ),
            );
        }
        (None, Some(offer), Some(plan)) => {
            if plan.version != spec.plan_version {
                return refused(
                    Reason::VersionNotPublished,
                    format!(
                        "spec.planVersion: plan {:?} of offer {offer_key} publishes version {}, not {}; set spec.planVersion to {} to accept it",
                        plan.name, plan.version, spec.plan_version, plan.version
                    ),
                );
            }
            if plan.visibility == Visibility::Private
                && !plan
                    .audience
                    .iter()
                    .flatten()
                    .any(|t| t.0 == customer_tenant)
            {
                return refused(
                    Reason::NotInAudience,
                    format!(
                        "plan {:?} of offer {offer_key} is Private and tenant {customer_tenant:?} is not in its audience; ask the provider to add it",
                        plan.name
                    ),
                );
            }
            (AcceptedPlan::from_offer(offer, plan), true)
        }
    };

    if plan.provider_tenant == customer_tenant {
        return refused(
            Reason::SameTenant,
            format!(
                "the offer is managed by tenant {customer_tenant:?}, the customer's own tenant; a tenant cannot delegate to itself"
            ),
        );
    }

    let mut namespaces = Vec::new();
    for name in delegation.target_namespaces() {
        let state = match (inputs.namespace)(&name) {
            None => NamespaceState::Missing,
            Some(info) if info.tenant != customer_tenant => {
                return refused(
                    Reason::ForeignNamespace,
                    format!(
                        "spec.namespaces: namespace {name:?} belongs to tenant {:?}, not to the customer's tenant {customer_tenant:?}; remove it from spec.namespaces",
                        info.tenant
                    ),
                );
            }
            Some(info) if info.terminating => NamespaceState::Terminating,
            Some(_) => NamespaceState::Grantable,
        };
        namespaces.push((name, state));
    }

    let mut problems = Vec::new();
    for (index, authorization) in plan.authorizations.iter().enumerate() {
        let principal = &authorization.principal;
        if principal.kind == PrincipalKind::ServiceAccount
            && principal
                .namespace
                .as_deref()
                .is_some_and(|n| n != plan.offer_namespace)
        {
            return refused(
                Reason::InvalidPrincipal,
                format!(
                    "authorizations[{index}]: ServiceAccount {:?} must live in the offer's namespace {:?}; the provider must fix the offer",
                    principal.name, plan.offer_namespace
                ),
            );
        }
        if authorization.role_ref == DELEGATION_DELETER_ROLE {
            continue;
        }
        if let Err(refusal) = (inputs.role)(&authorization.role_ref) {
            problems.push(format!(
                "authorizations[{index}] role {:?}: {refusal}",
                authorization.role_ref
            ));
        }
    }
    if !problems.is_empty() {
        return refused(
            Reason::RoleNotDelegable,
            format!(
                "{}; nothing is granted until every role is delegable",
                problems.join("; ")
            ),
        );
    }
    Ok(Accepted {
        plan,
        new_snapshot,
        namespaces,
    })
}

/// True when version `a` is greater than `b` (`MAJOR.MINOR.PATCH`).
pub fn version_gt(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Vec<u64> {
        v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
    }
    parts(a) > parts(b)
}
