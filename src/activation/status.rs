//! An activation's status and Events: one place turns a [`Verdict`] into
//! conditions (pure), and each change of phase or approvals into the Events
//! both sides audit — on the Activation and on its Delegation, naming the
//! requester, approvers, role, namespaces and duration.

use super::decide::Verdict;
use crate::api::{Activation, ActivationPhase, ActivationStatus, Delegation};
use crate::delegation::events::occurrence;
use crate::delegation::status::merge_patch;
use crate::domain::conditions::{Conditions, types};
use crate::runtime::context::Context;
use crate::runtime::errors::Error;
use crate::runtime::events::{EventType, Occurrence};
use crate::runtime::keys;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;

/// The status `verdict` stands for (pure).
pub fn compute(activation: &Activation, verdict: &Verdict, now: Time) -> ActivationStatus {
    let previous = activation
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = activation.metadata.generation;
    let mut conditions = Conditions::new(previous, generation, now);
    let active = verdict.phase == ActivationPhase::Active;
    conditions.set(
        types::READY,
        active,
        verdict.reason,
        verdict.message.clone(),
    );
    match verdict.phase {
        ActivationPhase::Pending => conditions.set(
            types::RECONCILING,
            true,
            verdict.reason,
            verdict.message.clone(),
        ),
        ActivationPhase::Denied | ActivationPhase::Revoked | ActivationPhase::Expired => conditions
            .set(
                types::STALLED,
                true,
                verdict.reason,
                verdict.message.clone(),
            ),
        ActivationPhase::Active => {}
    }
    ActivationStatus {
        observed_generation: generation,
        phase: Some(verdict.phase),
        conditions: conditions.finish(),
        namespaces: verdict.namespaces.clone(),
        approved_by: verdict.approved_by.clone(),
        accepted_digest: verdict.accepted_digest.clone(),
        activated_at: verdict.activated_at.map(Time),
        expires_at: verdict.expires_at.map(Time),
    }
}

/// The Events of a change from `before` to `after` (pure): `Requested`
/// when first seen, `Approved` for each new approver, then `Activated`,
/// `Expired`, `Denied` or `Revoked` as the phase changes. An activation
/// granted at first sight gets one `Activated` that says what was requested
/// (each Event is a write, and a burst of activations competes with its own
/// grants for the write limiter).
pub fn transitions(
    activation: &Activation,
    before: Option<&ActivationStatus>,
    after: &ActivationStatus,
) -> Vec<Occurrence> {
    let spec = &activation.spec;
    let requester = spec.requester.as_deref().unwrap_or("unknown");
    let role = &spec.role_ref;
    let namespaces = after.namespaces.join(", ");
    let message = after
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    let request = format!(
        "{requester:?} requested {role:?} for {} through Delegation {:?} as {:?} {:?}: {}",
        spec.duration,
        spec.delegation,
        spec.principal.kind,
        spec.principal.name,
        spec.justification
            .as_deref()
            .unwrap_or("no justification given")
    );
    let first_seen = before.and_then(|b| b.phase).is_none();
    // Granted at first sight (no approval needed): one Event says both.
    if first_seen && after.phase == Some(ActivationPhase::Active) {
        let until = after
            .expires_at
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        out.push(occurrence(
            EventType::Normal,
            "Activated",
            "Activate",
            format!("{request}; granted in {namespaces} until {until}"),
        ));
        return out;
    }
    if first_seen {
        out.push(occurrence(
            EventType::Normal,
            "Requested",
            "Activate",
            request,
        ));
    }
    let approved_before = before.map(|b| b.approved_by.as_slice()).unwrap_or_default();
    for approver in after
        .approved_by
        .iter()
        .filter(|a| !approved_before.contains(a))
    {
        out.push(occurrence(
            EventType::Normal,
            "Approved",
            "Approve",
            format!("{approver:?} approved {requester:?}'s request for {role:?}"),
        ));
    }
    let phase_before = before.and_then(|b| b.phase);
    if phase_before != after.phase {
        let (type_, reason) = match after.phase {
            Some(ActivationPhase::Active) => (EventType::Normal, "Activated"),
            Some(ActivationPhase::Expired) => (EventType::Normal, "Expired"),
            Some(ActivationPhase::Denied) => (EventType::Warning, "Denied"),
            Some(ActivationPhase::Revoked) => (EventType::Warning, "Revoked"),
            Some(ActivationPhase::Pending) | None => return out,
        };
        let detail = match after.phase {
            Some(ActivationPhase::Active) => format!(
                "granted {role:?} to {requester:?} in {namespaces} for {}, until {}",
                spec.duration,
                after
                    .expires_at
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default()
            ),
            _ => message,
        };
        out.push(occurrence(type_, reason, "Activate", detail));
    }
    out
}

