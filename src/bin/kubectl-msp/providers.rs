//! `kubectl msp providers`: the customer's "Service providers" — who manages
//! a namespace, under which Delegation, with which role, since when.
//!
//! What is granted is read from the operator's RoleBindings in the
//! namespace (their subjects and roles are the truth of who has access),
//! and explained by the Delegations they come from. A customer often may
//! read only part of that: Delegations of other namespaces, or no
//! RoleBindings at all. Each part that is forbidden is left out with one
//! hint, and whatever can be shown is.

use crate::cluster::Cluster;
use crate::errors::{Request, is_forbidden};
use crate::output::{self, Format, Table, or_dash};
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use msp_operator::api::{DELEGATION_DELETER_ROLE, Delegation, ROLE_ASSIGNER_ROLE};
use msp_operator::domain::names;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Arguments of `providers`.
#[derive(clap::Args, Debug)]
pub struct ProvidersArgs {
    /// Every namespace you may read, instead of one.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// One grant (or one Delegation, when its grants cannot be read or none
/// are in place) in one namespace.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRow {
    /// The managed namespace.
    pub namespace: String,
    /// The provider's tenant (`-` when its Delegation cannot be read).
    pub provider: String,
    /// `namespace/name` of the offer.
    pub offer: String,
    /// The plan.
    pub plan: String,
    /// The plan version in force.
    pub version: String,
    /// `User/NAME`, `Group/NAME` or `ServiceAccount/NAMESPACE/NAME`.
    pub principal: String,
    /// The role it holds here.
    pub role: String,
    /// The Activation granting it, for just-in-time access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// Since when the consent holds (the Accepted condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// A newer published version the customer has not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// `namespace/name` of the Delegation.
    pub delegation: String,
}

/// Runs `providers`.
pub async fn run(cluster: &Cluster, args: &ProvidersArgs, format: Format) -> anyhow::Result<()> {
    let scope = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let delegations = list_delegations(cluster, scope).await?;
    let bindings = list_bindings(cluster, scope).await?;
    if delegations.is_none() && bindings.is_none() {
        let ns = scope.unwrap_or("any namespace");
        anyhow::bail!(
            "you may read neither Delegations nor RoleBindings in {ns}: ask an admin of the namespace for the view role and read access to RoleBindings"
        );
    }
    if bindings.is_none() {
        eprintln!(
            "note: you may not list RoleBindings in {}, so principals and roles are not shown: ask a namespace admin for read access to RoleBindings",
            scope.unwrap_or("every namespace")
        );
    }
    let rows = rows(
        delegations.as_deref().unwrap_or_default(),
        bindings.as_deref(),
        scope,
    );
    let empty = match scope {
        Some(ns) => format!("No service provider manages namespace {ns}."),
        None => "No service provider manages any namespace you may read.".to_string(),
    };
    let now = Timestamp::now();
    output::print_rows(format, &rows, &empty, |rows| table(rows, now))
}

/// Delegations cluster-wide when allowed, else those of `scope`; `None`
/// when even those are forbidden.
async fn list_delegations(
    cluster: &Cluster,
    scope: Option<&str>,
) -> anyhow::Result<Option<Vec<Delegation>>> {
    let all: Api<Delegation> = Api::all(cluster.client.clone());
    match all.list(&ListParams::default()).await {
        Ok(list) => return Ok(Some(list.items)),
        Err(e) if is_forbidden(&e) && scope.is_some() => {}
        Err(e) => return Err(Request::new("list", "delegations").explain(e)),
    }
    let ns = scope.unwrap_or_default();
    let local: Api<Delegation> = Api::namespaced(cluster.client.clone(), ns);
    match local.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items)),
        Err(e) if is_forbidden(&e) => Ok(None),
        Err(e) => Err(Request::new("list", "delegations").namespace(ns).explain(e)),
    }
}

