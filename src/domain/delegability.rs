//! Which ClusterRoles a delegation may grant to a service provider.
//!
//! Azure Lighthouse refuses to delegate Owner, roles that can write role
//! assignments, and roles with data actions: a provider must never be able to
//! widen its own access or read what the customer keeps secret. This module is
//! the Kubernetes analog. A ClusterRole is delegable only when it is not
//! `cluster-admin`, the customer has labeled it `msp-operator.io/delegable:
//! "true"`, and its effective rules (its own, plus, transitively, those of every
//! ClusterRole its `aggregationRule` selects) grant no wildcard, no
//! privilege-escalating verb (`escalate`, `bind`, `impersonate`), no write to
//! RBAC objects, and no access to secrets, to exec/attach/port-forward into
//! pods, or to service account tokens.
//!
//! The module is pure: it reads ClusterRoles through closures and never talks
//! to the API server, so every rule can be tested exhaustively.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::RBAC_GROUP;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::HashMap;
use std::sync::Arc;

/// Label that marks a ClusterRole as offered for delegation.
pub const DELEGABLE_LABEL: &str = "msp-operator.io/delegable";

/// The only value of [`DELEGABLE_LABEL`] that offers a role.
const DELEGABLE_VALUE: &str = "true";
/// The role that is never delegable, whatever its labels.
const CLUSTER_ADMIN: &str = "cluster-admin";
/// RBAC's wildcard for verbs, apiGroups and resources.
const WILDCARD: &str = "*";
/// The core API group.
const CORE_GROUP: &str = "";
/// The resources of [`RBAC_GROUP`].
const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];
/// Verbs that let the holder grant itself more than it has, on anything.
const ESCALATING_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];
/// Verbs that modify objects.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
/// Core-group resources a delegated role may not name with any verb.
const FORBIDDEN_CORE_RESOURCES: [&str; 5] = [
    "secrets",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "serviceaccounts/token",
];

/// Why a role cannot be delegated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `cluster-admin` is never delegable.
    ClusterAdmin,
    /// No ClusterRole of that name exists.
    NotFound,
    /// The role lacks `msp-operator.io/delegable: "true"`.
    NotLabeled,
    /// The effective rules grant forbidden access; one message per problem.
    ForbiddenRules(Vec<String>),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClusterAdmin => {
                write!(
                    f,
                    "{CLUSTER_ADMIN} is never delegable; delegate a narrower role"
                )
            }
            Self::NotFound => f.write_str("no ClusterRole of that name exists"),
            Self::NotLabeled => {
                write!(f, "it is not labeled {DELEGABLE_LABEL}={DELEGABLE_VALUE:?}")
            }
            Self::ForbiddenRules(problems) => f.write_str(&problems.join("; ")),
        }
    }
}

/// Checks whether ClusterRole `name` may be delegated. `lookup` finds a ClusterRole by name;
/// `all` yields every ClusterRole (used to resolve aggregation selectors).
///
/// When several refusals apply, the first of [`Refusal::ClusterAdmin`],
/// [`Refusal::NotFound`], [`Refusal::NotLabeled`] and [`Refusal::ForbiddenRules`]
/// wins. `all` is called at most once, and only when an aggregationRule must be
/// resolved. Roles are visited breadth-first: `name` itself, then the roles it
/// aggregates in name order, then theirs; no role is visited twice.
pub fn check_delegable<'a>(
    name: &str,
    lookup: impl Fn(&str) -> Option<&'a ClusterRole>,
    all: impl Fn() -> Vec<&'a ClusterRole>,
) -> Result<(), Refusal> {
    if name == CLUSTER_ADMIN {
        return Err(Refusal::ClusterAdmin);
    }
    let role = lookup(name).ok_or(Refusal::NotFound)?;
    let labeled = role
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(DELEGABLE_LABEL))
        .is_some_and(|value| value == DELEGABLE_VALUE);
    if !labeled {
        return Err(Refusal::NotLabeled);
    }
    let problems = effective_problems(role, all);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Refusal::ForbiddenRules(problems))
    }
}

/// What ClusterRole `name` (with every role it aggregates) lets its holder do
/// with workloads, one line per grant (see [`rule_workload_power`]); empty
/// when nothing, or when no such role exists.
///
/// Such a role is delegable only with the customer's acknowledgment: whoever
/// can create or change a Pod, or a controller that makes Pods, can run it
/// as any ServiceAccount of the namespace and mount any Secret there, so the
/// role reaches what [`check_delegable`] otherwise keeps out.
pub fn workload_power<'a>(
    name: &str,
    lookup: impl Fn(&str) -> Option<&'a ClusterRole>,
    all: impl Fn() -> Vec<&'a ClusterRole>,
) -> Vec<String> {
    let Some(root) = lookup(name) else {
        return Vec::new();
    };
    effective_roles(root, all)
        .into_iter()
        .flat_map(|role| {
            let name = role_name(role);
            role.rules
                .iter()
                .flatten()
                .enumerate()
                .flat_map(move |(index, rule)| rule_workload_power(name, index, rule))
        })
        .collect()
}

/// The cluster's ClusterRoles by name, borrowed from a cache snapshot: what
/// both controllers check delegability against.
pub struct RoleCatalog<'a> {
    by_name: HashMap<&'a str, &'a ClusterRole>,
}

impl<'a> RoleCatalog<'a> {
    /// Indexes `roles` (a cache snapshot) by name.
    pub fn new(roles: &'a [Arc<ClusterRole>]) -> Self {
        Self {
            by_name: roles
                .iter()
                .filter_map(|r| Some((r.metadata.name.as_deref()?, r.as_ref())))
                .collect(),
        }
    }

    /// [`check_delegable`] against this catalog.
    pub fn check(&self, name: &str) -> Result<(), Refusal> {
        check_delegable(
            name,
            |n| self.by_name.get(n).copied(),
            || self.by_name.values().copied().collect(),
        )
    }

    /// Every rule ClusterRole `name` grants, its aggregated roles' included
    /// (empty when no such role exists).
    pub fn effective_rules(&self, name: &str) -> Vec<PolicyRule> {
        let Some(root) = self.by_name.get(name).copied() else {
            return Vec::new();
        };
        effective_roles(root, || self.by_name.values().copied().collect())
            .into_iter()
            .flat_map(|role| role.rules.iter().flatten().cloned())
            .collect()
    }

