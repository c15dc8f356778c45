//! Label keys, field manager and the deterministic names of managed objects.
//!
//! Names are derived from what an object grants, never from list positions, so
//! the same grant always has the same name: reconciles are idempotent, edits to
//! the order of authorizations cause no churn, and two delegations never
//! collide in a shared namespace.

use crate::api::Delegation;
use crate::domain::consent::AcceptedPlan;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Tenant label on namespaces, owned by platform admins.
pub const TENANT_LABEL: &str = "msp-operator.io/tenant";
/// Marks everything this operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "msp-operator";
/// The namespace of the delegation a managed object belongs to.
pub const DELEGATION_NAMESPACE_LABEL: &str = "msp-operator.io/delegation-namespace";
/// The name of the delegation a managed object belongs to.
pub const DELEGATION_LABEL: &str = "msp-operator.io/delegation";
/// The namespace of the offer (on delegations and managed objects).
pub const OFFER_NAMESPACE_LABEL: &str = "msp-operator.io/offer-namespace";
/// The name of the offer (on delegations and managed objects).
pub const OFFER_LABEL: &str = "msp-operator.io/offer";
/// The plan (on delegations and managed objects).
pub const PLAN_LABEL: &str = "msp-operator.io/plan";
/// The Activation a just-in-time RoleBinding grants for.
pub const ACTIVATION_LABEL: &str = "msp-operator.io/activation";
/// The plan version a snapshot holds.
pub const VERSION_LABEL: &str = "msp-operator.io/plan-version";
/// The user who consented, on a Delegation (set by the admission policies
/// from the authenticated request; any other value is refused).
pub const CONSENTED_BY_ANNOTATION: &str = "msp-operator.io/consented-by";
/// The consenter's groups, comma-separated (a subset of the authenticated
/// groups).
pub const CONSENTED_BY_GROUPS_ANNOTATION: &str = "msp-operator.io/consented-by-groups";
/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "msp-operator";
/// The finalizer that guarantees cleanup of grants in other namespaces.
pub const FINALIZER: &str = "msp-operator.io/cleanup";
/// Label selector for everything the operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=msp-operator";

/// Labels on every object managed for `delegation`.
pub fn managed_labels(delegation: &Delegation, plan: &AcceptedPlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
        (
            DELEGATION_NAMESPACE_LABEL.into(),
            delegation.namespace().unwrap_or_default(),
        ),
        (DELEGATION_LABEL.into(), delegation.name_any()),
        (OFFER_NAMESPACE_LABEL.into(), plan.offer_namespace.clone()),
        (OFFER_LABEL.into(), plan.offer_name.clone()),
        (PLAN_LABEL.into(), plan.plan.clone()),
    ])
}

/// True when `labels` say the object belongs to delegation `namespace/name`.
pub fn belongs_to(labels: &BTreeMap<String, String>, namespace: &str, name: &str) -> bool {
    labels.get(DELEGATION_NAMESPACE_LABEL).map(String::as_str) == Some(namespace)
        && labels.get(DELEGATION_LABEL).map(String::as_str) == Some(name)
}

/// FNV-1a, 64 bit: a stable hash (std's hasher is randomly seeded per process).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn truncated(prefix: &str, max: usize) -> &str {
    let cut = prefix
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= max)
        .last()
        .unwrap_or(0);
    let head = if prefix.len() <= max {
        prefix
    } else {
        &prefix[..cut]
    };
    head.trim_end_matches(['-', '.'])
}

/// The name of activation `activation`'s RoleBinding (the same in each of
/// its namespaces) under Delegation `delegation_namespace/delegation`: what
/// the Delegation controller writes and the deadline timer revokes.
pub fn activation_binding_name(
    delegation_namespace: &str,
    delegation: &str,
    activation: &str,
) -> String {
    role_binding_name(delegation_namespace, delegation, "Activation", activation)
}

/// Name of the one RoleBinding that grants `role_kind/role` to every
/// principal of a delegation holding it, in one namespace:
/// `msp-<delegation>-<role>-<hash>`, at most 63 characters. The role is
/// shown (reduced to lowercase letters, digits and dashes) so an admin
/// reading `kubectl get rolebindings` sees who grants what.
pub fn role_binding_name(
    delegation_namespace: &str,
    delegation: &str,
    role_kind: &str,
    role: &str,
) -> String {
    let hash = stable_hash(&[
        "binding/v2",
        delegation_namespace,
        delegation,
        role_kind,
        role,
    ]);
    let readable: String = role
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    // 4 + 28 + 1 + 20 + 1 + 8 = 62 characters at most.
    let role_part = truncated(&readable, 20);
    let delegation_part = truncated(delegation, 28);
    if role_part.is_empty() {
        format!("msp-{delegation_part}-{:08x}", hash & 0xffff_ffff)
    } else {
        format!(
            "msp-{delegation_part}-{role_part}-{:08x}",
            hash & 0xffff_ffff
        )
    }
}

