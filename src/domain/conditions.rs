//! Status conditions: types, reasons, and the kstatus rules they follow.
//!
//! `Ready` is always present. `Reconciling` and `Stalled` (kstatus) are present
//! only while they hold, as Flux does, so Flux health checks, Argo CD and
//! `kubectl wait --for=condition=Ready` read them directly. Every condition
//! carries the `observedGeneration` it describes. `lastTransitionTime` changes
//! only when a condition's status does, so an unchanged world yields an
//! identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// The object is fully reconciled and its grants are in force.
    pub const READY: &str = "Ready";
    /// kstatus: work is in progress (present only when True).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: progress needs a change by someone (present only when True).
    pub const STALLED: &str = "Stalled";
    /// The offer, plan, version, eligibility and roles are valid.
    pub const ACCEPTED: &str = "Accepted";
    /// The plan has a newer version than the accepted one.
    pub const UPDATE_AVAILABLE: &str = "UpdateAvailable";
    /// The accepted offer still exists.
    pub const OFFER_AVAILABLE: &str = "OfferAvailable";
    /// An Audit-mode provider policy would refuse the Delegation (present
    /// only while True; the grants stay as consented).
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
}

/// Why a condition has its status. Each variant's doc says when it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// All grants of the accepted version are in place.
    Granted,
    /// Grants are being applied, or some namespace is not ready yet.
    Progressing,
    /// The offer, plan and version exist, the customer is eligible, and every
    /// role is delegable.
    Valid,
    /// The referenced ManagedServiceOffer does not exist (and nothing was accepted before).
    OfferNotFound,
    /// The offer has no plan of that name.
    PlanNotFound,
    /// `spec.planVersion` is not the plan's published version.
    VersionNotPublished,
    /// The plan is Private and the customer's tenant is not in its audience.
    NotInAudience,
    /// The customer's tenant is the provider's own tenant.
    SameTenant,
    /// A namespace in `spec.namespaces` belongs to another tenant.
    ForeignNamespace,
    /// An authorization's role is not delegable (missing, unlabeled, or too powerful).
    RoleNotDelegable,
    /// The consent record of the applied version was deleted and the offer
    /// no longer publishes exactly what was accepted.
    ConsentRecordMissing,
    /// The identity that consented could not have granted this itself
    /// (Kubernetes' RBAC escalation rule).
    ConsentExceedsConsenter,
    /// No consenting identity is recorded on the Delegation.
    ConsenterUnknown,
    /// A role of the plan can run workloads and the Delegation does not
    /// list it in `spec.acknowledgedWorkloadRoles`.
    WorkloadAccessNotAcknowledged,
    /// A principal the operator never grants: a ServiceAccount outside the
    /// offer's namespace, or a `system:` identity (everyone, or someone
    /// else's accounts).
    InvalidPrincipal,
    /// The offer claims a provider tenant other than the tenant of the
    /// namespace it lives in.
    ProviderTenantMismatch,
    /// Writing grants failed; retried with backoff.
    ApplyFailed,
    /// The accepted version is the latest.
    UpToDate,
    /// The provider published a newer plan version.
    NewerVersionPublished,
    /// The offer exists.
    OfferPresent,
    /// The offer was deleted; grants of the accepted version stay in force.
    OfferDeleted,
    /// Offer: every plan is valid and published.
    Published,
    /// Offer: a plan has an authorization that cannot be granted.
    InvalidAuthorization,
    /// Activation: waiting for an approver (of the provider, the customer,
    /// or both); nothing is granted.
    AwaitingApproval,
    /// Activation: every approval given; the role is granted until
    /// `expiresAt`.
    Activated,
    /// Activation: `expiresAt` passed; the grant is gone.
    Expired,
    /// Activation: an approver denied it (final).
    DeniedByApprover,
    /// Activation: the accepted plan version has no eligible authorization
    /// for `spec.principal` and `spec.roleRef`.
    NotEligible,
    /// Activation: `spec.duration` exceeds the eligible authorization's or
    /// the customer's `maxDuration`.
    DurationTooLong,
    /// Activation: the eligible authorization requires `spec.justification`.
    JustificationRequired,
    /// Activation: no authenticated requester is recorded, or it is not the
    /// eligible user named.
    RequesterUnknown,
    /// Activation: the Delegation does not exist, is being deleted, or its
    /// consent is refused; nothing of it can be granted.
    DelegationNotAccepted,
    /// Activation: the Delegation now accepts another plan version (or
    /// other terms); approvals and grants do not carry over.
    ConsentChanged,
    /// A provider policy of a delegated namespace does not allow the offer's
    /// provider tenant (Deny: nothing is granted; Audit: reported).
    ProviderNotAllowed,
    /// A provider policy of a delegated namespace does not allow a role of
    /// the accepted plan (Deny: nothing is granted; Audit: reported).
    RoleNotAllowed,
    /// The plan has a role-assigner authorization and the admission policy
    /// that bounds it is not installed: nothing is granted.
    AssignmentNotEnforced,
    /// OfferCatalog: it lists every offer and plan the tenant may accept.
    Current,
    /// OfferCatalog: more plans are offered to the tenant than a catalog
    /// holds; set `spec.provider` to list one provider's.
    Truncated,
}

