//! The Helm chart `charts/msp-operator`, and the two ways to install.
//!
//! Without a cluster: the chart's copies of `crds/` and `deploy/` are the
//! repository's files byte for byte; `helm lint --strict` passes; `helm
//! template` renders exactly those objects (plus the chart's labels), a
//! locked-down Deployment, and what each value asks for; the schema refuses bad
//! values with the path of the value.
//!
//! On a real API server (this binary's own local control plane): `helm
//! install` with two replicas, then two operator processes run out of cluster
//! with the chart's ServiceAccount token and the Deployment's environment
//! (leader election on, the chart's Lease): exactly one leads and holds the
//! Lease, it grants a delegation end to end, the other stands by and takes
//! over at once when the leader stops, so the chart's RBAC (its ClusterRole
//! and its Lease Role) is enough, while that account is refused what the
//! chart does not grant; `helm upgrade` changes the Deployment; `helm
//! uninstall` removes the operator but keeps the CRDs. Then the kubectl path:
//! `kubectl apply --server-side -f crds/ -f deploy/`, the operator as a
//! ServiceAccount bound to deploy/'s ClusterRole (and a Lease Role, as the
//! README creates it), `kubectl apply -f examples/` and `kubectl wait`.
//!
//! Helm is `MSP_HELM` (set by `make test`), else `helm` on PATH, else what
//! `tools/helm/install.sh` installs (it builds the pinned release once).

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use msp_operator::api::{Delegation, PrincipalKind};
use msp_testenv::binaries::repo_root;
use msp_testenv::operator::OperatorProcess;
use msp_testenv::{TestEnv, unique_name, wait_until};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::process::{helm_binary, output, run};
use support::*;

const CHART: &str = "charts/msp-operator";
const RELEASE: &str = "msp-operator";
const NAMESPACE: &str = "msp-system";
/// The oldest Kubernetes the chart supports (its kubeVersion); rendering for
/// it also keeps the tests independent of the helm build's default version.
const KUBE_VERSION: &str = "1.33.0";
const TENANT: &str = "msp-operator.io/tenant";
/// Every optional part of the chart switched on, with two replicas.
const ALL_ON: &[&str] = &[
    "replicaCount=2",
    "metrics.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "podDisruptionBudget.enabled=true",
];

// ---------------------------------------------------------------------------
// Helm, files and rendered objects
// ---------------------------------------------------------------------------

fn tmp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-tests");
    std::fs::create_dir_all(&dir).expect("create the test's temporary directory");
    dir
}

/// `helm`, with its cache/config/data directories kept out of the user's home.
fn helm() -> Command {
    let home = tmp_dir().join("helm-home");
    let mut command = Command::new(helm_binary());
    command
        .current_dir(repo_root())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

/// Runs `command`, which must succeed; returns its stdout.
fn succeed(mut command: Command) -> String {
    run(&mut command)
}

/// `helm template` of the chart with `--set` values: stdout, or stderr.
fn template(sets: &[&str]) -> Result<String, String> {
    template_serving(sets, &[])
}

/// [`template`] for a cluster that also serves `api_versions`
/// (`group/version/Kind`).
fn template_serving(sets: &[&str], api_versions: &[&str]) -> Result<String, String> {
    let mut command = helm();
    for api in api_versions {
        command.args(["--api-versions", api]);
    }
    command.args([
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = output(&mut command);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects `helm template` renders with `sets`, which must be accepted.
fn render(sets: &[&str]) -> Vec<Value> {
    let text = template(sets).unwrap_or_else(|e| panic!("helm template {sets:?} failed:\n{e}"));
    documents(&text, &format!("helm template {sets:?}"))
}

/// The error `helm template` gives for `sets`, which must be refused.
fn refused(sets: &[&str]) -> String {
    match template(sets) {
        Ok(_) => panic!("helm template accepted {sets:?}; the chart must refuse it"),
        Err(stderr) => stderr,
    }
}

/// The non-empty YAML documents of `text`.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn repo_text(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn repo_documents(path: &str) -> Vec<Value> {
    documents(&repo_text(path), path)
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(objects: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind(o) == wanted).collect()
}

fn find<'a>(objects: &'a [Value], wanted_kind: &str, wanted_name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == wanted_kind && name(o) == wanted_name)
        .unwrap_or_else(|| {
            let rendered: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", kind(o), name(o)))
                .collect();
            panic!("no {wanted_kind}/{wanted_name} rendered; rendered: {rendered:?}")
        })
}

fn count_by_kind(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for object in objects {
        *counts.entry(kind(object).to_string()).or_default() += 1;
    }
    counts
}

/// Asserts that `rendered` is `expected` (an object of `source`): identical
/// outside metadata, the same name, and every label and annotation of the file
/// kept (the chart may only add its own).
fn assert_same_object(expected: &Value, rendered: &Value, source: &str) {
    let what = format!("{} {} from {source}", kind(expected), name(expected));
    let mut expected_body = expected.clone();
    let mut rendered_body = rendered.clone();
    let expected_meta = expected_body
        .as_object_mut()
        .and_then(|o| o.remove("metadata"))
        .expect("file object has metadata");
    let rendered_meta = rendered_body
        .as_object_mut()
        .and_then(|o| o.remove("metadata"))
        .expect("rendered object has metadata");
    assert_eq!(
        rendered_body, expected_body,
        "{what}: the chart renders something else than the file"
    );
    assert_eq!(rendered_meta["name"], expected_meta["name"], "{what}: name");
    for key in expected_meta.as_object().expect("metadata map").keys() {
        assert!(
            ["name", "labels", "annotations"].contains(&key.as_str()),
            "{what}: metadata.{key} of the file is not handled by the chart"
        );
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = expected_meta[field].as_object() {
            for (key, value) in map {
                assert_eq!(
                    &rendered_meta[field][key], value,
                    "{what}: metadata.{field}.{key} of the file is lost"
                );
            }
        }
    }
}

/// Asserts that `rendered` holds exactly the objects of repository file
/// `source`, of the kinds that file holds.
fn assert_renders_file(rendered: &[Value], source: &str) {
    let expected = repo_documents(source);
    assert!(!expected.is_empty(), "{source} holds no objects");
    for object in &expected {
        assert_same_object(object, find(rendered, kind(object), name(object)), source);
    }
}

fn string_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| string_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| string_values(v, out)),
        _ => {}
    }
}

fn deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment", RELEASE)
}

fn container(objects: &[Value]) -> &Value {
    let containers = &deployment(objects)["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "one container"
    );
    &containers[0]
}

fn env_var<'a>(container: &'a Value, var: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == var))
        .map(|e| &e["value"])
        .unwrap_or_else(|| panic!("the operator container has no {var}: {container:#}"))
}

// ---------------------------------------------------------------------------
// Without a cluster
// ---------------------------------------------------------------------------

#[test]
fn the_charts_files_are_byte_for_byte_the_repositorys() {
    for (source, copy) in [
        ("crds", "charts/msp-operator/files/crds"),
        ("deploy", "charts/msp-operator/files/deploy"),
    ] {
        let list = |dir: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(repo_root().join(dir))
                .unwrap_or_else(|e| panic!("read {dir}: {e}"))
                .map(|entry| {
                    entry
                        .expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into()
                })
                .filter(|name: &String| name.ends_with(".yaml"))
                .collect();
            names.sort();
            names
        };
        let files = list(source);
        assert!(!files.is_empty(), "{source}/ holds no YAML");
        assert_eq!(
            list(copy),
            files,
            "{copy}/ must hold exactly the YAML files of {source}/: run `make chart-crds`"
        );
        for file in files {
            assert!(
                repo_text(&format!("{copy}/{file}")) == repo_text(&format!("{source}/{file}")),
                "{copy}/{file} differs from {source}/{file}: the chart must ship the \
                 repository's file unchanged. Edit {source}/{file} (crds/ is generated: \
                 `make crds`), then run `make chart-crds`"
            );
        }
    }
}

