//! Step 2, validate: deciding what a Delegation may be granted (pure).
//!
//! Input is what the caches hold (the offer, the accepted snapshot, namespace
//! tenancy, role delegability); output is a [`Decision`]: either an accepted
//! plan version with the namespaces it may be granted in, or a refusal whose
//! reason and message name the field and the fix. Refusal grants nothing: a
//! delegation is never partly accepted.

use crate::api::{Authorization, Delegation, ManagedServiceOffer, PolicyMode};
use crate::delegation::resolve::Resolved;
use crate::domain::authorization::{self, Problem};
use crate::domain::catalog::visible_to;
use crate::domain::conditions::Reason;
use crate::domain::consent::AcceptedPlan;
use crate::domain::delegability::{Refusal, RoleCatalog};
use crate::domain::provider_policy::{self, Applying, Disallowed, Violation};
pub use crate::domain::tenancy::NamespaceInfo;
use kube::ResourceExt;

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
    /// The just-in-time grants of its Activations in force now.
    pub activations: Vec<crate::activation::ActiveGrant>,
    /// What Audit-mode provider policies would refuse (granted anyway, and
    /// reported); empty when every applying policy allows it.
    pub audited: Vec<Refused>,
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
    /// The authorizations of that version when it is not the requested one
    /// (empty otherwise).
    pub latest_authorizations: Vec<Authorization>,
    /// The eligible authorizations of that version, likewise.
    pub latest_eligible: Vec<crate::api::EligibleAuthorization>,
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
    /// The consent record covering the Delegation as it is now, if any.
    pub snapshot: Option<AcceptedPlan>,
    /// The content accepted for the requested version under an earlier
    /// generation of the Delegation (it carries over; the live offer never
    /// replaces it).
    pub carried: Option<AcceptedPlan>,
    /// Namespace facts by name (`None`: no such namespace).
    pub namespace: &'a dyn Fn(&str) -> Option<NamespaceInfo>,
    /// Delegability of a ClusterRole by name.
    pub role: &'a dyn Fn(&str) -> Result<(), Refusal>,
    /// What a ClusterRole lets its holder do with workloads (empty: nothing).
    pub workload: &'a dyn Fn(&str) -> Vec<String>,
    /// The delegated namespaces, sorted (see [`Resolved::targets`]).
    pub targets: &'a [String],
    /// The provider policies applying to each delegated namespace.
    pub policies: &'a [(String, Applying)],
    /// The admission policy bounding provider role assignment is in force.
    pub assignments_enforced: bool,
}

/// Decides what `delegation` may be granted from what was resolved for it.
pub fn decide_resolved(
    delegation: &Delegation,
    resolved: &Resolved,
    catalog: &RoleCatalog<'_>,
) -> Decision {
    let mut decision = decide(&Inputs {
        delegation,
        offer: resolved.offer.as_deref(),
        snapshot: resolved.snapshot.clone(),
        carried: resolved.carried.clone(),
        namespace: &|n| resolved.namespaces.get(n).cloned(),
        role: &|r| catalog.check(r),
        workload: &|r| catalog.workload_power(r),
        targets: &resolved.targets,
        policies: &resolved.policies,
        assignments_enforced: resolved.assignments_enforced,
    });
    let grants = crate::activation::active_grants(
        delegation,
        &decision,
        &resolved.activations,
        resolved.now,
    );
    if let Ok(accepted) = &mut decision.outcome {
        accepted.activations = grants;
    }
    decision
}

fn refused<T>(reason: Reason, message: String) -> Result<T, Refused> {
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
    // The provider's tenant is the tenant of the namespace its offer lives
    // in, whatever the offer claims.
    let offer_namespace_tenant = (inputs.namespace)(&spec.offer_ref.namespace).map(|n| n.tenant);
    let mut decision = Decision {
        customer_tenant: customer_tenant.clone(),
        managed_by_tenant: inputs
            .snapshot
            .as_ref()
            .map(|s| s.provider_tenant.clone())
            .or_else(|| offer_namespace_tenant.clone())
            .or_else(|| inputs.offer.map(|o| o.spec.provider.tenant.clone())),
        latest_version: current_plan
            .filter(|p| visible_to(p, &customer_tenant))
            .map(|p| p.version.clone()),
        // Only a version other than the requested one can be an update;
        // the common case copies nothing.
        latest_authorizations: current_plan
            .filter(|p| visible_to(p, &customer_tenant) && p.version != spec.plan_version)
            .map(|p| p.authorizations.clone())
            .unwrap_or_default(),
        latest_eligible: current_plan
            .filter(|p| visible_to(p, &customer_tenant) && p.version != spec.plan_version)
            .and_then(|p| p.eligible_authorizations.clone())
            .unwrap_or_default(),
        offer_present: inputs.offer.is_some(),
        outcome: refused(Reason::Progressing, String::new()),
    };
    decision.outcome = accept(
        inputs,
        &customer_tenant,
        &offer_key,
        current_plan,
        offer_namespace_tenant.as_deref(),
    );
    decision
}

