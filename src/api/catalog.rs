//! `OfferCatalog`: what one customer namespace's tenant may accept, and
//! nothing of anyone else's.
//!
//! Offers live in the providers' namespaces, and a Private plan names its
//! audience: another provider's customer list. Customers therefore never
//! read offers. A customer asks for its catalog by creating an
//! `OfferCatalog` named `catalog` in one of its namespaces (one per
//! namespace, so what the operator writes is bounded by what customers ask
//! for, and nothing at rest); the operator keeps its status as the
//! projection of every offer for that namespace's tenant: every Public
//! plan, and a Private plan only when the tenant is in its audience —
//! never the audience itself. Anyone who can view the namespace can read
//! it (the chart aggregates read access into `view`, and create/delete
//! into `edit`).

use super::{PersonKind, PrincipalKind, Visibility};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name every `OfferCatalog` has: one per namespace.
pub const CATALOG_NAME: &str = "catalog";

/// A customer's view of the offers its tenant may accept. Create one named
/// `catalog` in one of your namespaces; the operator fills its status.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "msp-operator.io",
    version = "v1alpha1",
    kind = "OfferCatalog",
    namespaced,
    shortname = "catalog",
    category = "msp",
    status = "OfferCatalogStatus",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".status.tenant"}"#,
    printcolumn = r#"{"name":"Plans","type":"integer","jsonPath":".status.planCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name == 'catalog'").message("an OfferCatalog must be named \"catalog\" (one per namespace): kubectl msp offers creates it for you")
)]
#[serde(rename_all = "camelCase")]
pub struct OfferCatalogSpec {
    /// Only offers of this provider tenant. Unset: every provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"))]
    #[schemars(length(max = 63))]
    pub provider: Option<String>,
}

/// The offers and plans the namespace's tenant may accept.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OfferCatalogStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the catalog is current (reason `Current`), or cut short
    /// (reason `Truncated`, see `truncated`).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The customer tenant the catalog is for (of the catalog's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Number of plans listed.
    #[serde(default)]
    pub plan_count: i32,
    /// More plans are offered to the tenant than a catalog holds
    /// (`MAX_CATALOG_PLANS`); set `spec.provider` to see one provider's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The offers with at least one plan the tenant may accept, sorted by
    /// namespace and name.
    #[serde(default)]
    pub offers: Vec<CatalogOffer>,
}

/// An offer as a customer sees it.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogOffer {
    /// The offer's namespace (the provider's): `spec.offerRef.namespace` of
    /// a Delegation.
    pub namespace: String,
    /// The offer's name: `spec.offerRef.name` of a Delegation.
    pub name: String,
    /// The offer's display name.
    pub display_name: String,
    /// What the provider offers to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The provider's tenant id.
    pub provider_tenant: String,
    /// The provider's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_display_name: Option<String>,
    /// The plans the tenant may accept.
    #[serde(default)]
    pub plans: Vec<CatalogPlan>,
}

/// A plan as a customer sees it: never its audience.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPlan {
    /// Plan id: `spec.plan` of a Delegation.
    pub name: String,
    /// Plan name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// What the plan grants, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The latest published version: `spec.planVersion` of a Delegation.
    pub version: String,
    /// `Public`, or `Private` (offered to this tenant by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// What accepting the plan grants, in each delegated namespace.
    #[serde(default)]
    pub authorizations: Vec<CatalogAuthorization>,
    /// Just-in-time access the plan makes possible (granted only on
    /// activation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_authorizations: Vec<CatalogEligibleAuthorization>,
}

/// A permanent grant of a plan.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogAuthorization {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<PrincipalKind>,
    /// The principal's name (a ServiceAccount as `namespace/name`).
    pub principal: String,
    /// The principal's name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_display_name: Option<String>,
    /// The ClusterRole granted.
    pub role_ref: String,
    /// For the role assigner: the ClusterRoles it may bind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_roles: Vec<String>,
}

/// A just-in-time grant of a plan.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEligibleAuthorization {
    /// `User` or `Group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<PersonKind>,
    /// The principal's name.
    pub principal: String,
    /// The principal's name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_display_name: Option<String>,
    /// The ClusterRole an activation grants.
    pub role_ref: String,
    /// The longest an activation may last.
    pub max_duration: String,
    /// An approver of the provider must approve each activation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval_required: bool,
    /// An activation must give a justification.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub justification_required: bool,
}
