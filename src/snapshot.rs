//! The customer's consent, frozen: the authorizations of the plan version a
//! customer accepted, kept as an `apps/v1` ControllerRevision in the
//! Delegation's namespace (owned by the Delegation, so it goes with it).
//!
//! Grants always come from this snapshot, never from the live offer: a provider
//! publishing a new version, or deleting the offer, cannot change what a
//! customer already accepted.

use crate::api::{Authorization, Delegation, ManagedServiceOffer, Plan};
use crate::names;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
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

/// The revision number for a version: ordered like the versions themselves.
fn revision_number(version: &str) -> i64 {
    version
        .split('.')
        .map(|part| part.parse::<i64>().unwrap_or(0))
        .fold(0, |acc, part| acc * 1_000_000 + part)
}

/// The ControllerRevision recording `plan` as accepted by `delegation`.
pub fn to_revision(delegation: &Delegation, plan: &AcceptedPlan) -> Option<ControllerRevision> {
    let uid = delegation.uid()?;
    let name = names::snapshot_name(
        &delegation.name_any(),
        &uid,
        &plan.offer_namespace,
        &plan.offer_name,
        &plan.plan,
        &plan.version,
    );
    let mut labels = crate::desired::managed_labels(delegation, plan);
    labels.insert(names::VERSION_LABEL.into(), plan.version.clone());
    Some(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: delegation.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: Delegation::api_version(&()).into_owned(),
                kind: Delegation::kind(&()).into_owned(),
                name: delegation.name_any(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        data: Some(RawExtension(serde_json::to_value(plan).ok()?)),
        revision: revision_number(&plan.version),
    })
}

/// Compacts a revision for the watch cache: its data as one JSON string
/// instead of a `serde_json::Value` tree. The tree costs about 8 KB per
/// snapshot (a map node per object), the string a few hundred bytes, and the
/// operator caches a snapshot per delegation (two during a plan update): at
/// 1,000 delegations the trees were a sixth of the heap. Data that already is
/// a string on the server was not written by the operator and is dropped, so
/// [`from_revision`] reads strings made here only.
pub fn compact(revision: &mut ControllerRevision) {
    let Some(data) = revision.data.as_mut() else {
        return;
    };
    if data.0.is_string() {
        revision.data = None;
    } else if let Ok(text) = serde_json::to_string(&data.0) {
        data.0 = serde_json::Value::String(text);
    }
}

/// Reads a snapshot back, from a revision as the API server returns it or as
/// [`compact`] keeps it; `None` for a revision that is not one of ours or
/// whose data does not parse (it is then ignored, never trusted).
pub fn from_revision(revision: &ControllerRevision) -> Option<AcceptedPlan> {
    match &revision.data.as_ref()?.0 {
        serde_json::Value::String(text) => serde_json::from_str(text).ok(),
        value => AcceptedPlan::deserialize(value).ok(),
    }
}

/// The snapshot of `delegation`'s requested version among `revisions` (those
/// labeled for it), checking the owner uid so a recreated Delegation of the
/// same name never inherits an older consent.
pub fn find<'a>(
    delegation: &Delegation,
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
) -> Option<(String, AcceptedPlan)> {
    let uid = delegation.uid()?;
    revisions.into_iter().find_map(|revision| {
        let owned = revision
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        let plan = from_revision(revision)?;
        (owned && plan.matches(delegation)).then(|| (revision.name_any(), plan))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegation() -> Delegation {
        let mut d = Delegation::new(
            "dlg",
            crate::api::DelegationSpec {
                offer_ref: crate::api::OfferRef {
                    namespace: "p".into(),
                    name: "o".into(),
                },
                plan: "std".into(),
                plan_version: "1.0.0".into(),
                namespaces: None,
            },
        );
        d.metadata.namespace = Some("c".into());
        d.metadata.uid = Some("uid-1".into());
        d
    }

    fn plan() -> AcceptedPlan {
        AcceptedPlan {
            offer_namespace: "p".into(),
            offer_name: "o".into(),
            provider_tenant: "t".into(),
            plan: "std".into(),
            version: "1.0.0".into(),
            authorizations: Vec::new(),
        }
    }

    #[test]
    fn a_compacted_snapshot_reads_back_the_same() {
        let d = delegation();
        let mut revision = to_revision(&d, &plan()).expect("revision");
        assert_eq!(from_revision(&revision), Some(plan()));
        compact(&mut revision);
        assert!(revision.data.as_ref().is_some_and(|v| v.0.is_string()));
        assert_eq!(from_revision(&revision), Some(plan()));
        compact(&mut revision);
        assert!(
            revision.data.is_none(),
            "string data from the server is dropped"
        );
        let mut compacted = to_revision(&d, &plan()).expect("revision");
        compact(&mut compacted);
        assert_eq!(
            find(&d, [&compacted]).map(|(_, p)| p),
            Some(plan()),
            "find reads compacted snapshots"
        );
    }

    #[test]
    fn string_data_written_by_someone_else_is_not_trusted() {
        let d = delegation();
        let mut forged = to_revision(&d, &plan()).expect("revision");
        forged.data = Some(RawExtension(serde_json::Value::String(
            serde_json::to_string(&plan()).expect("json"),
        )));
        // As cached: compact() drops it, so find() has nothing to read.
        compact(&mut forged);
        assert_eq!(find(&d, [&forged]), None);
    }

    #[test]
    fn revision_numbers_follow_version_order() {
        assert!(revision_number("1.2.3") < revision_number("1.10.0"));
        assert!(revision_number("1.999999.999999") < revision_number("2.0.0"));
        assert_eq!(revision_number("0.0.1"), 1);
    }
}
