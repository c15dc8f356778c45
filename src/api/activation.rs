//! `Activation`: an eligible provider user's request for just-in-time access.

use super::Person;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request, by a user eligible under a Delegation's accepted plan version,
/// to hold one eligible role in the delegated namespaces for a limited time.
/// Create it in the Delegation's namespace, where the customer sees and
/// audits it. The operator grants the role to the requesting user alone once
/// every required approval is given, and removes the grant at `expiresAt`,
/// when the Activation is deleted, or when the consent behind it ends.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "Activation",
    namespaced,
    shortname = "act",
    category = "msp",
    status = "ActivationStatus",
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleRef"}"#,
    printcolumn = r#"{"name":"Delegation","type":"string","jsonPath":".spec.delegation"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".status.namespaces"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("has(self.spec.requester) == has(oldSelf.spec.requester) && (!has(self.spec.requester) || self.spec.requester == oldSelf.spec.requester)").message("spec.requester is immutable: it is the user who created the Activation")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.approvals) || (has(self.approvals) && oldSelf.approvals.all(a, a in self.approvals))").message("spec.approvals can only be added to: an approval or denial, once given, stays"))]
#[x_kube(validation = Rule::new("has(self.justification) == has(oldSelf.justification) && (!has(self.justification) || self.justification == oldSelf.justification)").message("spec.justification is immutable: create a new Activation"))]
pub struct ActivationSpec {
    /// The Delegation, in this namespace, whose accepted plan makes the
    /// requester eligible. Immutable.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.delegation is immutable: create a new Activation"))]
    pub delegation: String,
    /// The eligible principal as the plan names it: you (`User`) or a group
    /// you belong to (`Group`), as the API server authenticates you.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.principal is immutable: create a new Activation"))]
    pub principal: Person,
    /// The eligible ClusterRole to activate. Immutable.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.:]{0,251}[a-z0-9])?$"),
        length(max = 253)
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.roleRef is immutable: create a new Activation"))]
    pub role_ref: String,
    /// How long the access lasts once granted, such as `30s`, `45m` or
    /// `2h`: at least 10 seconds and at most the eligible authorization's
    /// `maxDuration` (and the customer's, when shorter). Immutable.
    #[schemars(
        regex(pattern = r"^([0-9]{1,2}h)?([0-9]{1,3}m)?([0-9]{1,5}s)?$"),
        length(min = 2, max = 12)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('8h')").message("spec.duration must be between 10s and 8h (and at most the eligible authorization's maxDuration)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.duration is immutable: create a new Activation"))]
    pub duration: String,
    /// Why the access is needed (required when the eligible authorization
    /// says `requireJustification`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub justification: Option<String>,
    /// The user who asked, as the API server authenticated them: set at
    /// admission (any other value is refused). Only this user is granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub requester: Option<String>,
    /// Approvals and denials (0 to 10), added by approvers after creation;
    /// admission checks that each is given by the user it names, as one of
    /// the approver principals it names, and never by the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub approvals: Option<Vec<Approval>>,
}

/// One approver's decision.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The approving user: your user name as the API server authenticates
    /// you.
    #[schemars(length(min = 1, max = 253))]
    pub approver: String,
    /// As which approver principal you decide: the plan's (provider) or the
    /// Delegation's `activationTerms` (customer) approver, yourself (`User`)
    /// or a group you belong to (`Group`).
    pub principal: Person,
    /// `Approve` or `Deny`. A denial is final.
    pub decision: ApprovalDecision,
}

/// An approver's decision.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Grant the access as requested.
    Approve,
    /// Refuse it, for good.
    Deny,
}

/// Where an activation stands.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationPhase {
    /// Waiting for approvals; nothing is granted.
    Pending,
    /// Granted until `expiresAt`.
    Active,
    /// Ended at `expiresAt`; nothing is granted.
    Expired,
    /// Refused (by an approver or by a rule); final, nothing is granted.
    Denied,
    /// Ended before `expiresAt` because its source ended (the Delegation,
    /// the eligible authorization, the role's delegability); final.
    Revoked,
}

impl ActivationPhase {
    /// No change can follow.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Expired | Self::Denied | Self::Revoked)
    }
}

/// Observed state of an activation.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActivationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Active`, `Expired`, `Denied` or `Revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ActivationPhase>,
    /// `Ready` (True while Active; its reason says why not otherwise), and
    /// kstatus `Reconciling` (awaiting approval) or `Stalled` (ended).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The namespaces the role is (or was) granted in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The users whose approvals counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// The digest of the accepted plan version the activation was requested
    /// under; approvals do not carry over to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_digest: Option<String>,
    /// When the access began (every approval given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// When the access ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}