    /// [`workload_power`] against this catalog.
    pub fn workload_power(&self, name: &str) -> Vec<String> {
        workload_power(
            name,
            |n| self.by_name.get(n).copied(),
            || self.by_name.values().copied().collect(),
        )
    }
}

/// True when `selector` matches `labels` (Kubernetes LabelSelector semantics; an unknown operator matches nothing).
///
/// `matchLabels` and `matchExpressions` must all hold; an empty selector
/// matches every set of labels. A requirement Kubernetes would reject (an
/// unknown operator, `In`/`NotIn` without values, `Exists`/`DoesNotExist`
/// with values) makes the whole selector match nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    labels_hold
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|requirement| requirement_matches(requirement, labels))
}

/// The problems of one rule (empty when the rule is acceptable), each message prefixed with `ClusterRole "<role>" rule <index>`.
///
/// A wildcard is reported once, as a wildcard, and not expanded into every
/// forbidden grant it implies; an apiGroup `*` does count as the core and RBAC
/// groups for the resources a rule names explicitly.
pub fn rule_problems(role: &str, index: usize, rule: &PolicyRule) -> Vec<String> {
    let prefix = format!("ClusterRole {role:?} rule {index}");
    let verbs = distinct(&rule.verbs);
    let groups = distinct(rule.api_groups.as_deref().unwrap_or_default());
    let resources = distinct(rule.resources.as_deref().unwrap_or_default());
    let any_group = groups.contains(&WILDCARD);
    let mut problems = Vec::new();

    for (list, kind) in [
        (&verbs, "verb"),
        (&groups, "apiGroup"),
        (&resources, "resource"),
    ] {
        if list.contains(&WILDCARD) {
            problems.push(format!("{prefix} uses the wildcard {kind} {WILDCARD:?}"));
        }
    }

    for verb in verbs.iter().filter(|verb| ESCALATING_VERBS.contains(verb)) {
        problems.push(format!(
            "{prefix} grants the privilege-escalating verb {verb:?}"
        ));
    }

    let writes: Vec<&str> = verbs
        .iter()
        .copied()
        .filter(|verb| WRITE_VERBS.contains(verb))
        .collect();
    if !writes.is_empty() {
        if groups.contains(&RBAC_GROUP) {
            problems.push(format!(
                "{prefix} grants {} in apiGroup {RBAC_GROUP:?}",
                quoted(&writes)
            ));
        } else if any_group {
            let rbac: Vec<&str> = resources
                .iter()
                .copied()
                .filter(|resource| RBAC_RESOURCES.contains(resource))
                .collect();
            if !rbac.is_empty() {
                problems.push(format!(
                    "{prefix} grants {} on {} in apiGroup {WILDCARD:?}, which includes {RBAC_GROUP:?}",
                    quoted(&writes),
                    quoted(&rbac)
                ));
            }
        }
    }

    if !verbs.is_empty() && (any_group || groups.contains(&CORE_GROUP)) {
        for &resource in resources.iter().filter(|&&resource| resource != WILDCARD) {
            let covered: Vec<&str> = FORBIDDEN_CORE_RESOURCES
                .into_iter()
                .filter(|forbidden| resource_covers(resource, forbidden))
                .collect();
            if covered == [resource] {
                problems.push(format!(
                    "{prefix} grants {} on {resource:?}",
                    quoted(&verbs)
                ));
            } else if !covered.is_empty() {
                problems.push(format!(
                    "{prefix} grants {} on {resource:?}, which covers {}",
                    quoted(&verbs),
                    quoted(&covered)
                ));
            }
        }
    }

    problems
}

/// The problems of the role `root` and of every role it aggregates, in visit order.
fn effective_problems<'a>(
    root: &'a ClusterRole,
    all: impl Fn() -> Vec<&'a ClusterRole>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for role in effective_roles(root, all) {
        let name = role_name(role);
        for (index, rule) in role.rules.iter().flatten().enumerate() {
            problems.extend(rule_problems(name, index, rule));
        }
        for (index, selector) in aggregation_selectors(role).iter().enumerate() {
            problems.extend(selector_problems(name, index, selector));
        }
    }
    problems
}

/// The selectors of `role`'s aggregationRule (none without one).
fn aggregation_selectors(role: &ClusterRole) -> &[LabelSelector] {
    role.aggregation_rule
        .as_ref()
        .and_then(|aggregation| aggregation.cluster_role_selectors.as_deref())
        .unwrap_or_default()
}

/// `root` and every role it aggregates, transitively, breadth-first: `root`,
/// then the roles it aggregates in name order, then theirs; none twice.
fn effective_roles<'a>(
    root: &'a ClusterRole,
    all: impl Fn() -> Vec<&'a ClusterRole>,
) -> Vec<&'a ClusterRole> {
    let no_labels = BTreeMap::new();
    // Every ClusterRole in name order, fetched when the first aggregationRule is met.
    let mut candidates: Option<Vec<&'a ClusterRole>> = None;
    // Roles are keyed by name: the API server gives every ClusterRole a unique one.
    let mut visited: BTreeSet<&'a str> = BTreeSet::new();
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::new();

    while let Some(role) = queue.pop_front() {
        if !visited.insert(role_name(role)) {
            continue;
        }
        out.push(role);
        let selectors = aggregation_selectors(role);
        if selectors.is_empty() {
            continue;
        }
        let candidates = candidates.get_or_insert_with(|| {
            let mut roles = all();
            roles.sort_by(|a, b| role_name(a).cmp(role_name(b)));
            roles
        });
        for &candidate in candidates.iter() {
            let labels = candidate.metadata.labels.as_ref().unwrap_or(&no_labels);
            if !visited.contains(role_name(candidate))
                && selectors
                    .iter()
                    .any(|selector| selector_matches(selector, labels))
            {
                queue.push_back(candidate);
            }
        }
    }
    out
}

/// Workload resources by API group: who may create or change them can run a
/// Pod with any ServiceAccount of the namespace and mount any of its Secrets.
const WORKLOAD_RESOURCES: [(&str, &[&str]); 3] = [
    (
        CORE_GROUP,
        &[
            "pods",
            "pods/ephemeralcontainers",
            "replicationcontrollers",
            "endpoints",
        ],
    ),
    (
        "apps",
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
    ),
    ("batch", &["jobs", "cronjobs"]),
];
/// Resources where any verb reaches into workloads (the API server proxies
/// requests to a Pod or Service).
const PROXY_RESOURCES: [&str; 2] = ["pods/proxy", "services/proxy"];
/// EndpointSlices: writing them redirects a Service's traffic.
const DISCOVERY_GROUP: &str = "discovery.k8s.io";
/// Verbs that create or change a workload's spec.
const WORKLOAD_VERBS: [&str; 3] = ["create", "update", "patch"];