#[test]
fn the_chart_version_is_the_crate_version() {
    let chart: Value =
        serde_yaml::from_str(&repo_text("charts/msp-operator/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(
        chart["version"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
}

#[test]
fn every_value_is_commented_and_described_in_the_schema() {
    // A key is documented when a comment sits right above it, or above one of
    // its parents (a securityContext's fields are documented by its comment).
    let text = repo_text("charts/msp-operator/values.yaml");
    let mut parents: Vec<(usize, bool)> = Vec::new();
    let mut previous_is_comment = false;
    let mut undocumented = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            previous_is_comment = false;
            continue;
        }
        if trimmed.starts_with('#') {
            previous_is_comment = true;
            continue;
        }
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('-') {
            previous_is_comment = false;
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let documented = previous_is_comment || parents.iter().any(|(_, d)| *d);
        if value.trim().is_empty() {
            parents.push((indent, documented));
        } else if !documented {
            undocumented.push(key.to_string());
        }
        previous_is_comment = false;
    }
    assert!(
        undocumented.is_empty(),
        "values.yaml: values without a comment: {undocumented:?}"
    );

    // The schema describes every property, and knows every value.
    let schema: Value = serde_json::from_str(&repo_text("charts/msp-operator/values.schema.json"))
        .expect("values.schema.json is JSON");
    fn check(schema: &Value, values: &Value, path: &str, missing: &mut Vec<String>) {
        let Some(properties) = schema["properties"].as_object() else {
            return;
        };
        for (key, property) in properties {
            if property["description"].as_str().is_none_or(str::is_empty) {
                missing.push(format!("{path}{key}: no description"));
            }
        }
        if let Some(values) = values.as_object() {
            for (key, value) in values {
                match properties.get(key) {
                    None => missing.push(format!("{path}{key}: not in the schema")),
                    Some(property) => check(property, value, &format!("{path}{key}."), missing),
                }
            }
        }
    }
    let values: Value = serde_yaml::from_str(&text).expect("values.yaml is YAML");
    let mut problems = Vec::new();
    check(&schema, &values, "", &mut problems);
    assert!(problems.is_empty(), "values.schema.json: {problems:?}");
    let replicas = &schema["properties"]["replicaCount"];
    assert_eq!(
        (&replicas["minimum"], &replicas["maximum"]),
        (&json!(0), &json!(10)),
        "replicaCount: 0 (stopped) to 10; above 1 needs leader election"
    );
}

#[test]
fn helm_lint_strict_passes() {
    for sets in [&[][..], ALL_ON] {
        let mut command = helm();
        command.args(["lint", "--strict", CHART, "--kube-version", KUBE_VERSION]);
        for set in sets {
            command.args(["--set", set]);
        }
        let stdout = run(&mut command);
        assert!(
            stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint --strict {sets:?}:\n{stdout}"
        );
        assert!(
            !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
            "helm lint --strict {sets:?} warns:\n{stdout}"
        );
    }
}

#[test]
fn defaults_render_the_repositorys_objects_with_the_charts_labels() {
    let objects = render(&[]);
    assert_eq!(
        count_by_kind(&objects),
        BTreeMap::from(
            [
                ("ClusterRole", 14),
                ("ClusterRoleBinding", 1),
                ("CustomResourceDefinition", 7),
                ("Deployment", 1),
                ("Lease", 1),
                ("Role", 1),
                ("RoleBinding", 1),
                ("ServiceAccount", 1),
                ("ValidatingAdmissionPolicy", 12),
                ("ValidatingAdmissionPolicyBinding", 12),
            ]
            .map(|(k, n)| (k.to_string(), n))
        ),
        "the default objects (the Lease, its Role and binding; no metrics Service, \
         ServiceMonitor or PodDisruptionBudget)"
    );

    // Every object carries the standard labels; namespaced ones are in the
    // release namespace.
    for object in &objects {
        let labels = &object["metadata"]["labels"];
        let what = format!("{} {}", kind(object), name(object));
        assert_eq!(labels["app.kubernetes.io/name"], "msp-operator", "{what}");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{what}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION"),
            "{what}"
        );
        assert_eq!(
            labels["helm.sh/chart"],
            format!("msp-operator-{}", env!("CARGO_PKG_VERSION")),
            "{what}"
        );
        if [
            "Deployment",
            "Lease",
            "ServiceAccount",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind(object))
        {
            assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{what}");
        }
    }

    // CRDs: crds/ exactly, kept on uninstall.
    for file in [
        "crds/delegations.yaml",
        "crds/managedserviceoffers.yaml",
        "crds/activations.yaml",
        "crds/clusterproviderpolicies.yaml",
        "crds/providerpolicies.yaml",
        "crds/offercatalogs.yaml",
        "crds/customerdelegations.yaml",
    ] {
        assert_renders_file(&objects, file);
    }
    for crd in of_kind(&objects, "CustomResourceDefinition") {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep",
            "CRD {} must be kept by helm uninstall by default",
            name(crd)
        );
    }

    // The delegable role catalog and the admission policies: deploy/ exactly.
    assert_renders_file(&objects, "deploy/delegable-roles.yaml");
    assert_renders_file(&objects, "deploy/activation-roles.yaml");
    assert_renders_file(&objects, "deploy/admission-policies.yaml");
    assert_renders_file(&objects, "deploy/provider-policies.yaml");
    assert_renders_file(&objects, "deploy/views.yaml");

    // The operator's ClusterRole: the rules of deploy/, with their reasons.
    let file = &repo_documents("deploy/operator-clusterrole.yaml")[0];
    let role = find(&objects, "ClusterRole", RELEASE);
    assert_eq!(
        role["rules"], file["rules"],
        "the chart's ClusterRole rules must be deploy/operator-clusterrole.yaml's"
    );
    assert!(role.get("aggregationRule").is_none());
    let rendered_text = template(&[]).expect("helm template");
    let file_text = repo_text("deploy/operator-clusterrole.yaml");
    let rules_text = &file_text[file_text.find("\nrules:").expect("rules: in the file")..];
    let comments: Vec<&str> = rules_text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect();
    assert!(
        comments.iter().any(|c| c.contains("`bind`"))
            && comments.iter().any(|c| c.contains("`delete`")),
        "deploy/operator-clusterrole.yaml explains bind and delete"
    );
    for comment in comments {
        assert!(
            rendered_text.contains(comment),
            "the rendered ClusterRole lacks the comment {comment:?} of deploy/operator-clusterrole.yaml"
        );
    }

    // Bound to the chart's ServiceAccount, in the release namespace.
    let binding = find(&objects, "ClusterRoleBinding", RELEASE);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELEASE})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    let account = find(&objects, "ServiceAccount", RELEASE);
    assert_eq!(account["automountServiceAccountToken"], true);
}

