//! Step 3, build: the RBAC objects an accepted plan version stands for (pure).
//!
//! For each delegated namespace and each role, one RoleBinding whose subjects
//! are every principal of the accepted version holding that role, sorted —
//! the shape a careful admin writes by hand, and the fewest objects for the
//! access (five groups with one reader role are one binding per namespace,
//! not five). The provider's removal right
//! (`msp-operator:delegation-deleter`) becomes a Role in the Delegation's own
//! namespace granting `get` and `delete` on that one Delegation by name, and a
//! RoleBinding to it — never a ClusterRole, which would reach other
//! providers' delegations.

use crate::activation::ActiveGrant;
use crate::api::{
    ACTIVATION_APPROVER_ROLE, ACTIVATION_REQUESTER_ROLE, DELEGATION_DELETER_ROLE, Delegation,
    Person, PersonKind, PrincipalKind, ROLE_ASSIGNER_ROLE,
};
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

impl Desired {
    /// The RoleBindings wanted in `namespace` other than activations' grants:
    /// what the Delegation's status counts there (an activation's grant is
    /// reported on its Activation).
    pub fn standing_bindings_in(&self, namespace: &str) -> usize {
        self.role_bindings
            .iter()
            .filter(|rb| rb.metadata.namespace.as_deref() == Some(namespace))
            .filter(|rb| !rb.labels().contains_key(names::ACTIVATION_LABEL))
            .count()
    }
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
            let mut desired = build(delegation, &accepted.plan, &grantable);
            desired.role_bindings.extend(activation_bindings(
                delegation,
                &accepted.plan,
                &accepted.activations,
            ));
            desired
        }
        Err(_) => Desired::default(),
    }
}

/// Builds the desired objects for `plan` in `namespaces` (those ready to be
/// granted): one RoleBinding per (namespace, role) with the role's
/// principals as its sorted subjects. Duplicated authorizations yield one
/// subject.
pub fn build(delegation: &Delegation, plan: &AcceptedPlan, namespaces: &[String]) -> Desired {
    let labels = names::managed_labels(delegation, plan);
    let own_namespace = delegation.namespace().unwrap_or_default();
    let delegation_name = delegation.name_any();
    let deleter_role = names::deleter_role_name(&delegation_name);
    // (role kind, role name) -> subjects, in the order of the sort key.
    let mut by_role: BTreeMap<(&str, String), BTreeMap<SubjectKey, Subject>> = BTreeMap::new();
    // Assigner Role name -> the ClusterRoles it lets its holders bind.
    let mut assigners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for authorization in &plan.authorizations {
        let principal = &authorization.principal;
        let subject = subject(
            principal.kind,
            &principal.name,
            principal.namespace.as_deref(),
            &plan.offer_namespace,
        );
        let role = if authorization.role_ref == DELEGATION_DELETER_ROLE {
            ("Role", deleter_role.clone())
        } else if authorization.role_ref == ROLE_ASSIGNER_ROLE {
            let mut delegated: Vec<String> = authorization
                .delegated_roles
                .iter()
                .flatten()
                .map(|r| r.0.clone())
                .collect();
            delegated.sort();
            delegated.dedup();
            if delegated.is_empty() {
                // Refused by validation; never `bind` on every ClusterRole.
                continue;
            }
            let name = names::assigner_role_name(&delegation_name, &delegated);
            assigners.insert(name.clone(), delegated);
            ("Role", name)
        } else {
            ("ClusterRole", authorization.role_ref.clone())
        };
        by_role
            .entry(role)
            .or_default()
            .insert(subject_key(&subject), subject);
    }
    // Just-in-time access: eligible principals may request, approvers may
    // decide, in the Delegation's own namespace (where Activations live).
    if !plan.eligible_authorizations.is_empty() {
        let people = |list: &mut dyn Iterator<Item = &Person>| {
            list.map(|p| {
                let kind = match p.kind {
                    PersonKind::User => PrincipalKind::User,
                    PersonKind::Group => PrincipalKind::Group,
                };
                let subject = subject(kind, &p.name, None, &plan.offer_namespace);
                (subject_key(&subject), subject)
            })
            .collect::<BTreeMap<_, _>>()
        };
        let requesters = people(&mut plan.eligible_authorizations.iter().map(|e| &e.principal));
        let customer_approvers = delegation
            .spec
            .activation_terms
            .iter()
            .flat_map(|t| t.approvers.iter().flatten());
        let approvers = people(
            &mut plan
                .eligible_authorizations
                .iter()
                .flat_map(|e| e.approvers())
                .chain(customer_approvers),
        );
        by_role.insert(("Access", ACTIVATION_REQUESTER_ROLE.into()), requesters);
        if !approvers.is_empty() {
            by_role.insert(("Access", ACTIVATION_APPROVER_ROLE.into()), approvers);
        }
    }
    let mut desired = Desired::default();
    for ((role_kind, role_name), subjects) in by_role {
        let access = role_kind == "Access";
        let role_kind = if access { "ClusterRole" } else { role_kind };
        let deleter = role_kind == "Role" && role_name == deleter_role;
        // The removal right and the activation rights exist only where the
        // Delegation lives.
        let targets = if deleter || access {
            std::slice::from_ref(&own_namespace)
        } else {
            namespaces
        };
        let name =
            names::role_binding_name(&own_namespace, &delegation_name, role_kind, &role_name);
        let subjects: Vec<Subject> = subjects.into_values().collect();
        for namespace in targets {
            desired.role_bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: role_kind.into(),
                    name: role_name.clone(),
                },
                subjects: Some(subjects.clone()),
            });
        }
        if deleter {
            desired.roles.push(deleter_role_for(
                &delegation_name,
                &own_namespace,
                &role_name,
                &labels,
            ));
        }
        if let Some(delegated) = assigners.get(&role_name) {
            for namespace in targets {
                desired.roles.push(assigner_role_for(
                    delegation, namespace, &role_name, delegated, &labels,
                ));
            }
        }
    }
    desired
}