/// The operator's RoleBindings in `scope` (all namespaces when `None`);
/// `None` when forbidden.
async fn list_bindings(
    cluster: &Cluster,
    scope: Option<&str>,
) -> anyhow::Result<Option<Vec<RoleBinding>>> {
    let api: Api<RoleBinding> = match scope {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    match api
        .list(&ListParams::default().labels(names::MANAGED_SELECTOR))
        .await
    {
        Ok(list) => Ok(Some(list.items)),
        Err(e) if is_forbidden(&e) => Ok(None),
        Err(e) => {
            let request = Request::new("list", "rolebindings");
            let request = match scope {
                Some(ns) => request.namespace(ns),
                None => request,
            };
            Err(request.explain(e))
        }
    }
}

/// `(delegation namespace, delegation name)`.
type Key = (String, String);

fn label<'a>(rb: &'a RoleBinding, key: &str) -> Option<&'a str> {
    rb.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn binding_key(rb: &RoleBinding) -> Option<Key> {
    Some((
        label(rb, names::DELEGATION_NAMESPACE_LABEL)?.to_string(),
        label(rb, names::DELEGATION_LABEL)?.to_string(),
    ))
}

/// The namespaces a Delegation covers: its status's, or while it has none
/// its own list.
pub fn covered(d: &Delegation) -> Vec<String> {
    match &d.status {
        Some(s) if !s.namespaces.is_empty() => {
            s.namespaces.iter().map(|n| n.name.clone()).collect()
        }
        _ => d.target_namespaces(),
    }
}

/// The rows for `scope` (every namespace when `None`), sorted.
pub fn rows(
    delegations: &[Delegation],
    bindings: Option<&[RoleBinding]>,
    scope: Option<&str>,
) -> Vec<ProviderRow> {
    let in_scope = |ns: &str| scope.is_none_or(|s| s == ns);
    let mut by_key: BTreeMap<Key, Vec<&RoleBinding>> = BTreeMap::new();
    for rb in bindings.unwrap_or_default() {
        if let Some(key) = binding_key(rb)
            && in_scope(&rb.namespace().unwrap_or_default())
        {
            by_key.entry(key).or_default().push(rb);
        }
    }
    let mut out = Vec::new();
    for d in delegations {
        let key = (d.namespace().unwrap_or_default(), d.name_any());
        let own = by_key.remove(&key).unwrap_or_default();
        let mut namespaces: BTreeSet<String> =
            covered(d).into_iter().filter(|n| in_scope(n)).collect();
        namespaces.extend(own.iter().filter_map(|rb| rb.namespace()));
        for ns in namespaces {
            let here: Vec<&RoleBinding> = own
                .iter()
                .copied()
                .filter(|rb| rb.namespace().as_deref() == Some(&ns))
                .collect();
            out.extend(delegation_rows(d, &ns, &here));
        }
    }
    // Grants whose Delegation you may not read: what their labels say.
    for ((dns, dname), list) in by_key {
        for rb in list {
            out.extend(binding_rows(rb, &dname).into_iter().map(|mut row| {
                row.delegation = format!("{dns}/{dname}");
                row
            }));
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.delegation, &a.role, &a.principal).cmp(&(
            &b.namespace,
            &b.delegation,
            &b.role,
            &b.principal,
        ))
    });
    out
}

fn delegation_rows(d: &Delegation, ns: &str, bindings: &[&RoleBinding]) -> Vec<ProviderRow> {
    let status = d.status.as_ref();
    let base = ProviderRow {
        namespace: ns.to_string(),
        provider: or_dash(status.and_then(|s| s.managed_by_tenant.as_deref())),
        offer: format!("{}/{}", d.spec.offer_ref.namespace, d.spec.offer_ref.name),
        plan: d.spec.plan.clone(),
        version: or_dash(status.and_then(|s| s.applied_version.as_deref())),
        principal: "-".into(),
        role: "-".into(),
        activation: None,
        since: status
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "Accepted" && c.status == "True")
            })
            .map(|c| c.last_transition_time.clone()),
        update: status
            .and_then(|s| s.pending_update.as_ref())
            .map(|p| p.version.clone()),
        delegation: format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()),
    };
    let rows: Vec<ProviderRow> = bindings
        .iter()
        .flat_map(|rb| grants(rb, &d.name_any()))
        .map(|(principal, role, activation)| ProviderRow {
            principal,
            role,
            activation,
            ..base.clone()
        })
        .collect();
    if rows.is_empty() { vec![base] } else { rows }
}

