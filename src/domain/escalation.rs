//! Kubernetes' RBAC escalation rule, applied to consent: a customer may only
//! consent to grants it could have created itself. Kubernetes lets a user
//! create a RoleBinding to a role in a namespace when the user may `bind`
//! that role there, or already holds every permission the role grants there.
//! The operator checks exactly that for the consenting identity, with
//! SubjectAccessReviews, before it records a consent (see
//! [`crate::delegation::consent`]). This module lists the questions (pure).

use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes};
use k8s_openapi::api::rbac::v1::PolicyRule;

/// One access question about the consenter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Question {
    /// May it do `verb` on `group/resource[/subresource]` (named `name`) in
    /// `namespace`?
    Resource {
        /// Namespace.
        namespace: String,
        /// Verb.
        verb: String,
        /// API group.
        group: String,
        /// Resource.
        resource: String,
        /// Subresource.
        subresource: String,
        /// Object name (empty: any).
        name: String,
    },
    /// May it do `verb` on the non-resource URL `path`?
    Url {
        /// Verb.
        verb: String,
        /// Path.
        path: String,
    },
}

impl Question {
    /// The question "may it bind ClusterRole `role` in `namespace`?" (in
    /// every namespace when `namespace` is empty).
    pub fn bind(namespace: &str, role: &str) -> Self {
        Self::Resource {
            namespace: namespace.into(),
            verb: "bind".into(),
            group: super::RBAC_GROUP.into(),
            resource: "clusterroles".into(),
            subresource: String::new(),
            name: role.into(),
        }
    }

    /// The SubjectAccessReview attributes of this question.
    pub fn attributes(&self) -> (Option<ResourceAttributes>, Option<NonResourceAttributes>) {
        match self {
            Self::Resource {
                namespace,
                verb,
                group,
                resource,
                subresource,
                name,
            } => (
                Some(ResourceAttributes {
                    namespace: (!namespace.is_empty()).then(|| namespace.clone()),
                    verb: Some(verb.clone()),
                    group: Some(group.clone()),
                    resource: Some(resource.clone()),
                    subresource: (!subresource.is_empty()).then(|| subresource.clone()),
                    name: (!name.is_empty()).then(|| name.clone()),
                    ..ResourceAttributes::default()
                }),
                None,
            ),
            Self::Url { verb, path } => (
                None,
                Some(NonResourceAttributes {
                    verb: Some(verb.clone()),
                    path: Some(path.clone()),
                }),
            ),
        }
    }
}

impl std::fmt::Display for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resource {
                namespace,
                verb,
                group,
                resource,
                subresource,
                name,
            } => {
                write!(f, "{verb} ")?;
                if !group.is_empty() {
                    write!(f, "{group}/")?;
                }
                write!(f, "{resource}")?;
                if !subresource.is_empty() {
                    write!(f, "/{subresource}")?;
                }
                if !name.is_empty() {
                    write!(f, " {name:?}")?;
                }
                if namespace.is_empty() {
                    write!(f, " in every namespace")
                } else {
                    write!(f, " in namespace {namespace}")
                }
            }
            Self::Url { verb, path } => write!(f, "{verb} {path}"),
        }
    }
}

/// The questions whose answers, all yes, mean the consenter already holds
/// every permission `rules` grant in `namespace` (the second way Kubernetes
/// allows a binding). Delegable roles have no wildcards; a wildcard here is
/// asked as it is, which the authorizer answers yes only for a holder of the
/// same wildcard.
pub fn holds_all(namespace: &str, rules: &[PolicyRule]) -> Vec<Question> {
    let mut out = Vec::new();
    for rule in rules {
        for verb in &rule.verbs {
            for path in rule.non_resource_urls.iter().flatten() {
                out.push(Question::Url {
                    verb: verb.clone(),
                    path: path.clone(),
                });
            }
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let (resource, subresource) = resource
                        .split_once('/')
                        .map(|(r, s)| (r.to_string(), s.to_string()))
                        .unwrap_or_else(|| (resource.clone(), String::new()));
                    let names: Vec<String> = match rule.resource_names.as_deref() {
                        Some(names) if !names.is_empty() => names.to_vec(),
                        _ => vec![String::new()],
                    };
                    for name in names {
                        out.push(Question::Resource {
                            namespace: namespace.into(),
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            subresource: subresource.clone(),
                            name,
                        });
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            resource_names: (!names.is_empty()).then(|| strings(names)),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn every_permission_of_a_role_becomes_one_question() {
        let rules = vec![
            rule(&["", "apps"], &["pods", "pods/log"], &["get", "list"], &[]),
            rule(&[""], &["configmaps"], &["get"], &["a", "b"]),
            rule(&[""], &["pods"], &["get"], &[]),
        ];
        let questions = holds_all("ns", &rules);
        let shown: Vec<String> = questions.iter().map(ToString::to_string).collect();
        assert_eq!(questions.len(), 2 * 2 * 2 + 2, "{shown:#?}");
        assert!(
            shown.contains(&"get pods/log in namespace ns".to_string()),
            "{shown:#?}"
        );
        assert!(
            shown.contains(&"list apps/pods in namespace ns".to_string()),
            "{shown:#?}"
        );
        assert!(
            shown.contains(&"get configmaps \"b\" in namespace ns".to_string()),
            "{shown:#?}"
        );
        let (resource, _) = questions
            .iter()
            .find(|q| q.to_string() == "get pods/log in namespace ns")
            .expect("question")
            .attributes();
        let resource = resource.expect("resource attributes");
        assert_eq!(resource.resource.as_deref(), Some("pods"));
        assert_eq!(resource.subresource.as_deref(), Some("log"));
        assert_eq!(resource.name, None);
    }

    #[test]
    fn bind_asks_for_the_named_cluster_role() {
        let (resource, url) = Question::bind("ns", "reader").attributes();
        let resource = resource.expect("resource");
        assert_eq!(url, None);
        assert_eq!(
            (
                resource.verb.as_deref(),
                resource.resource.as_deref(),
                resource.name.as_deref()
            ),
            (Some("bind"), Some("clusterroles"), Some("reader"))
        );
        assert_eq!(
            Question::bind("ns", "reader").to_string(),
            "bind rbac.authorization.k8s.io/clusterroles \"reader\" in namespace ns"
        );
    }
}