/// What rule `index` of `role` lets its holder do with workloads: run or
/// change Pods (directly or through a controller), proxy into them, or
/// redirect Service traffic. Empty when nothing. Wildcards are refused by
/// [`rule_problems`] and not expanded here.
pub fn rule_workload_power(role: &str, index: usize, rule: &PolicyRule) -> Vec<String> {
    let verbs = distinct(&rule.verbs);
    let groups = distinct(rule.api_groups.as_deref().unwrap_or_default());
    let resources = distinct(rule.resources.as_deref().unwrap_or_default());
    let writes: Vec<&str> = verbs
        .iter()
        .copied()
        .filter(|verb| WORKLOAD_VERBS.contains(verb))
        .collect();
    let mut out = Vec::new();
    let mut say = |what: &str, resource: &str, group: &str| {
        out.push(format!(
            "ClusterRole {role:?} rule {index} grants {what} on {resource:?} in apiGroup {group:?}"
        ));
    };
    for &group in &groups {
        for &resource in &resources {
            let workload = WORKLOAD_RESOURCES
                .iter()
                .any(|(g, names)| *g == group && names.contains(&resource))
                || (group == DISCOVERY_GROUP && resource == "endpointslices");
            if workload && !writes.is_empty() {
                say(&quoted(&writes), resource, group);
            }
            if group == CORE_GROUP && PROXY_RESOURCES.contains(&resource) && !verbs.is_empty() {
                say(&quoted(&verbs), resource, group);
            }
        }
    }
    out
}

/// The problems of selector `index` of `role`'s aggregationRule: requirements
/// Kubernetes would reject, which make the selector match nothing.
fn selector_problems(role: &str, index: usize, selector: &LabelSelector) -> Vec<String> {
    selector
        .match_expressions
        .iter()
        .flatten()
        .filter_map(|requirement| {
            parse_requirement(requirement).err().map(|problem| {
                format!(
                    "ClusterRole {role:?} aggregationRule selector {index} {problem} for key {:?}",
                    requirement.key
                )
            })
        })
        .collect()
}

/// A LabelSelectorRequirement operator.
#[derive(Clone, Copy)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The operator of `requirement`, or why Kubernetes would reject it.
fn parse_requirement(requirement: &LabelSelectorRequirement) -> Result<Operator, String> {
    let operator = match requirement.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        unknown => return Err(format!("uses the unknown operator {unknown:?}")),
    };
    let has_values = requirement
        .values
        .as_ref()
        .is_some_and(|values| !values.is_empty());
    match (operator, has_values) {
        (Operator::In | Operator::NotIn, false) => Err(format!(
            "uses the operator {:?} without values",
            requirement.operator
        )),
        (Operator::Exists | Operator::DoesNotExist, true) => Err(format!(
            "uses the operator {:?} with values",
            requirement.operator
        )),
        _ => Ok(operator),
    }
}

