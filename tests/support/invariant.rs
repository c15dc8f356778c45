//! The invariant every fault scenario ends with: the grants in the cluster
//! are exactly what customers consented to, none missing, none extra, none
//! left over.
//!
//! The checker reads only objects from the API server (Delegations, their
//! consent records, namespaces, ClusterRoles, managed RoleBindings and Roles)
//! and computes what must exist with logic of its own, not the controller's:
//! a Delegation that is not being deleted, with a consent record for its
//! version and generation, grants each authorization of that record in each
//! of its namespaces that exists, is not terminating and belongs to the
//! customer's tenant (a namespace of another tenant refuses the whole
//! Delegation), when the role exists and is labeled delegable. It does not
//! judge role rules: the scenarios use plain reader roles.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use msp_operator::api::Delegation;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const MANAGED: &str = "app.kubernetes.io/managed-by=msp-operator";
const DELEGATION_NS: &str = "msp-operator.io/delegation-namespace";
const DELEGATION: &str = "msp-operator.io/delegation";

/// One grant: namespace, subject `Kind/namespace/name`, role `Kind/name`.
pub type Grant = (String, String, String);

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    /// Grants that must exist and do not.
    pub missing: BTreeSet<Grant>,
    /// Managed grants that no consent wants (orphaned, or wider).
    pub extra: BTreeSet<Grant>,
    /// Consent records of Delegations that are gone.
    pub stale: BTreeSet<String>,
    /// How many grants must exist (a check that expects none proves little).
    pub expected: usize,
}

impl Report {
    /// Zero differences.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }

    /// The number of differences.
    pub fn differences(&self) -> usize {
        self.missing.len() + self.extra.len() + self.stale.len()
    }
}

fn tenant(ns: &Namespace) -> String {
    ns.labels()
        .get("msp-operator.io/tenant")
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| ns.name_any())
}

fn subject_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// The content of a consent record: (version, generation, authorizations).
fn record(revision: &ControllerRevision) -> Option<(String, Option<i64>, Vec<Value>)> {
    let data = revision.data.as_ref()?.0.clone();
    let data = match data {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        other => other,
    };
    Some((
        data["version"].as_str()?.to_string(),
        data["stamp"]["generation"].as_i64(),
        data["authorizations"].as_array()?.clone(),
    ))
}

