//! Step 2a, confirm a refusal: a refusal revokes everything a Delegation
//! grants and ends its Activations for good, so one that may rest on a stale
//! cache is checked against the API server first.
//!
//! Every input of a decision comes from its own watch, and nothing orders
//! the watches. A customer who moves to a version the provider has just
//! published can reach the operator's cache before the offer does; the cache
//! then says "version not published", and acting on it would revoke the
//! access the customer still consents to (the permanent grants included)
//! until the offer's watch event arrives. The same holds for a namespace
//! just moved into the customer's tenant, a ClusterRole just made
//! delegable, a provider policy just widened, or the assignment policy just
//! installed.
//!
//! So before a refusal takes effect, the inputs it rests on are read from
//! the API server: always the offer (one GET; only its spec counts, by
//! `generation`: its status changes every few seconds while customers
//! converge and decides nothing), and, by the refusal's reason, the
//! namespaces, ClusterRoles or policies it names (metadata only, compared
//! by `resourceVersion`). If any of them is newer on the server, the
//! reconcile waits for the watch and decides again. These reads are made
//! only for a refusal: a Delegation that stays refused pays them once per
//! resync, and nothing at all is read for one that is granted. When a read
//! fails, the refusal stands: the operator fails closed.
//!
//! Waiting never extends access beyond the consent: the cache is behind
//! only when the server already holds something newer, and the decision is
//! made again, on it, as soon as the watch delivers it (within
//! milliseconds; [`super::STALE_CACHE_RETRY`] is the fallback).

use crate::api::{ClusterProviderPolicy, Delegation, ManagedServiceOffer, ProviderPolicy};
use crate::delegation::resolve::Resolved;
use crate::delegation::validate;
use crate::domain::conditions::Reason;
use crate::domain::consent::AcceptedPlan;
use crate::domain::names;
use crate::runtime::caches::Caches;
use crate::runtime::writer::Writer;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use tracing::debug;

/// Up to this many namespaces are read one GET each; more are read with
/// one LIST of all namespaces' metadata (a tenant-wide Delegation's).
const NAMESPACE_GETS: usize = 16;

/// What a refusal rests on besides the offer (which every refusal reads):
/// the inputs to read from the API server before it takes effect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestsOn {
    /// Namespaces, for their tenant, deletion state or labels.
    pub namespaces: Vec<String>,
    /// ClusterRoles of the plan, for their delegability and workload power.
    pub cluster_roles: Vec<String>,
    /// Provider policies applying to `namespaces`.
    pub policies: bool,
    /// The admission policy bounding role assignment, and its binding.
    pub assignment_policy: bool,
}

/// What a refusal of `delegation` for `reason`, decided on `resolved`,
/// rests on (pure).
pub fn rests_on(reason: Reason, delegation: &Delegation, resolved: &Resolved) -> RestsOn {
    let own = delegation.namespace().unwrap_or_default();
    let mut inputs = RestsOn::default();
    match reason {
        // A namespace of another tenant, or tenants that make the provider
        // the customer itself: the delegated namespaces the cache puts in
        // another tenant than the Delegation's own, its own, the offer's.
        Reason::ForeignNamespace | Reason::SameTenant | Reason::ProviderTenantMismatch => {
            let own_tenant = resolved.namespaces.get(&own).map(|n| n.tenant.as_str());
            inputs.namespaces = resolved
                .targets
                .iter()
                .filter(|t| {
                    resolved
                        .namespaces
                        .get(*t)
                        .is_some_and(|n| Some(n.tenant.as_str()) != own_tenant)
                })
                .cloned()
                .chain([own, delegation.spec.offer_ref.namespace.clone()])
                .collect();
        }
        Reason::RoleNotDelegable | Reason::WorkloadAccessNotAcknowledged => {
            inputs.cluster_roles = plan_roles(delegation, resolved);
        }
        // Policies select namespaces by label: the namespaces count too.
        Reason::ProviderNotAllowed | Reason::RoleNotAllowed => {
            inputs.namespaces = resolved.targets.iter().cloned().chain([own]).collect();
            inputs.policies = true;
        }
        Reason::AssignmentNotEnforced => inputs.assignment_policy = true,
        _ => {}
    }
    inputs.namespaces.sort();
    inputs.namespaces.dedup();
    inputs
}

