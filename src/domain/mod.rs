//! The rules of the offer/consent model, as pure code shared by both
//! controllers: what consent holds, how versions compare, which roles and
//! principals may be granted, the conditions reported, and the names and
//! labels of everything the operator manages. Nothing here talks to the API
//! server, so every rule is unit-tested exhaustively.

pub mod authorization;
pub mod catalog;
pub mod conditions;
pub mod consent;
pub mod delegability;
pub mod duration;
pub mod escalation;
pub mod names;
pub mod provider_policy;
pub mod tenancy;
pub mod version;

/// The API group of Roles, ClusterRoles and their bindings.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