/// Writes the status `verdict` stands for when it differs from the
/// activation's, and publishes the Events of the change on the Activation
/// and its Delegation.
pub async fn write(ctx: &Context, activation: &Activation, verdict: &Verdict) -> Result<(), Error> {
    let before = activation.status.as_ref();
    // An ended activation's status is its record: never rewritten.
    if before
        .and_then(|s| s.phase)
        .is_some_and(ActivationPhase::is_final)
    {
        return Ok(());
    }
    let next = compute(activation, verdict, crate::delegation::now());
    if same(before, &next) {
        return Ok(());
    }
    let namespace = activation.namespace().unwrap_or_default();
    let api: kube::Api<Activation> = ctx.writer.api(&namespace);
    let written = ctx
        .writer
        .limited(api.patch_status(
            &activation.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": merge_patch(before, &next) })),
        ))
        .await?;
    if written.resource_version() != activation.resource_version() {
        ctx.writer.own_writes.record(
            &keys::object(activation),
            &activation
                .resource_version()
                .into_iter()
                .collect::<Vec<_>>(),
        );
    }
    let delegation: Option<std::sync::Arc<Delegation>> = ctx
        .caches
        .delegations
        .get(&ObjectRef::new(&activation.spec.delegation).within(&namespace));
    for o in transitions(activation, before, &next) {
        if let Some(delegation) = &delegation {
            let about = Occurrence {
                note: format!("Activation {:?}: {}", activation.name_any(), o.note),
                ..o.clone()
            };
            ctx.writer.publish(delegation.as_ref(), about).await;
        }
        ctx.writer.publish(activation, o).await;
    }
    Ok(())
}

/// True when `next` says what `current` says (conditions compared without
/// their timestamps' precision issues: whole conditions, as written).
fn same(current: Option<&ActivationStatus>, next: &ActivationStatus) -> bool {
    current.is_some_and(|c| {
        c.phase == next.phase
            && c.namespaces == next.namespaces
            && c.approved_by == next.approved_by
            && c.accepted_digest == next.accepted_digest
            && c.activated_at == next.activated_at
            && c.expires_at == next.expires_at
            && c.observed_generation == next.observed_generation
            && c.conditions.len() == next.conditions.len()
            && c.conditions.iter().zip(&next.conditions).all(|(a, b)| {
                a.type_ == b.type_
                    && a.status == b.status
                    && a.reason == b.reason
                    && a.message == b.message
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PersonKind;
    use crate::domain::conditions::Reason;
    use k8s_openapi::jiff::Timestamp;

    fn activation() -> Activation {
        let mut a = crate::fixtures::activation(
            "c",
            "a",
            "d",
            crate::fixtures::person(PersonKind::Group, "oncall"),
            "operator",
            "30m",
        );
        a.spec.justification = Some("incident 42".into());
        a.spec.requester = Some("alice".into());
        a.metadata.generation = Some(1);
        a
    }

    fn verdict(phase: ActivationPhase, reason: Reason, approved_by: &[&str]) -> Verdict {
        Verdict {
            phase,
            reason,
            message: format!("{reason:?}"),
            approved_by: approved_by.iter().map(|s| s.to_string()).collect(),
            accepted_digest: Some("sha256:x".into()),
            activated_at: None,
            expires_at: None,
            namespaces: vec!["c".into(), "c2".into()],
        }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).expect("time"))
    }

    #[test]
    fn each_step_of_the_life_is_one_event_naming_who_and_what() {
        let mut a = activation();
        let pending = compute(
            &a,
            &verdict(ActivationPhase::Pending, Reason::AwaitingApproval, &[]),
            at(0),
        );
        let events = transitions(&a, None, &pending);
        let reasons: Vec<&str> = events.iter().map(|o| o.reason.as_str()).collect();
        assert_eq!(reasons, ["Requested"]);
        assert!(
            events[0].note.contains("alice")
                && events[0].note.contains("operator")
                && events[0].note.contains("30m")
                && events[0].note.contains("incident 42"),
            "{}",
            events[0].note
        );
        assert!(
            pending
                .conditions
                .iter()
                .any(|c| c.type_ == types::RECONCILING && c.status == "True")
        );
        a.status = Some(pending.clone());
        let mut active_verdict = verdict(ActivationPhase::Active, Reason::Activated, &["bob"]);
        active_verdict.expires_at = Some(Timestamp::from_second(1_800_001_800).expect("time"));
        let active = compute(&a, &active_verdict, at(1));
        let events = transitions(&a, Some(&pending), &active);
        let reasons: Vec<&str> = events.iter().map(|o| o.reason.as_str()).collect();
        assert_eq!(reasons, ["Approved", "Activated"]);
        assert!(
            events[1].note.contains("c, c2") && events[1].note.contains("alice"),
            "{}",
            events[1].note
        );
        assert!(
            active
                .conditions
                .iter()
                .any(|c| c.type_ == types::READY && c.status == "True")
        );
        a.status = Some(active.clone());
        let expired = compute(
            &a,
            &verdict(ActivationPhase::Expired, Reason::Expired, &["bob"]),
            at(2),
        );
        let reasons: Vec<String> = transitions(&a, Some(&active), &expired)
            .into_iter()
            .map(|o| o.reason)
            .collect();
        assert_eq!(reasons, ["Expired"]);
        assert!(
            expired
                .conditions
                .iter()
                .any(|c| c.type_ == types::STALLED && c.status == "True")
        );
        let fresh = activation();
        let at_once = compute(
            &fresh,
            &verdict(ActivationPhase::Active, Reason::Activated, &[]),
            at(0),
        );
        let events = transitions(&fresh, None, &at_once);
        assert_eq!(events.len(), 1, "one Event for a grant at first sight");
        assert_eq!(events[0].reason, "Activated");
        assert!(
            events[0].note.contains("incident 42") && events[0].note.contains("requested"),
            "{}",
            events[0].note
        );
        assert!(same(
            Some(&expired),
            &compute(
                &a,
                &verdict(ActivationPhase::Expired, Reason::Expired, &["bob"]),
                at(9)
            )
        ));
    }
}