/// Rows from a RoleBinding's labels alone.
fn binding_rows(rb: &RoleBinding, delegation: &str) -> Vec<ProviderRow> {
    let offer = match (
        label(rb, names::OFFER_NAMESPACE_LABEL),
        label(rb, names::OFFER_LABEL),
    ) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => "-".into(),
    };
    grants(rb, delegation)
        .into_iter()
        .map(|(principal, role, activation)| ProviderRow {
            namespace: rb.namespace().unwrap_or_default(),
            provider: "-".into(),
            offer: offer.clone(),
            plan: or_dash(label(rb, names::PLAN_LABEL)),
            version: or_dash(label(rb, names::VERSION_LABEL)),
            principal,
            role,
            activation,
            since: None,
            update: None,
            delegation: String::new(),
        })
        .collect()
}

/// `(principal, role, activation)` per subject of `rb`.
fn grants(rb: &RoleBinding, delegation: &str) -> Vec<(String, String, Option<String>)> {
    let role = role_name(rb, delegation);
    let activation = label(rb, names::ACTIVATION_LABEL).map(String::from);
    rb.subjects
        .iter()
        .flatten()
        .map(|s| (subject_text(s), role.clone(), activation.clone()))
        .collect()
}

fn subject_text(s: &Subject) -> String {
    match (&s.namespace, s.kind.as_str()) {
        (Some(ns), "ServiceAccount") => format!("ServiceAccount/{ns}/{}", s.name),
        _ => format!("{}/{}", s.kind, s.name),
    }
}

/// The role as the plan names it: the operator's per-Delegation Roles
/// stand for the deleter and the role assigner.
fn role_name(rb: &RoleBinding, delegation: &str) -> String {
    let r = &rb.role_ref;
    if r.kind == "Role" && r.name == names::deleter_role_name(delegation) {
        DELEGATION_DELETER_ROLE.to_string()
    } else if r.kind == "Role" && r.name.contains("-assigner-") {
        ROLE_ASSIGNER_ROLE.to_string()
    } else if r.kind == "Role" {
        format!("Role/{}", r.name)
    } else {
        r.name.clone()
    }
}