/// The Role of restricted role assignment in `namespace`: manage
/// RoleBindings, `bind` only the `delegated` ClusterRoles, and the two
/// markers the admission policy reads — `roleassigners` (this identity's
/// RoleBinding writes here are restricted) and `roleassignments` named
/// after the Delegation (the bindings it makes belong to that one). What
/// such a binding may hold is the admission policy's
/// `msp-operator.io-provider-assignments-are-bounded`.
fn assigner_role_for(
    delegation: &Delegation,
    namespace: &str,
    role_name: &str,
    delegated: &[String],
    labels: &BTreeMap<String, String>,
) -> Role {
    managed_role(
        role_name,
        namespace,
        labels,
        vec![
            rule(
                RBAC_GROUP,
                "rolebindings",
                &["get", "list", "watch", "create", "patch", "delete"],
                None,
            ),
            rule(
                RBAC_GROUP,
                "clusterroles",
                &["bind"],
                Some(delegated.to_vec()),
            ),
            rule(crate::api::GROUP, "roleassigners", &["create"], None),
            rule(
                crate::api::GROUP,
                "roleassignments",
                &["create"],
                Some(vec![assignment_marker(delegation)]),
            ),
        ],
    )
}

/// A Role the operator writes: `name` in `namespace` with its labels.
fn managed_role(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        rules: Some(rules),
    }
}

/// One rule: `verbs` on `group`/`resource`, limited to `names` when given.
fn rule(group: &str, resource: &str, verbs: &[&str], names: Option<Vec<String>>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: names,
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// The resource name of the `roleassignments` marker of `delegation`:
/// `<namespace>/<name>`, what admission compares a provider binding's
/// delegation labels with.
pub fn assignment_marker(delegation: &Delegation) -> String {
    format!(
        "{}/{}",
        delegation.namespace().unwrap_or_default(),
        delegation.name_any()
    )
}

/// The RoleBindings of the activations in force: in each of their
/// namespaces, the eligible role to the requesting user alone (never the
/// group the user is eligible through), named after the activation.
pub fn activation_bindings(
    delegation: &Delegation,
    plan: &AcceptedPlan,
    grants: &[ActiveGrant],
) -> Vec<RoleBinding> {
    let own_namespace = delegation.namespace().unwrap_or_default();
    let delegation_name = delegation.name_any();
    let mut bindings = Vec::new();
    for grant in grants {
        let mut labels = names::managed_labels(delegation, plan);
        labels.insert(names::ACTIVATION_LABEL.into(), grant.activation.clone());
        let name =
            names::activation_binding_name(&own_namespace, &delegation_name, &grant.activation);
        let user = subject(PrincipalKind::User, &grant.user, None, "");
        for namespace in &grant.namespaces {
            bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: "ClusterRole".into(),
                    name: grant.role.clone(),
                },
                subjects: Some(vec![user.clone()]),
            });
        }
    }
    bindings
}

/// The Role granting `get` and `delete` on this one Delegation by name.
fn deleter_role_for(
    delegation_name: &str,
    namespace: &str,
    role_name: &str,
    labels: &BTreeMap<String, String>,
) -> Role {
    managed_role(
        role_name,
        namespace,
        labels,
        vec![rule(
            crate::api::GROUP,
            "delegations",
            &["get", "delete"],
            Some(vec![delegation_name.into()]),
        )],
    )
}

/// What identifies a subject: kind, namespace, name (and the sort order of
/// a binding's subjects).
pub type SubjectKey = (String, String, String);