/// The label a provider puts on the RoleBindings it makes under a
/// role-assigner authorization (with the delegation labels naming the
/// Delegation): admission requires it, and the operator shows and removes
/// what carries it.
pub const PROVIDER_ASSIGNED_LABEL: &str = "msp-operator.io/provider-assigned";
/// The ValidatingAdmissionPolicy (and its binding) that bounds what a
/// provider role assigner may bind (deploy/admission-policies.yaml, 8).
pub const ASSIGNMENT_POLICY: &str = "msp-operator.io-provider-assignments-are-bounded";
/// Selector of provider-made RoleBindings.
pub const PROVIDER_ASSIGNED_SELECTOR: &str = "msp-operator.io/provider-assigned=true";

/// Name of the Role in each delegated namespace that lets a role-assigner
/// principal bind `roles` (one per distinct list).
pub fn assigner_role_name(delegation: &str, roles: &[String]) -> String {
    let mut parts = vec!["assigner", delegation];
    parts.extend(roles.iter().map(String::as_str));
    let hash = stable_hash(&parts);
    format!(
        "msp-{}-assigner-{:08x}",
        truncated(delegation, 40),
        hash & 0xffff_ffff
    )
}

/// Name of the Role that lets the provider delete exactly one delegation.
pub fn deleter_role_name(delegation: &str) -> String {
    let hash = stable_hash(&["deleter", delegation]);
    format!(
        "msp-{}-deleter-{:08x}",
        truncated(delegation, 40),
        hash & 0xffff_ffff
    )
}

/// Name of the ControllerRevision holding an accepted plan version; a
/// consent stamped for a generation of the Delegation has a name of its own
/// (records of 0.1.0 keep theirs).
pub fn snapshot_name(
    delegation: &str,
    delegation_uid: &str,
    offer_namespace: &str,
    offer: &str,
    plan: &str,
    version: &str,
    generation: Option<i64>,
) -> String {
    let generation = generation.map(|g| g.to_string());
    let mut parts = vec![delegation_uid, offer_namespace, offer, plan, version];
    parts.extend(generation.as_deref());
    let hash = stable_hash(&parts);
    // 4 + 29 + 1 + 20 (longest version) + 1 + 8 = 63 characters at most.
    format!(
        "msp-{}-{}-{:08x}",
        truncated(delegation, 29),
        version.replace('.', "-"),
        hash & 0xffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_bounded_and_distinct() {
        let a = role_binding_name("cust", "dlg", "ClusterRole", "reader");
        assert_eq!(a, role_binding_name("cust", "dlg", "ClusterRole", "reader"));
        assert_ne!(
            a,
            role_binding_name("cust2", "dlg", "ClusterRole", "reader")
        );
        assert_ne!(
            a,
            role_binding_name("cust", "dlg2", "ClusterRole", "reader")
        );
        assert_ne!(a, role_binding_name("cust", "dlg", "ClusterRole", "writer"));
        assert_ne!(a, role_binding_name("cust", "dlg", "Role", "reader"));
        // Roles that read the same once reduced still get distinct names.
        assert_ne!(
            role_binding_name("cust", "dlg", "ClusterRole", "msp:reader"),
            role_binding_name("cust", "dlg", "ClusterRole", "msp-reader")
        );
        assert_eq!(
            role_binding_name("c", "d", "ClusterRole", ":::"),
            format!(
                "msp-d-{:08x}",
                stable_hash(&["binding/v2", "c", "d", "ClusterRole", ":::"]) & 0xffff_ffff
            )
        );
        let long = "x".repeat(63);
        for name in [
            role_binding_name("n", &long, "ClusterRole", "r"),
            role_binding_name("n", &long, "ClusterRole", &"Ab:c-".repeat(20)),
            deleter_role_name(&long),
            snapshot_name(
                &long,
                "uid",
                "o",
                "offer",
                "plan",
                "123456.123456.123456",
                Some(i64::MAX),
            ),
        ] {
            assert!(name.len() <= 63, "{name} is {} long", name.len());
            assert!(!name.contains("--"), "{name}");
        }
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
        // Pinned: changing the scheme renames (re-creates) every managed
        // RoleBinding in every cluster on upgrade, as 0.2.0 did once (one
        // binding per role instead of per authorization).
        assert_eq!(
            role_binding_name("cust", "dlg", "ClusterRole", "msp-operator:reader"),
            "msp-dlg-msp-operator-reader-fe9254df"
        );
    }
}
