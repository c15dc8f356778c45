//! Where an activation stands (pure): the one function both controllers ask.
//!
//! The Activation controller writes its answer to the status; the Delegation
//! controller asks again before it grants, from its own reading of the
//! consent, and grants only an answer of `Active` whose start the status
//! already records. So access exists only while the accepted plan version
//! still makes the requester eligible, every approval still counts, and the
//! clock is before `activatedAt + duration` — never on the word of a status
//! alone, and never longer than the duration requested.

use crate::api::{
    Activation, ActivationPhase, ActivationTerms, ApprovalDecision, EligibleAuthorization, Person,
    PersonKind,
};
use crate::domain::conditions::Reason;
use crate::domain::consent::AcceptedPlan;
use crate::domain::duration;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;

/// What a Delegation whose consent holds offers its activations.
#[derive(Clone, Copy, Debug)]
pub struct Grounds<'a> {
    /// The accepted plan version (with its eligible authorizations).
    pub plan: &'a AcceptedPlan,
    /// The digest of that consent (plan content and the Delegation's
    /// terms); approvals are valid under one digest only.
    pub digest: &'a str,
    /// The namespaces the Delegation grants in now.
    pub namespaces: &'a [String],
    /// The customer's terms, if any.
    pub terms: Option<&'a ActivationTerms>,
}

/// The answer for one activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Where it stands.
    pub phase: ActivationPhase,
    /// Why, for the `Ready` condition.
    pub reason: Reason,
    /// What it means and, for a refusal, the field and the fix.
    pub message: String,
    /// Users whose approvals counted.
    pub approved_by: Vec<String>,
    /// The consent digest it is bound to.
    pub accepted_digest: Option<String>,
    /// When the access began.
    pub activated_at: Option<Timestamp>,
    /// When it ends.
    pub expires_at: Option<Timestamp>,
    /// Where the role is (or was) granted.
    pub namespaces: Vec<String>,
}

impl Verdict {
    /// The requester and role to grant, until when, when this verdict
    /// grants anything at `now`.
    pub fn grants_at(&self, now: Timestamp) -> Option<Timestamp> {
        (self.phase == ActivationPhase::Active && self.expires_at.is_some_and(|e| now < e))
            .then_some(self.expires_at)
            .flatten()
    }
}