#[test]
fn the_mutating_policies_render_where_served_and_follow_the_operators_scope() {
    const MAP: &str = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";
    let served = |sets: &[&str]| {
        let text = template_serving(sets, &[MAP]).unwrap_or_else(|e| panic!("{e}"));
        documents(&text, "helm template")
    };
    assert!(
        of_kind(&render(&[]), "MutatingAdmissionPolicy").is_empty(),
        "rendered for a cluster without MutatingAdmissionPolicy"
    );
    let objects = served(&[]);
    assert_eq!(of_kind(&objects, "MutatingAdmissionPolicy").len(), 3);
    assert_renders_file(&objects, "deploy/consent-recorder.yaml");
    assert_renders_file(&objects, "deploy/delegation-metadata.yaml");
    // Scoped like the operator: a Delegation no operator serves gets no
    // finalizer that nobody would release.
    let scoped = served(&["operator.watchNamespaces={team-a,team-b}"]);
    let binding = find(
        &scoped,
        "MutatingAdmissionPolicyBinding",
        "msp-operator.io-delegation-metadata",
    );
    assert_eq!(
        binding["spec"]["matchResources"],
        json!({"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]}})
    );
    assert_eq!(
        binding["spec"]["policyName"],
        "msp-operator.io-delegation-metadata"
    );
    // Who consents is recorded everywhere: the admission policies that
    // read it apply cluster-wide.
    assert_renders_file(&scoped, "deploy/consent-recorder.yaml");
    assert!(
        of_kind(
            &served(&["admissionPolicies.install=false"]),
            "MutatingAdmissionPolicy"
        )
        .is_empty()
    );
}

#[test]
fn no_cluster_role_of_the_chart_holds_a_wildcard() {
    for sets in [&[][..], ALL_ON] {
        let objects = render(sets);
        let roles = of_kind(&objects, "ClusterRole");
        assert_eq!(
            roles.len(),
            14,
            "the operator's role, the catalog, the 4 activation roles, the 2 provider-policy roles and the 5 view roles"
        );
        let lease_roles = of_kind(&objects, "Role");
        assert_eq!(lease_roles.len(), 1, "the Lease Role");
        for role in roles.into_iter().chain(lease_roles) {
            let mut strings = Vec::new();
            string_values(role, &mut strings);
            let wild: Vec<&String> = strings.iter().filter(|s| s.contains('*')).collect();
            assert!(
                wild.is_empty(),
                "{} {} holds {wild:?}",
                kind(role),
                name(role)
            );
            // Nor the verbs that would let the operator or a provider escalate.
            for rule in role["rules"].as_array().expect("rules") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    assert!(
                        !["escalate", "impersonate"].contains(&verb.as_str().unwrap_or_default()),
                        "{} {} grants {verb}",
                        kind(role),
                        name(role)
                    );
                }
            }
        }
    }
}

#[test]
fn the_deployment_runs_the_operator_locked_down() {
    let objects = render(&[]);
    let deployment = deployment(&objects);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        "with leader election (the default) the new pod stands by before the old one stops"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert!(
        pod.get("affinity").is_none(),
        "no anti-affinity for a single replica: {pod:#}"
    );
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "msp-operator", "app.kubernetes.io/instance": RELEASE})
    );

    let container = container(&objects);
    assert_eq!(
        container["image"],
        format!("msp-operator:{}", env!("CARGO_PKG_VERSION")),
        "the image tag defaults to the appVersion"
    );
    assert_eq!(container["args"], json!(["run"]));
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(security["capabilities"].get("add").is_none());
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(security.get("privileged").is_none_or(|p| p == false));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource} is set"
            );
        }
    }
    assert_eq!(env_var(container, "MSP_CONCURRENCY"), "8");
    assert_eq!(env_var(container, "MSP_RESYNC_SECONDS"), "600");
    assert_eq!(env_var(container, "MSP_LOG_FORMAT"), "json");
    assert_eq!(env_var(container, "MSP_METRICS_ADDR"), "0.0.0.0:8080");
    assert_eq!(env_var(container, "MSP_PROBE_ADDR"), "0.0.0.0:8081");
    assert!(
        !container["env"]
            .to_string()
            .contains("MSP_WATCH_NAMESPACES"),
        "all namespaces by default"
    );
    assert_eq!(env_var(container, "MSP_SHUTDOWN_GRACE_SECONDS"), "10");
    // Leader election, on by default: the Lease is the full name, in the pod's
    // namespace, held under the pod's name.
    assert_eq!(env_var(container, "MSP_LEADER_ELECT"), "true");
    assert_eq!(env_var(container, "MSP_LEASE_NAME"), RELEASE);
    assert_eq!(env_var(container, "MSP_LEASE_DURATION_SECONDS"), "15");
    assert_eq!(env_var(container, "MSP_LEASE_GRACE_SECONDS"), "5");
    for (var, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let entry = container["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == var))
            .unwrap_or_else(|| panic!("no {var}"));
        assert_eq!(
            entry["valueFrom"],
            json!({"fieldRef": {"fieldPath": field}}),
            "{var} from the downward API"
        );
    }
    // The operator's probe server: /healthz and /readyz on 8081.
    assert_eq!(
        container["ports"],
        json!([
            {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
            {"name": "probes", "containerPort": 8081, "protocol": "TCP"},
        ])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 8081})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 8081})
    );

    let objects = render(&["probes.enabled=false"]);
    let container = self::container(&objects);
    for absent in ["livenessProbe", "readinessProbe"] {
        assert!(
            container.get(absent).is_none(),
            "probes.enabled=false still renders {absent}"
        );
    }
}

#[test]
fn values_reach_the_rendered_objects() {
    let objects = render(&[
        "operator.concurrency=3",
        "operator.resyncSeconds=60",
        "operator.logFormat=text",
        "operator.logLevel=msp_operator=debug",
        "operator.watchNamespaces={team-a,team-b}",
        "replicaCount=0",
        "image.repository=registry.example/msp-operator",
        "image.tag=dev",
        "image.pullPolicy=Always",
        "imagePullSecrets[0].name=regcred",
        "nodeSelector.disktype=ssd",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "priorityClassName=system-cluster-critical",
        "podLabels.team=platform",
        "podAnnotations.note=hello",
        "commonLabels.cost-center=msp",
        "probes.port=9443",
        "probes.readiness.path=/ready",
        "metrics.enabled=true",
        "metrics.port=9090",
        "metrics.serviceMonitor.enabled=true",
        "podDisruptionBudget.enabled=true",
        "operator.shutdownGraceSeconds=20",
        "terminationGracePeriodSeconds=45",
        "leaderElection.leaseName=msp-lock",
        "leaderElection.leaseDurationSeconds=30",
        "leaderElection.leaseGraceSeconds=10",
    ]);
    let deployment = deployment(&objects);
    assert_eq!(deployment["spec"]["replicas"], 0);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello");
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
    assert_eq!(pod["spec"]["nodeSelector"], json!({"disktype": "ssd"}));
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    let container = container(&objects);
    assert_eq!(container["image"], "registry.example/msp-operator:dev");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(env_var(container, "MSP_CONCURRENCY"), "3");
    assert_eq!(env_var(container, "MSP_RESYNC_SECONDS"), "60");
    assert_eq!(env_var(container, "MSP_LOG_FORMAT"), "text");
    assert_eq!(env_var(container, "RUST_LOG"), "msp_operator=debug");
    assert_eq!(env_var(container, "MSP_WATCH_NAMESPACES"), "team-a,team-b");
    assert_eq!(env_var(container, "MSP_PROBE_ADDR"), "0.0.0.0:9443");
    assert_eq!(env_var(container, "MSP_METRICS_ADDR"), "0.0.0.0:9090");
    assert_eq!(env_var(container, "MSP_SHUTDOWN_GRACE_SECONDS"), "20");
    assert_eq!(env_var(container, "MSP_LEASE_NAME"), "msp-lock");
    assert_eq!(env_var(container, "MSP_LEASE_DURATION_SECONDS"), "30");
    assert_eq!(env_var(container, "MSP_LEASE_GRACE_SECONDS"), "10");
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": 9443})
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], 9443);
    for object in &objects {
        assert_eq!(
            object["metadata"]["labels"]["cost-center"],
            "msp",
            "commonLabels on {} {}",
            kind(object),
            name(object)
        );
    }
    let service = find(&objects, "Service", &format!("{RELEASE}-metrics"));
    assert_eq!(
        service["spec"]["ports"][0],
        json!({"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"})
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    find(&objects, "ServiceMonitor", RELEASE);
    let budget = find(&objects, "PodDisruptionBudget", RELEASE);
    assert_eq!(
        budget["spec"]["maxUnavailable"], 1,
        "at most one replica: maxUnavailable 1 lets nodes drain"
    );
    assert!(budget["spec"].get("minAvailable").is_none());

    // A digest wins over the tag.
    let digest = format!("sha256:{}", "0".repeat(64));
    let objects = render(&[&format!("image.digest={digest}")]);
    let digest_container = self::container(&objects);
    assert_eq!(digest_container["image"], format!("msp-operator@{digest}"));
}

