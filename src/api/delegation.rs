//! `Delegation`: a customer's consent to one plan version for some of its namespaces.

use super::{Authorization, EligibleAuthorization, Person};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer's consent to one version of one plan of an offer, for some of
/// its namespaces. Create it in one of your namespaces; deleting it removes
/// every grant it made.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "Delegation",
    namespaced,
    shortname = "dlg",
    category = "msp",
    status = "DelegationStatus",
    printcolumn = r#"{"name":"Offer","type":"string","jsonPath":".spec.offerRef.name"}"#,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.appliedVersion"}"#,
    printcolumn = r#"{"name":"Latest","type":"string","jsonPath":".status.latestVersion","priority":1}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.managedByTenant","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name of a Delegation must be at most 63 characters (it is used in label values)")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.namespaces) && has(self.namespaceSelector))").message("spec.namespaces and spec.namespaceSelector exclude each other: list namespaces, or select them by label"))]
#[x_kube(validation = Rule::new("!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))").message("spec.namespaceSelector.matchExpressions: operator must be In or NotIn (with values) or Exists or DoesNotExist (without values)"))]
pub struct DelegationSpec {
    /// The offer accepted. Immutable: create a new Delegation for another offer.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.offerRef is immutable: create a new Delegation to accept another offer"))]
    pub offer_ref: OfferRef,
    /// The plan accepted. Immutable: create a new Delegation for another plan.
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,50}$"), length(max = 50))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.plan is immutable: create a new Delegation to accept another plan"))]
    pub plan: String,
    /// The plan version accepted (`MAJOR.MINOR.PATCH`). Grants always follow
    /// this version; raise it to accept a newer one (see the UpdateAvailable
    /// condition).
    #[schemars(regex(
        pattern = r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$"
    ))]
    #[schemars(length(max = 20))]
    pub plan_version: String,
    /// Namespaces delegated (1 to 20), all of the customer's tenant. Defaults
    /// to the Delegation's own namespace. For more, create more Delegations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Option<Vec<NamespaceName>>,
    /// Tenant-wide onboarding: delegate every namespace of the customer's
    /// tenant whose labels match (`{}` matches all of them), including
    /// namespaces created or labeled later; a namespace that stops matching,
    /// moves to another tenant or is deleted leaves, and its grants go.
    /// Because it reaches namespaces that do not exist yet, only someone
    /// allowed to create RoleBindings in every namespace may set it, and
    /// the consent check asks the same of the consenter, cluster-wide.
    /// Excludes `spec.namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// ClusterRoles of the plan that can run workloads, which the customer
    /// accepts knowingly (0 to 20). Whoever may create or change Pods,
    /// Deployments, Jobs and the like, or proxy into Pods, can run a Pod as
    /// any ServiceAccount of the namespace and read every Secret it mounts. A
    /// plan version granting such a role is refused (reason
    /// `WorkloadAccessNotAcknowledged`) until the role is listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub acknowledged_workload_roles: Option<Vec<RoleName>>,
    /// The customer's terms for just-in-time access under the plan's
    /// eligible authorizations (beyond Azure Lighthouse): a shorter maximum
    /// duration, and approvers of the customer who must approve every
    /// activation too. Unset: the plan's terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_terms: Option<ActivationTerms>,
}

/// What the customer requires of every activation under a Delegation.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ActivationTerms {
    /// The longest an activation may last, when shorter than the plan's
    /// `maxDuration` (`30m` to `8h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,2}h)?([0-9]{1,3}m)?$"),
        length(min = 2, max = 8)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('30m') && duration(self) <= duration('8h')").message("spec.activationTerms.maxDuration must be between 30m and 8h"))]
    pub max_duration: Option<String>,
    /// Users or groups of the customer of which one must also approve each
    /// activation (0 to 10): two-party approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub approvers: Option<Vec<Person>>,
}

/// A ClusterRole name.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(transparent)]
pub struct RoleName(
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.:]{0,251}[a-z0-9])?$"),
        length(max = 253)
    )]
    pub String,
);

/// A namespace name.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(transparent)]
pub struct NamespaceName(
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    pub String,
);

