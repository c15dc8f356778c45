//! Allowed providers and roles: whether the policies that apply to a
//! Delegation's namespaces allow its provider and the roles of its accepted
//! version (pure).
//!
//! Every applying policy must allow (an intersection), so adding a policy —
//! the platform's or a customer's — can only take away. A role counts when
//! the version can grant it, permanently or eligibly; the deleter role is
//! always allowed, as it only lets a provider end its own access.

use crate::api::{DELEGATION_DELETER_ROLE, PolicyMode, PolicyRules};

/// One policy that applies to one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applying {
    /// How users name it: `ClusterProviderPolicy prod-readers` or
    /// `ProviderPolicy shop/only-contoso`.
    pub source: String,
    /// Its rules.
    pub rules: PolicyRules,
}

/// What a policy does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disallowed {
    /// The provider tenant is not in `allowedProviders`.
    Provider,
    /// A role of the plan (named by its field) is not allowed.
    Role {
        /// `authorizations[0]`, `eligibleAuthorizations[1]`.
        field: String,
        /// The ClusterRole.
        role: String,
    },
}

/// One policy's objection in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The policy, as [`Applying::source`].
    pub source: String,
    /// Deny or Audit.
    pub mode: PolicyMode,
    /// The namespace it applies to.
    pub namespace: String,
    /// What it does not allow.
    pub what: Disallowed,
}

impl Violation {
    /// A sentence naming the policy, the namespace, what is not allowed, and
    /// the fix.
    pub fn message(&self, provider_tenant: &str) -> String {
        let Violation {
            source, namespace, ..
        } = self;
        match &self.what {
            Disallowed::Provider => format!(
                "{source} does not allow provider tenant {provider_tenant:?} in namespace {namespace:?}; the platform (or the namespace's admin, for a ProviderPolicy) must add it to spec.allowedProviders, or remove {namespace:?} from this Delegation"
            ),
            Disallowed::Role { field, role } => format!(
                "{source} does not allow role {role:?} ({field} of the accepted plan) for provider tenant {provider_tenant:?} in namespace {namespace:?}; accept a plan without it, or the policy's owner must allow it"
            ),
        }
    }
}