/// Compares the cluster with what the Delegations in `namespaces` (their
/// own namespaces) consented to.
pub async fn check(client: &Client, namespaces: &BTreeSet<String>) -> Report {
    let all = ListParams::default();
    let delegations: Vec<Delegation> = Api::<Delegation>::all(client.clone())
        .list(&all)
        .await
        .expect("delegations")
        .items
        .into_iter()
        .filter(|d| namespaces.contains(&d.namespace().unwrap_or_default()))
        .collect();
    let spaces: BTreeMap<String, Namespace> = Api::<Namespace>::all(client.clone())
        .list(&all)
        .await
        .expect("namespaces")
        .items
        .into_iter()
        .map(|n| (n.name_any(), n))
        .collect();
    let roles: BTreeMap<String, ClusterRole> = Api::<ClusterRole>::all(client.clone())
        .list(&all)
        .await
        .expect("cluster roles")
        .items
        .into_iter()
        .map(|r| (r.name_any(), r))
        .collect();
    let managed = ListParams::default().labels(MANAGED);
    let revisions = Api::<ControllerRevision>::all(client.clone())
        .list(&managed)
        .await
        .expect("records")
        .items;
    let bindings = Api::<RoleBinding>::all(client.clone())
        .list(&managed)
        .await
        .expect("bindings")
        .items;

    let mut report = Report::default();
    let mut expected: BTreeSet<Grant> = BTreeSet::new();
    let live: BTreeSet<(String, String)> = delegations
        .iter()
        .map(|d| (d.namespace().unwrap_or_default(), d.name_any()))
        .collect();
    for d in &delegations {
        if d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let own = d.namespace().unwrap_or_default();
        let uid = d.uid().unwrap_or_default();
        let current = revisions.iter().filter_map(|r| {
            let owned = r.namespace().as_deref() == Some(own.as_str())
                && r.owner_references().iter().any(|o| o.uid == uid);
            let labeled =
                r.labels().get(DELEGATION).map(String::as_str) == Some(d.name_any().as_str());
            if !(owned && labeled) {
                return None;
            }
            let (version, generation, authorizations) = record(r)?;
            let current = version == d.spec.plan_version
                && generation.is_none_or(|g| Some(g) == d.metadata.generation);
            current.then_some(authorizations)
        });
        let Some(authorizations) = current.into_iter().next() else {
            continue;
        };
        let customer = spaces.get(&own).map(tenant).unwrap_or_else(|| own.clone());
        // A namespace of another tenant refuses the whole Delegation.
        let foreign = d.target_namespaces().iter().any(|ns| {
            spaces
                .get(ns)
                .is_some_and(|space| tenant(space) != customer)
        });
        if foreign {
            continue;
        }
        for a in &authorizations {
            let role = a["roleRef"].as_str().unwrap_or_default();
            let kind = a["principal"]["kind"].as_str().unwrap_or_default();
            let name = a["principal"]["name"].as_str().unwrap_or_default();
            let sa_ns = a["principal"]["namespace"]
                .as_str()
                .unwrap_or(&d.spec.offer_ref.namespace);
            let subject = match kind {
                "ServiceAccount" => subject_key(kind, sa_ns, name),
                _ => subject_key(kind, "", name),
            };
            if role == "msp-operator:delegation-deleter" {
                expected.insert((own.clone(), subject, "Role/deleter".into()));
                continue;
            }
            let delegable = roles.get(role).is_some_and(|r| {
                r.labels()
                    .get("msp-operator.io/delegable")
                    .map(String::as_str)
                    == Some("true")
            });
            if !delegable {
                continue;
            }
            for ns in d.target_namespaces() {
                let Some(space) = spaces.get(&ns) else {
                    continue;
                };
                if space.metadata.deletion_timestamp.is_some() || tenant(space) != customer {
                    continue;
                }
                expected.insert((ns, subject.clone(), format!("ClusterRole/{role}")));
            }
        }
    }
    let mut actual: BTreeSet<Grant> = BTreeSet::new();
    for rb in &bindings {
        let owner = (
            rb.labels().get(DELEGATION_NS).cloned().unwrap_or_default(),
            rb.labels().get(DELEGATION).cloned().unwrap_or_default(),
        );
        if !namespaces.contains(&owner.0) {
            continue;
        }
        let role = if rb.role_ref.kind == "Role" {
            "Role/deleter".to_string()
        } else {
            format!("ClusterRole/{}", rb.role_ref.name)
        };
        for s in rb.subjects.iter().flatten() {
            let grant = (
                rb.namespace().unwrap_or_default(),
                subject_key(&s.kind, s.namespace.as_deref().unwrap_or_default(), &s.name),
                role.clone(),
            );
            if !live.contains(&owner) {
                report.extra.insert(grant.clone());
            }
            actual.insert(grant);
        }
    }
    report.expected = expected.len();
    report.missing = expected.difference(&actual).cloned().collect();
    report.extra.extend(actual.difference(&expected).cloned());
    for r in &revisions {
        let owner = (
            r.namespace().unwrap_or_default(),
            r.labels().get(DELEGATION).cloned().unwrap_or_default(),
        );
        if namespaces.contains(&owner.0) && !live.contains(&owner) {
            report.stale.insert(format!("{}/{}", owner.0, r.name_any()));
        }
    }
    report
}

/// Polls [`check`] until it is clean with at least `at_least` grants
/// expected; returns the time it took, or panics with the last report after
/// `timeout`.
pub async fn converges(
    client: &Client,
    namespaces: &BTreeSet<String>,
    at_least: usize,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let report = check(client, namespaces).await;
        if report.is_clean() && report.expected >= at_least {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            panic!(
                "{} differences ({} grants expected, at least {at_least} wanted) after {timeout:?}: {report:#?}\nDelegations:\n{}",
                report.differences(),
                report.expected,
                readiness(client, namespaces).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Ready condition of every Delegation in `namespaces`, one per line
/// (for a failure message).
async fn readiness(client: &Client, namespaces: &BTreeSet<String>) -> String {
    let Ok(list) = Api::<Delegation>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return "(cannot list Delegations)".into();
    };
    list.items
        .iter()
        .filter(|d| namespaces.contains(&d.namespace().unwrap_or_default()))
        .map(|d| {
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
                .unwrap_or_else(|| "no Ready condition".into());
            format!(
                "  {}/{}: {ready}",
                d.namespace().unwrap_or_default(),
                d.name_any()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
