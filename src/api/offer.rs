//! `ManagedServiceOffer`: what a provider publishes (plans, versions, authorizations).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A service provider's offer of managed services: plans customers can
/// accept, each granting named principals ClusterRoles in the customer's
/// namespaces. Lives in the provider's namespace.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "ManagedServiceOffer",
    namespaced,
    shortname = "mso",
    category = "msp",
    status = "ManagedServiceOfferStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.tenant"}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceOfferSpec {
    /// Name of the offer as customers see it.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// What the provider offers to do for its customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// The service provider (managing tenant).
    #[x_kube(validation = Rule::new("self.tenant == oldSelf.tenant").message("spec.provider.tenant is immutable: publish a new ManagedServiceOffer to change the managing tenant"))]
    pub provider: Provider,
    /// The plans customers can accept (1 to 50), keyed by `name`.
    #[schemars(length(min = 1, max = 50))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub plans: Vec<Plan>,
}

/// The service provider behind an offer.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Provider name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// The managing tenant id: the value of the `msp-operator.io/tenant` label
    /// of the provider's namespaces (or a namespace name). Immutable.
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"))]
    #[schemars(length(max = 63))]
    pub tenant: String,
}

/// Who may accept a plan.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Any customer tenant may accept the plan.
    Public,
    /// Only the tenants listed in `audience` may accept the plan.
    Private,
}

/// One plan of an offer: a versioned set of authorizations.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("oldSelf.visibility != 'Public' || self.visibility == 'Public'").message("a Public plan can never become Private: publish a new Private plan instead"))]
#[x_kube(validation = Rule::new(concat!("(self.authorizations == oldSelf.authorizations && has(self.eligibleAuthorizations) == has(oldSelf.eligibleAuthorizations) && (!has(self.eligibleAuthorizations) || self.eligibleAuthorizations == oldSelf.eligibleAuthorizations)) || ", version_gt!("self.version", "oldSelf.version"))).message("spec.plans[].authorizations and spec.plans[].eligibleAuthorizations can only change together with a higher spec.plans[].version"))]
#[x_kube(validation = Rule::new(concat!("self.version == oldSelf.version || ", version_gt!("self.version", "oldSelf.version"))).message("spec.plans[].version must not decrease"))]
#[x_kube(validation = Rule::new("self.visibility == 'Public' ? !has(self.audience) : (has(self.audience) && size(self.audience) > 0)").message("a Private plan needs spec.plans[].audience (customer tenant ids); a Public plan must not have one"))]
pub struct Plan {
    /// Plan id, unique in the offer: lowercase letters, digits, `-` and `_`,
    /// at most 50 characters.
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,50}$"), length(max = 50))]
    pub name: String,
    /// Plan name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// What the plan grants, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// Version of the plan's authorizations, `MAJOR.MINOR.PATCH`. Raise it
    /// whenever authorizations change; customers accept versions explicitly.
    #[schemars(regex(
        pattern = r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$"
    ))]
    #[schemars(length(max = 20))]
    pub version: String,
    /// `Public` (any customer) or `Private` (only `audience`). A Public plan
    /// can never become Private.
    pub visibility: Visibility,
    /// Customer tenant ids allowed to accept a Private plan (1 to 10000);
    /// forbidden for Public plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub audience: Option<Vec<TenantId>>,
    /// Who gets which role in the customer's namespaces (1 to 20). A plan
    /// with eligible authorizations has at least one permanent one too, as
    /// in Azure Lighthouse: the provider needs to see (a reader) what it may
    /// activate access to.
    #[schemars(length(min = 1, max = 20))]
    pub authorizations: Vec<Authorization>,
    /// Just-in-time access (0 to 20): who may activate which role in the
    /// customer's namespaces, for how long at most, and who must approve.
    /// Nothing is granted until an eligible user creates an `Activation`;
    /// it ends by itself at its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub eligible_authorizations: Option<Vec<EligibleAuthorization>>,
}

/// A principal that can activate a role for a limited time (Azure
/// Lighthouse's eligible authorization).
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct EligibleAuthorization {
    /// The provider's user or group that may activate (never a
    /// ServiceAccount: just-in-time access is for people).
    pub principal: Person,
    /// The principal's name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub principal_display_name: Option<String>,
    /// The ClusterRole an activation grants; delegable like a permanent
    /// grant's, never `msp-operator:delegation-deleter`.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.:]{0,251}[a-z0-9])?$"),
        length(max = 253)
    )]
    #[x_kube(validation = Rule::new("self != 'msp-operator:delegation-deleter'").message("eligibleAuthorizations[].roleRef cannot be msp-operator:delegation-deleter: the right to remove a delegation is a permanent authorization"))]
    #[x_kube(validation = Rule::new("self != 'msp-operator:role-assigner'").message("eligibleAuthorizations[].roleRef cannot be msp-operator:role-assigner: restricted role assignment is a permanent authorization"))]
    pub role_ref: String,
    /// The longest an activation may last: a duration such as `30m`, `1h`
    /// or `4h30m`, between 30 minutes and 8 hours.
    #[schemars(
        regex(pattern = r"^([0-9]{1,2}h)?([0-9]{1,3}m)?$"),
        length(min = 2, max = 8)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('30m') && duration(self) <= duration('8h')").message("eligibleAuthorizations[].maxDuration must be between 30m and 8h"))]
    pub max_duration: String,
    /// Provider users or groups of which one must approve an activation
    /// before anything is granted (0 to 10). The requester never approves
    /// their own activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub approvers: Option<Vec<Person>>,
    /// An activation must give a justification.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_justification: bool,
}