/// The objections of `policies` (each with the namespace it applies to) to
/// provider `provider_tenant` holding `roles` (each with its field).
pub fn violations(
    policies: &[(String, Applying)],
    provider_tenant: &str,
    roles: &[(String, String)],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (namespace, policy) in policies {
        let rules = &policy.rules;
        let entry = match &rules.allowed_providers {
            None => None,
            Some(allowed) => match allowed.iter().find(|p| p.tenant.0 == provider_tenant) {
                Some(entry) => Some(entry),
                None => {
                    out.push(Violation {
                        source: policy.source.clone(),
                        mode: rules.mode,
                        namespace: namespace.clone(),
                        what: Disallowed::Provider,
                    });
                    continue;
                }
            },
        };
        let listed = |list: &Option<Vec<crate::api::RoleName>>, role: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|r| r.0 == role))
        };
        for (field, role) in roles {
            let allowed = role == DELEGATION_DELETER_ROLE
                || (listed(&rules.allowed_roles, role)
                    && entry.is_none_or(|e| listed(&e.roles, role)));
            if !allowed {
                out.push(Violation {
                    source: policy.source.clone(),
                    mode: rules.mode,
                    namespace: namespace.clone(),
                    what: Disallowed::Role {
                        field: field.clone(),
                        role: role.clone(),
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AllowedProvider, RoleName, TenantId};

    /// A provider tenant with the roles it alone may hold.
    type Entry<'a> = (&'a str, Option<&'a [&'a str]>);

    fn rules(
        mode: PolicyMode,
        providers: Option<&[Entry<'_>]>,
        roles: Option<&[&str]>,
    ) -> PolicyRules {
        let names = |r: &[&str]| r.iter().map(|r| RoleName(r.to_string())).collect();
        PolicyRules {
            mode,
            allowed_providers: providers.map(|p| {
                p.iter()
                    .map(|(t, r)| AllowedProvider {
                        tenant: TenantId(t.to_string()),
                        roles: r.map(names),
                    })
                    .collect()
            }),
            allowed_roles: roles.map(names),
        }
    }

    fn at(namespace: &str, source: &str, rules: PolicyRules) -> (String, Applying) {
        (
            namespace.into(),
            Applying {
                source: source.into(),
                rules,
            },
        )
    }

    fn grants(roles: &[&str]) -> Vec<(String, String)> {
        roles
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("authorizations[{i}]"), r.to_string()))
            .collect()
    }

    #[test]
    fn no_policy_allows_everything() {
        assert!(violations(&[], "contoso", &grants(&["edit"])).is_empty());
    }

    #[test]
    fn a_provider_not_listed_is_refused_once_per_policy_and_namespace() {
        let only_fabrikam = rules(PolicyMode::Deny, Some(&[("fabrikam", None)]), None);
        let found = violations(
            &[
                at("a", "ClusterProviderPolicy p", only_fabrikam.clone()),
                at("b", "ClusterProviderPolicy p", only_fabrikam),
            ],
            "contoso",
            &grants(&["view", "edit"]),
        );
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|v| v.what == Disallowed::Provider));
        assert!(found[0].message("contoso").contains("\"contoso\""));
        assert!(
            found[0]
                .message("contoso")
                .contains("spec.allowedProviders")
        );
    }

    #[test]
    fn an_empty_provider_list_allows_none() {
        let none = rules(PolicyMode::Deny, Some(&[]), None);
        let found = violations(&[at("a", "x", none)], "contoso", &grants(&["view"]));
        assert_eq!(found[0].what, Disallowed::Provider);
    }

    #[test]
    fn roles_are_limited_by_the_policy_and_by_the_provider_entry() {
        let policy = rules(
            PolicyMode::Audit,
            Some(&[("contoso", Some(&["view", "edit"])), ("fabrikam", None)]),
            Some(&["view", "log-reader"]),
        );
        let found = violations(
            &[at("a", "x", policy.clone())],
            "contoso",
            &grants(&["view", "edit", "log-reader"]),
        );
        // edit: not in allowedRoles; log-reader: not in contoso's roles.
        let roles: Vec<&Disallowed> = found.iter().map(|v| &v.what).collect();
        assert_eq!(
            roles,
            [
                &Disallowed::Role {
                    field: "authorizations[1]".into(),
                    role: "edit".into()
                },
                &Disallowed::Role {
                    field: "authorizations[2]".into(),
                    role: "log-reader".into()
                }
            ]
        );
        assert!(found.iter().all(|v| v.mode == PolicyMode::Audit));
        // fabrikam has no roles of its own: allowedRoles alone.
        let found = violations(
            &[at("a", "x", policy)],
            "fabrikam",
            &grants(&["log-reader"]),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn the_deleter_role_is_always_allowed() {
        let readers = rules(PolicyMode::Deny, None, Some(&["view"]));
        let found = violations(
            &[at("a", "x", readers)],
            "contoso",
            &grants(&["view", DELEGATION_DELETER_ROLE]),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn a_narrower_policy_cannot_widen_a_wider_one() {
        // The platform allows fabrikam only; a customer's policy listing
        // contoso too does not let contoso in.
        let platform = rules(PolicyMode::Deny, Some(&[("fabrikam", None)]), None);
        let customer = rules(
            PolicyMode::Deny,
            Some(&[("fabrikam", None), ("contoso", None)]),
            None,
        );
        let found = violations(
            &[
                at("a", "ClusterProviderPolicy platform", platform),
                at("a", "ProviderPolicy a/mine", customer),
            ],
            "contoso",
            &grants(&["view"]),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].source, "ClusterProviderPolicy platform");
    }
}