/// True when `requirement` is valid and holds for `labels`.
fn requirement_matches(
    requirement: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Ok(operator) = parse_requirement(requirement) else {
        return false;
    };
    let value = labels.get(&requirement.key);
    let values = requirement.values.as_deref().unwrap_or_default();
    match operator {
        Operator::In => value.is_some_and(|value| values.contains(value)),
        Operator::NotIn => value.is_none_or(|value| !values.contains(value)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
    }
}

/// True when the RBAC resource string `pattern` grants access to `target`
/// (`resource` or `resource/subresource`). Besides an exact match, `*` covers
/// everything, `r/*` every subresource of `r`, `*/s` subresource `s` of every
/// resource, and `*/*` every subresource.
fn resource_covers(pattern: &str, target: &str) -> bool {
    if pattern == WILDCARD || pattern == target {
        return true;
    }
    let (Some((resource, subresource)), Some((pattern_resource, pattern_subresource))) =
        (target.split_once('/'), pattern.split_once('/'))
    else {
        return false;
    };
    (pattern_resource == resource || pattern_resource == WILDCARD)
        && (pattern_subresource == subresource || pattern_subresource == WILDCARD)
}

/// The name of `role`; the API server gives every ClusterRole one.
fn role_name(role: &ClusterRole) -> &str {
    role.metadata.name.as_deref().unwrap_or_default()
}

/// `items` without repeats, in first-seen order.
fn distinct(items: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .map(String::as_str)
        .filter(|item| seen.insert(*item))
        .collect()
}

/// `items` quoted and joined with ", ", e.g. `"get", "list"`.
fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            ..PolicyRule::default()
        }
    }

    fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            non_resource_urls: Some(strings(urls)),
            verbs: strings(verbs),
            ..PolicyRule::default()
        }
    }

    fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: (!labels.is_empty()).then(|| label_map(labels)),
                ..ObjectMeta::default()
            },
            rules: Some(rules),
            ..ClusterRole::default()
        }
    }

    fn delegable(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        role(name, &[(DELEGABLE_LABEL, "true")], rules)
    }

    fn aggregating(mut role: ClusterRole, selectors: Vec<LabelSelector>) -> ClusterRole {
        role.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(selectors),
        });
        role
    }

    fn match_labels(labels: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(label_map(labels)),
            ..LabelSelector::default()
        }
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: (!values.is_empty()).then(|| strings(values)),
        }
    }

    fn match_expressions(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(requirements),
            ..LabelSelector::default()
        }
    }

    fn check(name: &str, roles: &[ClusterRole]) -> Result<(), Refusal> {
        check_delegable(
            name,
            |wanted| roles.iter().find(|role| role_name(role) == wanted),
            || roles.iter().collect(),
        )
    }

    fn forbidden(name: &str, roles: &[ClusterRole]) -> Vec<String> {
        match check(name, roles) {
            Err(Refusal::ForbiddenRules(problems)) => problems,
            other => panic!("expected ForbiddenRules, got {other:?}"),
        }
    }

    fn problems_of(rule: &PolicyRule) -> Vec<String> {
        rule_problems("r", 0, rule)
    }

    fn reader_rules() -> Vec<PolicyRule> {
        vec![
            rule(
                &[""],
                &["pods", "services", "configmaps"],
                &["get", "list", "watch"],
            ),
            rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
        ]
    }

    fn operator_rules() -> Vec<PolicyRule> {
        let mut rules = reader_rules();
        rules.push(rule(
            &["apps"],
            &["deployments"],
            &["create", "update", "patch", "delete"],
        ));
        rules.push(rule(
            &[""],
            &["pods"],
            &["create", "update", "patch", "delete", "deletecollection"],
        ));
        rules
    }

    // ---- rule_problems: wildcards ----

    #[test]
    fn wildcard_verb_is_refused() {
        assert_eq!(
            rule_problems("x", 0, &rule(&["apps"], &["deployments"], &["get", "*"])),
            ["ClusterRole \"x\" rule 0 uses the wildcard verb \"*\""]
        );
    }

    #[test]
    fn wildcard_api_group_is_refused() {
        assert_eq!(
            rule_problems("x", 3, &rule(&["*"], &["deployments"], &["get"])),
            ["ClusterRole \"x\" rule 3 uses the wildcard apiGroup \"*\""]
        );
    }

    #[test]
    fn wildcard_resource_is_refused() {
        assert_eq!(
            rule_problems("x", 1, &rule(&["apps"], &["*"], &["get"])),
            ["ClusterRole \"x\" rule 1 uses the wildcard resource \"*\""]
        );
    }

    #[test]
    fn wildcard_resource_in_core_group_is_reported_once() {
        assert_eq!(
            problems_of(&rule(&[""], &["*"], &["get"])),
            ["ClusterRole \"r\" rule 0 uses the wildcard resource \"*\""]
        );
    }

    #[test]
    fn full_wildcard_rule_reports_each_wildcard() {
        assert_eq!(
            rule_problems("cluster-admin-like", 0, &rule(&["*"], &["*"], &["*"])),
            [
                "ClusterRole \"cluster-admin-like\" rule 0 uses the wildcard verb \"*\"",
                "ClusterRole \"cluster-admin-like\" rule 0 uses the wildcard apiGroup \"*\"",
                "ClusterRole \"cluster-admin-like\" rule 0 uses the wildcard resource \"*\"",
            ]
        );
    }

    #[test]
    fn wildcard_verb_on_non_resource_urls_is_refused() {
        assert_eq!(
            problems_of(&url_rule(&["/healthz", "/metrics"], &["*"])),
            ["ClusterRole \"r\" rule 0 uses the wildcard verb \"*\""]
        );
    }

    #[test]
    fn non_resource_urls_are_harmless() {
        assert!(problems_of(&url_rule(&["/healthz", "/metrics/*"], &["get"])).is_empty());
        assert!(problems_of(&url_rule(&["*"], &["get"])).is_empty());
    }

    // ---- rule_problems: escalating verbs ----

    #[test]
    fn escalating_verbs_are_refused_on_anything() {
        for verb in ESCALATING_VERBS {
            let expected = [format!(
                "ClusterRole \"r\" rule 0 grants the privilege-escalating verb \"{verb}\""
            )];
            assert_eq!(
                problems_of(&rule(
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles"],
                    &[verb]
                )),
                expected
            );
            assert_eq!(
                problems_of(&rule(&[""], &["users", "serviceaccounts"], &["get", verb])),
                expected
            );
            assert_eq!(
                problems_of(&rule(&["apps"], &["deployments"], &[verb])),
                expected
            );
            assert_eq!(problems_of(&url_rule(&["/healthz"], &[verb])), expected);
        }
    }

    #[test]
    fn all_escalating_verbs_are_reported() {
        assert_eq!(
            problems_of(&rule(
                &["rbac.authorization.k8s.io"],
                &["roles"],
                &["bind", "escalate", "impersonate"]
            )),
            [
                "ClusterRole \"r\" rule 0 grants the privilege-escalating verb \"bind\"",
                "ClusterRole \"r\" rule 0 grants the privilege-escalating verb \"escalate\"",
                "ClusterRole \"r\" rule 0 grants the privilege-escalating verb \"impersonate\"",
            ]
        );
    }

    // ---- rule_problems: RBAC writes ----

    #[test]
    fn each_rbac_write_verb_is_refused() {
        for verb in WRITE_VERBS {
            for resource in RBAC_RESOURCES {
                assert_eq!(
                    problems_of(&rule(&["rbac.authorization.k8s.io"], &[resource], &[verb])),
                    [format!(
                        "ClusterRole \"r\" rule 0 grants \"{verb}\" in apiGroup \"rbac.authorization.k8s.io\""
                    )]
                );
            }
        }
    }

    #[test]
    fn rbac_writes_are_listed_in_one_message() {
        assert_eq!(
            problems_of(&rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["get", "create", "delete"]
            )),
            [
                "ClusterRole \"r\" rule 0 grants \"create\", \"delete\" in apiGroup \"rbac.authorization.k8s.io\""
            ]
        );
    }

    #[test]
    fn rbac_writes_are_refused_whatever_the_resource() {
        assert_eq!(
            problems_of(&rule(
                &["apps", "rbac.authorization.k8s.io"],
                &["deployments"],
                &["patch"]
            )),
            ["ClusterRole \"r\" rule 0 grants \"patch\" in apiGroup \"rbac.authorization.k8s.io\""]
        );
    }

    #[test]
    fn rbac_reads_are_allowed() {
        assert!(
            problems_of(&rule(
                &["rbac.authorization.k8s.io"],
                &RBAC_RESOURCES,
                &["get", "list", "watch"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn rbac_writes_through_wildcard_group_are_refused() {
        assert_eq!(
            problems_of(&rule(
                &["*"],
                &["roles", "rolebindings"],
                &["create", "list"]
            )),
            [
                "ClusterRole \"r\" rule 0 uses the wildcard apiGroup \"*\"",
                "ClusterRole \"r\" rule 0 grants \"create\" on \"roles\", \"rolebindings\" in apiGroup \"*\", which includes \"rbac.authorization.k8s.io\"",
            ]
        );
    }

    #[test]
    fn wildcard_group_writes_on_other_resources_report_only_the_wildcard() {
        assert_eq!(
            problems_of(&rule(&["*"], &["deployments"], &["create"])),
            ["ClusterRole \"r\" rule 0 uses the wildcard apiGroup \"*\""]
        );
    }

    #[test]
    fn writes_outside_rbac_are_allowed() {
        assert!(
            problems_of(&rule(
                &["apps", "batch", ""],
                &["deployments", "jobs", "configmaps", "roles"],
                &WRITE_VERBS
            ))
            .is_empty()
        );
    }

    // ---- rule_problems: forbidden core resources ----

    #[test]
    fn secrets_are_refused_for_any_verb() {
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            assert_eq!(
                rule_problems("pod-helper", 2, &rule(&[""], &["secrets"], &[verb])),
                [format!(
                    "ClusterRole \"pod-helper\" rule 2 grants \"{verb}\" on \"secrets\""
                )]
            );
        }
    }

    #[test]
    fn each_forbidden_core_resource_is_refused_exactly() {
        for resource in FORBIDDEN_CORE_RESOURCES {
            assert_eq!(
                problems_of(&rule(&[""], &["pods", resource], &["get", "create"])),
                [format!(
                    "ClusterRole \"r\" rule 0 grants \"get\", \"create\" on \"{resource}\""
                )]
            );
        }
    }

    #[test]
    fn whole_resource_subresource_wildcard_is_refused() {
        assert_eq!(
            problems_of(&rule(&[""], &["pods/*"], &["get"])),
            [
                "ClusterRole \"r\" rule 0 grants \"get\" on \"pods/*\", which covers \"pods/exec\", \"pods/attach\", \"pods/portforward\""
            ]
        );
        assert_eq!(
            problems_of(&rule(&[""], &["serviceaccounts/*"], &["create"])),
            [
                "ClusterRole \"r\" rule 0 grants \"create\" on \"serviceaccounts/*\", which covers \"serviceaccounts/token\""
            ]
        );
    }

    #[test]
    fn cross_resource_subresource_wildcards_are_refused() {
        for (pattern, covered) in [
            ("*/exec", "pods/exec"),
            ("*/attach", "pods/attach"),
            ("*/portforward", "pods/portforward"),
            ("*/token", "serviceaccounts/token"),
        ] {
            assert_eq!(
                problems_of(&rule(&[""], &[pattern], &["get"])),
                [format!(
                    "ClusterRole \"r\" rule 0 grants \"get\" on \"{pattern}\", which covers \"{covered}\""
                )]
            );
        }
    }

    #[test]
    fn every_subresource_wildcard_is_refused() {
        assert_eq!(
            problems_of(&rule(&[""], &["*/*"], &["get"])),
            [
                "ClusterRole \"r\" rule 0 grants \"get\" on \"*/*\", which covers \"pods/exec\", \"pods/attach\", \"pods/portforward\", \"serviceaccounts/token\""
            ]
        );
    }

    #[test]
    fn harmless_subresources_are_allowed() {
        assert!(
            problems_of(&rule(
                &[""],
                &[
                    "pods",
                    "pods/log",
                    "pods/status",
                    "*/status",
                    "*/log",
                    "serviceaccounts",
                    "secrets/*",
                    "deployments/*",
                ],
                &["get", "list", "watch"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn resource_names_do_not_make_forbidden_resources_acceptable() {
        let mut limited = rule(&[""], &["secrets"], &["get"]);
        limited.resource_names = Some(strings(&["only-this-one"]));
        assert_eq!(
            problems_of(&limited),
            ["ClusterRole \"r\" rule 0 grants \"get\" on \"secrets\""]
        );
    }

    #[test]
    fn same_resource_names_in_other_groups_are_allowed() {
        assert!(
            problems_of(&rule(
                &["example.com"],
                &["secrets", "pods/exec", "*/token"],
                &["get"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn forbidden_resources_through_wildcard_group_are_refused() {
        assert_eq!(
            problems_of(&rule(&["*"], &["secrets"], &["list"])),
            [
                "ClusterRole \"r\" rule 0 uses the wildcard apiGroup \"*\"",
                "ClusterRole \"r\" rule 0 grants \"list\" on \"secrets\"",
            ]
        );
    }

    #[test]
    fn wildcard_verb_on_secrets_reports_both() {
        assert_eq!(
            problems_of(&rule(&[""], &["secrets"], &["*"])),
            [
                "ClusterRole \"r\" rule 0 uses the wildcard verb \"*\"",
                "ClusterRole \"r\" rule 0 grants \"*\" on \"secrets\"",
            ]
        );
    }

    #[test]
    fn repeated_values_are_reported_once() {
        assert_eq!(
            problems_of(&rule(
                &["", ""],
                &["secrets", "secrets"],
                &["get", "get", "*", "*"]
            )),
            [
                "ClusterRole \"r\" rule 0 uses the wildcard verb \"*\"",
                "ClusterRole \"r\" rule 0 grants \"get\", \"*\" on \"secrets\"",
            ]
        );
    }

    #[test]
    fn a_rule_without_verbs_grants_nothing() {
        assert!(problems_of(&rule(&[""], &["secrets"], &[])).is_empty());
    }

    #[test]
    fn all_problems_of_one_rule_are_reported_in_order() {
        assert_eq!(
            rule_problems(
                "bad",
                4,
                &rule(
                    &["", "rbac.authorization.k8s.io"],
                    &["secrets", "pods/*", "roles"],
                    &["*", "bind", "delete"]
                )
            ),
            [
                "ClusterRole \"bad\" rule 4 uses the wildcard verb \"*\"",
                "ClusterRole \"bad\" rule 4 grants the privilege-escalating verb \"bind\"",
                "ClusterRole \"bad\" rule 4 grants \"delete\" in apiGroup \"rbac.authorization.k8s.io\"",
                "ClusterRole \"bad\" rule 4 grants \"*\", \"bind\", \"delete\" on \"secrets\"",
                "ClusterRole \"bad\" rule 4 grants \"*\", \"bind\", \"delete\" on \"pods/*\", which covers \"pods/exec\", \"pods/attach\", \"pods/portforward\"",
            ]
        );
    }

    #[test]
    fn typical_rules_are_acceptable() {
        for (index, rule) in operator_rules().iter().enumerate() {
            assert!(rule_problems("op", index, rule).is_empty(), "{rule:?}");
        }
    }

    // ---- selector_matches ----

    #[test]
    fn empty_selector_matches_everything() {
        let everything = LabelSelector::default();
        assert!(selector_matches(&everything, &BTreeMap::new()));
        assert!(selector_matches(&everything, &label_map(&[("a", "1")])));
        let explicit_empty = LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(Vec::new()),
        };
        assert!(selector_matches(&explicit_empty, &BTreeMap::new()));
    }

    #[test]
    fn match_labels_must_all_hold() {
        let selector = match_labels(&[("a", "1"), ("b", "2")]);
        assert!(selector_matches(
            &selector,
            &label_map(&[("a", "1"), ("b", "2"), ("c", "3")])
        ));
        assert!(!selector_matches(&selector, &label_map(&[("a", "1")])));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("a", "1"), ("b", "3")])
        ));
        assert!(!selector_matches(&selector, &BTreeMap::new()));
    }

    #[test]
    fn in_operator() {
        let selector = match_expressions(vec![requirement("tier", "In", &["web", "db"])]);
        assert!(selector_matches(&selector, &label_map(&[("tier", "web")])));
        assert!(selector_matches(&selector, &label_map(&[("tier", "db")])));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("tier", "cache")])
        ));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("other", "web")])
        ));
    }

    #[test]
    fn not_in_operator() {
        let selector = match_expressions(vec![requirement("tier", "NotIn", &["web", "db"])]);
        assert!(!selector_matches(&selector, &label_map(&[("tier", "web")])));
        assert!(selector_matches(
            &selector,
            &label_map(&[("tier", "cache")])
        ));
        assert!(selector_matches(&selector, &BTreeMap::new()));
    }

    #[test]
    fn exists_operator() {
        let selector = match_expressions(vec![requirement("tier", "Exists", &[])]);
        assert!(selector_matches(&selector, &label_map(&[("tier", "")])));
        assert!(selector_matches(&selector, &label_map(&[("tier", "web")])));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("other", "web")])
        ));
    }

    #[test]
    fn does_not_exist_operator() {
        let selector = match_expressions(vec![requirement("tier", "DoesNotExist", &[])]);
        assert!(!selector_matches(&selector, &label_map(&[("tier", "web")])));
        assert!(selector_matches(&selector, &label_map(&[("other", "web")])));
        assert!(selector_matches(&selector, &BTreeMap::new()));
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(label_map(&[("app", "shop")])),
            match_expressions: Some(vec![
                requirement("tier", "In", &["web"]),
                requirement("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(
            &selector,
            &label_map(&[("app", "shop"), ("tier", "web")])
        ));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("app", "blog"), ("tier", "web")])
        ));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("app", "shop"), ("tier", "db")])
        ));
        assert!(!selector_matches(
            &selector,
            &label_map(&[("app", "shop"), ("tier", "web"), ("legacy", "yes")])
        ));
    }

    #[test]
    fn unknown_operator_matches_nothing() {
        for operator in ["Gt", "in", "exists", ""] {
            let selector = match_expressions(vec![requirement("tier", operator, &["web"])]);
            assert!(!selector_matches(&selector, &label_map(&[("tier", "web")])));
            assert!(!selector_matches(&selector, &BTreeMap::new()));
        }
    }

    #[test]
    fn invalid_values_match_nothing() {
        for selector in [
            match_expressions(vec![requirement("tier", "In", &[])]),
            match_expressions(vec![requirement("tier", "NotIn", &[])]),
            match_expressions(vec![requirement("tier", "Exists", &["web"])]),
            match_expressions(vec![requirement("tier", "DoesNotExist", &["web"])]),
        ] {
            assert!(!selector_matches(&selector, &label_map(&[("tier", "web")])));
            assert!(!selector_matches(&selector, &BTreeMap::new()));
        }
    }

    // ---- check_delegable: label, name and existence ----

    #[test]
    fn typical_reader_is_delegable() {
        assert_eq!(
            check("reader", &[delegable("reader", reader_rules())]),
            Ok(())
        );
    }

    #[test]
    fn typical_operator_role_is_delegable() {
        assert_eq!(
            check("operator", &[delegable("operator", operator_rules())]),
            Ok(())
        );
    }

    #[test]
    fn role_without_rules_is_delegable() {
        let mut empty = delegable("empty", Vec::new());
        empty.rules = None;
        assert_eq!(check("empty", &[empty]), Ok(()));
    }

    #[test]
    fn cluster_admin_is_refused_even_if_labeled() {
        let admin = delegable("cluster-admin", reader_rules());
        assert_eq!(check("cluster-admin", &[admin]), Err(Refusal::ClusterAdmin));
        assert_eq!(check("cluster-admin", &[]), Err(Refusal::ClusterAdmin));
    }

    #[test]
    fn missing_role_is_not_found() {
        assert_eq!(
            check("ghost", &[delegable("reader", reader_rules())]),
            Err(Refusal::NotFound)
        );
    }

    #[test]
    fn unlabeled_role_is_refused() {
        assert_eq!(
            check("reader", &[role("reader", &[], reader_rules())]),
            Err(Refusal::NotLabeled)
        );
        assert_eq!(
            check(
                "reader",
                &[role("reader", &[("delegable", "true")], reader_rules())]
            ),
            Err(Refusal::NotLabeled)
        );
    }

    #[test]
    fn label_value_other_than_true_is_refused() {
        for value in ["True", "TRUE", "yes", "1", "", "true "] {
            assert_eq!(
                check(
                    "reader",
                    &[role("reader", &[(DELEGABLE_LABEL, value)], reader_rules())]
                ),
                Err(Refusal::NotLabeled),
                "{value:?}"
            );
        }
    }

    #[test]
    fn missing_label_takes_precedence_over_forbidden_rules() {
        let bad = role("bad", &[], vec![rule(&["*"], &["*"], &["*"])]);
        assert_eq!(check("bad", &[bad]), Err(Refusal::NotLabeled));
    }

    #[test]
    fn all_problems_are_reported_in_rule_order() {
        let helper = delegable(
            "pod-helper",
            vec![
                rule(&[""], &["pods"], &["get", "list"]),
                rule(&["*"], &["deployments"], &["get"]),
                rule(&[""], &["secrets", "pods/exec"], &["get"]),
                rule(&["apps"], &["deployments"], &["update"]),
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings"],
                    &["create"],
                ),
            ],
        );
        assert_eq!(
            forbidden("pod-helper", &[helper]),
            [
                "ClusterRole \"pod-helper\" rule 1 uses the wildcard apiGroup \"*\"",
                "ClusterRole \"pod-helper\" rule 2 grants \"get\" on \"secrets\"",
                "ClusterRole \"pod-helper\" rule 2 grants \"get\" on \"pods/exec\"",
                "ClusterRole \"pod-helper\" rule 4 grants \"create\" in apiGroup \"rbac.authorization.k8s.io\"",
            ]
        );
    }

    // ---- check_delegable: aggregation ----

    #[test]
    fn aggregation_pulls_in_forbidden_rules_of_unlabeled_roles() {
        let parent = aggregating(
            delegable("support", reader_rules()),
            vec![match_labels(&[("aggregate-to-support", "true")])],
        );
        let child = role(
            "secret-reader",
            &[("aggregate-to-support", "true")],
            vec![
                rule(&[""], &["configmaps"], &["get"]),
                rule(&[""], &["secrets"], &["get", "list"]),
            ],
        );
        let unrelated = role("other", &[], vec![rule(&["*"], &["*"], &["*"])]);
        assert_eq!(
            forbidden("support", &[parent, child, unrelated]),
            ["ClusterRole \"secret-reader\" rule 1 grants \"get\", \"list\" on \"secrets\""]
        );
    }

    #[test]
    fn aggregation_of_harmless_roles_is_delegable() {
        let parent = aggregating(
            delegable("support", Vec::new()),
            vec![match_labels(&[("aggregate-to-support", "true")])],
        );
        let reader = role(
            "reader",
            &[("aggregate-to-support", "true")],
            reader_rules(),
        );
        let operator = role(
            "operator",
            &[("aggregate-to-support", "true")],
            operator_rules(),
        );
        let excluded = role("admin-ish", &[], vec![rule(&["*"], &["*"], &["*"])]);
        assert_eq!(
            check("support", &[parent, reader, operator, excluded]),
            Ok(())
        );
    }

    #[test]
    fn aggregation_is_transitive_and_ordered_by_visit() {
        let top = aggregating(
            delegable("top", vec![rule(&[""], &["secrets"], &["get"])]),
            vec![match_labels(&[("to-top", "true")])],
        );
        let middle = aggregating(
            role(
                "middle",
                &[("to-top", "true")],
                vec![
                    rule(&[""], &["pods"], &["get"]),
                    rule(&[""], &["pods/exec"], &["create"]),
                ],
            ),
            vec![match_labels(&[("to-middle", "true")])],
        );
        let bottom = role(
            "bottom",
            &[("to-middle", "true")],
            vec![rule(&[""], &["serviceaccounts/token"], &["create"])],
        );
        // A sibling of middle, visited before bottom although its name sorts after it.
        let sibling = role(
            "sibling",
            &[("to-top", "true")],
            vec![rule(&["apps"], &["*"], &["get"])],
        );
        assert_eq!(
            forbidden("top", &[bottom, sibling, middle, top]),
            [
                "ClusterRole \"top\" rule 0 grants \"get\" on \"secrets\"",
                "ClusterRole \"middle\" rule 1 grants \"create\" on \"pods/exec\"",
                "ClusterRole \"sibling\" rule 0 uses the wildcard resource \"*\"",
                "ClusterRole \"bottom\" rule 0 grants \"create\" on \"serviceaccounts/token\"",
            ]
        );
    }

    #[test]
    fn aggregation_cycle_terminates_and_visits_each_role_once() {
        let a = aggregating(
            role(
                "a",
                &[(DELEGABLE_LABEL, "true"), ("group", "a")],
                vec![rule(&[""], &["secrets"], &["get"])],
            ),
            vec![match_labels(&[("group", "b")])],
        );
        let b = aggregating(
            role(
                "b",
                &[("group", "b")],
                vec![rule(&[""], &["pods/attach"], &["get"])],
            ),
            // Selects a (a cycle) and b itself.
            vec![
                match_labels(&[("group", "a")]),
                match_labels(&[("group", "b")]),
            ],
        );
        assert_eq!(
            forbidden("a", &[a, b]),
            [
                "ClusterRole \"a\" rule 0 grants \"get\" on \"secrets\"",
                "ClusterRole \"b\" rule 0 grants \"get\" on \"pods/attach\"",
            ]
        );
    }

    #[test]
    fn harmless_aggregation_cycle_is_delegable() {
        let a = aggregating(
            role(
                "a",
                &[(DELEGABLE_LABEL, "true"), ("ring", "yes")],
                reader_rules(),
            ),
            vec![match_labels(&[("ring", "yes")])],
        );
        let b = aggregating(
            role("b", &[("ring", "yes")], operator_rules()),
            vec![match_labels(&[("ring", "yes")])],
        );
        assert_eq!(check("a", &[a, b]), Ok(()));
    }

    #[test]
    fn empty_aggregation_selector_pulls_in_every_role() {
        let everything = aggregating(
            delegable("everything", Vec::new()),
            vec![LabelSelector::default()],
        );
        let admin = role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"])]);
        let reader = role("reader", &[], reader_rules());
        assert_eq!(
            forbidden("everything", &[reader, everything, admin]),
            [
                "ClusterRole \"cluster-admin\" rule 0 uses the wildcard verb \"*\"",
                "ClusterRole \"cluster-admin\" rule 0 uses the wildcard apiGroup \"*\"",
                "ClusterRole \"cluster-admin\" rule 0 uses the wildcard resource \"*\"",
            ]
        );
    }

    #[test]
    fn aggregation_with_selectors_in_expressions() {
        let parent = aggregating(
            delegable("parent", Vec::new()),
            vec![match_expressions(vec![requirement(
                "kind",
                "In",
                &["viewer", "editor"],
            )])],
        );
        let viewer = role(
            "viewer",
            &[("kind", "viewer")],
            vec![rule(&[""], &["*/exec"], &["get"])],
        );
        let other = role(
            "other",
            &[("kind", "owner")],
            vec![rule(&[""], &["secrets"], &["get"])],
        );
        assert_eq!(
            forbidden("parent", &[parent, viewer, other]),
            [
                "ClusterRole \"viewer\" rule 0 grants \"get\" on \"*/exec\", which covers \"pods/exec\""
            ]
        );
    }

    #[test]
    fn unknown_selector_operator_is_reported_and_matches_nothing() {
        let parent = aggregating(
            delegable("parent", reader_rules()),
            vec![
                match_labels(&[("to-parent", "true")]),
                match_expressions(vec![
                    requirement("tier", "In", &["web"]),
                    requirement("tier", "Gt", &["1"]),
                ]),
            ],
        );
        let web = role(
            "web",
            &[("tier", "web")],
            vec![rule(&[""], &["secrets"], &["get"])],
        );
        assert_eq!(
            forbidden("parent", &[parent, web]),
            [
                "ClusterRole \"parent\" aggregationRule selector 1 uses the unknown operator \"Gt\" for key \"tier\""
            ]
        );
    }

    #[test]
    fn selector_values_contradicting_the_operator_are_reported() {
        let parent = aggregating(
            delegable("parent", Vec::new()),
            vec![match_expressions(vec![
                requirement("a", "NotIn", &[]),
                requirement("b", "Exists", &["x"]),
            ])],
        );
        assert_eq!(
            forbidden("parent", &[parent]),
            [
                "ClusterRole \"parent\" aggregationRule selector 0 uses the operator \"NotIn\" without values for key \"a\"",
                "ClusterRole \"parent\" aggregationRule selector 0 uses the operator \"Exists\" with values for key \"b\"",
            ]
        );
    }

    #[test]
    fn problems_of_the_named_role_precede_its_selector_problems() {
        let parent = aggregating(
            delegable("parent", vec![rule(&[""], &["secrets"], &["get"])]),
            vec![match_expressions(vec![requirement("a", "Foo", &[])])],
        );
        assert_eq!(
            forbidden("parent", &[parent]),
            [
                "ClusterRole \"parent\" rule 0 grants \"get\" on \"secrets\"",
                "ClusterRole \"parent\" aggregationRule selector 0 uses the unknown operator \"Foo\" for key \"a\"",
            ]
        );
    }

    #[test]
    fn all_roles_are_listed_only_when_aggregation_needs_them() {
        let reader = delegable("reader", reader_rules());
        assert_eq!(
            check_delegable(
                "reader",
                |name| (name == "reader").then_some(&reader),
                || panic!("all() must not be called without an aggregationRule"),
            ),
            Ok(())
        );
    }

    #[test]
    fn aggregated_roles_come_from_all() {
        let parent = aggregating(
            delegable("parent", Vec::new()),
            vec![match_labels(&[("to-parent", "true")])],
        );
        let child = role(
            "child",
            &[("to-parent", "true")],
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["roles"],
                &["update"],
            )],
        );
        let result = check_delegable(
            "parent",
            |name| (name == "parent").then_some(&parent),
            || vec![&child, &parent],
        );
        assert_eq!(
            result,
            Err(Refusal::ForbiddenRules(vec![
                "ClusterRole \"child\" rule 0 grants \"update\" in apiGroup \"rbac.authorization.k8s.io\""
                    .to_owned()
            ]))
        );
    }

    // ---- Display ----

    #[test]
    fn refusals_display_as_one_line() {
        assert_eq!(
            Refusal::ClusterAdmin.to_string(),
            "cluster-admin is never delegable; delegate a narrower role"
        );
        assert_eq!(
            Refusal::NotFound.to_string(),
            "no ClusterRole of that name exists"
        );
        assert_eq!(
            Refusal::NotLabeled.to_string(),
            "it is not labeled msp-operator.io/delegable=\"true\""
        );
        assert_eq!(
            Refusal::ForbiddenRules(strings(&["first", "second"])).to_string(),
            "first; second"
        );
    }

    #[test]
    fn workload_power_names_each_way_to_run_or_reach_pods() {
        let shipped_reader = delegable(
            "reader",
            vec![
                rule(
                    &[""],
                    &["pods", "pods/log", "endpoints"],
                    &["get", "list", "watch"],
                ),
                rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
            ],
        );
        let none = |_: &str| None;
        let no_others = Vec::new;
        assert!(workload_power("reader", |_| Some(&shipped_reader), no_others).is_empty());
        for (rules, expect) in [
            (
                rule(&[""], &["pods"], &["create"]),
                "\"create\" on \"pods\"",
            ),
            (
                rule(&["apps"], &["deployments"], &["patch"]),
                "\"patch\" on \"deployments\"",
            ),
            (
                rule(&["apps"], &["daemonsets", "statefulsets"], &["update"]),
                "\"update\" on \"daemonsets\"",
            ),
            (
                rule(&["batch"], &["cronjobs"], &["create"]),
                "\"create\" on \"cronjobs\"",
            ),
            (
                rule(&[""], &["replicationcontrollers"], &["create"]),
                "\"replicationcontrollers\"",
            ),
            (
                rule(&[""], &["pods/ephemeralcontainers"], &["patch"]),
                "\"pods/ephemeralcontainers\"",
            ),
            (
                rule(&[""], &["pods/proxy"], &["get"]),
                "\"get\" on \"pods/proxy\"",
            ),
            (
                rule(&[""], &["services/proxy"], &["create"]),
                "\"services/proxy\"",
            ),
            (rule(&[""], &["endpoints"], &["update"]), "\"endpoints\""),
            (
                rule(&["discovery.k8s.io"], &["endpointslices"], &["create"]),
                "\"endpointslices\"",
            ),
        ] {
            let role = delegable("worker", vec![rules]);
            let power = workload_power("worker", |_| Some(&role), Vec::new);
            assert!(
                power.iter().any(|p| p.contains(expect)),
                "{power:?} lacks {expect}"
            );
        }
        // Reading and deleting Pods, or scaling, is not running them.
        let harmless = delegable(
            "harmless",
            vec![
                rule(&[""], &["pods"], &["get", "delete"]),
                rule(&["apps"], &["deployments/scale"], &["update", "patch"]),
                rule(&["other.example"], &["pods"], &["create"]),
            ],
        );
        assert!(workload_power("harmless", |_| Some(&harmless), Vec::new).is_empty());
        assert!(workload_power("missing", none, Vec::new).is_empty());
    }

    #[test]
    fn workload_power_follows_aggregation() {
        let worker = role(
            "worker",
            &[("agg", "yes")],
            vec![rule(&["apps"], &["deployments"], &["create"])],
        );
        let parent = aggregating(
            delegable("parent", vec![]),
            vec![LabelSelector {
                match_labels: Some(label_map(&[("agg", "yes")])),
                ..LabelSelector::default()
            }],
        );
        let roles = vec![&worker, &parent];
        let lookup = |name: &str| roles.iter().copied().find(|r| role_name(r) == name);
        let power = workload_power("parent", lookup, || roles.clone());
        assert_eq!(power.len(), 1);
        assert!(
            power[0].starts_with("ClusterRole \"worker\" rule 0"),
            "{power:?}"
        );
    }
}
