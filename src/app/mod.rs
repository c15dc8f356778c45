//! What the `msp-operator run` process adds around the controllers: leader
//! election among replicas, the probe and metrics endpoints, logs and
//! traces, and the checks that it can work at all. `main.rs` holds the command line only.

pub mod http;
pub mod leader;
pub mod preflight;
pub mod telemetry;