/// Reference to a ManagedServiceOffer.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct OfferRef {
    /// Namespace of the offer (the provider's).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    pub namespace: String,
    /// Name of the offer. At most 63 characters: it is the value of the
    /// `msp-operator.io/offer` label on the Delegation and its grants.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Observed state of a delegation.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DelegationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Accepted`, `UpdateAvailable`, `OfferAvailable`, and the
    /// kstatus `Reconciling`/`Stalled` conditions when they hold.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The provider's (managing) tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by_tenant: Option<String>,
    /// The customer's tenant (of the Delegation's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tenant: Option<String>,
    /// The plan version whose grants are in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    /// The plan version the customer's consent is recorded for; it stays
    /// while a refusal holds the grants back, so a lost consent record is
    /// recognised as lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_version: Option<String>,
    /// sha256 of the content accepted (plan, version, authorizations): what
    /// the customer consented to, whatever the offer publishes later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_digest: Option<String>,
    /// The plan's latest published version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// Per delegated namespace: whether its grants are in place.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub namespaces: Vec<NamespaceStatus>,
    /// While `UpdateAvailable` is True: what raising `spec.planVersion` to
    /// `latestVersion` would change, so consent to it is informed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_update: Option<PendingUpdate>,
    /// The RoleBindings the provider made itself under a role-assigner
    /// authorization of the accepted version (restricted role assignment),
    /// sorted by namespace and name. They are removed when the consent no
    /// longer covers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_assignments: Vec<ProviderAssignment>,
}

/// A RoleBinding a provider made under restricted role assignment.
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderAssignment {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The ClusterRole it binds.
    pub role_ref: String,
    /// The ServiceAccounts of that namespace it binds it to.
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

/// What accepting a newer published version would change. Authorizations
/// are compared whole (principal, display name and role); one whose role or
/// principal changes shows as removed and added. At most 20 each, as in a
/// plan (the bound also keeps the CEL rules of the listed authorizations
/// within the API server's cost budget).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpdate {
    /// The newer version (the plan's latest).
    pub version: String,
    /// Authorizations the newer version grants that the accepted one does
    /// not.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub added: Vec<Authorization>,
    /// Authorizations of the accepted version the newer one no longer grants:
    /// accepting it revokes them.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub removed: Vec<Authorization>,
    /// Eligible (just-in-time) authorizations the newer version adds, or
    /// whose terms (role, maximum duration, approvers, justification) it
    /// changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub eligible_added: Vec<EligibleAuthorization>,
    /// Eligible authorizations of the accepted version the newer one drops
    /// or changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub eligible_removed: Vec<EligibleAuthorization>,
}

/// Grants in one delegated namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// Namespace name.
    pub name: String,
    /// All grants of the applied version are in place.
    pub ready: bool,
    /// Number of RoleBindings of the accepted version in place (the
    /// just-in-time grants of Activations are reported on the Activations).
    pub bindings: i32,
    /// Why the namespace is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Delegation {
    /// True when the customer acknowledged that `role` can run workloads.
    pub fn acknowledges_workload_role(&self, role: &str) -> bool {
        self.spec
            .acknowledged_workload_roles
            .iter()
            .flatten()
            .any(|r| r.0 == role)
    }

    /// The delegated namespaces named by the Delegation itself:
    /// `spec.namespaces`, or the Delegation's own; none when it selects them
    /// by label ([`Delegation::is_tenant_wide`]), which only the caches
    /// can answer.
    pub fn target_namespaces(&self) -> Vec<String> {
        if self.is_tenant_wide() {
            return Vec::new();
        }
        match &self.spec.namespaces {
            Some(list) if !list.is_empty() => {
                let mut names: Vec<String> = list.iter().map(|n| n.0.clone()).collect();
                names.sort();
                names.dedup();
                names
            }
            _ => self.metadata.namespace.clone().into_iter().collect(),
        }
    }

    /// True when the Delegation selects its namespaces by label
    /// (`spec.namespaceSelector`).
    pub fn is_tenant_wide(&self) -> bool {
        self.spec.namespace_selector.is_some()
    }
}