/// Decides where `activation` stands at `now`, given what its Delegation
/// offers (`Err` says why it offers nothing).
pub fn decide(
    activation: &Activation,
    grounds: Result<Grounds<'_>, String>,
    now: Timestamp,
) -> Verdict {
    let status = activation.status.clone().unwrap_or_default();
    let previous = Verdict {
        phase: status.phase.unwrap_or(ActivationPhase::Pending),
        reason: Reason::AwaitingApproval,
        message: String::new(),
        approved_by: status.approved_by.clone(),
        accepted_digest: status.accepted_digest.clone(),
        activated_at: status.activated_at.as_ref().map(|t| t.0),
        expires_at: status.expires_at.as_ref().map(|t| t.0),
        namespaces: status.namespaces.clone(),
    };
    // An ended activation stays ended (its status, the record of how it
    // ended, is not rewritten; see `status::write`).
    if previous.phase.is_final() {
        return previous;
    }
    let was_active = previous.phase == ActivationPhase::Active;
    // A refusal: Denied before anything was granted, Revoked after.
    let end = |reason: Reason, message: String| Verdict {
        phase: if was_active {
            ActivationPhase::Revoked
        } else {
            ActivationPhase::Denied
        },
        reason,
        message,
        ..previous.clone()
    };
    let grounds = match grounds {
        Ok(grounds) => grounds,
        Err(why) => return end(Reason::DelegationNotAccepted, why),
    };
    if let Some(digest) = &previous.accepted_digest
        && digest != grounds.digest
    {
        return end(
            Reason::ConsentChanged,
            format!(
                "Delegation {:?} now accepts other terms (plan version {}); approvals and grants do not carry over: create a new Activation",
                activation.spec.delegation, grounds.plan.version
            ),
        );
    }
    let eligible = match check_request(activation, &grounds) {
        Ok(eligible) => eligible,
        Err((reason, message)) => return end(reason, message),
    };
    let requester = activation.spec.requester.clone().unwrap_or_default();
    let approvals = tally(activation, eligible, grounds.terms, &requester);
    let bound = Verdict {
        accepted_digest: Some(grounds.digest.to_string()),
        approved_by: approvals.approved_by.clone(),
        namespaces: if was_active {
            previous.namespaces.clone()
        } else {
            grounds.namespaces.to_vec()
        },
        ..previous.clone()
    };
    if let Some(denier) = approvals.denied_by {
        return Verdict {
            phase: if was_active {
                ActivationPhase::Revoked
            } else {
                ActivationPhase::Denied
            },
            reason: Reason::DeniedByApprover,
            message: format!("{denier:?} denied this activation; a denial is final"),
            ..bound
        };
    }
    if !approvals.missing.is_empty() {
        return Verdict {
            phase: ActivationPhase::Pending,
            reason: Reason::AwaitingApproval,
            message: format!(
                "nothing is granted until {} approves; an approver adds an entry to spec.approvals",
                approvals.missing.join(" and ")
            ),
            ..bound
        };
    }
    let Some(length) =
        duration::parse(&activation.spec.duration).and_then(|d| SignedDuration::try_from(d).ok())
    else {
        return end(
            Reason::DurationTooLong,
            format!(
                "spec.duration {:?} is not a duration such as 30m or 2h",
                activation.spec.duration
            ),
        );
    };
    // Whole seconds, as the API server stores the time: the deadline the
    // status shows is the one every later decision computes.
    let activated_at = previous
        .activated_at
        .unwrap_or_else(|| Timestamp::from_second(now.as_second()).unwrap_or(now));
    let Ok(expires_at) = activated_at.checked_add(length) else {
        return end(
            Reason::DurationTooLong,
            "spec.duration overflows the clock".into(),
        );
    };
    let namespaces = bound.namespaces.join(", ");
    if now >= expires_at {
        return Verdict {
            phase: ActivationPhase::Expired,
            reason: Reason::Expired,
            message: format!(
                "{requester:?} held {:?} in {namespaces} until {expires_at}; the grant is gone",
                activation.spec.role_ref
            ),
            activated_at: Some(activated_at),
            expires_at: Some(expires_at),
            ..bound
        };
    }
    Verdict {
        phase: ActivationPhase::Active,
        reason: Reason::Activated,
        message: format!(
            "{requester:?} holds {:?} in {namespaces} until {expires_at}",
            activation.spec.role_ref
        ),
        activated_at: Some(activated_at),
        expires_at: Some(expires_at),
        ..bound
    }
}

/// The eligible authorization the request names, when the request keeps
/// its terms; else the reason and a message naming the field and the fix.
fn check_request<'g>(
    activation: &Activation,
    grounds: &Grounds<'g>,
) -> Result<&'g EligibleAuthorization, (Reason, String)> {
    let spec = &activation.spec;
    let Some(eligible) = grounds
        .plan
        .eligible_authorizations
        .iter()
        .find(|e| e.principal == spec.principal && e.role_ref == spec.role_ref)
    else {
        let offered: Vec<String> = grounds
            .plan
            .eligible_authorizations
            .iter()
            .map(|e| {
                format!(
                    "{} {} → {}",
                    kind(e.principal.kind),
                    e.principal.name,
                    e.role_ref
                )
            })
            .collect();
        return Err((
            Reason::NotEligible,
            format!(
                "spec.principal and spec.roleRef: version {} of plan {:?} accepted by Delegation {:?} has no eligible authorization for {} {:?} with role {:?}; it offers: {}",
                grounds.plan.version,
                grounds.plan.plan,
                spec.delegation,
                kind(spec.principal.kind),
                spec.principal.name,
                spec.role_ref,
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join("; ")
                }
            ),
        ));
    };
    let requester = spec.requester.as_deref().unwrap_or_default();
    if requester.is_empty()
        || (spec.principal.kind == PersonKind::User && spec.principal.name != requester)
    {
        return Err((
            Reason::RequesterUnknown,
            "spec.requester is not the eligible user named in spec.principal (it is set at admission from the authenticated user; the msp-operator admission policies must be installed)".into(),
        ));
    }
    let limit = max_duration(eligible, grounds.terms);
    let requested = duration::parse(&spec.duration);
    if requested.is_none_or(|r| limit.is_none_or(|l| r > l)) {
        return Err((
            Reason::DurationTooLong,
            format!(
                "spec.duration {:?} exceeds the longest this eligible authorization allows, {}; create an Activation with a shorter spec.duration",
                spec.duration,
                limit
                    .map(duration::format)
                    .unwrap_or_else(|| "unknown".into())
            ),
        ));
    }
    if eligible.require_justification
        && spec
            .justification
            .as_deref()
            .is_none_or(|j| j.trim().is_empty())
    {
        return Err((
            Reason::JustificationRequired,
            "spec.justification is required by this eligible authorization: create an Activation that says why the access is needed".into(),
        ));
    }
    Ok(eligible)
}