/// True when the Delegation reports a consent recorded for its requested
/// version, but no record of it exists any more (someone deleted it).
fn record_lost(delegation: &Delegation) -> bool {
    delegation
        .status
        .as_ref()
        .and_then(|s| s.accepted_version.as_deref())
        == Some(delegation.spec.plan_version.as_str())
}

/// A lost consent record: the live offer replaces it only when its content
/// is exactly what the Delegation reports as accepted (`acceptedDigest`);
/// otherwise nothing is granted.
fn lost_record(
    delegation: &Delegation,
    offer_key: &str,
    current_plan: Option<&crate::api::Plan>,
    offer: Option<&ManagedServiceOffer>,
) -> Result<(AcceptedPlan, bool), Refused> {
    let accepted = delegation
        .status
        .as_ref()
        .and_then(|s| s.accepted_digest.clone());
    if let (Some(offer), Some(plan), Some(accepted)) = (offer, current_plan, accepted)
        && plan.version == delegation.spec.plan_version
    {
        let live = AcceptedPlan::from_offer(offer, plan);
        if live.digest.as_deref() == Some(accepted.as_str()) {
            return Ok((live, true));
        }
    }
    refused(
        Reason::ConsentRecordMissing,
        format!(
            "the consent record of version {} of offer {offer_key} is missing and the offer no longer publishes exactly what was accepted; nothing is granted. To consent to what the offer publishes now, delete and re-create this Delegation",
            delegation.spec.plan_version
        ),
    )
}

/// What the checks below all read.
struct Facts<'i> {
    inputs: &'i Inputs<'i>,
    customer_tenant: &'i str,
    offer_key: &'i str,
    current_plan: Option<&'i crate::api::Plan>,
    offer_namespace_tenant: Option<&'i str>,
}

fn accept(
    inputs: &Inputs<'_>,
    customer_tenant: &str,
    offer_key: &str,
    current_plan: Option<&crate::api::Plan>,
    offer_namespace_tenant: Option<&str>,
) -> Result<Accepted, Refused> {
    let cx = Facts {
        inputs,
        customer_tenant,
        offer_key,
        current_plan,
        offer_namespace_tenant,
    };
    let (plan, new_snapshot) = consented_plan(&cx)?;
    if plan.provider_tenant == customer_tenant {
        return refused(
            Reason::SameTenant,
            format!(
                "the offer is managed by tenant {customer_tenant:?}, the customer's own tenant; a tenant cannot delegate to itself"
            ),
        );
    }
    let namespaces = namespace_states(&cx)?;
    authorizations_allowed(inputs, &plan)?;
    workloads_acknowledged(inputs, &plan)?;
    assignments_enforced(inputs, &plan)?;
    let audited = policies_allow(inputs, &plan)?;
    Ok(Accepted {
        plan,
        new_snapshot,
        namespaces,
        activations: Vec::new(),
        audited,
    })
}

