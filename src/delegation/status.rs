//! Step 5, status: what the Delegation reports (pure), and the one write
//! that reports it, made only when something changed.
//!
//! This is the one place that turns a decision and the outcome of applying
//! it into conditions: `Accepted`, `Ready` (with kstatus `Reconciling` or
//! `Stalled` while it is not), `UpdateAvailable`, `OfferAvailable`, and the
//! readiness of each delegated namespace.

use crate::api::{
    Authorization, Delegation, DelegationStatus, EligibleAuthorization, NamespaceStatus,
    PendingUpdate,
};
use crate::delegation::apply::{Applied, Superseded};
use crate::delegation::build::Desired;
use crate::delegation::validate::{Accepted, Decision, NamespaceState, Refused};
use crate::domain::conditions::{Conditions, Reason, types};
use crate::domain::version::version_gt;
use crate::runtime::errors::Error;
use crate::runtime::writer::Writer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The status `delegation` should have after `decision` was applied with
/// outcome `applied` (pure; `at` stamps conditions whose status changes).
pub fn compute(
    delegation: &Delegation,
    decision: &Decision,
    desired: &Desired,
    applied: &Applied,
    at: Time,
) -> DelegationStatus {
    let previous = delegation
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = delegation.metadata.generation;
    let mut conditions = Conditions::new(previous, generation, at);
    let mut namespaces = Vec::new();
    let mut applied_version = None;
    // A refusal keeps the record of what was consented to for this version.
    let (mut accepted_version, mut accepted_digest) = delegation
        .status
        .as_ref()
        .filter(|s| s.accepted_version.as_deref() == Some(delegation.spec.plan_version.as_str()))
        .map(|s| (s.accepted_version.clone(), s.accepted_digest.clone()))
        .unwrap_or_default();
    let mut pending = None;
    match &decision.outcome {
        Ok(accepted) => {
            pending = decision.latest_version.as_deref().and_then(|latest| {
                pending_update(
                    (&accepted.plan.version, &accepted.plan.authorizations),
                    &accepted.plan.eligible_authorizations,
                    (latest, &decision.latest_authorizations),
                    &decision.latest_eligible,
                )
            });
            applied_version = Some(accepted.plan.version.clone());
            accepted_version = Some(accepted.plan.version.clone());
            accepted_digest = Some(accepted.plan.content_digest());
            namespaces = namespace_statuses(accepted, desired, applied);
            accepted_conditions(&mut conditions, accepted, &namespaces, applied);
            audit_condition(&mut conditions, &accepted.audited);
        }
        Err(refused) => {
            for type_ in [types::ACCEPTED, types::READY] {
                conditions.set(type_, false, refused.reason, refused.message.clone());
            }
            conditions.set(
                types::STALLED,
                true,
                refused.reason,
                refused.message.clone(),
            );
        }
    }
    update_condition(&mut conditions, delegation, pending.as_ref());
    let pending_update = pending;
    offer_condition(
        &mut conditions,
        delegation,
        decision,
        applied_version.as_deref(),
    );
    DelegationStatus {
        observed_generation: generation,
        conditions: conditions.finish(),
        managed_by_tenant: decision.managed_by_tenant.clone(),
        customer_tenant: Some(decision.customer_tenant.clone()),
        applied_version,
        accepted_version,
        accepted_digest,
        latest_version: decision.latest_version.clone(),
        namespaces,
        pending_update,
        provider_assignments: Vec::new(),
    }
}

/// What raising the Delegation to `latest` (its version and
/// authorizations, and its eligible authorizations) would change, when
/// `latest` is newer than what is in force (pure).
pub fn pending_update(
    (in_force_version, in_force): (&str, &[Authorization]),
    in_force_eligible: &[EligibleAuthorization],
    (latest_version, latest): (&str, &[Authorization]),
    latest_eligible: &[EligibleAuthorization],
) -> Option<PendingUpdate> {
    if !version_gt(latest_version, in_force_version) {
        return None;
    }
    Some(PendingUpdate {
        version: latest_version.to_string(),
        added: only_in(latest, in_force),
        removed: only_in(in_force, latest),
        eligible_added: only_in(latest_eligible, in_force_eligible),
        eligible_removed: only_in(in_force_eligible, latest_eligible),
    })
}

