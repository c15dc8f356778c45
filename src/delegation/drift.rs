//! Which of a reconcile's grant writes repair drift, and which grant
//! something new.
//!
//! `DriftCorrected` (an Event on the customer's Delegation and
//! `msp_operator_drift_corrections_total`) says that somebody edited or
//! deleted a grant behind the operator's back. A write is such a repair only
//! when the object had been in place: its namespace was reported Ready, for
//! the same version, with as many bindings as are wanted now (the status
//! written after the last apply says so, [`InPlaceBefore::new`]). A new
//! namespace, terms that add a right, or a new version grant something new.
//!
//! Activation grants are not counted in the Delegation's status (their
//! beginning and end cost no status write), so a missing one would look like
//! drift each time an activation begins. The reconcile therefore remembers,
//! per Delegation, which activation bindings it has seen in place
//! ([`SeenActivationGrants`]); only those count as repaired when missing.
//! The memory is this process's: an activation grant deleted while no
//! operator ran is restored all the same, but counted as new.

use crate::api::Delegation;
use crate::delegation::build::Desired;
use crate::delegation::validate::Decision;
use crate::domain::names;
use kube::ResourceExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// `(namespace, name)` of an activation's RoleBinding.
pub type BindingKey = (String, String);

/// What was in place before this reconcile, by the last status and this
/// process's memory of activation grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InPlaceBefore {
    /// Namespaces whose every wanted grant the last status reported in place.
    namespaces: BTreeSet<String>,
    /// Activation bindings seen in place by an earlier reconcile.
    activation_bindings: BTreeSet<BindingKey>,
}

impl InPlaceBefore {
    /// From `delegation`'s status (pure): a namespace counts when it was
    /// Ready for the version `decision` accepts, with the bindings `desired`
    /// holds there now (activation grants aside).
    pub fn new(
        delegation: &Delegation,
        decision: &Decision,
        desired: &Desired,
        seen: BTreeSet<BindingKey>,
    ) -> Self {
        let Some(status) = delegation.status.as_ref() else {
            return Self::default();
        };
        let same_version = decision
            .outcome
            .as_ref()
            .is_ok_and(|a| status.applied_version.as_deref() == Some(a.plan.version.as_str()));
        if !same_version {
            return Self::default();
        }
        let namespaces = status
            .namespaces
            .iter()
            .filter(|n| n.ready)
            .filter(|n| {
                usize::try_from(n.bindings)
                    .is_ok_and(|b| b == desired.standing_bindings_in(&n.name))
            })
            .map(|n| n.name.clone())
            .collect();
        Self {
            namespaces,
            activation_bindings: seen,
        }
    }

    /// Whether writing an object in `namespace` repairs drift: the object
    /// `existed` (and differed) or was missing. A missing activation binding
    /// `activation` (its key) is drift only if it was seen in place.
    pub fn is_repair(
        &self,
        namespace: &str,
        existed: bool,
        activation: Option<BindingKey>,
    ) -> bool {
        if !self.namespaces.contains(namespace) {
            return false;
        }
        match activation {
            Some(key) if !existed => self.activation_bindings.contains(&key),
            _ => true,
        }
    }
}

/// The key of `binding` if it is an activation's grant.
pub fn activation_key(binding: &k8s_openapi::api::rbac::v1::RoleBinding) -> Option<BindingKey> {
    binding
        .labels()
        .contains_key(names::ACTIVATION_LABEL)
        .then(|| (binding.namespace().unwrap_or_default(), binding.name_any()))
}

/// Per Delegation (`namespace/name`), the activation bindings the last
/// reconcile found or wrote in place. Bounded by the activations in force:
/// each reconcile replaces its Delegation's entry, an empty one is dropped,
/// and cleanup forgets a deleted Delegation. (A map behind a mutex: the
/// controller never reconciles one Delegation twice at once, so entries are
/// never raced, only the map.)
#[derive(Debug, Default)]
pub struct SeenActivationGrants {
    by_delegation: Mutex<HashMap<String, BTreeSet<BindingKey>>>,
}