/// What the customer consents to, and whether it still has to be recorded:
/// the record covering the Delegation now; else the content accepted for
/// this version before (never the live offer's); else, for a version never
/// accepted, the live plan, when the customer may accept it.
fn consented_plan(cx: &Facts<'_>) -> Result<(AcceptedPlan, bool), Refused> {
    let inputs = cx.inputs;
    let delegation = inputs.delegation;
    if let Some(snapshot) = &inputs.snapshot {
        return Ok((snapshot.clone(), false));
    }
    if let Some(carried) = &inputs.carried {
        let content = AcceptedPlan {
            stamp: None,
            ..carried.clone()
        };
        return Ok((content, true));
    }
    if record_lost(delegation) {
        return lost_record(delegation, cx.offer_key, cx.current_plan, inputs.offer);
    }
    let offer_key = cx.offer_key;
    let customer_tenant = cx.customer_tenant;
    let spec = &delegation.spec;
    let Some(offer) = inputs.offer else {
        return refused(
            Reason::OfferNotFound,
            format!(
                "spec.offerRef: ManagedServiceOffer {offer_key} does not exist; check spec.offerRef.namespace and spec.offerRef.name"
            ),
        );
    };
    let Some(plan) = cx.current_plan else {
        // Only the plans this customer may accept are named: a Private
        // plan's name is the provider's business with its audience.
        let available: Vec<&str> = offer
            .spec
            .plans
            .iter()
            .filter(|p| visible_to(p, customer_tenant))
            .map(|p| p.name.as_str())
            .collect();
        return refused(
            Reason::PlanNotFound,
            format!(
                "spec.plan: offer {offer_key} has no plan {:?} that tenant {customer_tenant:?} may accept; the plans it may accept are: {}",
                spec.plan,
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
        );
    };
    // Audience before version: a tenant outside a Private plan's audience
    // learns nothing of its versions.
    if !visible_to(plan, customer_tenant) {
        return refused(
            Reason::NotInAudience,
            format!(
                "plan {:?} of offer {offer_key} is Private and tenant {customer_tenant:?} is not in its audience; ask the provider to add it",
                plan.name
            ),
        );
    }
    if plan.version != spec.plan_version {
        return refused(
            Reason::VersionNotPublished,
            format!(
                "spec.planVersion: plan {:?} of offer {offer_key} publishes version {}, not {}; set spec.planVersion to {} to accept it",
                plan.name, plan.version, spec.plan_version, plan.version
            ),
        );
    }
    let live_tenant = cx
        .offer_namespace_tenant
        .unwrap_or(&offer.spec.provider.tenant);
    if offer.spec.provider.tenant != live_tenant {
        return refused(
            Reason::ProviderTenantMismatch,
            format!(
                "offer {offer_key} claims provider tenant {:?} but lives in a namespace of tenant {live_tenant:?}; a provider's tenant is the tenant of its offer's namespace, so the provider must fix spec.provider.tenant",
                offer.spec.provider.tenant
            ),
        );
    }
    Ok((AcceptedPlan::from_offer(offer, plan), true))
}

/// Every delegated namespace with its state; a namespace of another tenant
/// refuses the whole Delegation.
fn namespace_states(cx: &Facts<'_>) -> Result<Vec<(String, NamespaceState)>, Refused> {
    let customer_tenant = cx.customer_tenant;
    let mut namespaces = Vec::new();
    for name in cx.inputs.targets.iter().cloned() {
        let state = match (cx.inputs.namespace)(&name) {
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
    Ok(namespaces)
}

/// Every grant the plan can make, permanent and eligible, with the field
/// that names it (`authorizations[0]`, `eligibleAuthorizations[1]`): an
/// eligible role must be as delegable, and as knowingly accepted, as a
/// permanent one.
pub(crate) fn every_grant(plan: &AcceptedPlan) -> Vec<(String, Authorization)> {
    let permanent = plan
        .authorizations
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("authorizations[{i}]"), a.clone()));
    let eligible = plan
        .eligible_authorizations
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                format!("eligibleAuthorizations[{i}]"),
                Authorization {
                    principal: crate::api::Principal {
                        kind: match e.principal.kind {
                            crate::api::PersonKind::User => crate::api::PrincipalKind::User,
                            crate::api::PersonKind::Group => crate::api::PrincipalKind::Group,
                        },
                        name: e.principal.name.clone(),
                        namespace: None,
                    },
                    principal_display_name: None,
                    role_ref: e.role_ref.clone(),
                    delegated_roles: None,
                },
            )
        });
    permanent.chain(eligible).collect()
}

/// The roles role assigners may bind, with the field naming each
/// (`authorizations[2].delegatedRoles[0]`): a provider can give them to the
/// customer's ServiceAccounts, so policies and the customer's
/// acknowledgement of workload power cover them as if granted directly.
pub(crate) fn delegated_roles(plan: &AcceptedPlan) -> Vec<(String, String)> {
    plan.authorizations
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.delegated_roles
                .iter()
                .flatten()
                .enumerate()
                .map(move |(j, r)| {
                    (
                        format!("authorizations[{i}].delegatedRoles[{j}]"),
                        r.0.clone(),
                    )
                })
        })
        .collect()
}