/// The items of `these` that `those` lacks, sorted, without repeats.
fn only_in<T: Ord + Clone>(these: &[T], those: &[T]) -> Vec<T> {
    let mut only: Vec<T> = these
        .iter()
        .filter(|a| !those.contains(a))
        .cloned()
        .collect();
    only.sort();
    only.dedup();
    only
}

/// Readiness of each delegated namespace: Ready when grantable and every
/// write there succeeded; `bindings` counts what is in place when Ready.
fn namespace_statuses(
    accepted: &Accepted,
    desired: &Desired,
    applied: &Applied,
) -> Vec<NamespaceStatus> {
    accepted
        .namespaces
        .iter()
        .map(|(ns, state)| {
            // Just-in-time grants are reported on their Activations: an
            // activation beginning or ending costs no Delegation status write.
            let bindings = desired.standing_bindings_in(ns) as i32;
            let (ready, message) = match (state, applied.errors.get(ns)) {
                (_, Some(error)) => (false, Some(format!("applying grants failed: {error}"))),
                (NamespaceState::Grantable, None) => (true, None),
                (NamespaceState::Missing, None) => (
                    false,
                    Some("namespace does not exist; grants follow when it is created".into()),
                ),
                (NamespaceState::Terminating, None) => {
                    (false, Some("namespace is being deleted".into()))
                }
            };
            // What is in place: every desired binding where the namespace
            // is grantable, less those that could not be written.
            let missing = applied.missing_bindings.get(ns).copied().unwrap_or(0) as i32;
            let in_place = match state {
                NamespaceState::Grantable => (bindings - missing).max(0),
                _ => 0,
            };
            NamespaceStatus {
                name: ns.clone(),
                ready,
                bindings: in_place,
                message,
            }
        })
        .collect()
}

/// `Accepted=True`, and `Ready` from the namespaces (with `Reconciling`
/// while some are not ready).
fn accepted_conditions(
    conditions: &mut Conditions<'_>,
    accepted: &Accepted,
    namespaces: &[NamespaceStatus],
    applied: &Applied,
) {
    conditions.set(
        types::ACCEPTED,
        true,
        Reason::Valid,
        format!(
            "plan {:?} version {} of offer {}/{} is accepted",
            accepted.plan.plan,
            accepted.plan.version,
            accepted.plan.offer_namespace,
            accepted.plan.offer_name
        ),
    );
    let not_ready: Vec<&str> = namespaces
        .iter()
        .filter(|n| !n.ready)
        .map(|n| n.name.as_str())
        .collect();
    if not_ready.is_empty() {
        conditions.set(
            types::READY,
            true,
            Reason::Granted,
            format!(
                "version {} is granted in {} namespace(s)",
                accepted.plan.version,
                namespaces.len()
            ),
        );
        return;
    }
    let reason = if applied.errors.is_empty() {
        Reason::Progressing
    } else {
        Reason::ApplyFailed
    };
    let message = format!(
        "grants are not in place in: {} (see status.namespaces)",
        not_ready.join(", ")
    );
    conditions.set(types::READY, false, reason, message.clone());
    conditions.set(types::RECONCILING, true, reason, message);
}

/// `PolicyViolation`, only while an Audit-mode provider policy would refuse
/// the Delegation: what it objects to (the grants stay as consented).
fn audit_condition(conditions: &mut Conditions<'_>, audited: &[Refused]) {
    let Some(first) = audited.first() else {
        return;
    };
    let messages: Vec<&str> = audited.iter().map(|r| r.message.as_str()).collect();
    conditions.set(
        types::POLICY_VIOLATION,
        true,
        first.reason,
        format!(
            "audit only, the grants stay as consented: {}",
            messages.join("; ")
        ),
    );
}

