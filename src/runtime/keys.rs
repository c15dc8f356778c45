//! The string keys the runtime files objects under, each format built in
//! one place: `namespace/name` in the secondary indexes (the kind is the
//! index's own), `Kind/namespace/name` where objects of both kinds share a
//! map (retry counts, the own-writes tracker).

use crate::api::{Activation, Delegation};
use crate::domain::names;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;

/// `namespace/name`: an object of a kind known from context.
pub fn namespaced(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// `Kind/namespace/name`: an object of any kind.
pub fn object<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The delegation a managed object belongs to, from its labels.
pub fn delegation_of(labels: &BTreeMap<String, String>) -> Option<ObjectRef<Delegation>> {
    Some(
        ObjectRef::new(labels.get(names::DELEGATION_LABEL)?)
            .within(labels.get(names::DELEGATION_NAMESPACE_LABEL)?),
    )
}

/// Index keys of a managed object: its delegation, from its labels.
pub fn owner_keys<K: Resource>(object: &K) -> Vec<String> {
    object
        .meta()
        .labels
        .as_ref()
        .and_then(delegation_of)
        .map(|owner| namespaced(owner.namespace.as_deref().unwrap_or_default(), &owner.name))
        .into_iter()
        .collect()
}

/// Index key of a delegation by offer: the offer's `namespace/name`.
pub fn offer_keys(delegation: &Delegation) -> Vec<String> {
    let offer = &delegation.spec.offer_ref;
    vec![namespaced(&offer.namespace, &offer.name)]
}

/// Index key of an activation: its delegation's `namespace/name`.
pub fn activation_keys(activation: &Activation) -> Vec<String> {
    vec![namespaced(
        activation.metadata.namespace.as_deref().unwrap_or_default(),
        &activation.spec.delegation,
    )]
}

/// Index keys of a delegation by namespace: those it delegates and its own,
/// those its status reports (a namespace that leaves a tenant-wide
/// Delegation is found through them), and for a tenant-wide one its
/// customer's tenant (`tenant:<name>`), for namespaces that may join.
pub fn namespace_keys(delegation: &Delegation) -> Vec<String> {
    let mut keys = delegation.target_namespaces();
    keys.extend(delegation.metadata.namespace.clone());
    if delegation.is_tenant_wide() {
        let status = delegation.status.as_ref();
        keys.extend(
            status
                .into_iter()
                .flat_map(|s| s.namespaces.iter().map(|n| n.name.clone())),
        );
        keys.extend(
            status
                .and_then(|s| s.customer_tenant.as_ref())
                .map(|t| format!("tenant:{t}")),
        );
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Index keys of a provider policy by what its status depends on: each
/// allowed provider tenant (`tenant:<name>`) and each namespace its status
/// lists (`namespace:<name>`), so a namespace event finds the policies it
/// may change.
pub fn policy_provider_keys<K: crate::api::ProviderPolicyKind>(policy: &K) -> Vec<String> {
    let tenants = policy
        .rules()
        .allowed_providers
        .iter()
        .flatten()
        .map(|p| format!("tenant:{}", p.tenant.0));
    let listed = policy
        .policy_status()
        .into_iter()
        .flat_map(|s| s.provider_namespaces.iter())
        .map(|n| format!("namespace:{n}"));
    tenants.chain(listed).collect()
}

/// Index key of a namespace: its tenant.
pub fn namespace_tenant(
    namespace: &kube::api::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>,
) -> Vec<String> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    vec![crate::domain::tenancy::tenant_of(&name, &labels)]
}

/// Index key of a namespaced object: its namespace.
pub fn own_namespace<K: kube::Resource>(object: &K) -> Vec<String> {
    object.meta().namespace.clone().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn keys_have_one_format_each() {
        let d = fixtures::delegation("cust", "dlg", ("provider", "offer"), "p", "1.0.0", None);
        assert_eq!(object(&d), "Delegation/cust/dlg");
        assert_eq!(offer_keys(&d), vec!["provider/offer".to_string()]);
        assert_eq!(namespace_keys(&d), vec!["cust".to_string()]);
        let labels = names::managed_labels(
            &d,
            &fixtures::accepted(("provider", "offer"), "acme", "p", "1.0.0", Vec::new()),
        );
        let owner = delegation_of(&labels).expect("owner");
        assert_eq!(
            (owner.namespace.as_deref(), owner.name.as_str()),
            (Some("cust"), "dlg")
        );
    }
}
