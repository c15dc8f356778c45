//! msp-operator: Azure Lighthouse-style managed service offers for Kubernetes.
//!
//! Providers publish [`api::ManagedServiceOffer`]s; customers accept one plan
//! version with a [`api::Delegation`]; the controllers grant exactly what was
//! accepted as RoleBindings, keep it so, and remove it completely.
//!
//! The layout follows the work: [`api`] (the kinds and their CRDs),
//! [`domain`] (the model's rules, pure), [`delegation`] (the grant pipeline,
//! one module per step), [`activation`] (just-in-time access), [`offer`]
//! (offer status), [`provider_policy`] (allowed providers, for admission),
//! [`runtime`] (caches, writer, errors, metrics, the wiring of the
//! controllers) and [`app`] (what the binary adds: leader election, HTTP
//! endpoints, telemetry).

pub mod activation;
pub mod api;
pub mod app;
pub mod catalog;
pub mod delegation;
pub mod domain;
pub mod fixtures;
pub mod offer;
pub mod provider_policy;
pub mod runtime;