impl Reason {
    /// The reason as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Granted => "Granted",
            Reason::Progressing => "Progressing",
            Reason::Valid => "Valid",
            Reason::OfferNotFound => "OfferNotFound",
            Reason::PlanNotFound => "PlanNotFound",
            Reason::VersionNotPublished => "VersionNotPublished",
            Reason::NotInAudience => "NotInAudience",
            Reason::SameTenant => "SameTenant",
            Reason::ForeignNamespace => "ForeignNamespace",
            Reason::RoleNotDelegable => "RoleNotDelegable",
            Reason::InvalidPrincipal => "InvalidPrincipal",
            Reason::ProviderTenantMismatch => "ProviderTenantMismatch",
            Reason::ConsentRecordMissing => "ConsentRecordMissing",
            Reason::ConsentExceedsConsenter => "ConsentExceedsConsenter",
            Reason::ConsenterUnknown => "ConsenterUnknown",
            Reason::WorkloadAccessNotAcknowledged => "WorkloadAccessNotAcknowledged",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::UpToDate => "UpToDate",
            Reason::NewerVersionPublished => "NewerVersionPublished",
            Reason::OfferPresent => "OfferPresent",
            Reason::OfferDeleted => "OfferDeleted",
            Reason::Published => "Published",
            Reason::InvalidAuthorization => "InvalidAuthorization",
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::Activated => "Activated",
            Reason::Expired => "Expired",
            Reason::DeniedByApprover => "DeniedByApprover",
            Reason::NotEligible => "NotEligible",
            Reason::DurationTooLong => "DurationTooLong",
            Reason::JustificationRequired => "JustificationRequired",
            Reason::RequesterUnknown => "RequesterUnknown",
            Reason::DelegationNotAccepted => "DelegationNotAccepted",
            Reason::ConsentChanged => "ConsentChanged",
            Reason::ProviderNotAllowed => "ProviderNotAllowed",
            Reason::RoleNotAllowed => "RoleNotAllowed",
            Reason::AssignmentNotEnforced => "AssignmentNotEnforced",
            Reason::Current => "Current",
            Reason::Truncated => "Truncated",
        }
    }
}

/// Builds a condition list, keeping `lastTransitionTime` of conditions whose
/// status did not change.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: Time,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    /// Starts from the previous conditions of an object at `generation`.
    pub fn new(previous: &'a [Condition], generation: Option<i64>, now: Time) -> Self {
        Self {
            previous,
            generation,
            now,
            out: Vec::new(),
        }
    }

    /// Sets a condition.
    pub fn set(&mut self, type_: &str, status: bool, reason: Reason, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        self.out.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time,
        });
    }

    /// The conditions, in the order set.
    pub fn finish(self) -> Vec<Condition> {
        self.out
    }
}

/// True when `delegation` reports `Ready=True`.
pub fn delegation_ready(delegation: &crate::api::Delegation) -> bool {
    delegation
        .status
        .as_ref()
        .is_some_and(|s| is_true(&s.conditions, types::READY))
}

/// True when `conditions` has `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut first = Conditions::new(&[], Some(1), at(100));
        first.set(types::READY, false, Reason::Progressing, "applying");
        let first = first.finish();
        let mut same = Conditions::new(&first, Some(2), at(200));
        same.set(types::READY, false, Reason::Progressing, "still applying");
        let same = same.finish();
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].observed_generation, Some(2));
        let mut flipped = Conditions::new(&same, Some(2), at(300));
        flipped.set(types::READY, true, Reason::Granted, "done");
        assert_eq!(flipped.finish()[0].last_transition_time, at(300));
    }
}
