//! The rules one authorization of a plan must satisfy, in one place for both
//! controllers: the offer controller reports a breach on the offer (so the
//! provider can fix it), the delegation controller refuses to grant a plan
//! version with one (so a customer never gets half a plan).

use super::delegability::Refusal;
use crate::api::{Authorization, DELEGATION_DELETER_ROLE, PrincipalKind, ROLE_ASSIGNER_ROLE};

/// The prefix of the API server's own identities: `system:authenticated`
/// and `system:unauthenticated` (everyone), `system:masters`,
/// `system:anonymous`, nodes, controllers, and every ServiceAccount under
/// any spelling (`system:serviceaccount:<ns>:<name>`,
/// `system:serviceaccounts[:<ns>]`). None of them is a provider principal.
pub const SYSTEM_PREFIX: &str = "system:";

/// What is wrong with one authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A principal names a namespace other than the offer's: a provider may
    /// only authorize ServiceAccounts of its own namespace.
    ForeignNamespace {
        /// The namespace the principal names.
        namespace: String,
    },
    /// A `system:` identity, which stands for everyone or for accounts that
    /// are not the provider's.
    SystemIdentity,
    /// A ServiceAccount name that is not one (a user name in disguise).
    InvalidServiceAccountName,
    /// The role may not be delegated.
    Role(Refusal),
    /// A role of `delegatedRoles` may not be delegated.
    DelegatedRole {
        /// The role.
        role: String,
        /// Why not.
        refusal: Refusal,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::ForeignNamespace { namespace } => write!(
                f,
                "principal.namespace {namespace:?} is not the offer's namespace; a provider may only authorize ServiceAccounts of its own namespace"
            ),
            Problem::SystemIdentity => write!(
                f,
                "principal.name starts with {SYSTEM_PREFIX:?}: system identities stand for everyone or for accounts that are not the provider's and are never granted"
            ),
            Problem::InvalidServiceAccountName => write!(
                f,
                "principal.name is not a ServiceAccount name (lowercase letters, digits, '-' and '.')"
            ),
            Problem::Role(refusal) => write!(f, "{refusal}"),
            Problem::DelegatedRole { role, refusal } => {
                write!(f, "delegatedRoles {role:?}: {refusal}")
            }
        }
    }
}

/// True when `name` is a valid ServiceAccount name (a DNS-1123 subdomain).
fn service_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The problems of `authorization` in an offer living in `offer_namespace`,
/// with role delegability judged by `role` (for example
/// [`super::delegability::RoleCatalog::check`]); empty when it may be granted.
/// The deleter role is always grantable: the operator builds it itself.
pub fn problems(
    authorization: &Authorization,
    offer_namespace: &str,
    role: &dyn Fn(&str) -> Result<(), Refusal>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let principal = &authorization.principal;
    if principal.name.starts_with(SYSTEM_PREFIX) {
        out.push(Problem::SystemIdentity);
    }
    if principal.kind == PrincipalKind::ServiceAccount && !service_account_name(&principal.name) {
        out.push(Problem::InvalidServiceAccountName);
    }
    if let Some(namespace) = &authorization.principal.namespace
        && namespace != offer_namespace
    {
        out.push(Problem::ForeignNamespace {
            namespace: namespace.clone(),
        });
    }
    let assigner = authorization.role_ref == ROLE_ASSIGNER_ROLE;
    if assigner
        && authorization
            .delegated_roles
            .as_ref()
            .is_none_or(|r| r.is_empty())
    {
        // Without delegatedRoles (an eligible authorization, or an offer
        // stored before the schema required them) it would stand for `bind`
        // on every ClusterRole: never.
        out.push(Problem::Role(Refusal::ForbiddenRules(vec![format!(
            "{ROLE_ASSIGNER_ROLE} needs delegatedRoles (1 to 10 ClusterRoles), and is never eligible"
        )])));
    } else if authorization.role_ref != DELEGATION_DELETER_ROLE
        && !assigner
        && let Err(refusal) = role(&authorization.role_ref)
    {
        out.push(Problem::Role(refusal));
    }
    // The roles a role assigner may bind must be as delegable as a role
    // granted directly (and so are never the assigner or deleter roles,
    // which are no ClusterRoles).
    for delegated in authorization.delegated_roles.iter().flatten() {
        if let Err(refusal) = role(&delegated.0) {
            out.push(Problem::DelegatedRole {
                role: delegated.0.clone(),
                refusal,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::auth;

    fn delegable(_: &str) -> Result<(), Refusal> {
        Ok(())
    }

    #[test]
    fn system_identities_are_never_principals_under_any_spelling() {
        for (kind, name) in [
            (PrincipalKind::Group, "system:authenticated"),
            (PrincipalKind::Group, "system:unauthenticated"),
            (PrincipalKind::Group, "system:masters"),
            (PrincipalKind::Group, "system:serviceaccounts"),
            (PrincipalKind::Group, "system:serviceaccounts:kube-system"),
            (PrincipalKind::User, "system:anonymous"),
            (
                PrincipalKind::User,
                "system:serviceaccount:kube-system:default",
            ),
            (PrincipalKind::User, "system:kube-controller-manager"),
        ] {
            let problems = problems(&auth(kind, name, "reader"), "p", &delegable);
            assert!(
                problems.contains(&Problem::SystemIdentity),
                "{kind:?} {name}: {problems:?}"
            );
        }
        let sa = auth(
            PrincipalKind::ServiceAccount,
            "system:serviceaccount:x:y",
            "reader",
        );
        assert!(problems(&sa, "p", &delegable).contains(&Problem::InvalidServiceAccountName));
        for ok in [
            auth(PrincipalKind::User, "alice@provider.example", "reader"),
            auth(PrincipalKind::Group, "provider:ops", "reader"),
            auth(PrincipalKind::ServiceAccount, "robot.v2", "reader"),
        ] {
            assert!(problems(&ok, "p", &delegable).is_empty(), "{ok:?}");
        }
    }

    #[test]
    fn service_accounts_live_in_the_offer_namespace() {
        let mut sa = auth(PrincipalKind::ServiceAccount, "robot", "reader");
        sa.principal.namespace = Some("p".into());
        assert!(problems(&sa, "p", &delegable).is_empty());
        sa.principal.namespace = Some("other".into());
        assert_eq!(
            problems(&sa, "p", &delegable),
            vec![Problem::ForeignNamespace {
                namespace: "other".into()
            }]
        );
    }
}