/// True when a refusal of `delegation` for `reason`, decided on
/// `resolved` (read from `caches`), may rest on a cache that is behind the
/// API server: then the reconcile waits for the watch instead of acting.
pub async fn refusal_cache_behind(
    writer: &Writer,
    caches: &Caches,
    delegation: &Delegation,
    resolved: &Resolved,
    reason: Reason,
) -> bool {
    if offer_cache_behind(writer, delegation, resolved.offer.as_deref()).await {
        return true;
    }
    let inputs = rests_on(reason, delegation, resolved);
    let client = &writer.client;
    if !inputs.namespaces.is_empty()
        && namespaces_behind(writer, &cached(&caches.namespaces, &inputs.namespaces)).await
    {
        return true;
    }
    if !inputs.cluster_roles.is_empty()
        && cluster_scoped_behind(
            &Api::<ClusterRole>::all(client.clone()),
            &cached(&caches.cluster_roles, &inputs.cluster_roles),
        )
        .await
    {
        return true;
    }
    if inputs.policies
        && policies_behind(
            writer,
            &cached_policy_versions(caches, &inputs.namespaces),
            &inputs.namespaces,
        )
        .await
    {
        return true;
    }
    let name = [names::ASSIGNMENT_POLICY.to_string()];
    inputs.assignment_policy
        && (cluster_scoped_behind(
            &Api::<ValidatingAdmissionPolicy>::all(client.clone()),
            &cached(&caches.assignment_policy, &name),
        )
        .await
            || cluster_scoped_behind(
                &Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()),
                &cached(&caches.assignment_policy_binding, &name),
            )
            .await)
}

/// Each of `names` with the resourceVersion `store` holds (none: absent).
fn cached<K>(store: &Store<K>, names: &[String]) -> BTreeMap<String, Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    names
        .iter()
        .map(|n| {
            let rv = store
                .get(&ObjectRef::new(n))
                .and_then(|o| o.resource_version());
            (n.clone(), rv)
        })
        .collect()
}