/// `UpdateAvailable`: the plan publishes a newer version than the applied
/// one (`pending`, with what accepting it would change).
fn update_condition(
    conditions: &mut Conditions<'_>,
    delegation: &Delegation,
    pending: Option<&PendingUpdate>,
) {
    match pending {
        Some(update) => conditions.set(
            types::UPDATE_AVAILABLE,
            true,
            Reason::NewerVersionPublished,
            format!(
                "version {latest} of plan {:?} is published; it adds {} and removes {} authorization(s), and adds {} and removes {} eligible authorization(s) (see status.pendingUpdate); set spec.planVersion to {latest} to accept it",
                delegation.spec.plan,
                update.added.len(),
                update.removed.len(),
                update.eligible_added.len(),
                update.eligible_removed.len(),
                latest = update.version,
            ),
        ),
        None => conditions.set(
            types::UPDATE_AVAILABLE,
            false,
            Reason::UpToDate,
            "the accepted version is the latest",
        ),
    }
}

/// `OfferAvailable`: the offer still exists.
fn offer_condition(
    conditions: &mut Conditions<'_>,
    delegation: &Delegation,
    decision: &Decision,
    applied_version: Option<&str>,
) {
    if decision.offer_present {
        conditions.set(
            types::OFFER_AVAILABLE,
            true,
            Reason::OfferPresent,
            "the offer exists",
        );
        return;
    }
    let offer = &delegation.spec.offer_ref;
    let message = match applied_version {
        Some(v) => format!(
            "offer {}/{} was deleted; the accepted grants of version {v} stay in force until this Delegation is deleted",
            offer.namespace, offer.name
        ),
        None => format!("offer {}/{} does not exist", offer.namespace, offer.name),
    };
    conditions.set(types::OFFER_AVAILABLE, false, Reason::OfferDeleted, message);
}

/// Status equality that ignores only what cannot matter: conditions compared
/// as a set keyed by type.
pub fn same(a: &Option<DelegationStatus>, b: &DelegationStatus) -> bool {
    let Some(a) = a else { return false };
    let key = |s: &DelegationStatus| {
        let mut c = s.conditions.clone();
        c.sort_by(|x, y| x.type_.cmp(&y.type_));
        c
    };
    key(a) == key(b)
        && a.observed_generation == b.observed_generation
        && a.managed_by_tenant == b.managed_by_tenant
        && a.customer_tenant == b.customer_tenant
        && a.applied_version == b.applied_version
        && a.accepted_version == b.accepted_version
        && a.accepted_digest == b.accepted_digest
        && a.latest_version == b.latest_version
        && a.namespaces == b.namespaces
        && a.pending_update == b.pending_update
        && a.provider_assignments == b.provider_assignments
}

/// Writes `status` when it differs from what `delegation` reports; true when
/// it wrote.
pub async fn write(
    writer: &Writer,
    delegation: &Delegation,
    status: &DelegationStatus,
    superseded: &mut Superseded,
) -> Result<bool, Error> {
    if same(&delegation.status, status) {
        return Ok(false);
    }
    let api: kube::Api<Delegation> = writer.api(&delegation.namespace().unwrap_or_default());
    let written = writer
        .limited(api.patch_status(
            &delegation.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": merge_patch(delegation.status.as_ref(), status) })),
        ))
        .await?;
    superseded.record(writer, written.resource_version());
    Ok(true)
}

