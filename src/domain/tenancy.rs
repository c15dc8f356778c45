//! Tenancy: which tenant a namespace belongs to. Platform admins label
//! namespaces with their tenant; a namespace without the label is a tenant
//! of its own.

use super::names::TENANT_LABEL;
use std::collections::BTreeMap;

/// What the caches say about one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Its tenant (label `msp-operator.io/tenant`, else its name).
    pub tenant: String,
    /// It is being deleted.
    pub terminating: bool,
}

/// The tenant of a namespace from its labels: the tenant label, or its name.
pub fn tenant_of(name: &str, labels: &BTreeMap<String, String>) -> String {
    labels
        .get(TENANT_LABEL)
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenancy_comes_from_the_label_or_the_name() {
        let labeled = BTreeMap::from([(TENANT_LABEL.to_string(), "fabrikam".to_string())]);
        assert_eq!(tenant_of("ns", &labeled), "fabrikam");
        assert_eq!(tenant_of("ns", &BTreeMap::new()), "ns");
        let empty = BTreeMap::from([(TENANT_LABEL.to_string(), String::new())]);
        assert_eq!(tenant_of("ns", &empty), "ns");
    }
}
