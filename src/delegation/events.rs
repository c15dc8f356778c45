//! The Events a Delegation's reconcile publishes, decided by pure functions
//! of the status before and after, so each rule is unit-tested: `Registered`
//! on the first grant, `Updated` when a new version is granted, a Warning
//! when `Ready` turns False for a new reason (never for `Progressing`), and
//! `DriftCorrected` when grant objects were restored.

use crate::api::{Delegation, DelegationStatus};
use crate::delegation::apply::Applied;
use crate::domain::conditions::{Reason, is_true, types};
use crate::runtime::events::{EventType, Occurrence};
use crate::runtime::writer::Writer;

/// The Events of a status change from `before` to `after` (pure).
pub fn transitions(
    delegation: &Delegation,
    before: Option<&DelegationStatus>,
    after: &DelegationStatus,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let was_ready = before.is_some_and(|s| is_true(&s.conditions, types::READY));
    let now_ready = is_true(&after.conditions, types::READY);
    let before_version = before.and_then(|s| s.applied_version.clone());
    let now_version = after.applied_version.clone().unwrap_or_default();
    if now_ready && !was_ready && before_version.is_none() {
        out.push(occurrence(
            EventType::Normal,
            "Registered",
            "Grant",
            format!(
                "granted plan {:?} version {now_version}",
                delegation.spec.plan
            ),
        ));
    } else if now_ready && before_version.is_some() && before_version != after.applied_version {
        out.push(occurrence(
            EventType::Normal,
            "Updated",
            "Grant",
            format!(
                "now granting version {now_version} (was {})",
                before_version.unwrap_or_default()
            ),
        ));
    }
    let not_ready = |s: &DelegationStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == types::READY && c.status == "False")
            .cloned()
    };
    let failed_before = before.and_then(not_ready).map(|c| c.reason);
    if let Some(condition) = not_ready(after)
        && condition.reason != Reason::Progressing.as_str()
        && failed_before.as_deref() != Some(condition.reason.as_str())
    {
        out.push(occurrence(
            EventType::Warning,
            &condition.reason,
            "Grant",
            condition.message,
        ));
    }
    out.extend(assignment_changes(before, after));
    let violation = |s: &DelegationStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == types::POLICY_VIOLATION)
            .map(|c| c.message.clone())
    };
    if let Some(message) = violation(after)
        && before.and_then(violation).as_deref() != Some(message.as_str())
    {
        out.push(occurrence(
            EventType::Warning,
            "PolicyViolation",
            "Audit",
            message,
        ));
    }
    out
}

/// One Event per RoleBinding a provider made (restricted role assignment)
/// that appeared in, or left, the status: the customer sees what the
/// provider granted its ServiceAccounts, and when it went.
fn assignment_changes(
    before: Option<&DelegationStatus>,
    after: &DelegationStatus,
) -> Vec<Occurrence> {
    let old: &[crate::api::ProviderAssignment] = before
        .map(|s| s.provider_assignments.as_slice())
        .unwrap_or_default();
    let describe = |a: &crate::api::ProviderAssignment| {
        format!(
            "RoleBinding {}/{} binds ClusterRole {:?} to ServiceAccount(s) {}",
            a.namespace,
            a.name,
            a.role_ref,
            a.service_accounts.join(", ")
        )
    };
    let added = after
        .provider_assignments
        .iter()
        .filter(|a| !old.contains(a));
    let gone = old
        .iter()
        .filter(|a| !after.provider_assignments.contains(a));
    added
        .map(|a| {
            occurrence(
                EventType::Normal,
                "ProviderAssigned",
                "Assign",
                format!("the provider made {}", describe(a)),
            )
        })
        .chain(gone.map(|a| {
            occurrence(
                EventType::Normal,
                "ProviderAssignmentRemoved",
                "Revoke",
                format!("gone: {}", describe(a)),
            )
        }))
        .collect()
}

/// The Event for grant objects restored by this reconcile, if any (pure).
pub fn drift(applied: &Applied) -> Option<Occurrence> {
    (applied.repaired > 0).then(|| {
        occurrence(
            EventType::Normal,
            "DriftCorrected",
            "Reconcile",
            format!(
                "restored {} grant object(s) that were edited or deleted",
                applied.repaired
            ),
        )
    })
}

/// An Event to publish.
pub fn occurrence(type_: EventType, reason: &str, action: &str, note: String) -> Occurrence {
    Occurrence {
        type_,
        reason: reason.into(),
        action: action.into(),
        note,
    }
}

/// Publishes `occurrences` about `delegation`, in order.
pub async fn publish(writer: &Writer, delegation: &Delegation, occurrences: Vec<Occurrence>) {
    for o in occurrences {
        writer.publish(delegation, o).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conditions::Conditions;
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn status(version: Option<&str>, ready: bool, reason: Reason) -> DelegationStatus {
        let mut c = Conditions::new(&[], Some(1), Time(Timestamp::from_second(1).expect("time")));
        c.set(types::READY, ready, reason, format!("{reason:?}"));
        DelegationStatus {
            conditions: c.finish(),
            applied_version: version.map(Into::into),
            ..DelegationStatus::default()
        }
    }

    fn reasons(before: Option<&DelegationStatus>, after: &DelegationStatus) -> Vec<String> {
        let d = fixtures::delegation("c", "d", ("p", "o"), "plan", "1.0.0", None);
        transitions(&d, before, after)
            .into_iter()
            .map(|o| o.reason)
            .collect()
    }

    #[test]
    fn registered_once_then_updated_on_a_new_version() {
        let granted = status(Some("1.0.0"), true, Reason::Granted);
        assert_eq!(reasons(None, &granted), ["Registered"]);
        let progressing = status(Some("1.0.0"), false, Reason::Progressing);
        assert_eq!(reasons(None, &progressing), Vec::<String>::new());
        assert_eq!(reasons(Some(&granted), &granted), Vec::<String>::new());
        let updated = status(Some("2.0.0"), true, Reason::Granted);
        assert_eq!(reasons(Some(&granted), &updated), ["Updated"]);
    }

    #[test]
    fn a_warning_for_each_new_failure_reason_but_not_for_progress() {
        let granted = status(Some("1.0.0"), true, Reason::Granted);
        let failed = status(Some("1.0.0"), false, Reason::ApplyFailed);
        assert_eq!(reasons(Some(&granted), &failed), ["ApplyFailed"]);
        assert_eq!(
            reasons(Some(&failed), &failed),
            Vec::<String>::new(),
            "same reason: no repeat"
        );
        let refused = status(None, false, Reason::RoleNotDelegable);
        assert_eq!(reasons(Some(&failed), &refused), ["RoleNotDelegable"]);
        let warning = {
            let d = fixtures::delegation("c", "d", ("p", "o"), "plan", "1.0.0", None);
            transitions(&d, None, &refused).remove(0)
        };
        assert_eq!(warning.type_, EventType::Warning);
    }

    #[test]
    fn drift_is_reported_only_when_something_was_restored() {
        assert!(drift(&Applied::default()).is_none());
        let repaired = Applied {
            repaired: 3,
            ..Applied::default()
        };
        let event = drift(&repaired).expect("event");
        assert_eq!(event.reason, "DriftCorrected");
        assert!(event.note.contains("restored 3"));
    }
}