#[test]
fn crds_can_be_left_out_or_left_unkept() {
    let objects = render(&["crds.enabled=false"]);
    assert!(
        of_kind(&objects, "CustomResourceDefinition").is_empty(),
        "crds.enabled=false renders no CRD"
    );
    assert_eq!(
        deployment(&objects)["kind"],
        "Deployment",
        "the rest is still there"
    );

    let objects = render(&["crds.keep=false"]);
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 7);
    for crd in crds {
        assert!(
            crd["metadata"]["annotations"]
                .get("helm.sh/resource-policy")
                .is_none(),
            "crds.keep=false: {} must not be kept",
            name(crd)
        );
    }
}

#[test]
fn the_catalog_policies_and_rbac_can_be_left_out() {
    let objects = render(&["delegableRoles.install=false"]);
    let roles = of_kind(&objects, "ClusterRole");
    assert_eq!(
        roles.iter().map(|r| name(r)).collect::<Vec<_>>(),
        vec![
            "msp-operator:activation-requester",
            "msp-operator:activation-approver",
            "msp-operator:activations-edit",
            "msp-operator:activations-view",
            RELEASE,
            "msp-operator:providerpolicies-admin",
            "msp-operator:providerpolicies-view",
            "msp-operator:catalog-view",
            "msp-operator:catalog-edit",
            "msp-operator:customers-view",
            "msp-operator:delegations-view",
            "msp-operator:delegations-admin",
        ],
        "delegableRoles.install=false leaves the operator's own ClusterRole, the activation, provider-policy and view roles"
    );
    let objects = render(&["views.install=false"]);
    assert!(
        of_kind(&objects, "ClusterRole")
            .iter()
            .all(|r| !name(r).starts_with("msp-operator:catalog")
                && !name(r).starts_with("msp-operator:customers")
                && !name(r).starts_with("msp-operator:delegations")),
        "views.install=false renders no view role"
    );
    assert_eq!(of_kind(&objects, "ValidatingAdmissionPolicy").len(), 12);

    let objects = render(&["admissionPolicies.install=false"]);
    assert_eq!(
        of_kind(&objects, "ValidatingAdmissionPolicy").len(),
        4,
        "admissionPolicies.install=false leaves the allowed-providers policies (providerPolicies.install)"
    );
    assert_eq!(of_kind(&objects, "ClusterRole").len(), 14);

    let objects = render(&[
        "admissionPolicies.install=false",
        "providerPolicies.install=false",
    ]);
    assert!(of_kind(&objects, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&objects, "ValidatingAdmissionPolicyBinding").is_empty());
    assert_eq!(of_kind(&objects, "ClusterRole").len(), 12);

    let objects = render(&[
        "rbac.create=false",
        "serviceAccount.create=false",
        "serviceAccount.name=existing",
    ]);
    assert_eq!(
        of_kind(&objects, "ClusterRole").len(),
        13,
        "only the catalog, the activation, provider-policy and view roles"
    );
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    assert!(
        of_kind(&objects, "Role").is_empty() && of_kind(&objects, "RoleBinding").is_empty(),
        "rbac.create=false: no Lease Role either"
    );
    assert_eq!(
        env_var(container(&objects), "MSP_LEADER_ELECT"),
        "true",
        "leader election stays on (the README grants the Lease by hand)"
    );
    assert!(of_kind(&objects, "ServiceAccount").is_empty());
    assert_eq!(
        deployment(&objects)["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );

    // The README's kubectl path, then the chart for the Deployment alone.
    let objects = render(&[
        "crds.enabled=false,rbac.create=false,delegableRoles.install=false",
        "activationRoles.install=false",
        "admissionPolicies.install=false",
        "providerPolicies.install=false,views.install=false,serviceAccount.create=false",
        "serviceAccount.name=msp-operator,image.repository=registry.example/msp-operator",
    ]);
    assert_eq!(
        count_by_kind(&objects),
        BTreeMap::from([("Deployment".to_string(), 1), ("Lease".to_string(), 1)]),
        "on top of deploy/, the chart adds only the Deployment and its Lease"
    );
}

#[test]
fn the_schema_refuses_bad_values_naming_the_value() {
    // 0 stops the operator; above 1 the replicas elect a leader.
    for accepted in [
        "replicaCount=0",
        "replicaCount=1",
        "replicaCount=2",
        "replicaCount=10",
    ] {
        template(&[accepted]).unwrap_or_else(|e| panic!("{accepted} must be accepted:\n{e}"));
    }
    for (sets, expected) in [
        (
            &["replicaCount=11"][..],
            &["/replicaCount", "maximum", "want 10"][..],
        ),
        (
            &["replicaCount=-1"],
            &["/replicaCount", "minimum", "want 0"],
        ),
        (
            &["leaderElection.enabled=maybe"],
            &["/leaderElection/enabled", "want boolean"],
        ),
        (
            &["leaderElection.leaseName=Not_A_Name"],
            &["/leaderElection/leaseName"],
        ),
        (
            &["leaderElection.leaseDurationSeconds=1"],
            &["/leaderElection/leaseDurationSeconds", "minimum"],
        ),
        (
            &["leaderElection.leaseGraceSeconds=0"],
            &["/leaderElection/leaseGraceSeconds", "minimum"],
        ),
        (
            &["leaderElection.elect=true"],
            &["/leaderElection", "'elect' not allowed"],
        ),
        (
            &["operator.shutdownGraceSeconds=-1"],
            &["/operator/shutdownGraceSeconds", "minimum"],
        ),
        (
            &["terminationGracePeriodSeconds=0"],
            &["/terminationGracePeriodSeconds", "minimum"],
        ),
        (
            &["podDisruptionBudget.minAvailable=half"],
            &["/podDisruptionBudget/minAvailable"],
        ),
        (
            &["operator.concurrency=lots"][..],
            &["/operator/concurrency", "want integer"][..],
        ),
        (
            &["operator.concurrency=0"],
            &["/operator/concurrency", "minimum"],
        ),
        (
            &["operator.logFormat=xml"],
            &["/operator/logFormat", "text", "json"],
        ),
        (&["crds.enable=false"], &["/crds", "'enable' not allowed"]),
        (
            &["operator.watchNamespaces={Not_A_Namespace}"],
            &["/operator/watchNamespaces/0"],
        ),
        (&["image.pullPolicy=Sometimes"], &["/image/pullPolicy"]),
        (
            &["commonLabels.team=1"],
            &["/commonLabels/team", "want string"],
        ),
    ] {
        let error = refused(sets);
        for needle in expected {
            assert!(
                error.contains(needle),
                "helm template {sets:?}: the error must mention {needle:?}, got:\n{error}"
            );
        }
    }
    let mut command = helm();
    command.args([
        "template",
        RELEASE,
        CHART,
        "--kube-version",
        KUBE_VERSION,
        "--set-string",
        "crds.keep=false",
    ]);
    let out = output(&mut command);
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && error.contains("/crds/keep") && error.contains("want boolean"),
        "crds.keep as a string must be refused, got:\n{error}"
    );
    // Not expressible in the schema, refused by the templates.
    let error = refused(&["serviceAccount.create=false"]);
    assert!(error.contains("serviceAccount.name"), "{error}");
    let error = refused(&["metrics.serviceMonitor.enabled=true"]);
    assert!(error.contains("needs metrics.enabled"), "{error}");
    // Two replicas without leader election would both write.
    let error = refused(&["replicaCount=2", "leaderElection.enabled=false"]);
    assert!(
        error.contains(
            "replicaCount=2 needs leaderElection.enabled=true: without leader election \
             every replica reconciles and writes the same objects at once"
        ),
        "{error}"
    );
    template(&["replicaCount=1", "leaderElection.enabled=false"])
        .expect("one replica without leader election is fine");
    template(&["replicaCount=0", "leaderElection.enabled=false"])
        .expect("no replica without leader election is fine");
    // The leader renews before the Lease expires.
    for sets in [
        &["leaderElection.leaseGraceSeconds=15"][..],
        &[
            "leaderElection.leaseDurationSeconds=4",
            "leaderElection.leaseGraceSeconds=5",
        ],
    ] {
        let error = refused(sets);
        assert!(
            error.contains("leaderElection.leaseGraceSeconds")
                && error.contains("must be less than leaderElection.leaseDurationSeconds"),
            "{sets:?}: {error}"
        );
    }
    template(&[
        "leaderElection.leaseDurationSeconds=2",
        "leaderElection.leaseGraceSeconds=1",
    ])
    .expect("the shortest Lease");
    template(&[
        "leaderElection.enabled=false",
        "leaderElection.leaseGraceSeconds=15",
    ])
    .expect("the Lease settings do not matter without leader election");
    // The operator stops (and releases the Lease) before the kubelet kills it.
    for sets in [
        &["operator.shutdownGraceSeconds=30"][..],
        &["terminationGracePeriodSeconds=5"],
    ] {
        let error = refused(sets);
        assert!(
            error.contains("operator.shutdownGraceSeconds")
                && error.contains("must be less than terminationGracePeriodSeconds"),
            "{sets:?}: {error}"
        );
    }
    let error = refused(&[
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=1",
        "podDisruptionBudget.maxUnavailable=1",
    ]);
    assert!(
        error.contains("set minAvailable or maxUnavailable, not both"),
        "{error}"
    );
}

/// The Lease Role's rules: create on leases (a create cannot be limited by
/// name), everything else on the one Lease.
fn lease_rules(lease: &str) -> Value {
    json!([
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "list", "watch", "update", "patch"],
        },
    ])
}

