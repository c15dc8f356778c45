//! Step 3, build: the RBAC objects an accepted plan version stands for (pure).
//!
//! For each delegated namespace and each authorization, one RoleBinding of the
//! principal to the ClusterRole. The provider's removal right
//! (`msp-operator:delegation-deleter`) becomes a Role in the Delegation's own
//! namespace granting `get` and `delete` on that one Delegation by name, and a
//! RoleBinding to it — never a ClusterRole, which would reach other
//! providers' delegations.

use crate::api::{DELEGATION_DELETER_ROLE, Delegation, PrincipalKind};
use crate::delegation::validate::{Decision, NamespaceState};
use crate::domain::RBAC_GROUP;
use crate::domain::consent::AcceptedPlan;
use crate::domain::names;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// Everything that should exist for a delegation, and nothing else.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// RoleBindings, in every delegated namespace.
    pub role_bindings: Vec<RoleBinding>,
    /// Roles (only the deleter Role, in the Delegation's namespace).
    pub roles: Vec<Role>,
}

fn subject(kind: PrincipalKind, name: &str, namespace: Option<&str>, offer_ns: &str) -> Subject {
    match kind {
        PrincipalKind::User | PrincipalKind::Group => Subject {
            kind: if kind == PrincipalKind::User {
                "User"
            } else {
                "Group"
            }
            .into(),
            name: name.into(),
            api_group: Some(RBAC_GROUP.into()),
            namespace: None,
        },
        PrincipalKind::ServiceAccount => Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            api_group: Some(String::new()),
            namespace: Some(namespace.unwrap_or(offer_ns).into()),
        },
    }
}

/// What `decision` stands for: the objects of the accepted plan in the
/// namespaces ready to be granted, and nothing at all for a refusal.
pub fn for_decision(delegation: &Delegation, decision: &Decision) -> Desired {
    match &decision.outcome {
        Ok(accepted) => {
            let grantable: Vec<String> = accepted
                .namespaces
                .iter()
                .filter(|(_, s)| *s == NamespaceState::Grantable)
                .map(|(n, _)| n.clone())
                .collect();
            build(delegation, &accepted.plan, &grantable)
        }
        Err(_) => Desired::default(),
    }
}

/// Builds the desired objects for `plan` in `namespaces` (those ready to be
/// granted). Duplicated authorizations yield one binding.
pub fn build(delegation: &Delegation, plan: &AcceptedPlan, namespaces: &[String]) -> Desired {
    let labels = names::managed_labels(delegation, plan);
    let own_namespace = delegation.namespace().unwrap_or_default();
    let delegation_name = delegation.name_any();
    let mut desired = Desired::default();
    let mut seen = std::collections::BTreeSet::new();
    for authorization in &plan.authorizations {
        let principal = &authorization.principal;
        let subject = subject(
            principal.kind,
            &principal.name,
            principal.namespace.as_deref(),
            &plan.offer_namespace,
        );
        let principal_key = format!(
            "{}/{}/{}",
            subject.kind,
            subject.namespace.as_deref().unwrap_or(""),
            subject.name
        );
        let deleter = authorization.role_ref == DELEGATION_DELETER_ROLE;
        let (role_kind, role_name, targets): (&str, String, Vec<String>) = if deleter {
            (
                "Role",
                names::deleter_role_name(&delegation_name),
                // The removal right exists only where the Delegation lives.
                vec![own_namespace.clone()],
            )
        } else {
            (
                "ClusterRole",
                authorization.role_ref.clone(),
                namespaces.to_vec(),
            )
        };
        for namespace in targets {
            if !seen.insert((
                namespace.clone(),
                principal_key.clone(),
                role_kind,
                role_name.clone(),
            )) {
                continue;
            }
            desired.role_bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(names::role_binding_name(
                        &own_namespace,
                        &delegation_name,
                        &principal_key,
                        role_kind,
                        &role_name,
                    )),
                    namespace: Some(namespace),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: role_kind.into(),
                    name: role_name.clone(),
                },
                subjects: Some(vec![subject.clone()]),
            });
        }
        if deleter
            && !desired
                .roles
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(&role_name))
        {
            desired.roles.push(Role {
                metadata: ObjectMeta {
                    name: Some(role_name.clone()),
                    namespace: Some(own_namespace.clone()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![crate::api::GROUP.into()]),
                    resources: Some(vec!["delegations".into()]),
                    resource_names: Some(vec![delegation_name.clone()]),
                    verbs: vec!["get".into(), "delete".into()],
                    ..Default::default()
                }]),
            });
        }
    }
    desired
}

fn labels_cover(
    have: &Option<BTreeMap<String, String>>,
    want: &Option<BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let have = have.as_ref().unwrap_or(&empty);
    want.as_ref()
        .unwrap_or(&empty)
        .iter()
        .all(|(k, v)| have.get(k) == Some(v))
}