impl EligibleAuthorization {
    /// The approvers (empty: none needed).
    pub fn approvers(&self) -> &[Person] {
        self.approvers.as_deref().unwrap_or_default()
    }
}

/// Kinds of a person principal.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum PersonKind {
    /// A user as the API server authenticates it.
    User,
    /// A group as the API server authenticates it.
    Group,
}

/// A user or a group (no ServiceAccount, no `system:` identity).
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.name.startsWith('system:')").message("name must not start with \"system:\": system identities stand for everyone or for someone else's accounts"))]
pub struct Person {
    /// `User` or `Group`.
    pub kind: PersonKind,
    /// User or group name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A tenant id (a label value).
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(transparent)]
pub struct TenantId(
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"))]
    #[schemars(length(max = 63))]
    pub String,
);

/// One grant: a principal of the provider and the ClusterRole it gets.
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.roleRef == 'msp-operator:role-assigner') == has(self.delegatedRoles)").message("delegatedRoles goes with roleRef msp-operator:role-assigner, and that role needs it: list the ClusterRoles the principal may bind"))]
pub struct Authorization {
    /// The provider's user, group or ServiceAccount.
    pub principal: Principal,
    /// The principal's name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub principal_display_name: Option<String>,
    /// The ClusterRole granted in each delegated namespace. It must be
    /// delegable (labeled `msp-operator.io/delegable: "true"`, no wildcards,
    /// no escalation, no secrets or exec), or
    /// `msp-operator:delegation-deleter` for the right to remove the
    /// delegation, or `msp-operator:role-assigner` (with `delegatedRoles`)
    /// for restricted role assignment.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.:]{0,251}[a-z0-9])?$"),
        length(max = 253)
    )]
    pub role_ref: String,
    /// Only with `roleRef: msp-operator:role-assigner` (the analog of
    /// Azure's User Access Administrator with `delegatedRoleDefinitionIds`):
    /// the ClusterRoles (1 to 10, each delegable) the principal may bind
    /// itself in the delegated namespaces, only to ServiceAccounts of the
    /// same namespace (for the provider's automation). Its RoleBindings must
    /// carry the labels `msp-operator.io/provider-assigned: "true"`,
    /// `msp-operator.io/delegation` and `msp-operator.io/delegation-namespace`
    /// naming the Delegation; the customer sees them in the Delegation's
    /// status, and they go when the consent does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub delegated_roles: Option<Vec<super::RoleName>>,
}

/// Kinds of principal.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum PrincipalKind {
    /// A user as the API server authenticates it.
    User,
    /// A group as the API server authenticates it.
    Group,
    /// A ServiceAccount in the offer's own namespace.
    ServiceAccount,
}

/// A provider principal.
#[derive(
    KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__)").message("principal.namespace is only for ServiceAccount principals"))]
#[x_kube(validation = Rule::new("!self.name.startsWith('system:')").message("principal.name must not start with \"system:\": system identities (system:authenticated, system:masters, system:serviceaccount:<ns>:<name>, …) stand for everyone or for someone else's accounts; name a user or group of the provider, or a ServiceAccount of the offer's namespace by kind ServiceAccount"))]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')").message("principal.name of a ServiceAccount must be a ServiceAccount name (lowercase letters, digits, '-' and '.')"))]
pub struct Principal {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: PrincipalKind,
    /// User, group or ServiceAccount name; never a `system:` identity.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// For a ServiceAccount: its namespace, which must be the offer's own
    /// (the default when omitted). Not allowed for users and groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    pub namespace: Option<String>,
}

/// Observed state of an offer.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceOfferStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the offer is valid and published), and the kstatus
    /// `Reconciling`/`Stalled` conditions when they hold.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Per plan: current version and how many customers accepted it.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub plans: Vec<PlanStatus>,
}

/// Adoption of one plan.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// Plan name.
    pub name: String,
    /// Current (latest published) version.
    pub version: String,
    /// Delegations that reference this plan.
    pub delegations: i32,
    /// Of those, how many are Ready.
    pub ready_delegations: i32,
}