/// Every principal may be granted and every role is delegable.
fn authorizations_allowed(inputs: &Inputs<'_>, plan: &AcceptedPlan) -> Result<(), Refused> {
    let mut problems = Vec::new();
    for (field, grant) in &every_grant(plan) {
        for problem in authorization::problems(grant, &plan.offer_namespace, inputs.role) {
            match problem {
                Problem::ForeignNamespace { .. } => {
                    return refused(
                        Reason::InvalidPrincipal,
                        format!(
                            "{field}: ServiceAccount {:?} must live in the offer's namespace {:?}; the provider must fix the offer",
                            grant.principal.name, plan.offer_namespace
                        ),
                    );
                }
                Problem::Role(refusal) => {
                    problems.push(format!("{field} role {:?}: {refusal}", grant.role_ref))
                }
                Problem::DelegatedRole { role, refusal } => {
                    problems.push(format!("{field}.delegatedRoles role {role:?}: {refusal}"))
                }
                principal => {
                    return refused(
                        Reason::InvalidPrincipal,
                        format!(
                            "{field}: {:?} {:?}: {principal}; the provider must fix the offer",
                            grant.principal.kind, grant.principal.name
                        ),
                    );
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    refused(
        Reason::RoleNotDelegable,
        format!(
            "{}; nothing is granted until every role is delegable",
            problems.join("; ")
        ),
    )
}

/// A role-assigner authorization is granted only while the admission policy
/// that bounds it is in force: without it, its RoleBinding rights would
/// reach any subject and any binding in the namespace (fail closed).
fn assignments_enforced(inputs: &Inputs<'_>, plan: &AcceptedPlan) -> Result<(), Refused> {
    let assigners: Vec<String> = plan
        .authorizations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.role_ref == crate::api::ROLE_ASSIGNER_ROLE)
        .map(|(i, _)| format!("authorizations[{i}]"))
        .collect();
    if assigners.is_empty() || inputs.assignments_enforced {
        return Ok(());
    }
    refused(
        Reason::AssignmentNotEnforced,
        format!(
            "{} grants restricted role assignment, and the ValidatingAdmissionPolicy {} that bounds it (or its binding with validationActions Deny) is not installed; nothing is granted. Install deploy/admission-policies.yaml (or the chart with admissionPolicies.install=true)",
            assigners.join(", "),
            crate::domain::names::ASSIGNMENT_POLICY
        ),
    )
}

/// Every Deny-mode provider policy of the delegated namespaces allows the
/// provider and each role the plan can grant; what Audit-mode policies
/// would refuse is returned, to be reported.
fn policies_allow(inputs: &Inputs<'_>, plan: &AcceptedPlan) -> Result<Vec<Refused>, Refused> {
    if inputs.policies.is_empty() {
        return Ok(Vec::new());
    }
    let roles: Vec<(String, String)> = every_grant(plan)
        .into_iter()
        .map(|(field, grant)| (field, grant.role_ref))
        .chain(delegated_roles(plan))
        .collect();
    let found = provider_policy::violations(inputs.policies, &plan.provider_tenant, &roles);
    let as_refusal = |v: &Violation| Refused {
        reason: match v.what {
            Disallowed::Provider => Reason::ProviderNotAllowed,
            Disallowed::Role { .. } => Reason::RoleNotAllowed,
        },
        message: v.message(&plan.provider_tenant),
    };
    let (denied, audited): (Vec<&Violation>, Vec<&Violation>) =
        found.iter().partition(|v| v.mode == PolicyMode::Deny);
    if let Some(first) = denied.first() {
        let mut refusal = as_refusal(first);
        if denied.len() > 1 {
            refusal.message.push_str(&format!(
                " (and {} more objection(s) of provider policies)",
                denied.len() - 1
            ));
        }
        refusal.message.push_str("; nothing is granted");
        return Err(refusal);
    }
    Ok(audited.into_iter().map(as_refusal).collect())
}

/// Every role that can run workloads is acknowledged by the customer.
fn workloads_acknowledged(inputs: &Inputs<'_>, plan: &AcceptedPlan) -> Result<(), Refused> {
    let delegation = inputs.delegation;
    let mut roles: Vec<&str> = Vec::new();
    let mut lines = Vec::new();
    let grants: Vec<(String, String)> = every_grant(plan)
        .into_iter()
        .map(|(field, grant)| (field, grant.role_ref))
        .chain(delegated_roles(plan))
        .collect();
    for (field, role) in &grants {
        let role = role.as_str();
        if role == crate::api::DELEGATION_DELETER_ROLE
            || delegation.acknowledges_workload_role(role)
        {
            continue;
        }
        let power = (inputs.workload)(role);
        if power.is_empty() {
            continue;
        }
        lines.push(format!(
            "{field} role {role:?} can run workloads ({})",
            power.join("; ")
        ));
        roles.push(role);
    }
    if roles.is_empty() {
        return Ok(());
    }
    roles.sort();
    roles.dedup();
    let quoted: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    refused(
        Reason::WorkloadAccessNotAcknowledged,
        format!(
            "{}; whoever holds such a role can run Pods as any ServiceAccount of the delegated namespaces and read every Secret they mount. To accept that, add {} to spec.acknowledgedWorkloadRoles; nothing is granted until then",
            lines.join("; "),
            quoted.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;
    use crate::fixtures;

    fn auth(role: &str) -> Authorization {
        fixtures::auth(PrincipalKind::User, "alice", role)
    }

    fn offer(plans: Vec<Plan>) -> ManagedServiceOffer {
        fixtures::offer("provider", "offer", "acme", plans)
    }

    fn plan(version: &str, visibility: Visibility, audience: Option<Vec<&str>>) -> Plan {
        Plan {
            visibility,
            audience: audience.map(|a| a.into_iter().map(|t| TenantId(t.into())).collect()),
            ..fixtures::plan(
                "basic",
                version,
                vec![auth("reader"), auth(DELEGATION_DELETER_ROLE)],
            )
        }
    }

    fn delegation(ns: &str, version: &str, namespaces: Option<Vec<&str>>) -> Delegation {
        fixtures::with_uid(
            fixtures::delegation(ns, "d", ("provider", "offer"), "basic", version, namespaces),
            "uid",
        )
    }

    /// Namespaces: cust-a, cust-b (tenant fabrikam), other (tenant other),
    /// provider (tenant acme), dying (fabrikam, terminating).
    fn namespaces(name: &str) -> Option<NamespaceInfo> {
        let (tenant, terminating) = match name {
            "cust-a" | "cust-b" => ("fabrikam", false),
            "dying" => ("fabrikam", true),
            "other" => ("other", false),
            "provider" => ("acme", false),
            _ => return None,
        };
        Some(NamespaceInfo {
            tenant: tenant.into(),
            terminating,
        })
    }

    fn all_delegable(_: &str) -> Result<(), Refusal> {
        Ok(())
    }

    fn decide_with(
        d: &Delegation,
        o: Option<&ManagedServiceOffer>,
        snapshot: Option<AcceptedPlan>,
        role: &dyn Fn(&str) -> Result<(), Refusal>,
    ) -> Decision {
        decide(&Inputs {
            delegation: d,
            offer: o,
            snapshot,
            carried: None,
            namespace: &namespaces,
            role,
            workload: &|_| Vec::new(),
            targets: &d.target_namespaces(),
            policies: &[],
            assignments_enforced: true,
        })
    }

    fn reason(decision: &Decision) -> Option<Reason> {
        decision.outcome.as_ref().err().map(|r| r.reason)
    }

    fn with_policies(
        d: &Delegation,
        o: &ManagedServiceOffer,
        policies: &[(String, Applying)],
    ) -> Decision {
        decide_controls(d, o, policies, true)
    }

    /// The decision for `d` on `o` (every role delegable) under the
    /// platform's controls: `policies`, and whether the admission policy
    /// bounding role assigners is in force.
    fn decide_controls(
        d: &Delegation,
        o: &ManagedServiceOffer,
        policies: &[(String, Applying)],
        assignments_enforced: bool,
    ) -> Decision {
        decide(&Inputs {
            delegation: d,
            offer: Some(o),
            snapshot: None,
            carried: None,
            namespace: &namespaces,
            role: &all_delegable,
            workload: &|_| Vec::new(),
            targets: &d.target_namespaces(),
            policies,
            assignments_enforced,
        })
    }

    fn policy(mode: PolicyMode, providers: &[&str], roles: Option<&[&str]>) -> Applying {
        Applying {
            source: "ClusterProviderPolicy p".into(),
            rules: PolicyRules {
                mode,
                allowed_providers: Some(
                    providers
                        .iter()
                        .map(|t| AllowedProvider {
                            tenant: TenantId(t.to_string()),
                            roles: None,
                        })
                        .collect(),
                ),
                allowed_roles: roles.map(|r| r.iter().map(|r| RoleName(r.to_string())).collect()),
            },
        }
    }

    #[test]
    fn a_role_assigner_is_granted_only_while_its_admission_policy_is_in_force() {
        let mut p = plan("1.0.0", Visibility::Public, None);
        p.authorizations
            .push(fixtures::assigner(PrincipalKind::User, "bot", &["reader"]));
        let o = offer(vec![p]);
        let d = delegation("cust-a", "1.0.0", None);
        let with = |enforced: bool| decide_controls(&d, &o, &[], enforced);
        assert!(with(true).outcome.is_ok());
        let refused = with(false).outcome.expect_err("refused");
        assert_eq!(refused.reason, Reason::AssignmentNotEnforced);
        assert!(refused.message.contains("authorizations[2]"));
        assert!(refused.message.contains("deploy/admission-policies.yaml"));
        // Without delegatedRoles it is no grant at all.
        let mut bare = plan("1.0.0", Visibility::Public, None);
        bare.authorizations.push(fixtures::auth(
            PrincipalKind::User,
            "bot",
            ROLE_ASSIGNER_ROLE,
        ));
        let o = offer(vec![bare]);
        let decision = decide_with(&d, Some(&o), None, &all_delegable);
        assert_eq!(reason(&decision), Some(Reason::RoleNotDelegable));
    }

    #[test]
    fn a_deny_policy_refuses_the_whole_delegation_and_audit_only_reports() {
        let o = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let d = delegation("cust-a", "1.0.0", Some(vec!["cust-a", "cust-b"]));
        // A policy on one of the two namespaces refuses everything.
        let deny = [(
            "cust-b".to_string(),
            policy(PolicyMode::Deny, &["other"], None),
        )];
        let decision = with_policies(&d, &o, &deny);
        let refused = decision.outcome.expect_err("refused");
        assert_eq!(refused.reason, Reason::ProviderNotAllowed);
        assert!(
            refused.message.contains("\"cust-b\"")
                && refused.message.contains("nothing is granted")
        );
        // A role outside allowedRoles (the deleter role does not count).
        let readers = [(
            "cust-a".to_string(),
            policy(PolicyMode::Deny, &["acme"], Some(&["view"])),
        )];
        let refused = with_policies(&d, &o, &readers)
            .outcome
            .expect_err("refused");
        assert_eq!(refused.reason, Reason::RoleNotAllowed);
        assert!(refused.message.contains("\"reader\"") && !refused.message.contains("deleter"));
        // Audit: accepted, the objection carried for the status.
        let audit = [(
            "cust-a".to_string(),
            policy(PolicyMode::Audit, &["other"], None),
        )];
        let accepted = with_policies(&d, &o, &audit).outcome.expect("accepted");
        assert_eq!(accepted.audited.len(), 1);
        assert_eq!(accepted.audited[0].reason, Reason::ProviderNotAllowed);
        // Allowed: nothing to report.
        let allowed = [(
            "cust-a".to_string(),
            policy(PolicyMode::Deny, &["acme"], None),
        )];
        assert!(
            with_policies(&d, &o, &allowed)
                .outcome
                .expect("accepted")
                .audited
                .is_empty()
        );
    }

    #[test]
    fn accepts_a_public_plan_at_its_published_version() {
        let o = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let d = delegation(
            "cust-a",
            "1.0.0",
            Some(vec!["cust-a", "cust-b", "missing", "dying"]),
        );
        let decision = decide_with(&d, Some(&o), None, &all_delegable);
        let accepted = decision.outcome.expect("accepted");
        assert!(accepted.new_snapshot);
        assert_eq!(accepted.plan.version, "1.0.0");
        assert_eq!(
            accepted.namespaces,
            vec![
                ("cust-a".into(), NamespaceState::Grantable),
                ("cust-b".into(), NamespaceState::Grantable),
                ("dying".into(), NamespaceState::Terminating),
                ("missing".into(), NamespaceState::Missing),
            ]
        );
        assert_eq!(decision.customer_tenant, "fabrikam");
        assert_eq!(decision.managed_by_tenant.as_deref(), Some("acme"));
        assert_eq!(decision.latest_version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn defaults_to_the_delegations_own_namespace() {
        let o = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let accepted = decide_with(
            &delegation("cust-b", "1.0.0", None),
            Some(&o),
            None,
            &all_delegable,
        )
        .outcome
        .expect("accepted");
        assert_eq!(
            accepted.namespaces,
            vec![("cust-b".into(), NamespaceState::Grantable)]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let public = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let cases: Vec<(Delegation, Option<&ManagedServiceOffer>, Reason, &str)> = vec![
            (
                delegation("cust-a", "1.0.0", None),
                None,
                Reason::OfferNotFound,
                "spec.offerRef",
            ),
            (
                delegation("cust-a", "2.0.0", None),
                Some(&public),
                Reason::VersionNotPublished,
                "spec.planVersion",
            ),
            (
                delegation("cust-a", "0.9.0", None),
                Some(&public),
                Reason::VersionNotPublished,
                "set spec.planVersion to 1.0.0",
            ),
            (
                delegation("provider", "1.0.0", None),
                Some(&public),
                Reason::SameTenant,
                "cannot delegate to itself",
            ),
            (
                delegation("cust-a", "1.0.0", Some(vec!["cust-a", "other"])),
                Some(&public),
                Reason::ForeignNamespace,
                "\"other\"",
            ),
        ];
        for (d, o, want, hint) in cases {
            let decision = decide_with(&d, o, None, &all_delegable);
            let refused = decision.outcome.expect_err("refused");
            assert_eq!(refused.reason, want);
            assert!(refused.message.contains(hint), "{}", refused.message);
        }
        let mut other_plan = plan("1.0.0", Visibility::Public, None);
        other_plan.name = "gold".into();
        let o = offer(vec![other_plan]);
        let decision = decide_with(
            &delegation("cust-a", "1.0.0", None),
            Some(&o),
            None,
            &all_delegable,
        );
        assert_eq!(reason(&decision), Some(Reason::PlanNotFound));
        assert!(
            decision
                .outcome
                .expect_err("refused")
                .message
                .contains("gold")
        );
    }

    #[test]
    fn private_plans_admit_only_their_audience() {
        let o = offer(vec![plan(
            "1.0.0",
            Visibility::Private,
            Some(vec!["fabrikam"]),
        )]);
        assert!(
            decide_with(
                &delegation("cust-a", "1.0.0", None),
                Some(&o),
                None,
                &all_delegable
            )
            .outcome
            .is_ok()
        );
        let o = offer(vec![plan(
            "1.0.0",
            Visibility::Private,
            Some(vec!["contoso"]),
        )]);
        let decision = decide_with(
            &delegation("cust-a", "1.0.0", None),
            Some(&o),
            None,
            &all_delegable,
        );
        assert_eq!(reason(&decision), Some(Reason::NotInAudience));
    }

    #[test]
    fn every_role_must_be_delegable_and_the_deleter_needs_no_clusterrole() {
        let o = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let role = |name: &str| {
            if name == "reader" {
                Err(Refusal::NotLabeled)
            } else {
                panic!("only real ClusterRoles are checked, not {name}")
            }
        };
        let decision = decide_with(&delegation("cust-a", "1.0.0", None), Some(&o), None, &role);
        let refused = decision.outcome.expect_err("refused");
        assert_eq!(refused.reason, Reason::RoleNotDelegable);
        assert!(
            refused
                .message
                .contains("authorizations[0] role \"reader\""),
            "{}",
            refused.message
        );
    }

    #[test]
    fn service_accounts_must_live_with_the_offer() {
        let mut p = plan("1.0.0", Visibility::Public, None);
        p.authorizations = vec![Authorization {
            principal: Principal {
                kind: PrincipalKind::ServiceAccount,
                name: "bot".into(),
                namespace: Some("elsewhere".into()),
            },
            principal_display_name: None,
            role_ref: "reader".into(),
            delegated_roles: None,
        }];
        let o = offer(vec![p]);
        let decision = decide_with(
            &delegation("cust-a", "1.0.0", None),
            Some(&o),
            None,
            &all_delegable,
        );
        assert_eq!(reason(&decision), Some(Reason::InvalidPrincipal));
    }

    #[test]
    fn the_snapshot_wins_over_the_live_offer() {
        let accepted = fixtures::accepted(
            ("provider", "offer"),
            "acme",
            "basic",
            "1.0.0",
            vec![auth("reader")],
        );
        // The provider moved on to 2.0.0 with a stronger role.
        let mut newer = plan("2.0.0", Visibility::Public, None);
        newer.authorizations = vec![auth("operator")];
        let o = offer(vec![newer]);
        let d = delegation("cust-a", "1.0.0", None);
        let decision = decide_with(&d, Some(&o), Some(accepted.clone()), &all_delegable);
        assert_eq!(decision.latest_version.as_deref(), Some("2.0.0"));
        let got = decision.outcome.expect("accepted");
        assert!(!got.new_snapshot);
        assert_eq!(got.plan, accepted);
        // The offer is gone: still the accepted grants.
        let decision = decide_with(&d, None, Some(accepted.clone()), &all_delegable);
        assert!(!decision.offer_present);
        assert_eq!(decision.outcome.expect("accepted").plan, accepted);
    }

    #[test]
    fn a_workload_role_needs_the_customers_acknowledgment() {
        let o = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        let workload = |role: &str| {
            if role == "reader" {
                vec!["ClusterRole \"reader\" rule 0 grants \"create\" on \"pods\"".to_string()]
            } else {
                Vec::new()
            }
        };
        let decide_as = |d: &Delegation| {
            decide(&Inputs {
                delegation: d,
                offer: Some(&o),
                snapshot: None,
                carried: None,
                namespace: &namespaces,
                role: &all_delegable,
                workload: &workload,
                targets: &d.target_namespaces(),
                policies: &[],
                assignments_enforced: true,
            })
        };
        let d = delegation("cust-a", "1.0.0", None);
        let refused = decide_as(&d).outcome.expect_err("refused");
        assert_eq!(refused.reason, Reason::WorkloadAccessNotAcknowledged);
        for hint in [
            "authorizations[0] role \"reader\" can run workloads",
            "\"create\" on \"pods\"",
            "add \"reader\" to spec.acknowledgedWorkloadRoles",
        ] {
            assert!(
                refused.message.contains(hint),
                "{hint}: {}",
                refused.message
            );
        }
        let acknowledged = fixtures::acknowledging(d, &["reader"]);
        assert!(decide_as(&acknowledged).outcome.is_ok());
    }

    #[test]
    fn the_provider_is_the_tenant_of_the_offers_namespace() {
        let mut spoofed = offer(vec![plan("1.0.0", Visibility::Public, None)]);
        spoofed.spec.provider.tenant = "contoso".into();
        let decision = decide_with(
            &delegation("cust-a", "1.0.0", None),
            Some(&spoofed),
            None,
            &all_delegable,
        );
        assert_eq!(
            decision.managed_by_tenant.as_deref(),
            Some("acme"),
            "never the claimed tenant"
        );
        let refused = decision.outcome.expect_err("refused");
        assert_eq!(refused.reason, Reason::ProviderTenantMismatch);
        assert!(
            refused.message.contains("spec.provider.tenant"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn system_principals_are_refused() {
        let mut everyone = plan("1.0.0", Visibility::Public, None);
        everyone.authorizations = vec![fixtures::auth(
            PrincipalKind::Group,
            "system:authenticated",
            "reader",
        )];
        let o = offer(vec![everyone]);
        let refused = decide_with(
            &delegation("cust-a", "1.0.0", None),
            Some(&o),
            None,
            &all_delegable,
        )
        .outcome
        .expect_err("refused");
        assert_eq!(refused.reason, Reason::InvalidPrincipal);
        assert!(
            refused.message.contains("\"system:authenticated\""),
            "{}",
            refused.message
        );
    }

    #[test]
    fn refusals_disclose_nothing_of_private_plans() {
        let mut private = plan("3.1.4", Visibility::Private, Some(vec!["other"]));
        private.name = "secret".into();
        let o = offer(vec![plan("1.0.0", Visibility::Public, None), private]);
        let mut d = delegation("cust-a", "1.0.0", None);
        d.spec.plan = "nope".into();
        let refused = decide_with(&d, Some(&o), None, &all_delegable)
            .outcome
            .expect_err("refused");
        assert_eq!(refused.reason, Reason::PlanNotFound);
        assert!(
            refused.message.contains("basic") && !refused.message.contains("secret"),
            "{}",
            refused.message
        );
        d.spec.plan = "secret".into();
        d.spec.plan_version = "1.0.0".into();
        let decision = decide_with(&d, Some(&o), None, &all_delegable);
        assert_eq!(reason(&decision), Some(Reason::NotInAudience));
        assert_eq!(decision.latest_version, None);
        let message = decision.outcome.expect_err("refused").message;
        assert!(
            !message.contains("3.1.4") && !message.contains("other"),
            "{message}"
        );
    }
}