/// Every ClusterRole the plan a decision was about can grant: permanent,
/// eligible and delegated roles, from the consent record if there is one,
/// else from the offer's plan.
fn plan_roles(delegation: &Delegation, resolved: &Resolved) -> Vec<String> {
    let live = || {
        let offer = resolved.offer.as_deref()?;
        let plan = offer
            .spec
            .plans
            .iter()
            .find(|p| p.name == delegation.spec.plan)?;
        Some(AcceptedPlan::from_offer(offer, plan))
    };
    let Some(plan) = resolved
        .snapshot
        .clone()
        .or_else(|| resolved.carried.clone())
        .or_else(live)
    else {
        return Vec::new();
    };
    let mut roles: Vec<String> = validate::every_grant(&plan)
        .into_iter()
        .map(|(_, grant)| grant.role_ref)
        .chain(validate::delegated_roles(&plan).into_iter().map(|(_, r)| r))
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// True when any of the namespaces in `cached` (name → the resourceVersion
/// the cache holds, none when absent) has another resourceVersion on the
/// API server; false when they agree or the API server cannot say.
pub async fn namespaces_behind(writer: &Writer, cached: &BTreeMap<String, Option<String>>) -> bool {
    let api = Api::<Namespace>::all(writer.client.clone());
    if cached.len() <= NAMESPACE_GETS {
        return cluster_scoped_behind(&api, cached).await;
    }
    match api.list_metadata(&ListParams::default()).await {
        Ok(list) => {
            let live: BTreeMap<String, Option<String>> = list
                .items
                .iter()
                .map(|n| (n.name_any(), n.resource_version()))
                .collect();
            cached
                .iter()
                .any(|(name, rv)| live.get(name).cloned().flatten() != *rv)
        }
        Err(_) => false,
    }
}

/// True when any of the objects in `cached` (name → cached
/// resourceVersion) has another resourceVersion on the API server, or
/// exists there only on one side; false when they agree or a read fails.
pub async fn cluster_scoped_behind<K>(
    api: &Api<K>,
    cached: &BTreeMap<String, Option<String>>,
) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    for (name, rv) in cached {
        match api.get_metadata_opt(name).await {
            Ok(live) if live.as_ref().and_then(|o| o.resource_version()) != *rv => {
                debug!(
                    kind = std::any::type_name::<K>(),
                    name, "cache behind a refusal; waiting for the watch"
                );
                return true;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// What identifies a policy's spec: its uid and generation (its status,
/// the namespaces admission reads, decides nothing here).
pub type SpecVersion = (Option<String>, Option<i64>);

/// The spec version of any object (see [`SpecVersion`]).
pub fn spec_version_of<K: Resource>(object: &K) -> SpecVersion {
    (object.meta().uid.clone(), object.meta().generation)
}

/// The provider policies that may apply to `namespaces` (sorted): every
/// ClusterProviderPolicy (`name`, spec version) and the ProviderPolicies in
/// them (`namespace`, `name`, spec version), keyed as users name them.
pub fn policy_versions(
    cluster: impl IntoIterator<Item = (String, SpecVersion)>,
    namespaced: impl IntoIterator<Item = (String, String, SpecVersion)>,
    namespaces: &[String],
) -> BTreeMap<String, SpecVersion> {
    cluster
        .into_iter()
        .map(|(name, v)| (format!("ClusterProviderPolicy {name}"), v))
        .chain(
            namespaced
                .into_iter()
                .filter(|(ns, _, _)| namespaces.binary_search(ns).is_ok())
                .map(|(ns, name, v)| (format!("ProviderPolicy {ns}/{name}"), v)),
        )
        .collect()
}

/// [`policy_versions`] as the caches hold them.
fn cached_policy_versions(caches: &Caches, namespaces: &[String]) -> BTreeMap<String, SpecVersion> {
    policy_versions(
        caches
            .cluster_policies
            .state()
            .iter()
            .map(|p| (p.name_any(), spec_version_of(p.as_ref()))),
        caches.policies.state().iter().map(|p| {
            (
                p.namespace().unwrap_or_default(),
                p.name_any(),
                spec_version_of(p.as_ref()),
            )
        }),
        namespaces,
    )
}

/// True when the provider policies that may apply to `namespaces` (sorted)
/// differ on the API server from `cached` ([`policy_versions`]) in their
/// specs; false when they agree or a read fails.
pub async fn policies_behind(
    writer: &Writer,
    cached: &BTreeMap<String, SpecVersion>,
    namespaces: &[String],
) -> bool {
    let lp = ListParams::default();
    let (Ok(cluster), Ok(namespaced)) = (
        Api::<ClusterProviderPolicy>::all(writer.client.clone())
            .list_metadata(&lp)
            .await,
        Api::<ProviderPolicy>::all(writer.client.clone())
            .list_metadata(&lp)
            .await,
    ) else {
        return false;
    };
    let live = policy_versions(
        cluster
            .items
            .iter()
            .map(|p| (p.name_any(), spec_version_of(p))),
        namespaced.items.iter().map(|p| {
            (
                p.namespace().unwrap_or_default(),
                p.name_any(),
                spec_version_of(p),
            )
        }),
        namespaces,
    );
    let behind = live != *cached;
    if behind {
        debug!("provider policy cache behind a refusal; waiting for the watch");
    }
    behind
}

/// True when the API server holds another version of `delegation`'s offer
/// (by uid and generation) than `cached`, the one a refusal was decided
/// on; false when they agree or the API server cannot say.
pub async fn offer_cache_behind(
    writer: &Writer,
    delegation: &Delegation,
    cached: Option<&ManagedServiceOffer>,
) -> bool {
    let offer = &delegation.spec.offer_ref;
    let api = writer.api::<ManagedServiceOffer>(&offer.namespace);
    match api.get_opt(&offer.name).await {
        Ok(live) => {
            let behind = spec_version(live.as_ref()) != spec_version(cached);
            if behind {
                debug!(offer = %format!("{}/{}", offer.namespace, offer.name), "offer cache behind a refusal; waiting for the watch");
            }
            behind
        }
        Err(_) => false,
    }
}

/// What identifies an offer's spec: its uid and generation.
fn spec_version(offer: Option<&ManagedServiceOffer>) -> Option<(Option<String>, Option<i64>)> {
    offer.map(|o| (o.uid(), o.metadata.generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PersonKind, PrincipalKind, RoleName};
    use crate::domain::tenancy::NamespaceInfo;
    use crate::fixtures;
    use std::sync::Arc;

    /// A Delegation of namespace `c` (tenant `cust`) delegating `targets`,
    /// of offer `p/o` whose plan `std` grants `view`, lets `ops` activate
    /// `edit` and lets a role assigner bind `admin`; `tenants` are what the
    /// namespace cache says.
    fn refused(targets: &[&str], tenants: &[(&str, &str)]) -> (Delegation, Resolved) {
        let delegation =
            fixtures::delegation("c", "d", ("p", "o"), "std", "1.0.0", Some(targets.to_vec()));
        let mut assigner =
            fixtures::auth(PrincipalKind::Group, "bots", "msp-operator:role-assigner");
        assigner.delegated_roles = Some(vec![RoleName("admin".into()), RoleName("view".into())]);
        let mut plan = fixtures::plan(
            "std",
            "1.0.0",
            vec![
                fixtures::auth(PrincipalKind::Group, "readers", "view"),
                assigner,
            ],
        );
        plan.eligible_authorizations = Some(vec![fixtures::eligible(
            fixtures::person(PersonKind::Group, "ops"),
            "edit",
            "1h",
            Vec::new(),
        )]);
        let resolved = Resolved {
            offer: Some(Arc::new(fixtures::offer("p", "o", "acme", vec![plan]))),
            revisions: Vec::new(),
            snapshot: None,
            carried: None,
            cluster_roles: Vec::new(),
            namespaces: tenants
                .iter()
                .map(|(n, t)| {
                    (
                        n.to_string(),
                        NamespaceInfo {
                            tenant: t.to_string(),
                            terminating: false,
                        },
                    )
                })
                .collect(),
            activations: Vec::new(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            policies: Vec::new(),
            assignments_enforced: false,
            now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        };
        (delegation, resolved)
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_tenancy_refusal_rests_on_the_namespaces_of_other_tenants_its_own_and_the_offers() {
        // `x` is another tenant's in the cache; `m` is not in the cache at
        // all (missing is no refusal), `b` is the customer's.
        let (d, r) = refused(
            &["c", "x", "m", "b"],
            &[("c", "cust"), ("x", "other"), ("b", "cust"), ("p", "acme")],
        );
        for reason in [
            Reason::ForeignNamespace,
            Reason::SameTenant,
            Reason::ProviderTenantMismatch,
        ] {
            assert_eq!(
                rests_on(reason, &d, &r),
                RestsOn {
                    namespaces: names(&["c", "p", "x"]),
                    ..RestsOn::default()
                },
                "{reason:?}"
            );
        }
    }

    #[test]
    fn a_role_refusal_rests_on_every_role_the_consented_plan_can_grant() {
        let (d, mut r) = refused(&["c"], &[("c", "cust")]);
        let every = names(&["admin", "edit", "msp-operator:role-assigner", "view"]);
        for reason in [
            Reason::RoleNotDelegable,
            Reason::WorkloadAccessNotAcknowledged,
        ] {
            assert_eq!(
                rests_on(reason, &d, &r),
                RestsOn {
                    cluster_roles: every.clone(),
                    ..RestsOn::default()
                }
            );
        }
        // A recorded consent, not the live offer, is what was decided on.
        r.snapshot = Some(fixtures::accepted(
            ("p", "o"),
            "acme",
            "std",
            "1.0.0",
            vec![fixtures::auth(PrincipalKind::User, "alice", "recorded")],
        ));
        assert_eq!(
            rests_on(Reason::RoleNotDelegable, &d, &r).cluster_roles,
            names(&["recorded"])
        );
        // No offer and no record: nothing but the offer to read.
        r.snapshot = None;
        r.offer = None;
        assert_eq!(
            rests_on(Reason::RoleNotDelegable, &d, &r),
            RestsOn::default()
        );
    }

    #[test]
    fn a_policy_refusal_rests_on_the_policies_and_the_labels_of_every_delegated_namespace() {
        let (d, r) = refused(&["x", "c", "b"], &[("c", "cust")]);
        for reason in [Reason::ProviderNotAllowed, Reason::RoleNotAllowed] {
            assert_eq!(
                rests_on(reason, &d, &r),
                RestsOn {
                    namespaces: names(&["b", "c", "x"]),
                    policies: true,
                    ..RestsOn::default()
                }
            );
        }
    }

    #[test]
    fn other_refusals_rest_on_the_offer_alone_or_the_assignment_policy() {
        let (d, r) = refused(&["c"], &[("c", "cust")]);
        assert_eq!(
            rests_on(Reason::AssignmentNotEnforced, &d, &r),
            RestsOn {
                assignment_policy: true,
                ..RestsOn::default()
            }
        );
        for reason in [
            Reason::OfferNotFound,
            Reason::PlanNotFound,
            Reason::NotInAudience,
            Reason::VersionNotPublished,
            Reason::InvalidPrincipal,
            Reason::ConsentRecordMissing,
        ] {
            assert_eq!(rests_on(reason, &d, &r), RestsOn::default(), "{reason:?}");
        }
    }

    #[test]
    fn policy_versions_name_policies_as_users_do_and_keep_only_those_of_the_namespaces() {
        let v = |g: i64| (Some("u".to_string()), Some(g));
        let versions = policy_versions(
            [("platform".to_string(), v(1))],
            [
                ("b".to_string(), "mine".to_string(), v(2)),
                ("z".to_string(), "theirs".to_string(), v(3)),
            ],
            &names(&["a", "b"]),
        );
        assert_eq!(
            versions,
            BTreeMap::from([
                ("ClusterProviderPolicy platform".to_string(), v(1)),
                ("ProviderPolicy b/mine".to_string(), v(2)),
            ])
        );
    }

    #[test]
    fn only_the_spec_and_identity_of_an_offer_count() {
        let mut a = fixtures::offer("p", "o", "t", Vec::new());
        a.metadata.uid = Some("u1".into());
        a.metadata.generation = Some(2);
        let mut status_only = a.clone();
        status_only.metadata.resource_version = Some("999".into());
        assert_eq!(spec_version(Some(&a)), spec_version(Some(&status_only)));
        let mut newer = a.clone();
        newer.metadata.generation = Some(3);
        assert_ne!(spec_version(Some(&a)), spec_version(Some(&newer)));
        let mut recreated = a.clone();
        recreated.metadata.uid = Some("u2".into());
        assert_ne!(spec_version(Some(&a)), spec_version(Some(&recreated)));
        assert_ne!(spec_version(Some(&a)), spec_version(None));
        assert_eq!(spec_version(None), spec_version(None));
    }
}