/// The [`SubjectKey`] of `subject`.
pub fn subject_key(subject: &Subject) -> SubjectKey {
    (
        subject.kind.clone(),
        subject.namespace.clone().unwrap_or_default(),
        subject.name.clone(),
    )
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

/// True when every grant of `existing` (subject, role, namespace) is also
/// granted by `desired`: deleting it would take away nothing unwanted.
pub fn covered_by(existing: &RoleBinding, desired: &Desired) -> bool {
    let namespace = existing.metadata.namespace.as_deref();
    existing.subjects.iter().flatten().all(|s| {
        let key = subject_key(s);
        desired.role_bindings.iter().any(|d| {
            d.metadata.namespace.as_deref() == namespace
                && d.role_ref == existing.role_ref
                && d.subjects.iter().flatten().any(|ds| subject_key(ds) == key)
        })
    })
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
    fn one_binding_per_namespace_and_role_with_sorted_subjects() {
        let p = plan(vec![
            auth(PrincipalKind::User, "zoe", "reader"),
            auth(PrincipalKind::Group, "ops", "operator"),
            auth(PrincipalKind::User, "alice", "reader"),
            auth(PrincipalKind::User, "alice", "reader"),
            auth(PrincipalKind::Group, "auditors", "reader"),
        ]);
        let d = build(&delegation(), &p, &["cust".into(), "cust-b".into()]);
        assert_eq!(d.role_bindings.len(), 4, "2 roles x 2 namespaces");
        assert!(d.roles.is_empty());
        for rb in &d.role_bindings {
            let labels = rb.metadata.labels.as_ref().expect("labels");
            assert_eq!(labels[names::DELEGATION_LABEL], "dlg");
            assert_eq!(labels[names::OFFER_LABEL], "offer");
            assert_eq!(rb.role_ref.kind, "ClusterRole");
            let subjects: Vec<(String, String)> = rb
                .subjects
                .iter()
                .flatten()
                .map(|s| (s.kind.clone(), s.name.clone()))
                .collect();
            let expected: Vec<(String, String)> = match rb.role_ref.name.as_str() {
                "reader" => vec![
                    ("Group".into(), "auditors".into()),
                    ("User".into(), "alice".into()),
                    ("User".into(), "zoe".into()),
                ],
                _ => vec![("Group".into(), "ops".into())],
            };
            assert_eq!(subjects, expected, "deduplicated and sorted");
        }
        let names: std::collections::BTreeSet<_> = d
            .role_bindings
            .iter()
            .map(|rb| (rb.metadata.namespace.clone(), rb.metadata.name.clone()))
            .collect();
        assert_eq!(names.len(), 4, "names are unique per namespace");
        // The order of authorizations changes nothing.
        let mut reordered = p.clone();
        reordered.authorizations.reverse();
        assert_eq!(
            build(&delegation(), &reordered, &["cust".into(), "cust-b".into()]),
            d
        );
    }

    #[test]
    fn covered_by_holds_only_when_every_grant_stays() {
        let p = plan(vec![
            auth(PrincipalKind::User, "alice", "reader"),
            auth(PrincipalKind::User, "bob", "reader"),
        ]);
        let desired = build(&delegation(), &p, &["cust".into()]);
        // A 0.1.0-style binding of one principal: covered.
        let mut old = desired.role_bindings[0].clone();
        old.metadata.name = Some("msp-dlg-5ac501b9b4de".into());
        old.subjects.as_mut().expect("subjects").truncate(1);
        assert!(covered_by(&old, &desired));
        // Another namespace, another role or another subject: not covered.
        let mut elsewhere = old.clone();
        elsewhere.metadata.namespace = Some("cust-b".into());
        assert!(!covered_by(&elsewhere, &desired));
        let mut wider = old.clone();
        wider.role_ref.name = "admin".into();
        assert!(!covered_by(&wider, &desired));
        let mut other = old.clone();
        other.subjects.as_mut().expect("subjects")[0].name = "mallory".into();
        assert!(!covered_by(&other, &desired));
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
    fn a_role_assigner_gets_a_bounded_role_in_every_delegated_namespace() {
        let p = plan(vec![
            fixtures::assigner(PrincipalKind::Group, "automation", &["view", "ci"]),
            fixtures::assigner(PrincipalKind::User, "bot", &["ci", "view"]),
        ]);
        let d = build(&delegation(), &p, &["cust-b".into(), "cust-c".into()]);
        // The same roles in another order are one Role and one binding.
        assert_eq!(d.roles.len(), 2);
        assert_eq!(d.role_bindings.len(), 2);
        for (role, ns) in d.roles.iter().zip(["cust-b", "cust-c"]) {
            assert_eq!(role.metadata.namespace.as_deref(), Some(ns));
            assert!(role.name_any().contains("-assigner-"));
            let rules = role.rules.as_ref().expect("rules");
            let bind = rules
                .iter()
                .find(|r| r.verbs == ["bind"])
                .expect("bind rule");
            assert_eq!(
                bind.resource_names.as_deref(),
                Some(&["ci".to_string(), "view".to_string()][..])
            );
            let marker = rules
                .iter()
                .find(|r| r.resources.as_deref() == Some(&["roleassignments".to_string()][..]))
                .expect("marker");
            assert_eq!(
                marker.resource_names.as_deref(),
                Some(&["cust/dlg".to_string()][..])
            );
            assert!(
                rules
                    .iter()
                    .all(|r| r.verbs.iter().all(|v| v != "*" && v != "escalate")),
                "{rules:?}"
            );
        }
        let binding = &d.role_bindings[0];
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.subjects.as_ref().expect("subjects").len(), 2);
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
