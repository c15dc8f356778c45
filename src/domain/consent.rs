//! Consent: what a customer accepted, and who accepted it, as data.
//!
//! An [`AcceptedPlan`] is the content of one plan version at the moment a
//! customer accepted it, bound to the offer's identity (uid) and to a digest
//! of that content. Everything the operator grants is built from it (never
//! from the live offer), and it is stored by [`crate::delegation::snapshot`].
//! Its [`Stamp`] says who consented, for which generation of the
//! Delegation: a record is made only after the operator verified that this
//! consenter could have granted the same themselves.

use crate::api::{Authorization, Delegation, EligibleAuthorization, ManagedServiceOffer, Plan};
use crate::domain::names;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The identity that consented, as the API server authenticated it (the
/// admission policies record it on the Delegation and refuse any other).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Consenter {
    /// User name.
    pub user: String,
    /// Groups (a subset of the user's; fewer groups can only mean less access).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Consenter {
    /// The consenter recorded in a Delegation's annotations, if any.
    pub fn of(delegation: &Delegation) -> Option<Self> {
        Self::from_annotations(delegation.annotations())
    }

    /// The consenter recorded in `annotations` (user required; groups
    /// comma-separated, empty entries ignored).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let user = annotations
            .get(names::CONSENTED_BY_ANNOTATION)
            .filter(|u| !u.is_empty())?
            .clone();
        let groups = annotations
            .get(names::CONSENTED_BY_GROUPS_ANNOTATION)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Some(Self { user, groups })
    }
}

/// Who consented to a record, for which generation of the Delegation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    /// The consenting identity, verified when the record was made.
    pub consented_by: Consenter,
    /// The Delegation's `metadata.generation` (its spec) it covers.
    pub generation: i64,
}

/// sha256 of a plan version's content: its name, version and authorizations
/// (`sha256:` and 64 hex digits). Two plans with the same digest grant the
/// same; a provider cannot change what a digest stands for.
/// Eligible authorizations are part of the content when a plan has any (a
/// plan without them keeps the digest it had before they existed).
pub fn content_digest(
    plan: &str,
    version: &str,
    authorizations: &[Authorization],
    eligible: &[EligibleAuthorization],
) -> String {
    let mut hasher = Sha256::new();
    // serde_json of these types is deterministic: fields in declaration
    // order, no maps.
    let mut content = serde_json::json!({
        "plan": plan,
        "version": version,
        "authorizations": authorizations,
    });
    if !eligible.is_empty() {
        content["eligibleAuthorizations"] = serde_json::json!(eligible);
    }
    hasher.update(content.to_string().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

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
    /// The plan's eligible (just-in-time) authorizations at that version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_authorizations: Vec<EligibleAuthorization>,
    /// The uid of the offer accepted (absent in records of 0.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_uid: Option<String>,
    /// [`content_digest`] of what was accepted (absent in records of 0.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Who consented, for which generation (absent in records of 0.1.0,
    /// which are honoured for their version until the Delegation changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
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
            eligible_authorizations: plan.eligible_authorizations.clone().unwrap_or_default(),
            offer_uid: offer.uid(),
            digest: Some(content_digest(
                &plan.name,
                &plan.version,
                &plan.authorizations,
                plan.eligible_authorizations.as_deref().unwrap_or_default(),
            )),
            stamp: None,
        }
    }

    /// The digest of this record's content (computed for records of 0.1.0).
    pub fn content_digest(&self) -> String {
        content_digest(
            &self.plan,
            &self.version,
            &self.authorizations,
            &self.eligible_authorizations,
        )
    }

    /// True when the recorded digest matches the recorded content (records
    /// of 0.1.0 have none).
    pub fn intact(&self) -> bool {
        self.digest
            .as_ref()
            .is_none_or(|d| *d == self.content_digest())
    }

    /// This content, consented to by `by` for `generation`.
    pub fn stamped(&self, by: Consenter, generation: i64) -> Self {
        Self {
            digest: Some(self.content_digest()),
            stamp: Some(Stamp {
                consented_by: by,
                generation,
            }),
            ..self.clone()
        }
    }

    /// True when this record covers `delegation` as it is now: a stamped
    /// record of its generation, or a record of 0.1.0 (no stamp).
    pub fn current_for(&self, delegation: &Delegation) -> bool {
        match &self.stamp {
            Some(stamp) => Some(stamp.generation) == delegation.metadata.generation,
            None => true,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PrincipalKind;
    use crate::fixtures::{self, auth};

    #[test]
    fn the_digest_binds_the_content() {
        let a = vec![auth(PrincipalKind::User, "alice", "reader")];
        let b = vec![auth(PrincipalKind::User, "mallory", "reader")];
        let d = content_digest("p", "1.0.0", &a, &[]);
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
        assert_eq!(d, content_digest("p", "1.0.0", &a, &[]));
        assert_ne!(d, content_digest("p", "1.0.0", &b, &[]));
        assert_ne!(d, content_digest("p", "1.0.1", &a, &[]));
        let mut record = fixtures::accepted(("o", "o"), "t", "p", "1.0.0", a);
        assert!(record.intact(), "records of 0.1.0 have no digest");
        record.digest = Some(d.clone());
        assert!(record.intact());
        record.authorizations = b;
        assert!(!record.intact(), "content changed behind its digest");
    }

    #[test]
    fn consenters_come_from_the_annotations() {
        let mut annotations = BTreeMap::new();
        assert_eq!(Consenter::from_annotations(&annotations), None);
        annotations.insert(
            names::CONSENTED_BY_ANNOTATION.to_string(),
            "alice".to_string(),
        );
        annotations.insert(
            names::CONSENTED_BY_GROUPS_ANNOTATION.to_string(),
            "ops, ,admins".to_string(),
        );
        assert_eq!(
            Consenter::from_annotations(&annotations),
            Some(Consenter {
                user: "alice".into(),
                groups: vec!["ops".into(), "admins".into()],
            })
        );
    }

    #[test]
    fn a_stamped_record_covers_one_generation() {
        let mut d = fixtures::delegation("c", "d", ("o", "o"), "p", "1.0.0", None);
        d.metadata.generation = Some(2);
        let legacy = fixtures::accepted(("o", "o"), "t", "p", "1.0.0", Vec::new());
        assert!(legacy.current_for(&d));
        let stamped = legacy.stamped(Consenter::default(), 2);
        assert!(stamped.current_for(&d));
        d.metadata.generation = Some(3);
        assert!(!stamped.current_for(&d));
    }
}