/// The Lease Role of the chart: exactly the verbs leader election uses, on
/// leases only, in the release namespace, bound to the chart's account.
fn assert_lease_rbac(objects: &[Value], fullname: &str, account: &str, lease: &str) {
    let role_name = format!("{fullname}-leader-election");
    let role = find(objects, "Role", &role_name);
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(role["rules"], lease_rules(lease), "the Lease Role's rules");
    let binding = find(objects, "RoleBinding", &role_name);
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}])
    );
}

#[test]
fn leader_election_and_high_availability_render() {
    // Defaults: leader election on, one replica, the Lease Role.
    let objects = render(&[]);
    assert_lease_rbac(&objects, RELEASE, RELEASE, RELEASE);
    assert_eq!(of_kind(&objects, "Role").len(), 1);
    assert_eq!(of_kind(&objects, "RoleBinding").len(), 1);
    let text = template(&[]).expect("helm template");
    assert!(
        text.contains("Creating it cannot be limited by name"),
        "the Lease Role says why create is not limited to the Lease"
    );

    // Three replicas: rolling, spread over nodes, a budget that keeps one.
    let objects = render(&["replicaCount=3", "podDisruptionBudget.enabled=true"]);
    let deployment = deployment(&objects);
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["affinity"],
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
            },
        }]}}),
        "replicas spread over nodes by default"
    );
    assert_eq!(env_var(container(&objects), "MSP_LEADER_ELECT"), "true");
    let budget = find(&objects, "PodDisruptionBudget", RELEASE);
    assert_eq!(
        budget["spec"]["minAvailable"], 1,
        "above one replica the budget keeps one running"
    );
    assert!(budget["spec"].get("maxUnavailable").is_none());
    assert_lease_rbac(&objects, RELEASE, RELEASE, RELEASE);

    // affinity replaces the default; a set budget wins over the default one.
    let objects = render(&[
        "replicaCount=2",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.maxUnavailable=1",
    ]);
    let affinity = &self::deployment(&objects)["spec"]["template"]["spec"]["affinity"];
    assert!(
        affinity.get("podAntiAffinity").is_none() && affinity.get("nodeAffinity").is_some(),
        "affinity replaces the default: {affinity:#}"
    );
    let budget = find(&objects, "PodDisruptionBudget", RELEASE);
    assert_eq!(
        budget["spec"],
        json!({"maxUnavailable": 1, "selector": budget["spec"]["selector"]})
    );
    let objects = render(&[
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=50%",
    ]);
    let budget = find(&objects, "PodDisruptionBudget", RELEASE);
    assert_eq!(budget["spec"]["minAvailable"], "50%");
    assert!(budget["spec"].get("maxUnavailable").is_none());

    // The Lease follows the full name, or leaseName; the Role the full name.
    let objects = render(&["fullnameOverride=ops", "serviceAccount.name=ops-operator"]);
    let ops = &find(&objects, "Deployment", "ops")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_var(ops, "MSP_LEASE_NAME"), "ops");
    assert_lease_rbac(&objects, "ops", "ops-operator", "ops");
    let objects = render(&["leaderElection.leaseName=msp-lock"]);
    assert_eq!(env_var(container(&objects), "MSP_LEASE_NAME"), "msp-lock");
    assert_lease_rbac(&objects, RELEASE, RELEASE, "msp-lock");
    // The chart makes the Lease (so uninstall removes it), with no spec: the
    // replicas own its holder and renewals.
    let lease = find(&objects, "Lease", "msp-lock");
    assert_eq!(lease["metadata"]["namespace"], NAMESPACE);
    assert!(
        lease.get("spec").is_none(),
        "the chart leaves the Lease's spec to the replicas"
    );

    // Without leader election: one replica, Recreate, no Lease and no Role.
    let objects = render(&["leaderElection.enabled=false"]);
    let deployment = self::deployment(&objects);
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "Recreate"}),
        "never two operators at once during an upgrade"
    );
    let container = self::container(&objects);
    assert_eq!(env_var(container, "MSP_LEADER_ELECT"), "false");
    let env = container["env"].to_string();
    assert!(
        !env.contains("MSP_LEASE_"),
        "no Lease settings without leader election: {env}"
    );
    assert_eq!(env_var(container, "MSP_SHUTDOWN_GRACE_SECONDS"), "10");
    assert!(of_kind(&objects, "Role").is_empty());
    assert!(of_kind(&objects, "RoleBinding").is_empty());
    assert!(of_kind(&objects, "Lease").is_empty());

    // rbac.create=false: leader election on, the Lease granted elsewhere.
    let objects = render(&["rbac.create=false"]);
    assert!(of_kind(&objects, "Role").is_empty());
    assert!(of_kind(&objects, "RoleBinding").is_empty());
    assert_eq!(
        env_var(self::container(&objects), "MSP_LEADER_ELECT"),
        "true"
    );
}

// ---------------------------------------------------------------------------
// On a real API server
// ---------------------------------------------------------------------------

/// The environment the chart's Deployment gives its container, as pod `pod`
/// in `namespace` would get it (the downward API's POD_NAME and
/// POD_NAMESPACE resolved).
fn pod_env(deployment: &Deployment, namespace: &str, pod: &str) -> Vec<(String, String)> {
    let container = &deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the Deployment's pod spec")
        .containers[0];
    container
        .env
        .iter()
        .flatten()
        .map(|var| {
            let field = var
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref())
                .map(|field| field.field_path.as_str());
            let value = match (&var.value, field) {
                (Some(value), _) => value.clone(),
                (None, Some("metadata.name")) => pod.to_string(),
                (None, Some("metadata.namespace")) => namespace.to_string(),
                _ => panic!("the test cannot resolve env {} of the Deployment", var.name),
            };
            (var.name.clone(), value)
        })
        .collect()
}

