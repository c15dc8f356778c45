//! Consent: what a customer accepted, as data.
//!
//! An [`AcceptedPlan`] is the content of one plan version at the moment a
//! customer accepted it. Everything the operator grants is built from it
//! (never from the live offer), and it is stored by
//! [`crate::delegation::snapshot`].

use crate::api::{Authorization, Delegation, ManagedServiceOffer, Plan};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

/// One accepted plan version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedPlan {
    /// Namespace of the offer.
    pub offer_namespace: String,
    /// Name of the offer.
    pub offer_name: String,
    /// The managing tenant at acceptance.
    pub provider_tenant: String,
    /// Plan name.
    pub plan: String,
    /// Plan version.
    pub version: String,
    /// The plan's authorizations at that version.
    pub authorizations: Vec<Authorization>,
}

impl AcceptedPlan {
    /// The accepted plan as the offer publishes it now.
    pub fn from_offer(offer: &ManagedServiceOffer, plan: &Plan) -> Self {
        Self {
            offer_namespace: offer.namespace().unwrap_or_default(),
            offer_name: offer.name_any(),
            provider_tenant: offer.spec.provider.tenant.clone(),
            plan: plan.name.clone(),
            version: plan.version.clone(),
            authorizations: plan.authorizations.clone(),
        }
    }

    /// True when this snapshot is the consent `delegation` asks for.
    pub fn matches(&self, delegation: &Delegation) -> bool {
        self.offer_namespace == delegation.spec.offer_ref.namespace
            && self.offer_name == delegation.spec.offer_ref.name
            && self.plan == delegation.spec.plan
            && self.version == delegation.spec.plan_version
    }
}
