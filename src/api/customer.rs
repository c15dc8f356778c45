//! `CustomerDelegation`: a provider's "My customers", one object per
//! customer Delegation, in the offer's namespace.
//!
//! The provider needs to know who accepted what, and whether it works,
//! without any read access to customer namespaces. The operator mirrors
//! each Delegation of an offer into the offer's namespace as a
//! `CustomerDelegation`, written in the same reconcile as the Delegation's
//! status and only when what it says changes (so at most one write per
//! Delegation state change, none at rest), and removed with the
//! Delegation. One small object per Delegation keeps each bounded however
//! many customers an offer has (the offer's status, holding them all,
//! would pass etcd's object size limit near 5,000 customers). It is the
//! operator's record: the chart gives providers read access only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most this many namespace names are listed in a record
/// (`namespaceCount` says how many there are).
pub const MAX_RECORDED_NAMESPACES: usize = 100;

/// One customer's Delegation of one of the provider's offers, as the
/// provider sees it. Written by the operator only; named
/// `<delegation namespace>.<delegation name>`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "CustomerDelegation",
    namespaced,
    shortname = "customer",
    shortname = "customers",
    category = "msp",
    printcolumn = r#"{"name":"Customer","type":"string","jsonPath":".spec.customerTenant"}"#,
    printcolumn = r#"{"name":"Offer","type":"string","jsonPath":".spec.offer"}"#,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.appliedVersion"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".spec.namespaceCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".spec.ready"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Update","type":"string","jsonPath":".spec.pendingVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDelegationSpec {
    /// The offer (in this namespace).
    pub offer: String,
    /// The plan accepted.
    pub plan: String,
    /// The customer's tenant.
    pub customer_tenant: String,
    /// The customer's Delegation.
    pub delegation: DelegationRef,
    /// The plan version the customer accepted (`spec.planVersion`).
    pub requested_version: String,
    /// The version whose grants are in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    /// A newer published version the customer has not accepted yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// The delegated namespaces (the first `MAX_RECORDED_NAMESPACES`,
    /// sorted).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// How many namespaces are delegated.
    pub namespace_count: i32,
    /// Tenant-wide onboarding: namespaces join and leave by label.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tenant_wide: bool,
    /// The Delegation is Ready: every grant of the applied version is in
    /// place.
    pub ready: bool,
    /// The reason of the Delegation's Ready condition.
    pub reason: String,
    /// Its message: why, and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Since when the current consent holds (the Accepted condition's last
    /// transition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_since: Option<Time>,
    /// Activations (just-in-time access) in force now.
    #[serde(default)]
    pub active_activations: i32,
    /// Activations waiting for approval.
    #[serde(default)]
    pub pending_activations: i32,
}

/// Where a customer's Delegation lives.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DelegationRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl CustomerDelegation {
    /// The record's name for a Delegation: unique cluster-wide, since a
    /// namespace name is.
    pub fn name_for(delegation_namespace: &str, delegation_name: &str) -> String {
        format!("{delegation_namespace}.{delegation_name}")
    }
}