impl SeenActivationGrants {
    /// What the last reconcile of `delegation` saw in place.
    pub fn of(&self, delegation: &str) -> BTreeSet<BindingKey> {
        self.by_delegation
            .lock()
            .map(|m| m.get(delegation).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Records what is in place after a reconcile of `delegation`.
    pub fn replace(&self, delegation: &str, in_place: BTreeSet<BindingKey>) {
        if let Ok(mut map) = self.by_delegation.lock() {
            if in_place.is_empty() {
                map.remove(delegation);
            } else {
                map.insert(delegation.to_string(), in_place);
            }
        }
    }

    /// Forgets a deleted `delegation`.
    pub fn forget(&self, delegation: &str) {
        self.replace(delegation, BTreeSet::new());
    }

    /// How many Delegations have an entry (for the tests of its bound).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.by_delegation.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PrincipalKind;
    use crate::delegation::validate::NamespaceState;
    use crate::delegation::{apply::Applied, build, status};
    use crate::fixtures::{self, auth};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn decision(version: &str, namespaces: &[&str]) -> Decision {
        let states: Vec<_> = namespaces
            .iter()
            .map(|n| (*n, NamespaceState::Grantable))
            .collect();
        fixtures::accepted_decision(
            fixtures::accepted(
                ("provider", "offer"),
                "acme",
                "p",
                version,
                vec![
                    auth(PrincipalKind::User, "alice", "reader"),
                    auth(PrincipalKind::Group, "ops", "operator"),
                ],
            ),
            &states,
        )
    }

    /// A Delegation whose last reconcile applied `before` with `applied`.
    fn reconciled(before: &Decision, applied: &Applied) -> Delegation {
        let mut d = fixtures::with_uid(
            fixtures::delegation("cust", "dlg", ("provider", "offer"), "p", "1.0.0", None),
            "uid-1",
        );
        let desired = build::for_decision(&d, before);
        let at = Time(Timestamp::from_second(10).expect("time"));
        d.status = Some(status::compute(&d, before, &desired, applied, at));
        d
    }

    fn in_place(d: &Delegation, now: &Decision, seen: &[(&str, &str)]) -> InPlaceBefore {
        let seen = seen
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_string()))
            .collect();
        InPlaceBefore::new(d, now, &build::for_decision(d, now), seen)
    }

    fn key(ns: &str, name: &str) -> Option<BindingKey> {
        Some((ns.into(), name.into()))
    }

    #[test]
    fn a_grant_missing_or_edited_where_everything_was_in_place_is_drift() {
        let now = decision("1.0.0", &["cust", "cust-b"]);
        let d = reconciled(&now, &Applied::default());
        let before = in_place(&d, &now, &[]);
        assert!(before.is_repair("cust", false, None), "deleted");
        assert!(before.is_repair("cust-b", true, None), "edited");
    }

    #[test]
    fn a_first_grant_a_new_namespace_or_a_new_version_is_no_drift() {
        let now = decision("1.0.0", &["cust"]);
        let unreconciled =
            fixtures::delegation("cust", "dlg", ("provider", "offer"), "p", "1.0.0", None);
        assert!(!in_place(&unreconciled, &now, &[]).is_repair("cust", false, None));

        let d = reconciled(&decision("1.0.0", &["cust"]), &Applied::default());
        let grown = decision("1.0.0", &["cust", "cust-new"]);
        let before = in_place(&d, &grown, &[]);
        assert!(before.is_repair("cust", false, None));
        assert!(!before.is_repair("cust-new", false, None), "onboarded");

        let upgraded = decision("2.0.0", &["cust"]);
        let before = in_place(&d, &upgraded, &[]);
        assert!(!before.is_repair("cust", true, None), "consented change");
        assert!(!before.is_repair("cust", false, None), "consented addition");
    }

    #[test]
    fn a_namespace_not_ready_or_with_fewer_bindings_reported_is_no_drift() {
        let now = decision("1.0.0", &["cust", "cust-b"]);
        let failed = Applied {
            errors: [("cust-b".to_string(), "forbidden".to_string())].into(),
            missing_bindings: [("cust-b".to_string(), 1)].into(),
            ..Applied::default()
        };
        let d = reconciled(&now, &failed);
        let before = in_place(&d, &now, &[]);
        assert!(before.is_repair("cust", false, None));
        assert!(!before.is_repair("cust-b", false, None), "never in place");

        // Reported Ready with one binding less than wanted now (a right the
        // terms added, say): the missing one is new.
        let mut d = reconciled(&now, &Applied::default());
        if let Some(s) = d.status.as_mut() {
            s.namespaces[0].bindings -= 1;
        }
        assert!(!in_place(&d, &now, &[]).is_repair("cust", false, None));
    }

    #[test]
    fn a_missing_activation_grant_is_drift_only_once_seen_in_place() {
        let now = decision("1.0.0", &["cust"]);
        let d = reconciled(&now, &Applied::default());
        let fresh = in_place(&d, &now, &[]);
        assert!(
            !fresh.is_repair("cust", false, key("cust", "act")),
            "begins"
        );
        assert!(fresh.is_repair("cust", true, key("cust", "act")), "edited");
        let seen = in_place(&d, &now, &[("cust", "act")]);
        assert!(seen.is_repair("cust", false, key("cust", "act")), "deleted");
        assert!(!seen.is_repair("cust", false, key("cust", "other")));
    }

    #[test]
    fn the_memory_holds_only_delegations_with_grants_in_place() {
        let seen = SeenActivationGrants::default();
        assert!(seen.of("cust/dlg").is_empty());
        let grants: BTreeSet<BindingKey> = [("cust".to_string(), "act".to_string())].into();
        seen.replace("cust/dlg", grants.clone());
        assert_eq!(seen.of("cust/dlg"), grants);
        assert_eq!(seen.entries(), 1);
        seen.replace("cust/dlg", BTreeSet::new());
        assert_eq!(seen.entries(), 0, "an empty entry is dropped");
        seen.replace("cust/dlg", grants);
        seen.forget("cust/dlg");
        assert_eq!(seen.entries(), 0);
    }
}
