//! The rules one authorization of a plan must satisfy, in one place for both
//! controllers: the offer controller reports a breach on the offer (so the
//! provider can fix it), the delegation controller refuses to grant a plan
//! version with one (so a customer never gets half a plan).

use super::delegability::Refusal;
use crate::api::{Authorization, DELEGATION_DELETER_ROLE};

/// What is wrong with one authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A principal names a namespace other than the offer's: a provider may
    /// only authorize ServiceAccounts of its own namespace.
    ForeignNamespace {
        /// The namespace the principal names.
        namespace: String,
    },
    /// The role may not be delegated.
    Role(Refusal),
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
    if let Some(namespace) = &authorization.principal.namespace
        && namespace != offer_namespace
    {
        out.push(Problem::ForeignNamespace {
            namespace: namespace.clone(),
        });
    }
    if authorization.role_ref != DELEGATION_DELETER_ROLE
        && let Err(refusal) = role(&authorization.role_ref)
    {
        out.push(Problem::Role(refusal));
    }
    out
}