/// The operator binary, run out of cluster with a kubeconfig (as the chart's
/// Deployment would run it in cluster). `env` (e.g. [`pod_env`]) goes over
/// the test's defaults; logs are text, filtered by RUST_LOG (default: info,
/// and the Lease manager's debug lines).
fn start_operator(kubeconfig: &Path, label: &str, env: &[(String, String)]) -> OperatorProcess {
    let operator = OperatorProcess::launch(
        Path::new(env!("CARGO_BIN_EXE_msp-operator")),
        kubeconfig,
        label,
        "",
    )
    .env("MSP_CONCURRENCY", "4")
    .env("MSP_RESYNC_SECONDS", "3600")
    .envs(env.iter().map(|(name, value)| (name, value)))
    .env("MSP_LOG_FORMAT", "text")
    .env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube_lease_manager=debug".into()),
    )
    .spawn();
    eprintln!(
        "helm test: operator ({label}) started, metrics on 127.0.0.1:{}",
        operator.metrics_port
    );
    operator
}

/// The holder of Lease `namespace/name`, if it exists and is held.
async fn lease_holder(admin: &Client, namespace: &str, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), namespace)
        .get_opt(name)
        .await
        .expect("read the Lease")
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty())
}

/// Waits until exactly one of `replicas` leads (`msp_operator_leader` 1, the
/// others 0) and holds Lease `namespace/name`, and every one of them is
/// ready (a standby while it waits, the leader once its caches synced); the
/// index of the leader. Two leaders at any time fail the test at once.
async fn wait_for_one_leader(
    replicas: &mut [OperatorProcess],
    admin: &Client,
    namespace: &str,
    lease: &str,
) -> usize {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        for replica in replicas.iter_mut() {
            replica.assert_running();
        }
        let gauges: Vec<Option<f64>> = replicas.iter().map(OperatorProcess::leader_gauge).collect();
        let leaders: Vec<usize> = (0..replicas.len())
            .filter(|&i| gauges[i] == Some(1.0))
            .collect();
        assert!(
            leaders.len() <= 1,
            "two leaders at once: {:?}",
            leaders
                .iter()
                .map(|&i| &replicas[i].label)
                .collect::<Vec<_>>()
        );
        let observed = if let [leader] = leaders[..] {
            let others_stand_by = (0..replicas.len())
                .filter(|&i| i != leader)
                .all(|i| gauges[i] == Some(0.0));
            let holder = lease_holder(admin, namespace, lease).await;
            let ready: Vec<bool> = replicas.iter().map(OperatorProcess::ready).collect();
            if others_stand_by
                && holder.as_deref() == Some(replicas[leader].label.as_str())
                && ready.iter().all(|r| *r)
            {
                return leader;
            }
            format!("leader gauges {gauges:?}, Lease holder {holder:?}, ready {ready:?}")
        } else {
            format!("leader gauges {gauges:?}")
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for exactly one leader among {:?}; last observed: {observed}",
            replicas.iter().map(|r| &r.label).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `helm` against the test cluster.
fn cluster_helm(env: &TestEnv) -> Command {
    let mut command = helm();
    command.arg("--kubeconfig").arg(env.kubeconfig_path());
    command
}

fn kubectl(env: &TestEnv, args: &[&str]) -> Command {
    let mut command = env.kubectl();
    command.current_dir(repo_root()).args(args);
    command
}

/// Whether `result` is a 403 from the API server.
fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

async fn gone<K>(api: Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(TIMEOUT, what, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            match api.get_opt(&name).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A token kubeconfig for ServiceAccount `namespace/name`, in the temp dir.
async fn service_account_kubeconfig(env: &TestEnv, namespace: &str, name: &str) -> PathBuf {
    let token = env.service_account_token(namespace, name).await;
    let path = tmp_dir().join(format!("{namespace}-{name}.kubeconfig"));
    env.write_token_kubeconfig(&token, &path)
        .unwrap_or_else(|e| panic!("write a kubeconfig for {namespace}/{name}: {e:#}"));
    path
}

async fn token_client(path: &Path) -> Client {
    let yaml = std::fs::read_to_string(path).expect("read the token kubeconfig");
    msp_testenv::kubeconfig::client_from_yaml(&yaml)
        .await
        .expect("client from the token kubeconfig")
}

#[tokio::test]
async fn helm_install_upgrade_uninstall_and_kubectl_apply_on_a_real_cluster() {
    let env = TestEnv::shared();
    if !env.is_local() {
        // On an existing cluster crds/ and deploy/ are applied already (kind.sh),
        // so a release cannot own them, and the samples' namespaces are shared.
        eprintln!("helm test: skipped against MSP_TEST_KUBECONFIG (needs its own control plane)");
        return;
    }
    let admin = env.client().await;
    let ns = env.namespace("helm").await;

    // --- Phase 1: helm install, two replicas, into the test namespace. ----
    let stdout = succeed({
        let mut c = cluster_helm(env);
        c.args([
            "install",
            RELEASE,
            CHART,
            "--namespace",
            &ns,
            "--set",
            "replicaCount=2",
        ]);
        c
    });
    assert!(
        stdout.contains("STATUS: deployed"),
        "helm install:\n{stdout}"
    );
    assert!(
        stdout.contains("kept on `helm uninstall`"),
        "NOTES.txt tells that the CRDs are kept:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "Replicas: 2, with leader election through the Lease {}/{RELEASE}",
            ns.name()
        )),
        "NOTES.txt tells about leader election:\n{stdout}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in [
        "delegations.msp-operator.io",
        "managedserviceoffers.msp-operator.io",
    ] {
        let live = msp_testenv::wait_for(&crds, crd, TIMEOUT, "Established", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            live.metadata
                .annotations
                .unwrap_or_default()
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep")
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let deployment = deployments
        .get(RELEASE)
        .await
        .expect("the chart's Deployment");
    let spec = deployment.spec.as_ref().expect("the Deployment's spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate")
    );
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .get(RELEASE)
        .await
        .expect("the chart's ServiceAccount");
    let file_rules: Vec<PolicyRule> = serde_json::from_value(
        repo_documents("deploy/operator-clusterrole.yaml")[0]["rules"].clone(),
    )
    .expect("deploy/operator-clusterrole.yaml rules");
    let live_role = Api::<ClusterRole>::all(admin.clone())
        .get(RELEASE)
        .await
        .expect("the chart's ClusterRole");
    assert_eq!(live_role.rules, Some(file_rules), "live ClusterRole rules");
    let lease_role_name = format!("{RELEASE}-leader-election");
    let lease_role = Api::<Role>::namespaced(admin.clone(), &ns)
        .get(&lease_role_name)
        .await
        .expect("the chart's Lease Role");
    assert_eq!(
        serde_json::to_value(&lease_role.rules).expect("rules"),
        lease_rules(RELEASE),
        "live Lease Role rules"
    );
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .get(&lease_role_name)
        .await
        .expect("the chart's Lease RoleBinding");

    // --- Phase 2: two replicas, out of cluster, as the chart's account. ---
    // The Deployment's pods never run here (there is no kubelet): two operator
    // processes get what they would, the ServiceAccount's token and the
    // Deployment's environment (leader election on, the chart's Lease, in the
    // release namespace, held under the pod name).
    let chart_kubeconfig = service_account_kubeconfig(env, &ns, RELEASE).await;
    let replica_env = |pod: &str| pod_env(&deployment, &ns, pod);
    let chart_env = replica_env("replica-a");
    let chart_var = |var: &str| {
        chart_env
            .iter()
            .find(|(name, _)| name == var)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("the chart's Deployment sets no {var}: {chart_env:?}"))
    };
    assert_eq!(chart_var("MSP_LEADER_ELECT"), "true");
    assert_eq!(chart_var("POD_NAMESPACE"), ns.name());
    let lease = chart_var("MSP_LEASE_NAME");
    assert_eq!(lease, RELEASE, "the Lease is named after the release");
    let mut replicas = [
        start_operator(&chart_kubeconfig, "replica-a", &replica_env("replica-a")),
        start_operator(&chart_kubeconfig, "replica-b", &replica_env("replica-b")),
    ];
    let started = std::time::Instant::now();
    let leader = wait_for_one_leader(&mut replicas, &admin, &ns, &lease).await;
    let standby = 1 - leader;
    eprintln!(
        "helm test: {} leads after {:?}, {} stands by",
        replicas[leader].label,
        started.elapsed(),
        replicas[standby].label
    );
    // Still exactly one, a moment later.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(replicas[leader].leader_gauge(), Some(1.0));
    assert_eq!(replicas[standby].leader_gauge(), Some(0.0));

    // --- Phase 3: a delegation end to end, under exactly the chart's RBAC. -
    let provider_tenant = unique_name("helm-prov");
    let provider = env
        .namespace_with_labels("helm-p", &[(TENANT, &provider_tenant)])
        .await;
    let customer = env
        .namespace_with_labels("helm-c", &[(TENANT, &unique_name("helm-cust"))])
        .await;
    let alice_name = unique_name("helm-alice");
    let alice = env.user_client(&alice_name, &[]).await;
    assert!(
        !can_list_pods(&alice, &customer).await,
        "no access before the delegation"
    );
    apply(
        &admin,
        &offer(
            &provider,
            "monitoring",
            &provider_tenant,
            vec![plan(
                "basic",
                "1.0.0",
                vec![auth(
                    PrincipalKind::User,
                    &alice_name,
                    "msp-operator:reader",
                )],
            )],
        ),
    )
    .await;
    msp_testenv::manifests::wait_for_consent_recorder(&admin)
        .await
        .expect("consent recorder");
    apply(
        &admin,
        &delegation(
            &customer,
            "monitoring",
            (&provider, "monitoring"),
            "basic",
            "1.0.0",
            None,
        ),
    )
    .await;
    let ready = wait_condition(
        &admin,
        &customer,
        "monitoring",
        "Ready",
        "True",
        Some("Granted"),
    )
    .await;
    assert_eq!(
        ready
            .status
            .as_ref()
            .and_then(|s| s.applied_version.as_deref()),
        Some("1.0.0")
    );
    wait_access(&alice, &customer, true).await;
    assert!(
        !can_list_pods(&alice, &provider).await,
        "nothing outside the delegation"
    );
    for replica in replicas.iter_mut() {
        replica.assert_running();
    }
    assert_eq!(
        replicas[standby].leader_gauge(),
        Some(0.0),
        "the standby still stands by"
    );

    // The chart's admission policy is live: someone who may create
    // Delegations in the customer namespace, but not RoleBindings, is refused
    // (no confused deputy).
    let mallory_name = unique_name("helm-mallory");
    let delegation_writer = Role {
        metadata: ObjectMeta {
            name: Some("delegation-writer".into()),
            namespace: Some(customer.name().into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["msp-operator.io".into()]),
            resources: Some(vec!["delegations".into()]),
            verbs: vec!["create".into(), "get".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &customer)
        .create(&PostParams::default(), &delegation_writer)
        .await
        .expect("create the delegation-writer Role");
    let writer_binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("delegation-writer".into()),
            namespace: Some(customer.name().into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "delegation-writer".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: mallory_name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &customer)
        .create(&PostParams::default(), &writer_binding)
        .await
        .expect("bind the delegation-writer Role");
    let mallory = env.user_client(&mallory_name, &[]).await;
    let sneaky = delegation(
        &customer,
        "sneaky",
        (&provider, "monitoring"),
        "basic",
        "1.0.0",
        None,
    );
    wait_until(
        TIMEOUT,
        "the chart's admission policy to refuse a Delegation by someone who cannot bind",
        || {
            let api: Api<Delegation> = Api::namespaced(mallory.clone(), &customer);
            let sneaky = sneaky.clone();
            async move {
                let params = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                match api.create(&params, &sneaky).await {
                    Err(kube::Error::Api(s))
                        if s.message
                            .contains("where you may create RoleBindings yourself") =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    // What the chart does not grant, its account cannot do.
    let chart_account = token_client(&chart_kubeconfig).await;
    Api::<Delegation>::all(chart_account.clone())
        .list(&ListParams::default())
        .await
        .expect("the chart's account may list delegations (so the 403s below are RBAC)");
    forbidden(
        Api::<Secret>::all(chart_account.clone())
            .list(&ListParams::default())
            .await,
        "the chart's account lists secrets cluster-wide",
    );
    forbidden(
        Api::<Secret>::namespaced(chart_account.clone(), &customer)
            .list(&ListParams::default())
            .await,
        "the chart's account lists secrets in a customer namespace",
    );
    forbidden(
        Api::<Pod>::namespaced(chart_account.clone(), &customer)
            .list(&ListParams::default())
            .await,
        "the chart's account lists pods in a customer namespace",
    );
    let escalation = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(unique_name("helm-escalate")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: RELEASE.into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        }]),
    };
    forbidden(
        Api::<ClusterRoleBinding>::all(chart_account.clone())
            .create(&PostParams::default(), &escalation)
            .await,
        "the chart's account creates a ClusterRoleBinding",
    );
    forbidden(
        Api::<ClusterRole>::all(chart_account.clone())
            .delete("msp-operator:reader", &DeleteParams::default())
            .await,
        "the chart's account deletes a ClusterRole",
    );
    // Leases: in the release namespace only.
    let by_name = ListParams::default().fields(&format!("metadata.name={lease}"));
    Api::<Lease>::namespaced(chart_account.clone(), &ns)
        .list(&by_name)
        .await
        .expect("the chart's account lists its Lease");
    forbidden(
        Api::<Lease>::namespaced(chart_account.clone(), &ns)
            .list(&ListParams::default())
            .await,
        "the chart's account lists every Lease of its namespace",
    );
    forbidden(
        Api::<Lease>::namespaced(chart_account.clone(), &customer)
            .list(&ListParams::default())
            .await,
        "the chart's account lists leases in a customer namespace",
    );
    forbidden(
        Api::<Lease>::all(chart_account.clone())
            .list(&ListParams::default())
            .await,
        "the chart's account lists leases cluster-wide",
    );

    // Hand-over: SIGTERM the leader, as the kubelet does in a rolling update.
    // It releases the Lease and exits 0; the standby, watching the Lease,
    // takes it at once (not after the 15 s the Lease would stay valid).
    let terminated = std::time::Instant::now();
    replicas[leader].terminate().await;
    let new_leader = &replicas[standby];
    wait_until(TIMEOUT, "the standby to take over the Lease", || async {
        let holder = lease_holder(&admin, &ns, &lease).await;
        match (new_leader.leader_gauge(), holder) {
            (Some(1.0), Some(holder)) if holder == new_leader.label => Ok(()),
            other => Err(format!("leader gauge and Lease holder: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let handover = terminated.elapsed();
    eprintln!("helm test: hand-over after SIGTERM took {handover:?}");
    assert!(
        new_leader.log_text().contains("the lease was released"),
        "the standby took over because it saw the Lease released (list and watch \
         granted), not because it expired:\n{}",
        new_leader.log_tail(40)
    );
    assert!(
        handover < std::time::Duration::from_secs(10),
        "hand-over took {handover:?}"
    );
    for replica in &replicas {
        replica.assert_never_forbidden();
    }

    // --- Phase 4: helm upgrade with a changed value. ----------------------
    let stdout = succeed({
        let mut c = cluster_helm(env);
        c.args([
            "upgrade",
            RELEASE,
            CHART,
            "--namespace",
            &ns,
            "--set",
            "replicaCount=2",
            "--set",
            "operator.concurrency=3",
        ]);
        c
    });
    assert!(stdout.contains("REVISION: 2"), "helm upgrade:\n{stdout}");
    let upgraded = deployments
        .get(RELEASE)
        .await
        .expect("Deployment after upgrade");
    let env_vars = upgraded
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        env_vars
            .iter()
            .find(|e| e.name == "MSP_CONCURRENCY")
            .and_then(|e| e.value.as_deref()),
        Some("3"),
        "helm upgrade --set operator.concurrency=3 reaches the Deployment"
    );
    // The operator (the replica that took over) still works after the
    // upgrade: removal revokes the grant and releases the finalizer.
    Api::<Delegation>::namespaced(admin.clone(), &customer)
        .delete("monitoring", &DeleteParams::default())
        .await
        .expect("delete the delegation");
    wait_access(&alice, &customer, false).await;
    gone(
        Api::<Delegation>::namespaced(admin.clone(), &customer),
        "monitoring",
        "the delegation to be removed by the operator",
    )
    .await;
    // The last replica stops: it releases the Lease.
    replicas[standby].terminate().await;
    assert_eq!(
        lease_holder(&admin, &ns, &lease).await,
        None,
        "a leader that stops releases the Lease"
    );
    for replica in &replicas {
        replica.assert_never_forbidden();
    }
    drop(replicas);

    // --- Phase 5: helm uninstall keeps the CRDs (crds.keep=true). ---------
    let stdout = succeed({
        let mut c = cluster_helm(env);
        c.args(["uninstall", RELEASE, "--namespace", &ns]);
        c
    });
    assert!(
        stdout.contains("kept due to the resource policy")
            && stdout.contains("delegations.msp-operator.io"),
        "helm uninstall names the kept CRDs:\n{stdout}"
    );
    gone(deployments.clone(), RELEASE, "the Deployment to go").await;
    gone(
        Api::<ClusterRole>::all(admin.clone()),
        RELEASE,
        "the ClusterRole to go",
    )
    .await;
    gone(
        Api::<ClusterRoleBinding>::all(admin.clone()),
        RELEASE,
        "the ClusterRoleBinding to go",
    )
    .await;
    gone(
        Api::<ServiceAccount>::namespaced(admin.clone(), &ns),
        RELEASE,
        "the ServiceAccount to go",
    )
    .await;
    gone(
        Api::<Role>::namespaced(admin.clone(), &ns),
        &lease_role_name,
        "the Lease Role to go",
    )
    .await;
    gone(
        Api::<RoleBinding>::namespaced(admin.clone(), &ns),
        &lease_role_name,
        "the Lease RoleBinding to go",
    )
    .await;
    gone(
        Api::<Lease>::namespaced(admin.clone(), &ns),
        &lease,
        "the chart's Lease to go",
    )
    .await;
    gone(
        Api::<ClusterRole>::all(admin.clone()),
        "msp-operator:reader",
        "the delegable roles to go",
    )
    .await;
    for crd in [
        "delegations.msp-operator.io",
        "managedserviceoffers.msp-operator.io",
    ] {
        crds.get(crd)
            .await
            .unwrap_or_else(|e| panic!("CRD {crd} must survive helm uninstall: {e}"));
    }
    Api::<msp_operator::api::ManagedServiceOffer>::namespaced(admin.clone(), &provider)
        .get("monitoring")
        .await
        .expect("offers survive helm uninstall with their CRD");

    // --- Phase 6: the kubectl path. ---------------------------------------
    // deploy/ ships the ClusterRole but no binding; bind it to an account.
    succeed(kubectl(
        env,
        &["apply", "--server-side", "-f", "crds/", "-f", "deploy/"],
    ));
    let ops = env.namespace("kubectl-ops").await;
    succeed(kubectl(
        env,
        &["create", "serviceaccount", "msp-operator", "-n", &ops],
    ));
    let binding = unique_name("msp-operator-kubectl");
    succeed(kubectl(
        env,
        &[
            "create",
            "clusterrolebinding",
            &binding,
            "--clusterrole=msp-operator",
            &format!("--serviceaccount={}:msp-operator", ops.name()),
        ],
    ));
    // The README's Lease Role, for leader election.
    succeed(kubectl(
        env,
        &[
            "create",
            "role",
            "msp-operator-leader-election",
            "-n",
            &ops,
            "--verb=get,list,watch,create,update,patch",
            "--resource=leases.coordination.k8s.io",
        ],
    ));
    succeed(kubectl(
        env,
        &[
            "create",
            "rolebinding",
            "msp-operator-leader-election",
            "-n",
            &ops,
            "--role=msp-operator-leader-election",
            &format!("--serviceaccount={}:msp-operator", ops.name()),
        ],
    ));
    // The README's recipe for a kubeconfig of that ServiceAccount.
    let kubectl_kubeconfig = tmp_dir().join(format!("{}-operator.kubeconfig", ops.name()));
    let kubeconfig_arg = kubectl_kubeconfig.to_string_lossy().into_owned();
    let minified = succeed(kubectl(env, &["config", "view", "--minify", "--raw"]));
    std::fs::write(&kubectl_kubeconfig, minified).expect("write operator.kubeconfig");
    let token = succeed(kubectl(
        env,
        &[
            "create",
            "token",
            "msp-operator",
            "-n",
            &ops,
            "--duration=1h",
        ],
    ));
    succeed(kubectl(
        env,
        &[
            "--kubeconfig",
            &kubeconfig_arg,
            "config",
            "set-credentials",
            "msp-operator",
            &format!("--token={}", token.trim()),
        ],
    ));
    succeed(kubectl(
        env,
        &[
            "--kubeconfig",
            &kubeconfig_arg,
            "config",
            "set-context",
            "--current",
            "--user=msp-operator",
        ],
    ));
    let whoami = succeed(kubectl(
        env,
        &[
            "--kubeconfig",
            &kubeconfig_arg,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    ));
    assert_eq!(
        whoami,
        format!("system:serviceaccount:{}:msp-operator", ops.name()),
        "the operator's kubeconfig authenticates as its ServiceAccount"
    );
    // The operator as the chart's Deployment runs it on top of deploy/ (the
    // README's `helm install` with rbac.create=false): leader election on, in
    // its namespace, with the Lease Role above.
    let kubectl_pod_env: Vec<(String, String)> = [
        ("MSP_LEADER_ELECT", "true"),
        ("MSP_LEASE_NAME", "msp-operator"),
        ("POD_NAMESPACE", ops.name()),
        ("POD_NAME", "kubectl-sa"),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .into();
    let mut operator = start_operator(&kubectl_kubeconfig, "kubectl-sa", &kubectl_pod_env);
    let leader = wait_for_one_leader(
        std::slice::from_mut(&mut operator),
        &admin,
        &ops,
        "msp-operator",
    )
    .await;
    assert_eq!(leader, 0);
    // The re-created consent recorder must be in force before a Delegation
    // is created (admission policies take effect a moment after creation).
    msp_testenv::manifests::wait_for_consent_recorder(&admin)
        .await
        .expect("consent recorder");
    succeed(kubectl(env, &["apply", "-f", "examples/"]));
    let waited = succeed(kubectl(
        env,
        &[
            "wait",
            "--for=condition=Ready",
            "delegation/contoso-monitoring",
            "-n",
            "fabrikam-web",
            "--timeout=60s",
        ],
    ));
    assert!(waited.contains("condition met"), "kubectl wait:\n{waited}");
    // As in the README: the provider's on-call group reads both namespaces of
    // the delegation, and nothing of the provider's own.
    let can_i = |namespace: &str| {
        let mut c = kubectl(
            env,
            &[
                "auth",
                "can-i",
                "list",
                "pods",
                "-n",
                namespace,
                "--as",
                "someone",
                "--as-group",
                "contoso:oncall",
            ],
        );
        String::from_utf8_lossy(&output(&mut c).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(can_i("fabrikam-web"), "yes");
    assert_eq!(can_i("fabrikam-db"), "yes");
    assert_eq!(can_i("contoso-msp"), "no");
    operator.assert_never_forbidden();
    operator.terminate().await;
}