/// The shorter of the plan's and the customer's maximum duration.
pub fn max_duration(
    eligible: &EligibleAuthorization,
    terms: Option<&ActivationTerms>,
) -> Option<std::time::Duration> {
    let plan = duration::parse(&eligible.max_duration)?;
    match terms.and_then(|t| t.max_duration.as_deref()) {
        Some(customer) => duration::parse(customer).map(|c| c.min(plan)),
        None => Some(plan),
    }
}

struct Tally {
    approved_by: Vec<String>,
    denied_by: Option<String>,
    /// Who still has to approve, in words.
    missing: Vec<String>,
}

/// Counts the approvals that are valid: given as an approver principal of
/// the eligible authorization (provider) or of the customer's terms, by a
/// user other than the requester. With both sides required, two different
/// users must approve. A denial by a valid approver of either side ends it.
fn tally(
    activation: &Activation,
    eligible: &EligibleAuthorization,
    terms: Option<&ActivationTerms>,
    requester: &str,
) -> Tally {
    let provider: &[Person] = eligible.approvers();
    let customer: &[Person] = terms
        .and_then(|t| t.approvers.as_deref())
        .unwrap_or_default();
    let mut provider_users = BTreeSet::new();
    let mut customer_users = BTreeSet::new();
    let mut denied_by = None;
    for approval in activation.spec.approvals.iter().flatten() {
        if approval.approver == requester || approval.approver.is_empty() {
            continue;
        }
        let for_provider = provider.contains(&approval.principal);
        let for_customer = customer.contains(&approval.principal);
        if !for_provider && !for_customer {
            continue;
        }
        if approval.decision == ApprovalDecision::Deny {
            denied_by.get_or_insert_with(|| approval.approver.clone());
            continue;
        }
        if for_provider {
            provider_users.insert(approval.approver.clone());
        }
        if for_customer {
            customer_users.insert(approval.approver.clone());
        }
    }
    let mut missing = Vec::new();
    if !provider.is_empty() && provider_users.is_empty() {
        missing.push(format!("an approver of the provider ({})", names(provider)));
    }
    if !customer.is_empty() && customer_users.is_empty() {
        missing.push(format!("an approver of the customer ({})", names(customer)));
    }
    // Two-party approval: one user cannot stand for both sides.
    if missing.is_empty()
        && !provider.is_empty()
        && !customer.is_empty()
        && !provider_users
            .iter()
            .any(|p| customer_users.iter().any(|c| c != p))
    {
        missing.push(format!(
            "a second person (both sides approved only as {})",
            provider_users
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let approved_by: BTreeSet<String> = provider_users.into_iter().chain(customer_users).collect();
    Tally {
        approved_by: approved_by.into_iter().collect(),
        denied_by,
        missing,
    }
}

fn kind(kind: PersonKind) -> &'static str {
    match kind {
        PersonKind::User => "User",
        PersonKind::Group => "Group",
    }
}

fn names(people: &[Person]) -> String {
    people
        .iter()
        .map(|p| format!("{} {}", kind(p.kind), p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ActivationStatus, Approval};
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::fixtures::person;

    fn eligible(approvers: Vec<Person>, justification: bool) -> EligibleAuthorization {
        EligibleAuthorization {
            require_justification: justification,
            ..fixtures::eligible(
                person(PersonKind::Group, "oncall"),
                "operator",
                "1h",
                approvers,
            )
        }
    }

    fn plan(eligible: Vec<EligibleAuthorization>) -> AcceptedPlan {
        let mut plan = fixtures::accepted(("p", "o"), "acme", "std", "1.0.0", Vec::new());
        plan.eligible_authorizations = eligible;
        plan
    }

    fn activation(duration: &str, approvals: Vec<Approval>) -> Activation {
        let mut a = fixtures::activation(
            "c",
            "a",
            "d",
            person(PersonKind::Group, "oncall"),
            "operator",
            duration,
        );
        a.spec.justification = Some("incident 42".into());
        a.spec.requester = Some("alice".into());
        a.spec.approvals = (!approvals.is_empty()).then_some(approvals);
        a
    }

    fn approval(user: &str, as_: Person, decision: ApprovalDecision) -> Approval {
        Approval {
            approver: user.into(),
            principal: as_,
            decision,
        }
    }

    const NS: &[String] = &[];

    fn grounds<'a>(plan: &'a AcceptedPlan, terms: Option<&'a ActivationTerms>) -> Grounds<'a> {
        Grounds {
            plan,
            digest: "sha256:one",
            namespaces: NS,
            terms,
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    /// `a` after its status was written from `v`.
    fn recorded(mut a: Activation, v: &Verdict) -> Activation {
        a.status = Some(ActivationStatus {
            phase: Some(v.phase),
            approved_by: v.approved_by.clone(),
            accepted_digest: v.accepted_digest.clone(),
            activated_at: v.activated_at.map(Time),
            expires_at: v.expires_at.map(Time),
            namespaces: v.namespaces.clone(),
            ..Default::default()
        });
        a
    }

    #[test]
    fn without_approvers_it_is_active_for_its_duration_then_expired() {
        let p = plan(vec![eligible(vec![], false)]);
        let a = activation("30m", vec![]);
        let v = decide(&a, Ok(grounds(&p, None)), t(0));
        assert_eq!(v.phase, ActivationPhase::Active, "{v:?}");
        assert_eq!(v.expires_at, Some(t(1800)));
        assert_eq!(v.grants_at(t(0)), Some(t(1800)));
        let a = recorded(a, &v);
        // Restarts, leader changes and late reconciles never extend it.
        let later = decide(&a, Ok(grounds(&p, None)), t(1799));
        assert_eq!(
            (later.phase, later.expires_at),
            (ActivationPhase::Active, Some(t(1800)))
        );
        let ended = decide(&a, Ok(grounds(&p, None)), t(1800));
        assert_eq!(ended.phase, ActivationPhase::Expired);
        assert_eq!(ended.grants_at(t(1800)), None);
        let a = recorded(a, &ended);
        assert_eq!(
            decide(&a, Ok(grounds(&p, None)), t(1)).phase,
            ActivationPhase::Expired,
            "final"
        );
    }

    #[test]
    fn a_status_never_lengthens_the_grant() {
        let p = plan(vec![eligible(vec![], false)]);
        let mut a = activation("30m", vec![]);
        a.status = Some(ActivationStatus {
            phase: Some(ActivationPhase::Active),
            accepted_digest: Some("sha256:one".into()),
            activated_at: Some(Time(t(0))),
            expires_at: Some(Time(t(99_999))),
            ..Default::default()
        });
        let v = decide(&a, Ok(grounds(&p, None)), t(10));
        assert_eq!(
            v.expires_at,
            Some(t(1800)),
            "activatedAt + duration, not the status's word"
        );
    }

    #[test]
    fn approvals_must_come_from_an_approver_other_than_the_requester() {
        let approvers = person(PersonKind::Group, "leads");
        let p = plan(vec![eligible(vec![approvers.clone()], false)]);
        let pending = decide(&activation("30m", vec![]), Ok(grounds(&p, None)), t(0));
        assert_eq!(
            (pending.phase, pending.reason),
            (ActivationPhase::Pending, Reason::AwaitingApproval)
        );
        assert_eq!(pending.grants_at(t(0)), None);
        let own = activation(
            "30m",
            vec![approval(
                "alice",
                approvers.clone(),
                ApprovalDecision::Approve,
            )],
        );
        assert_eq!(
            decide(&own, Ok(grounds(&p, None)), t(0)).phase,
            ActivationPhase::Pending,
            "self-approval"
        );
        let stranger = activation(
            "30m",
            vec![approval(
                "bob",
                person(PersonKind::Group, "other"),
                ApprovalDecision::Approve,
            )],
        );
        assert_eq!(
            decide(&stranger, Ok(grounds(&p, None)), t(0)).phase,
            ActivationPhase::Pending
        );
        let ok = activation(
            "30m",
            vec![approval(
                "bob",
                approvers.clone(),
                ApprovalDecision::Approve,
            )],
        );
        let v = decide(&ok, Ok(grounds(&p, None)), t(5));
        assert_eq!(
            (v.phase, v.approved_by.clone()),
            (ActivationPhase::Active, vec!["bob".to_string()])
        );
        assert_eq!(v.activated_at, Some(t(5)), "time counts from the approval");
    }

    #[test]
    fn a_denial_is_final() {
        let approvers = person(PersonKind::Group, "leads");
        let p = plan(vec![eligible(vec![approvers.clone()], false)]);
        let a = activation(
            "30m",
            vec![
                approval("bob", approvers.clone(), ApprovalDecision::Approve),
                approval("carol", approvers.clone(), ApprovalDecision::Deny),
            ],
        );
        let v = decide(&a, Ok(grounds(&p, None)), t(0));
        assert_eq!(
            (v.phase, v.reason),
            (ActivationPhase::Denied, Reason::DeniedByApprover)
        );
        let a = recorded(a, &v);
        assert_eq!(
            decide(&a, Ok(grounds(&p, None)), t(1)).phase,
            ActivationPhase::Denied
        );
    }

    #[test]
    fn two_party_approval_needs_two_people() {
        let provider = person(PersonKind::Group, "leads");
        let customer = person(PersonKind::User, "cathy");
        let both = person(PersonKind::User, "bob");
        let p = plan(vec![eligible(vec![provider.clone(), both.clone()], false)]);
        let terms = ActivationTerms {
            max_duration: None,
            approvers: Some(vec![customer.clone(), both.clone()]),
        };
        let one_side = activation(
            "30m",
            vec![approval(
                "dave",
                provider.clone(),
                ApprovalDecision::Approve,
            )],
        );
        let v = decide(&one_side, Ok(grounds(&p, Some(&terms))), t(0));
        assert_eq!(v.phase, ActivationPhase::Pending);
        assert!(v.message.contains("customer"), "{}", v.message);
        let one_person = activation(
            "30m",
            vec![approval("bob", both.clone(), ApprovalDecision::Approve)],
        );
        assert_eq!(
            decide(&one_person, Ok(grounds(&p, Some(&terms))), t(0)).phase,
            ActivationPhase::Pending
        );
        let two = activation(
            "30m",
            vec![
                approval("dave", provider, ApprovalDecision::Approve),
                approval("cathy", customer, ApprovalDecision::Approve),
            ],
        );
        assert_eq!(
            decide(&two, Ok(grounds(&p, Some(&terms))), t(0)).phase,
            ActivationPhase::Active
        );
    }

    #[test]
    fn requests_outside_the_terms_are_denied_with_the_field_and_the_fix() {
        let p = plan(vec![eligible(vec![], true)]);
        let long = decide(&activation("2h", vec![]), Ok(grounds(&p, None)), t(0));
        assert_eq!(
            (long.phase, long.reason),
            (ActivationPhase::Denied, Reason::DurationTooLong)
        );
        assert!(
            long.message.contains("spec.duration") && long.message.contains("1h"),
            "{}",
            long.message
        );
        let terms = ActivationTerms {
            max_duration: Some("30m".into()),
            approvers: None,
        };
        let narrowed = decide(
            &activation("45m", vec![]),
            Ok(grounds(&p, Some(&terms))),
            t(0),
        );
        assert_eq!(
            narrowed.reason,
            Reason::DurationTooLong,
            "the customer's shorter maximum"
        );
        let mut silent = activation("30m", vec![]);
        silent.spec.justification = Some("  ".into());
        assert_eq!(
            decide(&silent, Ok(grounds(&p, None)), t(0)).reason,
            Reason::JustificationRequired
        );
        let mut other_role = activation("30m", vec![]);
        other_role.spec.role_ref = "admin".into();
        let v = decide(&other_role, Ok(grounds(&p, None)), t(0));
        assert_eq!(v.reason, Reason::NotEligible);
        assert!(
            v.message.contains("Group oncall → operator"),
            "{}",
            v.message
        );
        let mut anonymous = activation("30m", vec![]);
        anonymous.spec.requester = None;
        assert_eq!(
            decide(&anonymous, Ok(grounds(&p, None)), t(0)).reason,
            Reason::RequesterUnknown
        );
        let mut impostor = activation("30m", vec![]);
        impostor.spec.principal = person(PersonKind::User, "bob");
        let mut q = plan(vec![EligibleAuthorization {
            principal: person(PersonKind::User, "bob"),
            ..eligible(vec![], false)
        }]);
        q.version = "1.0.0".into();
        assert_eq!(
            decide(&impostor, Ok(grounds(&q, None)), t(0)).reason,
            Reason::RequesterUnknown
        );
    }

    #[test]
    fn the_end_of_its_source_revokes_an_active_grant() {
        let p = plan(vec![eligible(vec![], false)]);
        let a = activation("30m", vec![]);
        let active = recorded(a.clone(), &decide(&a, Ok(grounds(&p, None)), t(0)));
        let gone = decide(&active, Err("Delegation \"d\" was deleted".into()), t(1));
        assert_eq!(
            (gone.phase, gone.reason),
            (ActivationPhase::Revoked, Reason::DelegationNotAccepted)
        );
        let changed = Grounds {
            digest: "sha256:two",
            ..grounds(&p, None)
        };
        let v = decide(&active, Ok(changed), t(1));
        assert_eq!(
            (v.phase, v.reason),
            (ActivationPhase::Revoked, Reason::ConsentChanged)
        );
        let without = plan(vec![]);
        let v = decide(&active, Ok(grounds(&without, None)), t(1));
        assert_eq!(
            (v.phase, v.reason),
            (ActivationPhase::Revoked, Reason::NotEligible)
        );
        // Before it was granted, the same ends are denials.
        let v = decide(&a, Err("no Delegation".into()), t(0));
        assert_eq!(v.phase, ActivationPhase::Denied);
    }

    #[test]
    fn approvals_given_under_other_terms_do_not_count() {
        let approvers = person(PersonKind::Group, "leads");
        let p = plan(vec![eligible(vec![approvers.clone()], false)]);
        let a = activation("30m", vec![]);
        let pending = recorded(
            a,
            &decide(&activation("30m", vec![]), Ok(grounds(&p, None)), t(0)),
        );
        let mut approved = pending.clone();
        approved.spec.approvals = Some(vec![approval("bob", approvers, ApprovalDecision::Approve)]);
        let v = decide(
            &approved,
            Ok(Grounds {
                digest: "sha256:two",
                ..grounds(&p, None)
            }),
            t(1),
        );
        assert_eq!(
            (v.phase, v.reason),
            (ActivationPhase::Denied, Reason::ConsentChanged)
        );
    }
}