fn normalized_subjects(subjects: &Option<Vec<Subject>>) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = subjects
        .iter()
        .flatten()
        .map(|s| {
            (
                s.kind.clone(),
                s.name.clone(),
                s.namespace.clone().unwrap_or_default(),
                // The API server defaults apiGroup; compare what matters.
                match s.kind.as_str() {
                    "ServiceAccount" => String::new(),
                    _ => s.api_group.clone().unwrap_or_default(),
                },
            )
        })
        .collect();
    out.sort();
    out
}

/// True when an existing RoleBinding grants exactly what `desired` grants and
/// carries its labels: then no write is needed.
pub fn role_binding_matches(existing: &RoleBinding, desired: &RoleBinding) -> bool {
    existing.role_ref == desired.role_ref
        && normalized_subjects(&existing.subjects) == normalized_subjects(&desired.subjects)
        && labels_cover(&existing.metadata.labels, &desired.metadata.labels)
}

/// True when an existing Role has exactly the desired rules and labels.
pub fn role_matches(existing: &Role, desired: &Role) -> bool {
    existing.rules == desired.rules
        && labels_cover(&existing.metadata.labels, &desired.metadata.labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Authorization;
    use crate::fixtures::{self, auth};

    fn delegation() -> Delegation {
        fixtures::with_uid(
            fixtures::delegation("cust", "dlg", ("provider", "offer"), "basic", "1.0.0", None),
            "uid-1",
        )
    }

    fn plan(authorizations: Vec<Authorization>) -> AcceptedPlan {
        fixtures::accepted(
            ("provider", "offer"),
            "acme",
            "basic",
            "1.0.0",
            authorizations,
        )
    }

    #[test]
    fn one_binding_per_namespace_and_authorization() {
        let p = plan(vec![
            auth(PrincipalKind::User, "alice", "reader"),
            auth(PrincipalKind::Group, "ops", "operator"),
            auth(PrincipalKind::User, "alice", "reader"),
        ]);
        let d = build(&delegation(), &p, &["cust".into(), "cust-b".into()]);
        assert_eq!(d.role_bindings.len(), 4);
        assert!(d.roles.is_empty());
        for rb in &d.role_bindings {
            let labels = rb.metadata.labels.as_ref().expect("labels");
            assert_eq!(labels[names::DELEGATION_LABEL], "dlg");
            assert_eq!(labels[names::OFFER_LABEL], "offer");
            assert_eq!(rb.role_ref.kind, "ClusterRole");
        }
        let names: std::collections::BTreeSet<_> = d
            .role_bindings
            .iter()
            .map(|rb| (rb.metadata.namespace.clone(), rb.metadata.name.clone()))
            .collect();
        assert_eq!(names.len(), 4, "names are unique per namespace");
    }

    #[test]
    fn service_accounts_default_to_the_offer_namespace() {
        let p = plan(vec![auth(PrincipalKind::ServiceAccount, "bot", "reader")]);
        let d = build(&delegation(), &p, &["cust".into()]);
        let subject = &d.role_bindings[0].subjects.as_ref().expect("subjects")[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.namespace.as_deref(), Some("provider"));
    }

    #[test]
    fn deleter_right_is_a_named_role_in_the_delegation_namespace_only() {
        let p = plan(vec![auth(
            PrincipalKind::User,
            "alice",
            DELEGATION_DELETER_ROLE,
        )]);
        let d = build(&delegation(), &p, &["cust-b".into(), "cust-c".into()]);
        assert_eq!(d.roles.len(), 1);
        let role = &d.roles[0];
        assert_eq!(role.metadata.namespace.as_deref(), Some("cust"));
        let rule = &role.rules.as_ref().expect("rules")[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["dlg".to_string()][..])
        );
        assert_eq!(rule.verbs, vec!["get", "delete"]);
        assert_eq!(d.role_bindings.len(), 1);
        assert_eq!(
            d.role_bindings[0].metadata.namespace.as_deref(),
            Some("cust")
        );
        assert_eq!(d.role_bindings[0].role_ref.kind, "Role");
    }

    #[test]
    fn matching_ignores_defaulted_fields_but_not_grants() {
        let p = plan(vec![auth(PrincipalKind::User, "alice", "reader")]);
        let want = build(&delegation(), &p, &["cust".into()])
            .role_bindings
            .remove(0);
        let mut have = want.clone();
        have.metadata.resource_version = Some("42".into());
        have.metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert("extra".into(), "kept".into());
        assert!(role_binding_matches(&have, &want));
        have.subjects.as_mut().expect("subjects")[0].name = "mallory".into();
        assert!(!role_binding_matches(&have, &want));
        let mut unlabeled = want.clone();
        unlabeled.metadata.labels = None;
        assert!(!role_binding_matches(&unlabeled, &want));
    }
}
