//! Step 4c, provider assignments: the RoleBindings a provider made itself
//! under a role-assigner authorization (restricted role assignment). What
//! they may hold is decided at admission
//! (`msp-operator.io-provider-assignments-are-bounded`); this step keeps
//! only those the accepted version still allows — its delegated namespaces
//! (as granted now) and the roles its role assigners may bind — deletes the
//! rest, and reports what remains in the Delegation's status. So nothing a
//! provider made outlives the consent behind it.

use crate::api::{Delegation, ProviderAssignment, ROLE_ASSIGNER_ROLE};
use crate::delegation::cleanup;
use crate::delegation::validate::{Decision, NamespaceState};
use crate::runtime::context::Context;
use crate::runtime::errors::Error;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The (namespace, ClusterRole) pairs `decision` lets role assigners bind:
/// none for a refusal.
pub fn allowed(decision: &Decision) -> BTreeSet<(String, String)> {
    let Ok(accepted) = &decision.outcome else {
        return BTreeSet::new();
    };
    let roles: BTreeSet<&str> = accepted
        .plan
        .authorizations
        .iter()
        .filter(|a| a.role_ref == ROLE_ASSIGNER_ROLE)
        .flat_map(|a| a.delegated_roles.iter().flatten().map(|r| r.0.as_str()))
        .collect();
    accepted
        .namespaces
        .iter()
        .filter(|(_, state)| *state == NamespaceState::Grantable)
        .flat_map(|(namespace, _)| roles.iter().map(|r| (namespace.clone(), r.to_string())))
        .collect()
}

/// Splits the provider's bindings into those `allowed` keeps (as status
/// entries, sorted) and those to delete (pure).
pub fn sort_out(
    bindings: &[Arc<RoleBinding>],
    allowed: &BTreeSet<(String, String)>,
) -> (Vec<ProviderAssignment>, Vec<Arc<RoleBinding>>) {
    let mut kept = Vec::new();
    let mut unwanted = Vec::new();
    for rb in bindings {
        let namespace = rb.namespace().unwrap_or_default();
        let key = (namespace.clone(), rb.role_ref.name.clone());
        if rb.role_ref.kind == "ClusterRole" && allowed.contains(&key) {
            kept.push(ProviderAssignment {
                namespace,
                name: rb.name_any(),
                role_ref: rb.role_ref.name.clone(),
                service_accounts: rb
                    .subjects
                    .iter()
                    .flatten()
                    .map(|s| s.name.clone())
                    .collect(),
            });
        } else {
            unwanted.push(rb.clone());
        }
    }
    kept.sort();
    (kept, unwanted)
}

/// For the revocation pass after a start: deletes the provider's bindings
/// of `delegation` outside `allowed`; returns how many (failures are left
/// to the reconcile that follows).
pub async fn revoke_unwanted(
    ctx: &Context,
    delegation: &Delegation,
    allowed: &BTreeSet<(String, String)>,
) -> usize {
    let bindings = ctx.caches.provider_assignments_of(
        &delegation.namespace().unwrap_or_default(),
        &delegation.name_any(),
    );
    let (_, unwanted) = sort_out(&bindings, allowed);
    cleanup::delete_all(&ctx.writer, unwanted)
        .await
        .unwrap_or_default()
}

/// Deletes the provider's bindings of `delegation` that `decision` no
/// longer allows; returns those that stay, for the status.
pub async fn keep_consented(
    ctx: &Context,
    delegation: &Delegation,
    decision: &Decision,
) -> Result<Vec<ProviderAssignment>, Error> {
    let bindings = ctx.caches.provider_assignments_of(
        &delegation.namespace().unwrap_or_default(),
        &delegation.name_any(),
    );
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    let (kept, unwanted) = sort_out(&bindings, &allowed(decision));
    cleanup::delete_all(&ctx.writer, unwanted).await?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PrincipalKind;
    use crate::fixtures;
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject};

    fn decision(states: &[(&str, NamespaceState)], roles: &[&str]) -> Decision {
        fixtures::accepted_decision(
            fixtures::accepted(
                ("provider", "offer"),
                "acme",
                "p",
                "1.0.0",
                vec![
                    fixtures::auth(PrincipalKind::User, "alice", "view"),
                    fixtures::assigner(PrincipalKind::Group, "automation", roles),
                ],
            ),
            states,
        )
    }

    fn binding(namespace: &str, name: &str, kind: &str, role: &str) -> Arc<RoleBinding> {
        let mut rb = fixtures::role_binding(namespace, name, (kind, role), ("User", "x"));
        rb.role_ref = RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: role.into(),
        };
        rb.subjects = Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "deployer".into(),
            namespace: Some(namespace.into()),
            ..Default::default()
        }]);
        Arc::new(rb)
    }

    #[test]
    fn only_listed_roles_in_granted_namespaces_stay() {
        let d = decision(
            &[
                ("a", NamespaceState::Grantable),
                ("b", NamespaceState::Terminating),
            ],
            &["ci-deployer"],
        );
        let bindings = vec![
            binding("a", "ok", "ClusterRole", "ci-deployer"),
            binding("a", "other-role", "ClusterRole", "view"),
            binding("a", "a-role", "Role", "ci-deployer"),
            binding("b", "not-granted-here", "ClusterRole", "ci-deployer"),
            binding("c", "not-delegated", "ClusterRole", "ci-deployer"),
        ];
        let (kept, unwanted) = sort_out(&bindings, &allowed(&d));
        assert_eq!(
            kept,
            vec![ProviderAssignment {
                namespace: "a".into(),
                name: "ok".into(),
                role_ref: "ci-deployer".into(),
                service_accounts: vec!["deployer".into()],
            }]
        );
        let gone: Vec<String> = unwanted.iter().map(|rb| rb.name_any()).collect();
        assert_eq!(
            gone,
            ["other-role", "a-role", "not-granted-here", "not-delegated"]
        );
    }

    #[test]
    fn a_refusal_or_a_version_without_the_assigner_keeps_nothing() {
        let bindings = vec![binding("a", "ok", "ClusterRole", "ci-deployer")];
        let mut refused = decision(&[("a", NamespaceState::Grantable)], &["ci-deployer"]);
        refused.outcome = Err(crate::delegation::validate::Refused {
            reason: crate::domain::conditions::Reason::ProviderNotAllowed,
            message: String::new(),
        });
        assert!(sort_out(&bindings, &allowed(&refused)).0.is_empty());
        let other = decision(&[("a", NamespaceState::Grantable)], &["view"]);
        assert!(sort_out(&bindings, &allowed(&other)).0.is_empty());
    }
}
