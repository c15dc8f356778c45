//! What the `msp-operator run` process adds around the controllers: leader
//! election among replicas, the probe and metrics endpoints, and logs and
//! traces. `main.rs` holds the command line only.

pub mod http;
pub mod leader;
pub mod telemetry;
