//! Step 1, resolve: everything a Delegation's decision depends on, read from
//! the watch caches only (no request to the API server), into plain data
//! that the pure steps after it take.

use crate::api::{Activation, Delegation, ManagedServiceOffer};
use crate::delegation::snapshot;
use crate::domain::consent::AcceptedPlan;
use crate::domain::provider_policy::Applying;
use crate::domain::tenancy::NamespaceInfo;
use crate::runtime::caches::Caches;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the caches hold for one Delegation.
pub struct Resolved {
    /// The referenced offer, if it exists.
    pub offer: Option<Arc<ManagedServiceOffer>>,
    /// The Delegation's consent snapshots (every version it still keeps).
    pub revisions: Vec<Arc<ControllerRevision>>,
    /// The consent record covering the Delegation as it is now, if any.
    pub snapshot: Option<AcceptedPlan>,
    /// The content accepted for the requested version under an earlier
    /// generation of the Delegation, if any.
    pub carried: Option<AcceptedPlan>,
    /// Every ClusterRole, for delegability.
    pub cluster_roles: Vec<Arc<ClusterRole>>,
    /// The Delegation's own namespace, those it delegates and the offer's,
    /// with their tenancy (absent: no such namespace).
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    /// The Activations naming the Delegation.
    pub activations: Vec<Arc<Activation>>,
    /// The delegated namespaces: those the Delegation names, or for a
    /// tenant-wide one, the namespaces of its customer's tenant that its
    /// selector matches now. Sorted.
    pub targets: Vec<String>,
    /// The provider policies applying to each delegated namespace that
    /// exists, as (namespace, policy).
    pub policies: Vec<(String, Applying)>,
    /// The admission policy bounding provider role assignment is in force.
    pub assignments_enforced: bool,
    /// The time of this reading: activations are granted until their expiry.
    pub now: k8s_openapi::jiff::Timestamp,
}

/// Reads what `delegation` depends on from `caches`.
pub fn resolve(caches: &Caches, delegation: &Delegation) -> Resolved {
    let namespace = delegation.namespace().unwrap_or_default();
    let offer_ref = &delegation.spec.offer_ref;
    let offer = caches
        .offers
        .get(&ObjectRef::new(&offer_ref.name).within(&offer_ref.namespace));
    let revisions = caches.revisions_of(&namespace, &delegation.name_any());
    let found = snapshot::find(delegation, revisions.iter().map(|r| r.as_ref()));
    let targets = targets(caches, delegation, &namespace);
    // The Delegation's own namespace too: the deleter and activation rights
    // are granted there.
    let mut checked: Vec<&String> = targets.iter().chain([&namespace]).collect();
    checked.sort();
    checked.dedup();
    let policies = checked
        .into_iter()
        .flat_map(|n| {
            caches
                .policies_for(n)
                .into_iter()
                .map(move |p| (n.clone(), p))
        })
        .collect();
    let namespaces = targets
        .iter()
        .cloned()
        .chain([namespace.clone(), offer_ref.namespace.clone()])
        .filter_map(|n| caches.namespace_info(&n).map(|info| (n, info)))
        .collect();
    Resolved {
        offer,
        revisions,
        snapshot: found.current.map(|(_, plan)| plan),
        carried: found.carried,
        cluster_roles: caches.cluster_roles.state(),
        activations: caches.activations_of(&namespace, &delegation.name_any()),
        namespaces,
        targets,
        policies,
        assignments_enforced: caches.assignments_enforced(),
        now: k8s_openapi::jiff::Timestamp::now(),
    }
}

/// The namespaces `delegation` (living in `namespace`) delegates.
fn targets(caches: &Caches, delegation: &Delegation, namespace: &str) -> Vec<String> {
    match &delegation.spec.namespace_selector {
        None => delegation.target_namespaces(),
        Some(selector) => match caches.namespace_info(namespace) {
            Some(own) => caches.namespaces_selected(&own.tenant, Some(selector)),
            None => Vec::new(),
        },
    }
}
