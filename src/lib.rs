//! msp-operator: Azure Lighthouse-style managed service offers for Kubernetes.
//!
//! Providers publish [`api::ManagedServiceOffer`]s; customers accept one plan
//! version with a [`api::Delegation`]; the controllers grant exactly what was
//! accepted as RoleBindings, keep it so, and remove it completely.

pub mod api;
pub mod conditions;
pub mod controller;
pub mod crdgen;
pub mod desired;
pub mod events;
pub mod index;
pub mod metrics;
pub mod names;
pub mod own_writes;
pub mod roles;
pub mod snapshot;
pub mod validate;
