//! Where consent is stored: an [`AcceptedPlan`] kept as an `apps/v1`
//! ControllerRevision in the Delegation's namespace (owned by the Delegation,
//! so it goes with it), and read back from the watch cache.
//!
//! Grants always come from this snapshot, never from the live offer: a provider
//! publishing a new version, or deleting the offer, cannot change what a
//! customer already accepted.

use crate::api::Delegation;
use crate::domain::consent::AcceptedPlan;
use crate::domain::names;
use crate::domain::version::Version;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

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
        plan.stamp.as_ref().map(|s| s.generation),
    );
    let mut labels = names::managed_labels(delegation, plan);
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
        revision: Version::parse(&plan.version).revision_number(),
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

/// The consent records of `delegation`'s requested version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// The record that covers the Delegation as it is now (its generation,
    /// or a record of 0.1.0), with its name.
    pub current: Option<(String, AcceptedPlan)>,
    /// A record of the same version for an earlier generation: its content
    /// is what the customer accepted for this version, so it carries over
    /// (re-verified and re-stamped) when the Delegation changes.
    pub carried: Option<AcceptedPlan>,
}

/// The records of `delegation`'s requested version among `revisions` (those
/// labeled for it). Only revisions owned by this Delegation (by uid, so a
/// recreated Delegation of the same name never inherits an older consent)
/// and whose content still matches its digest count.
pub fn find<'a>(
    delegation: &Delegation,
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
) -> Found {
    let mut found = Found::default();
    let Some(uid) = delegation.uid() else {
        return found;
    };
    for revision in revisions {
        let owned = revision
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        let Some(plan) = from_revision(revision) else {
            continue;
        };
        if !owned || !plan.matches(delegation) || !plan.intact() {
            continue;
        }
        if plan.current_for(delegation) {
            found.current = Some((revision.name_any(), plan));
        } else {
            found.carried = Some(plan);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn delegation() -> Delegation {
        fixtures::with_uid(
            fixtures::delegation("c", "dlg", ("p", "o"), "std", "1.0.0", None),
            "uid-1",
        )
    }

    fn plan() -> AcceptedPlan {
        fixtures::accepted(("p", "o"), "t", "std", "1.0.0", Vec::new())
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
            find(&d, [&compacted]).current.map(|(_, p)| p),
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
        assert_eq!(find(&d, [&forged]), Found::default());
    }

    #[test]
    fn records_of_other_generations_carry_content_over() {
        use crate::domain::consent::Consenter;
        let mut d = delegation();
        d.metadata.generation = Some(1);
        let first = plan().stamped(Consenter::default(), 1);
        let revision = to_revision(&d, &first).expect("revision");
        assert_eq!(
            find(&d, [&revision]).current.map(|(_, p)| p),
            Some(first.clone())
        );
        d.metadata.generation = Some(2);
        let found = find(&d, [&revision]);
        assert_eq!(found.current, None);
        assert_eq!(found.carried, Some(first.clone()));
        let second = to_revision(&d, &first.stamped(Consenter::default(), 2)).expect("revision");
        assert_ne!(
            second.metadata.name, revision.metadata.name,
            "a name per generation"
        );
    }

    #[test]
    fn a_record_whose_content_no_longer_matches_its_digest_is_ignored() {
        let d = delegation();
        let mut tampered = plan().stamped(Default::default(), 0);
        tampered.authorizations.push(crate::fixtures::auth(
            crate::api::PrincipalKind::User,
            "mallory",
            "reader",
        ));
        let revision = to_revision(&d, &tampered).expect("revision");
        assert_eq!(find(&d, [&revision]), Found::default());
    }
}