/// `next` as a JSON merge patch over `previous`: fields `next` leaves out
/// (a refusal has no `appliedVersion`) are set to null, so the stored status
/// never keeps a stale value (merge patches keep what they do not name).
pub fn merge_patch<S: serde::Serialize>(previous: Option<&S>, next: &S) -> serde_json::Value {
    let mut patch = serde_json::to_value(next).unwrap_or_default();
    if let (Some(previous), Some(fields)) = (
        previous.and_then(|p| serde_json::to_value(p).ok()),
        patch.as_object_mut(),
    ) && let Some(old) = previous.as_object()
    {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PrincipalKind;
    use crate::delegation::build;
    use crate::delegation::validate::Refused;
    use crate::fixtures::{self, auth};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    fn delegation() -> Delegation {
        let mut d = fixtures::with_uid(
            fixtures::delegation(
                "cust",
                "dlg",
                ("provider", "offer"),
                "p",
                "1.0.0",
                Some(vec!["cust", "cust-b"]),
            ),
            "uid-1",
        );
        d.metadata.generation = Some(3);
        d
    }

    fn accepted(states: &[(&str, NamespaceState)]) -> Decision {
        fixtures::accepted_decision(
            fixtures::accepted(
                ("provider", "offer"),
                "acme",
                "p",
                "1.0.0",
                vec![
                    auth(PrincipalKind::User, "alice", "reader"),
                    auth(PrincipalKind::User, "bob", "reader"),
                    auth(PrincipalKind::Group, "ops", "operator"),
                ],
            ),
            states,
        )
    }

    fn both_grantable() -> Decision {
        accepted(&[
            ("cust", NamespaceState::Grantable),
            ("cust-b", NamespaceState::Grantable),
        ])
    }

    /// The status for `decision` applied with `applied`, at time `secs`.
    fn status_of(
        d: &Delegation,
        decision: &Decision,
        applied: &Applied,
        secs: i64,
    ) -> DelegationStatus {
        let desired = build::for_decision(d, decision);
        compute(d, decision, &desired, applied, at(secs))
    }

    fn condition<'a>(s: &'a DelegationStatus, type_: &str) -> Option<(&'a str, &'a str)> {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn an_audit_objection_is_reported_and_changes_nothing_granted() {
        let d = delegation();
        let clean = status_of(&d, &both_grantable(), &Applied::default(), 10);
        assert_eq!(condition(&clean, types::POLICY_VIOLATION), None);
        let mut audited = both_grantable();
        if let Ok(accepted) = &mut audited.outcome {
            accepted.audited = vec![Refused {
                reason: Reason::ProviderNotAllowed,
                message: "ClusterProviderPolicy p does not allow".into(),
            }];
        }
        let s = status_of(&d, &audited, &Applied::default(), 10);
        assert_eq!(
            condition(&s, types::POLICY_VIOLATION),
            Some(("True", "ProviderNotAllowed"))
        );
        assert_eq!(condition(&s, types::READY), Some(("True", "Granted")));
        assert_eq!(s.namespaces, clean.namespaces);
        // One Warning Event when it appears, none while it stays the same.
        let d = Delegation {
            status: Some(clean),
            ..delegation()
        };
        let reasons = |before: &Delegation, after: &DelegationStatus| {
            crate::delegation::events::transitions(before, before.status.as_ref(), after)
                .into_iter()
                .map(|o| o.reason)
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons(&d, &s), ["PolicyViolation"]);
        let d = Delegation {
            status: Some(s.clone()),
            ..delegation()
        };
        assert!(reasons(&d, &s).is_empty());
    }

    #[test]
    fn accepted_and_granted_everywhere_is_ready() {
        let d = delegation();
        let s = status_of(&d, &both_grantable(), &Applied::default(), 10);
        assert_eq!(condition(&s, types::ACCEPTED), Some(("True", "Valid")));
        assert_eq!(condition(&s, types::READY), Some(("True", "Granted")));
        assert_eq!(condition(&s, types::RECONCILING), None);
        assert_eq!(condition(&s, types::STALLED), None);
        assert_eq!(
            condition(&s, types::UPDATE_AVAILABLE),
            Some(("False", "UpToDate"))
        );
        assert_eq!(
            condition(&s, types::OFFER_AVAILABLE),
            Some(("True", "OfferPresent"))
        );
        assert_eq!(s.applied_version.as_deref(), Some("1.0.0"));
        assert_eq!(s.customer_tenant.as_deref(), Some("fabrikam"));
        assert_eq!(s.managed_by_tenant.as_deref(), Some("acme"));
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        let per_ns: Vec<_> = s
            .namespaces
            .iter()
            .map(|n| (n.name.as_str(), n.ready, n.bindings))
            .collect();
        assert_eq!(per_ns, vec![("cust", true, 2), ("cust-b", true, 2)]);
    }

    #[test]
    fn a_missing_or_terminating_namespace_keeps_it_reconciling() {
        let d = delegation();
        let decision = accepted(&[
            ("cust", NamespaceState::Grantable),
            ("cust-b", NamespaceState::Missing),
        ]);
        let s = status_of(&d, &decision, &Applied::default(), 10);
        assert_eq!(condition(&s, types::ACCEPTED), Some(("True", "Valid")));
        assert_eq!(condition(&s, types::READY), Some(("False", "Progressing")));
        assert_eq!(
            condition(&s, types::RECONCILING),
            Some(("True", "Progressing"))
        );
        assert_eq!(condition(&s, types::STALLED), None);
        let missing = &s.namespaces[1];
        assert_eq!((missing.ready, missing.bindings), (false, 0));
        assert!(
            missing
                .message
                .as_deref()
                .is_some_and(|m| m.contains("does not exist"))
        );
        let ready = s
            .conditions
            .iter()
            .find(|c| c.type_ == types::READY)
            .expect("Ready");
        assert!(ready.message.contains("cust-b"), "{}", ready.message);

        let dying = accepted(&[
            ("cust", NamespaceState::Terminating),
            ("cust-b", NamespaceState::Grantable),
        ]);
        let s = status_of(&d, &dying, &Applied::default(), 10);
        assert_eq!(
            s.namespaces[0].message.as_deref(),
            Some("namespace is being deleted")
        );
        assert_eq!(condition(&s, types::READY), Some(("False", "Progressing")));
    }

    #[test]
    fn a_failed_write_reports_apply_failed_in_that_namespace_only() {
        let d = delegation();
        let applied = Applied {
            errors: [("cust-b".to_string(), "forbidden".to_string())].into(),
            missing_bindings: [("cust-b".to_string(), 1)].into(),
            ..Applied::default()
        };
        let s = status_of(&d, &both_grantable(), &applied, 10);
        assert_eq!(condition(&s, types::READY), Some(("False", "ApplyFailed")));
        assert_eq!(
            condition(&s, types::RECONCILING),
            Some(("True", "ApplyFailed"))
        );
        assert!(s.namespaces[0].ready);
        assert!(!s.namespaces[1].ready);
        assert_eq!(
            s.namespaces[1].bindings, 1,
            "of two grants one failed: status counts the one in place"
        );
        assert_eq!(
            s.namespaces[1].message.as_deref(),
            Some("applying grants failed: forbidden")
        );
    }

    #[test]
    fn a_refusal_is_stalled_and_grants_nothing() {
        let d = delegation();
        let decision = Decision {
            outcome: Err(Refused {
                reason: Reason::NotInAudience,
                message: "spec.plan: not for you".into(),
            }),
            ..both_grantable()
        };
        let s = status_of(&d, &decision, &Applied::default(), 10);
        for type_ in [types::ACCEPTED, types::READY] {
            assert_eq!(
                condition(&s, type_),
                Some(("False", "NotInAudience")),
                "{type_}"
            );
        }
        assert_eq!(
            condition(&s, types::STALLED),
            Some(("True", "NotInAudience"))
        );
        assert_eq!(condition(&s, types::RECONCILING), None);
        assert!(s.namespaces.is_empty());
        assert_eq!(s.applied_version, None);
        assert!(build::for_decision(&d, &decision).role_bindings.is_empty());
    }

    #[test]
    fn a_newer_published_version_is_an_available_update() {
        let d = delegation();
        let decision = Decision {
            latest_version: Some("1.10.0".into()),
            latest_authorizations: vec![
                auth(PrincipalKind::User, "bob", "reader"),
                auth(PrincipalKind::Group, "ops", "operator"),
                auth(PrincipalKind::Group, "ops", "editor"),
            ],
            ..both_grantable()
        };
        let s = status_of(&d, &decision, &Applied::default(), 10);
        assert_eq!(
            condition(&s, types::UPDATE_AVAILABLE),
            Some(("True", "NewerVersionPublished"))
        );
        let update = s
            .conditions
            .iter()
            .find(|c| c.type_ == types::UPDATE_AVAILABLE)
            .expect("condition");
        assert!(
            update
                .message
                .contains("adds 1 and removes 1 authorization(s)")
                && update.message.contains("set spec.planVersion to 1.10.0"),
            "{}",
            update.message
        );
        assert_eq!(
            s.pending_update,
            Some(PendingUpdate {
                version: "1.10.0".into(),
                added: vec![auth(PrincipalKind::Group, "ops", "editor")],
                removed: vec![auth(PrincipalKind::User, "alice", "reader")],
                ..PendingUpdate::default()
            }),
            "the customer sees what accepting 1.10.0 would change"
        );
        assert_eq!(
            condition(&s, types::READY),
            Some(("True", "Granted")),
            "an update never revokes"
        );
    }

    #[test]
    fn a_pending_update_lists_only_what_changes_and_only_for_newer_versions() {
        let reader = auth(PrincipalKind::Group, "ops", "reader");
        let alice = auth(PrincipalKind::User, "alice", "reader");
        let editor = auth(PrincipalKind::Group, "ops", "editor");
        let in_force = [reader.clone(), alice.clone()];
        assert_eq!(
            pending_update(("1.0.0", &in_force), &[], ("1.0.0", &in_force), &[]),
            None,
            "the same version is no update"
        );
        assert_eq!(
            pending_update(
                ("2.0.0", &in_force),
                &[],
                ("1.9.0", std::slice::from_ref(&editor)),
                &[]
            ),
            None,
            "an older latest version is no update"
        );
        assert_eq!(
            pending_update(
                ("1.0.0", &in_force),
                &[],
                ("1.1.0", &[alice.clone(), reader.clone()]),
                &[]
            ),
            Some(PendingUpdate {
                version: "1.1.0".into(),
                ..PendingUpdate::default()
            }),
            "a reordered plan changes nothing"
        );
        let update = pending_update(
            ("1.0.0", &in_force),
            &[],
            ("2.0.0", &[editor.clone(), editor.clone()]),
            &[],
        )
        .expect("newer");
        assert_eq!(update.added, vec![editor]);
        let mut removed = vec![reader, alice];
        removed.sort();
        assert_eq!(update.removed, removed);
    }

    #[test]
    fn a_pending_update_lists_changed_eligible_terms() {
        let reader = [auth(PrincipalKind::Group, "ops", "reader")];
        let oncall = crate::fixtures::person(crate::api::PersonKind::Group, "oncall");
        let short = crate::fixtures::eligible(oncall.clone(), "editor", "1h", vec![]);
        let mut long = short.clone();
        long.max_duration = "4h".into();
        let admin = crate::fixtures::eligible(oncall, "admin", "1h", vec![]);
        let update = pending_update(
            ("1.0.0", &reader),
            &[short.clone(), admin.clone()],
            ("1.1.0", &reader),
            &[long.clone(), admin],
        )
        .expect("newer");
        assert!(update.added.is_empty() && update.removed.is_empty());
        assert_eq!(update.eligible_added, vec![long], "the longer term is new");
        assert_eq!(update.eligible_removed, vec![short], "the shorter one goes");
    }

    #[test]
    fn a_deleted_offer_keeps_accepted_grants_and_says_so() {
        let d = delegation();
        let decision = Decision {
            offer_present: false,
            latest_version: None,
            ..both_grantable()
        };
        let s = status_of(&d, &decision, &Applied::default(), 10);
        assert_eq!(
            condition(&s, types::OFFER_AVAILABLE),
            Some(("False", "OfferDeleted"))
        );
        assert_eq!(condition(&s, types::READY), Some(("True", "Granted")));
        let offer = s
            .conditions
            .iter()
            .find(|c| c.type_ == types::OFFER_AVAILABLE)
            .expect("condition");
        assert!(offer.message.contains("stay in force"), "{}", offer.message);

        let never = Decision {
            offer_present: false,
            latest_version: None,
            outcome: Err(Refused {
                reason: Reason::OfferNotFound,
                message: "spec.offerRef".into(),
            }),
            ..both_grantable()
        };
        let s = status_of(&d, &never, &Applied::default(), 10);
        let offer = s
            .conditions
            .iter()
            .find(|c| c.type_ == types::OFFER_AVAILABLE)
            .expect("condition");
        assert_eq!(offer.message, "offer provider/offer does not exist");
    }

    #[test]
    fn a_refusal_clears_what_the_accepted_status_said() {
        let mut d = delegation();
        let granted = status_of(&d, &both_grantable(), &Applied::default(), 10);
        d.status = Some(granted.clone());
        let refusal = Decision {
            outcome: Err(Refused {
                reason: Reason::RoleNotDelegable,
                message: "role".into(),
            }),
            ..both_grantable()
        };
        let refused = status_of(&d, &refusal, &Applied::default(), 20);
        let patch = merge_patch(Some(&granted), &refused);
        assert_eq!(patch["appliedVersion"], serde_json::Value::Null);
        assert_eq!(
            patch["acceptedDigest"],
            granted.accepted_digest.clone().expect("digest"),
            "what was consented to stays recorded while refused"
        );
        assert_eq!(patch["acceptedVersion"], "1.0.0");
        assert_eq!(patch["namespaces"], serde_json::json!([]));
        assert_eq!(merge_patch(None, &refused).get("appliedVersion"), None);
        // A new version forgets the old consent's digest.
        d.spec.plan_version = "2.0.0".into();
        let moved = status_of(&d, &refusal, &Applied::default(), 30);
        assert_eq!(moved.accepted_digest, None);
    }

    #[test]
    fn nothing_changed_means_the_same_status_and_no_write() {
        let mut d = delegation();
        let first = status_of(&d, &both_grantable(), &Applied::default(), 10);
        d.status = Some(first.clone());
        let again = status_of(&d, &both_grantable(), &Applied::default(), 20);
        assert!(
            same(&d.status, &again),
            "an unchanged world yields an identical status"
        );
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.last_transition_time == at(10)),
            "lastTransitionTime stays when nothing changes"
        );
        // A transition moves only the condition that changed.
        let failed = Applied {
            errors: [("cust".to_string(), "boom".to_string())].into(),
            ..Applied::default()
        };
        let after = status_of(&d, &both_grantable(), &failed, 30);
        assert!(!same(&d.status, &after));
        let time_of = |type_: &str| {
            after
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| c.last_transition_time.clone())
        };
        assert_eq!(time_of(types::READY), Some(at(30)));
        assert_eq!(time_of(types::ACCEPTED), Some(at(10)));
        // Condition order does not matter for equality.
        let mut reordered = first.clone();
        reordered.conditions.reverse();
        assert!(same(&Some(reordered), &first));
        assert!(!same(&None, &first));
    }
}
