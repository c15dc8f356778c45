//! A real Kubernetes control plane for msp-operator's tests, benchmarks and
//! `make run`.
//!
//! Why this crate exists: the operator guards access, so its tests must be
//! judged by a real API server — real RBAC, real CEL validation, real admission
//! policies, real garbage collection — never by a mock. Docker (and so kind) is
//! not available everywhere the suite runs, so this crate starts etcd,
//! kube-apiserver and kube-controller-manager as local processes (the envtest
//! model), or uses an existing cluster named by `MSP_TEST_KUBECONFIG`.
//!
//! Tests use [`TestEnv::shared`] and then ask it for clients as any identity,
//! per-test namespaces, and `kubectl`; [`wait`] holds the polling helpers.

pub mod binaries;
pub mod controlplane;
pub mod env;
pub mod faultproxy;
pub mod kubeconfig;
pub mod manifests;
pub mod net;
pub mod operator;
pub mod pki;
pub mod process;
pub mod wait;

pub use controlplane::{ControlPlaneOptions, LocalControlPlane};
pub use env::{EXISTING_CLUSTER_ENV, TestEnv, TestNamespace, unique_name};
pub use wait::{wait_for, wait_for_admission, wait_until};
