//! Role delegability over arbitrary rule sets and aggregation graphs.
//! Invariant: a role judged delegable grants, through itself and every role
//! it aggregates, no wildcard, no escalate/bind/impersonate, no write in the
//! RBAC group, and no secrets, exec, attach, port-forward or token access.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use k8s_openapi::api::rbac::v1::{AggregationRule, ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use libfuzzer_sys::fuzz_target;
use msp_operator::domain::delegability::{DELEGABLE_LABEL, check_delegable};
use std::collections::BTreeMap;

const GROUPS: &[&str] = &[
    "",
    "apps",
    "rbac.authorization.k8s.io",
    "*",
    "batch",
    "x.example",
];
const RESOURCES: &[&str] = &[
    "pods",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "pods/*",
    "secrets",
    "*",
    "serviceaccounts/token",
    "serviceaccounts/*",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "configmaps",
    "deployments",
];
const VERBS: &[&str] = &[
    "get",
    "list",
    "create",
    "update",
    "patch",
    "delete",
    "*",
    "bind",
    "escalate",
    "impersonate",
    "deletecollection",
];
const LABELS: &[&str] = &["a", "b", "c"];

fn pick<'a>(u: &mut Unstructured, from: &[&'a str]) -> arbitrary::Result<Vec<String>> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| Ok(u.choose(from)?.to_string())).collect()
}

fn role(u: &mut Unstructured, name: String) -> arbitrary::Result<ClusterRole> {
    let rules = (0..u.int_in_range(0..=3)?)
        .map(|_| {
            Ok(PolicyRule {
                api_groups: Some(pick(u, GROUPS)?),
                resources: Some(pick(u, RESOURCES)?),
                verbs: pick(u, VERBS)?,
                ..Default::default()
            })
        })
        .collect::<arbitrary::Result<Vec<_>>>()?;
    let mut labels = BTreeMap::new();
    if bool::arbitrary(u)? {
        labels.insert(DELEGABLE_LABEL.to_string(), "true".to_string());
    }
    for label in LABELS {
        if bool::arbitrary(u)? {
            labels.insert((*label).to_string(), "yes".to_string());
        }
    }
    let aggregation_rule = if bool::arbitrary(u)? {
        let label = u.choose(LABELS)?.to_string();
        Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([(label, "yes".to_string())].into()),
                ..Default::default()
            }]),
        })
    } else {
        None
    };
    Ok(ClusterRole {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        rules: Some(rules),
        aggregation_rule,
    })
}

/// True when `rule` grants something no delegable role may (the oracle,
/// written without the code under test).
fn forbidden(rule: &PolicyRule) -> bool {
    let groups = rule.api_groups.clone().unwrap_or_default();
    let resources = rule.resources.clone().unwrap_or_default();
    let any = |list: &[String], x: &str| list.iter().any(|v| v == x);
    if rule.verbs.is_empty() || resources.is_empty() || groups.is_empty() {
        return false;
    }
    if any(&rule.verbs, "*") || any(&groups, "*") && !resources.is_empty() || any(&resources, "*") {
        return true;
    }
    if ["bind", "escalate", "impersonate"]
        .iter()
        .any(|v| any(&rule.verbs, v))
    {
        return true;
    }
    let writes = ["create", "update", "patch", "delete", "deletecollection"]
        .iter()
        .any(|v| any(&rule.verbs, v));
    if writes && any(&groups, "rbac.authorization.k8s.io") {
        return true;
    }
    any(&groups, "")
        && resources.iter().any(|r| {
            [
                "secrets",
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "serviceaccounts/token",
                "pods/*",
                "serviceaccounts/*",
            ]
            .contains(&r.as_str())
        })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(count) = u.int_in_range(1..=5usize) else {
        return;
    };
    let Ok(roles) = (0..count)
        .map(|i| role(&mut u, format!("r{i}")))
        .collect::<arbitrary::Result<Vec<_>>>()
    else {
        return;
    };
    let lookup = |name: &str| {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    };
    if check_delegable("r0", lookup, || roles.iter().collect()).is_err() {
        return;
    }
    // Delegable: r0 and everything it aggregates (transitively) is clean.
    let mut seen = vec!["r0".to_string()];
    let mut i = 0;
    while i < seen.len() {
        let role = lookup(&seen[i]).expect("role");
        for rule in role.rules.iter().flatten() {
            assert!(
                !forbidden(rule),
                "delegable role {} grants {rule:?}",
                seen[i]
            );
        }
        for selector in role
            .aggregation_rule
            .iter()
            .flat_map(|a| a.cluster_role_selectors.iter().flatten())
        {
            for other in &roles {
                let labels = other.metadata.labels.clone().unwrap_or_default();
                let matches = selector
                    .match_labels
                    .iter()
                    .flatten()
                    .all(|(k, v)| labels.get(k) == Some(v));
                let name = other.metadata.name.clone().unwrap_or_default();
                if matches && !seen.contains(&name) {
                    seen.push(name);
                }
            }
        }
        i += 1;
    }
});
