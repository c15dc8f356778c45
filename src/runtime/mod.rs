//! The plumbing both controllers run on: watch caches and their indexes, the
//! write side (limiter, own-writes tracker, Events), the error and retry
//! policy, metrics, and the wiring that starts the two controllers on one
//! watch per kind.

pub mod access;
pub mod caches;
pub mod context;
pub mod controllers;
pub mod errors;
pub mod events;
pub mod gauges;
pub mod index;
pub mod keys;
pub mod metrics;
pub mod own_writes;
pub mod writer;
