//! `ClusterProviderPolicy` and `ProviderPolicy`: which providers, holding
//! which roles, may be delegated to (the analog of Azure Policy's "Allow
//! managing tenant ids", with its Deny and Audit effects).
//!
//! The platform writes `ClusterProviderPolicy` objects (cluster-scoped, for
//! the namespaces their selector matches); a customer narrows them for one
//! namespace with a `ProviderPolicy` in it. Every policy that applies to a
//! namespace must allow a Delegation's provider and roles there, so a
//! customer's policy can only narrow the platform's, never widen it.

use super::RoleName;
use super::TenantId;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a policy does with a Delegation it does not allow.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyMode {
    /// Refuse it at `kubectl apply`, and revoke every grant of an existing
    /// one (condition reason `ProviderNotAllowed` or `RoleNotAllowed`).
    #[default]
    Deny,
    /// Admit it with a warning, grant as consented, and report the
    /// violation (condition `PolicyViolation`, a Warning Event).
    Audit,
}

/// A provider tenant that may be delegated to.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedProvider {
    /// The provider's tenant: the tenant of the namespace its offers live in.
    pub tenant: TenantId,
    /// The ClusterRoles this provider may hold (permanent or eligible);
    /// absent: any role the policy's `allowedRoles` allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub roles: Option<Vec<RoleName>>,
}

/// The rules of a policy, the same for both kinds.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.allowedProviders) || has(self.allowedRoles)").message("a policy needs allowedProviders, allowedRoles, or both"))]
pub struct PolicyRules {
    /// `Deny` (default): refuse at admission and revoke what exists.
    /// `Audit`: admit with a warning and report.
    #[serde(default)]
    pub mode: PolicyMode,
    /// The provider tenants that may be delegated to; absent: any provider
    /// (then `allowedRoles` limits them all). An empty list allows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.tenant == p.tenant))").message("allowedProviders: each tenant once"))]
    pub allowed_providers: Option<Vec<AllowedProvider>>,
    /// The ClusterRoles any provider may hold here (for example only a
    /// reader in production); absent: any delegable role.
    /// `msp-operator:delegation-deleter` is always allowed: it only lets the
    /// provider end its own access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub allowed_roles: Option<Vec<RoleName>>,
}

/// A platform policy: which providers, with which roles, may be delegated
/// to in the namespaces `namespaceSelector` matches (every namespace when
/// absent). Checked at admission (the namespace the Delegation is created
/// in) and by the operator (every namespace a Delegation covers, whenever a
/// policy, a namespace or a Delegation changes).
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "ClusterProviderPolicy",
    shortname = "cpp",
    category = "msp",
    status = "ProviderPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Providers","type":"string","jsonPath":".spec.allowedProviders[*].tenant"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.allowedRoles"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))").message("spec.namespaceSelector.matchExpressions: operator must be In or NotIn (with values) or Exists or DoesNotExist (without values)"))]
pub struct ClusterProviderPolicySpec {
    /// The namespaces this policy applies to; absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// What is allowed.
    #[serde(flatten)]
    pub rules: PolicyRules,
}

/// A customer's policy for the namespace it lives in: it narrows the
/// platform's ClusterProviderPolicies there and can never widen them.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "ProviderPolicy",
    namespaced,
    shortname = "pp",
    category = "msp",
    status = "ProviderPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Providers","type":"string","jsonPath":".spec.allowedProviders[*].tenant"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.allowedRoles"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPolicySpec {
    /// What is allowed in this namespace.
    #[serde(flatten)]
    pub rules: PolicyRules,
}

/// Written by the operator for the admission policies to read.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The namespaces of the allowed provider tenants, sorted: admission
    /// reads a Delegation's `spec.offerRef.namespace` against it (a
    /// namespace's tenant is a label admission cannot look up).
    #[serde(default)]
    pub provider_namespaces: Vec<String>,
}

/// What both policy kinds have in common, for the code that reads either.
pub trait ProviderPolicyKind {
    /// The rules.
    fn rules(&self) -> &PolicyRules;
    /// The status the operator wrote, if any.
    fn policy_status(&self) -> Option<&ProviderPolicyStatus>;
}

impl ProviderPolicyKind for ClusterProviderPolicy {
    fn rules(&self) -> &PolicyRules {
        &self.spec.rules
    }
    fn policy_status(&self) -> Option<&ProviderPolicyStatus> {
        self.status.as_ref()
    }
}

impl ProviderPolicyKind for ProviderPolicy {
    fn rules(&self) -> &PolicyRules {
        &self.spec.rules
    }
    fn policy_status(&self) -> Option<&ProviderPolicyStatus> {
        self.status.as_ref()
    }
}