fn table(rows: &[ProviderRow], now: Timestamp) -> Table {
    let mut table = Table::new(&[
        "namespace",
        "provider",
        "offer",
        "plan",
        "version",
        "principal",
        "role",
        "since",
        "update",
        "delegation",
    ]);
    for r in rows {
        let role = match &r.activation {
            Some(a) => format!("{} (activation {a})", r.role),
            None => r.role.clone(),
        };
        table.push(vec![
            r.namespace.clone(),
            r.provider.clone(),
            r.offer.clone(),
            r.plan.clone(),
            r.version.clone(),
            r.principal.clone(),
            role,
            r.since
                .as_ref()
                .map_or("-".into(), |t| output::age(t.0, now)),
            or_dash(r.update.as_deref()),
            r.delegation.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::RoleRef;
    use msp_operator::api::{DelegationStatus, NamespaceStatus, PendingUpdate};
    use msp_operator::fixtures;

    fn delegation(ns: &str, name: &str, covers: &[&str]) -> Delegation {
        let mut d = fixtures::delegation(
            ns,
            name,
            ("contoso", "ops"),
            "basic",
            "1.0.0",
            Some(covers.to_vec()),
        );
        d.status = Some(DelegationStatus {
            managed_by_tenant: Some("contoso".into()),
            applied_version: Some("1.0.0".into()),
            namespaces: covers
                .iter()
                .map(|n| NamespaceStatus {
                    name: n.to_string(),
                    ready: true,
                    bindings: 1,
                    message: None,
                })
                .collect(),
            conditions: vec![crate::output::fixtures::condition(
                "Accepted", "True", "Accepted", "",
            )],
            pending_update: Some(PendingUpdate {
                version: "2.0.0".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        d
    }

    fn binding(
        ns: &str,
        of: (&str, &str),
        role: (&str, &str),
        subjects: &[(&str, &str)],
    ) -> RoleBinding {
        let labels = BTreeMap::from([
            (
                names::MANAGED_BY_LABEL.to_string(),
                "msp-operator".to_string(),
            ),
            (
                names::DELEGATION_NAMESPACE_LABEL.to_string(),
                of.0.to_string(),
            ),
            (names::DELEGATION_LABEL.to_string(), of.1.to_string()),
            (
                names::OFFER_NAMESPACE_LABEL.to_string(),
                "contoso".to_string(),
            ),
            (names::OFFER_LABEL.to_string(), "ops".to_string()),
            (names::PLAN_LABEL.to_string(), "basic".to_string()),
        ]);
        RoleBinding {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("msp-{}-{}", of.1, role.1)),
                namespace: Some(ns.into()),
                labels: Some(labels),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: role.0.into(),
                name: role.1.into(),
            },
            subjects: Some(
                subjects
                    .iter()
                    .map(|(kind, name)| Subject {
                        kind: kind.to_string(),
                        name: name.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn grants_are_rows_per_principal_and_explained_by_their_delegation() {
        let d = delegation("shop", "ops", &["web"]);
        let deleter = names::deleter_role_name("ops");
        let bindings = vec![
            binding(
                "web",
                ("shop", "ops"),
                ("ClusterRole", "msp-operator:reader"),
                &[("User", "jane"), ("Group", "contoso:ops")],
            ),
            binding(
                "shop",
                ("shop", "ops"),
                ("Role", &deleter),
                &[("User", "lena")],
            ),
            binding(
                "other",
                ("shop", "ops"),
                ("ClusterRole", "msp-operator:reader"),
                &[("User", "jane")],
            ),
        ];
        let web = rows(std::slice::from_ref(&d), Some(&bindings), Some("web"));
        assert_eq!(web.len(), 2);
        assert_eq!(web[0].principal, "Group/contoso:ops");
        assert_eq!(web[1].principal, "User/jane");
        assert_eq!(web[1].provider, "contoso");
        assert_eq!(web[1].update.as_deref(), Some("2.0.0"));
        assert_eq!(web[1].delegation, "shop/ops");
        // The deleter lives in the Delegation's own namespace, which it
        // does not delegate.
        let shop = rows(std::slice::from_ref(&d), Some(&bindings), Some("shop"));
        assert_eq!(shop.len(), 1);
        assert_eq!(shop[0].role, DELEGATION_DELETER_ROLE);
        let now = Timestamp::from_second(1_000_000 + 3 * 86_400).unwrap();
        let rendered = table(&web, now).render();
        assert!(rendered.starts_with("NAMESPACE   PROVIDER   OFFER         PLAN    VERSION   PRINCIPAL           ROLE                  SINCE   UPDATE   DELEGATION\n"), "{rendered}");
        assert!(rendered.contains("web         contoso    contoso/ops   basic   1.0.0     User/jane           msp-operator:reader   3d      2.0.0    shop/ops\n"), "{rendered}");
    }

    #[test]
    fn without_role_bindings_each_delegation_is_one_row() {
        let d = delegation("shop", "ops", &["shop", "web"]);
        let all = rows(std::slice::from_ref(&d), None, None);
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].namespace.as_str(), all[0].principal.as_str()),
            ("shop", "-")
        );
        assert_eq!(all[1].namespace, "web");
        // Lacking status, the Delegation's own list counts.
        let mut fresh = delegation("shop", "new", &[]);
        fresh.status = None;
        fresh.spec.namespaces = None;
        assert_eq!(covered(&fresh), vec!["shop"]);
        let here = rows(&[fresh], None, Some("shop"));
        assert_eq!(here[0].provider, "-");
        assert_eq!(here[0].version, "-");
        assert!(rows(&[d], None, Some("elsewhere")).is_empty());
    }

    #[test]
    fn grants_of_unreadable_delegations_come_from_their_labels() {
        let mut rb = binding(
            "web",
            ("hq", "ops"),
            ("ClusterRole", "msp-operator:reader"),
            &[("User", "jane")],
        );
        rb.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(names::ACTIVATION_LABEL.into(), "fix-4711".into());
        let found = rows(&[], Some(&[rb]), Some("web"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].delegation, "hq/ops");
        assert_eq!(found[0].offer, "contoso/ops");
        assert_eq!(found[0].provider, "-");
        assert_eq!(found[0].activation.as_deref(), Some("fix-4711"));
        let rendered = table(&found, Timestamp::now()).render();
        assert!(
            rendered.contains("msp-operator:reader (activation fix-4711)"),
            "{rendered}"
        );
    }
}
