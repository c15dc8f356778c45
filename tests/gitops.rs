//! GitOps: what Flux and Argo CD rely on, and the examples in examples/gitops/.
//!
//! On a real API server with the operator running (this binary's own local
//! control plane):
//!
//! - kstatus on real objects. [`kstatus`] is the rule set Flux evaluates for
//!   the offers-and-delegations Kustomization (kstatus's observedGeneration
//!   check, then the `healthCheckExprs` of examples/gitops/flux:
//!   Reconciling=True InProgress, Stalled=True Failed, Ready=True Current,
//!   else InProgress). Driven by the operator, a Delegation without a status,
//!   and one whose spec just changed (the patch response carries the new
//!   generation and the old status), is InProgress; a granted one is Current
//!   with `observedGeneration` = `generation` on its status and on every
//!   condition; a refused one is Failed (Stalled=True); one with a namespace
//!   that does not exist yet is InProgress (Reconciling=True) and becomes
//!   Current when the namespace appears. A published offer is Current. The
//!   Argo CD health script of examples/gitops/argocd/argocd-cm-health.yaml,
//!   run by gopher-lua (Argo CD's Lua) as Argo CD runs it, gives the same
//!   verdicts on the same objects (Healthy, Progressing, Degraded).
//! - Re-applying changes nothing. Server-side apply of an offer and a
//!   delegation as `kustomize-controller` (Flux) and as `argocd-controller`
//!   (Argo CD with ServerSideApply=true), then again once the operator has
//!   added its finalizer, labels and status: the second apply needs no force
//!   (no conflict with the operator's fields) and changes neither
//!   resourceVersion nor generation; the operator's fields stay. The same with
//!   `kubectl apply --server-side -k examples/gitops/offers-and-delegations`,
//!   and `kubectl diff --server-side` in between reports no difference.
//!
//! Without a cluster: every YAML document under examples/gitops/ parses and
//! has the expected apiVersion and kind (current Flux and Argo CD APIs); the
//! samples are copies of examples/*.yaml; every path, source and dependency a
//! Flux Kustomization, HelmRelease or Argo CD Application names exists; their
//! Helm values exist in charts/msp-operator/values.yaml and the chart renders
//! with them (`helm template`, schema included); the kustomizations build.
//!
//! The Lua check needs Go (as the control plane build does): it builds a small
//! harness on github.com/yuin/gopher-lua once. Without `go` on PATH it is
//! skipped with a message.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_testenv::binaries::{Binaries, repo_root};
use msp_testenv::{unique_name, wait_for};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use support::process::{helm_binary, on_path, output, run};
use support::*;

const TENANT: &str = "msp-operator.io/tenant";
/// The operator's field manager and finalizer.
const OPERATOR_MANAGER: &str = "msp-operator";
const FINALIZER: &str = "msp-operator.io/cleanup";
/// The labels the operator puts on a Delegation.
const OPERATOR_LABELS: [&str; 3] = [
    "msp-operator.io/offer-namespace",
    "msp-operator.io/offer",
    "msp-operator.io/plan",
];
/// The field managers of Flux's kustomize-controller and of Argo CD with
/// ServerSideApply=true.
const GITOPS_MANAGERS: [&str; 2] = ["kustomize-controller", "argocd-controller"];
/// The placeholder repository URL of the examples.
const PLACEHOLDER_REPO: &str = "https://github.com/example/msp-operator";
const GITOPS_DIR: &str = "examples/gitops";
const SAMPLES_DIR: &str = "examples/gitops/offers-and-delegations";
const SAMPLE_FILES: [&str; 3] = ["00-namespaces.yaml", "10-offer.yaml", "20-delegation.yaml"];
/// The fixed names the samples use.
const SAMPLE_NAMESPACES: [&str; 3] = ["contoso-msp", "fabrikam-web", "fabrikam-db"];

/// The `healthCheckExprs` of examples/gitops/flux/kustomizations.yaml, for
/// both kinds: exactly what [`kstatus`] evaluates after the generation check.
const EXPR_IN_PROGRESS: &str =
    "status.conditions.exists(c, c.type == 'Reconciling' && c.status == 'True')";
const EXPR_FAILED: &str = "status.conditions.exists(c, c.type == 'Stalled' && c.status == 'True')";
const EXPR_CURRENT: &str = "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')";

// ---------------------------------------------------------------------------
// kstatus
// ---------------------------------------------------------------------------

/// A kstatus verdict (Terminating and NotFound do not occur here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
}

/// The kstatus verdict on an object, as Flux computes it for our kinds with
/// the examples' health expressions: a status that does not describe the
/// current generation (or no status at all) is InProgress; then
/// Reconciling=True is InProgress, Stalled=True Failed, Ready=True Current,
/// and anything else InProgress.
fn kstatus(object: &Value) -> KStatus {
    let status = &object["status"];
    if status.is_null()
        || status["observedGeneration"].as_i64() != object["metadata"]["generation"].as_i64()
    {
        return KStatus::InProgress;
    }
    let holds = |type_: &str| {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    };
    if holds("Reconciling") {
        KStatus::InProgress
    } else if holds("Stalled") {
        KStatus::Failed
    } else if holds("Ready") {
        KStatus::Current
    } else {
        KStatus::InProgress
    }
}

/// The object as JSON, with apiVersion and kind (as Flux and Argo CD see it).
fn to_json<K>(object: &K) -> Value
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize,
{
    let mut value = serde_json::to_value(object).expect("json");
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    value
}

/// `status.observedGeneration` and every condition's `observedGeneration` are
/// the object's `metadata.generation`.
fn assert_observed(object: &Value) {
    let generation = object["metadata"]["generation"].as_i64();
    let name = &object["metadata"]["name"];
    assert!(generation.is_some(), "{name}: no generation");
    assert_eq!(
        object["status"]["observedGeneration"].as_i64(),
        generation,
        "{name}: status.observedGeneration"
    );
    let conditions = object["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(!conditions.is_empty(), "{name}: no conditions");
    for condition in conditions {
        assert_eq!(
            condition["observedGeneration"].as_i64(),
            generation,
            "{name}: observedGeneration of {condition}"
        );
    }
}

/// The (status, reason) of condition `type_`, if present.
fn cond(object: &Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// An object seen during a test, with its expected kstatus verdict.
struct Seen {
    what: &'static str,
    object: Value,
    expected: KStatus,
}

/// Records `object` after checking its verdict.
fn see(seen: &mut Vec<Seen>, what: &'static str, object: Value, expected: KStatus) {
    assert_eq!(
        kstatus(&object),
        expected,
        "{what}: kstatus of\n{}",
        serde_json::to_string_pretty(&object["status"]).unwrap_or_default()
    );
    seen.push(Seen {
        what,
        object,
        expected,
    });
}

#[test]
fn kstatus_rules_in_their_order() {
    let object = |generation: i64, observed: Option<i64>, conditions: &[(&str, &str)]| {
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|(t, s)| json!({"type": t, "status": s}))
            .collect();
        let mut object = json!({"metadata": {"generation": generation}});
        if let Some(observed) = observed {
            object["status"] = json!({"observedGeneration": observed, "conditions": conditions});
        }
        object
    };
    use KStatus::*;
    for (object, expected) in [
        (object(1, None, &[]), InProgress),
        (object(2, Some(1), &[("Ready", "True")]), InProgress),
        (object(2, Some(2), &[("Ready", "True")]), Current),
        (object(2, Some(2), &[("Ready", "False")]), InProgress),
        (object(2, Some(2), &[]), InProgress),
        (
            object(2, Some(2), &[("Ready", "False"), ("Stalled", "True")]),
            Failed,
        ),
        (
            object(2, Some(2), &[("Ready", "False"), ("Reconciling", "True")]),
            InProgress,
        ),
        (
            object(2, Some(2), &[("Stalled", "True"), ("Reconciling", "True")]),
            InProgress,
        ),
        (
            object(2, Some(2), &[("Ready", "True"), ("Stalled", "False")]),
            Current,
        ),
    ] {
        assert_eq!(kstatus(&object), expected, "{object}");
    }
}

#[tokio::test]
async fn kstatus_of_real_offers_and_delegations_follows_the_operator() {
    let env = env();
    let admin = env.client().await;
    let provider_tenant = unique_name("ks-prov");
    let customer_tenant = unique_name("ks-cust");
    let provider = env
        .namespace_with_labels("ks-p", &[(TENANT, &provider_tenant)])
        .await;
    let customer = env
        .namespace_with_labels("ks-c", &[(TENANT, &customer_tenant)])
        .await;
    let user = unique_name("ks-user");
    let mut seen = Vec::new();

    // The offer: InProgress as applied (no status), Current once published.
    let applied = apply(&admin, &reader_offer(&provider, &provider_tenant, &user)).await;
    assert!(applied.status.is_none(), "{:?}", applied.status);
    see(
        &mut seen,
        "offer as applied",
        to_json(&applied),
        KStatus::InProgress,
    );
    let offers: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &provider);
    let published = wait_for(&offers, "o", TIMEOUT, "offer Current", |o| {
        kstatus(&to_json(o)) == KStatus::Current
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let published = to_json(&published);
    assert_observed(&published);
    assert_eq!(
        cond(&published, "Ready"),
        Some(("True".into(), "Published".into()))
    );
    assert!(cond(&published, "Reconciling").is_none() && cond(&published, "Stalled").is_none());
    see(&mut seen, "published offer", published, KStatus::Current);

    // A Delegation as created: the create response never carries a status.
    let delegations: Api<Delegation> = Api::namespaced(admin.clone(), &customer);
    let created = create(
        &admin,
        &delegation(&customer, "d", (&provider, "o"), "p", "1.0.0", None),
    )
    .await;
    assert!(created.status.is_none(), "{:?}", created.status);
    see(
        &mut seen,
        "delegation as created",
        to_json(&created),
        KStatus::InProgress,
    );

    // (ii) Granted: Current, every condition observed at this generation, and
    // neither Reconciling nor Stalled present.
    let ready =
        to_json(&wait_condition(&admin, &customer, "d", "Ready", "True", Some("Granted")).await);
    assert_observed(&ready);
    assert!(cond(&ready, "Reconciling").is_none() && cond(&ready, "Stalled").is_none());
    let generation = ready["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    see(&mut seen, "granted delegation", ready, KStatus::Current);

    // (i) The spec changes (a version not published): the patch response has
    // the new generation and still the old status, which says Ready=True, so
    // only the generation rule keeps it from being Current.
    let patched = to_json(
        &delegations
            .patch(
                "d",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"planVersion": "9.9.9"}})),
            )
            .await
            .expect("patch planVersion"),
    );
    assert_eq!(
        patched["metadata"]["generation"].as_i64(),
        Some(generation + 1)
    );
    assert_eq!(
        patched["status"]["observedGeneration"].as_i64(),
        Some(generation)
    );
    assert_eq!(
        cond(&patched, "Ready"),
        Some(("True".into(), "Granted".into()))
    );
    see(
        &mut seen,
        "delegation with a spec not yet observed",
        patched,
        KStatus::InProgress,
    );
    // The operator observes it and refuses the version: Failed.
    let refused_version = to_json(
        &wait_condition(
            &admin,
            &customer,
            "d",
            "Stalled",
            "True",
            Some("VersionNotPublished"),
        )
        .await,
    );
    assert_observed(&refused_version);
    assert_eq!(
        cond(&refused_version, "Ready"),
        Some(("False".into(), "VersionNotPublished".into()))
    );
    assert!(cond(&refused_version, "Reconciling").is_none());
    see(
        &mut seen,
        "delegation of an unpublished version",
        refused_version,
        KStatus::Failed,
    );
    // Back to the published version: InProgress at once, then Current.
    let back = delegations
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"planVersion": "1.0.0"}})),
        )
        .await
        .expect("patch planVersion back");
    assert_eq!(kstatus(&to_json(&back)), KStatus::InProgress);
    let ready_again =
        to_json(&wait_condition(&admin, &customer, "d", "Ready", "True", Some("Granted")).await);
    assert_observed(&ready_again);
    assert_eq!(kstatus(&ready_again), KStatus::Current);

    // (iii) Refused from the start (no such plan): Failed.
    create(
        &admin,
        &delegation(
            &customer,
            "refused",
            (&provider, "o"),
            "nope",
            "1.0.0",
            None,
        ),
    )
    .await;
    let refused = to_json(
        &wait_condition(
            &admin,
            &customer,
            "refused",
            "Stalled",
            "True",
            Some("PlanNotFound"),
        )
        .await,
    );
    assert_observed(&refused);
    assert_eq!(
        cond(&refused, "Ready"),
        Some(("False".into(), "PlanNotFound".into()))
    );
    assert_eq!(
        cond(&refused, "Accepted"),
        Some(("False".into(), "PlanNotFound".into()))
    );
    assert!(cond(&refused, "Reconciling").is_none());
    see(&mut seen, "refused delegation", refused, KStatus::Failed);

    // (iv) One target namespace does not exist yet: InProgress, with
    // Reconciling=True and Ready=False (Progressing), and no Stalled.
    let late = unique_name("ks-late");
    apply(
        &admin,
        &delegation(
            &customer,
            "late",
            (&provider, "o"),
            "p",
            "1.0.0",
            Some(vec![&customer, &late]),
        ),
    )
    .await;
    let waiting = to_json(
        &wait_condition(
            &admin,
            &customer,
            "late",
            "Ready",
            "False",
            Some("Progressing"),
        )
        .await,
    );
    assert_observed(&waiting);
    assert_eq!(
        cond(&waiting, "Reconciling"),
        Some(("True".into(), "Progressing".into()))
    );
    assert!(cond(&waiting, "Stalled").is_none());
    see(
        &mut seen,
        "delegation waiting for a namespace",
        waiting,
        KStatus::InProgress,
    );
    // The namespace appears, of the customer's tenant: Current.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(late.clone()),
                    labels: Some(BTreeMap::from([
                        (TENANT.to_string(), customer_tenant.clone()),
                        (
                            msp_testenv::env::TEST_NAMESPACE_LABEL.to_string(),
                            "true".to_string(),
                        ),
                    ])),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create the late namespace");
    let granted_late =
        to_json(&wait_condition(&admin, &customer, "late", "Ready", "True", Some("Granted")).await);
    assert_observed(&granted_late);
    assert!(cond(&granted_late, "Reconciling").is_none());
    see(
        &mut seen,
        "delegation once its namespace exists",
        granted_late,
        KStatus::Current,
    );

    // Argo CD's verdicts on the same objects, with the examples' Lua.
    argocd_health_agrees(&seen);

    namespaces
        .delete(&late, &DeleteParams::background())
        .await
        .expect("delete the late namespace");
}

// ---------------------------------------------------------------------------
// Argo CD health (Lua)
// ---------------------------------------------------------------------------

/// A harness running Argo CD health scripts as Argo CD does
/// (util/lua/lua.go): gopher-lua without its standard libraries but package,
/// base and table, `obj` the object decoded from JSON, a 1 s limit, and the
/// table the script returns read for `status` and `message`.
const LUA_HARNESS: &str = r#"package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type input struct {
	Script string                 `json:"script"`
	Object map[string]interface{} `json:"object"`
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func decode(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(decode(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), decode(l, item))
		}
		return t
	}
	return lua.LNil
}

func run(in input) health {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, in.Object))
	if err := l.DoString(in.Script); err != nil {
		return health{Error: err.Error()}
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return health{Error: "the script returned " + l.Get(-1).Type().String() + ", not a table"}
	}
	return health{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}
}

func main() {
	var inputs []input
	if err := json.NewDecoder(os.Stdin).Decode(&inputs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := make([]health, 0, len(inputs))
	for _, in := range inputs {
		out = append(out, run(in))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
"#;

const LUA_HARNESS_GO_MOD: &str = "module msp-operator-tests/argocd-lua

go 1.22

require github.com/yuin/gopher-lua v1.1.1
";

/// The built Lua harness, or None without Go.
fn lua_harness() -> Option<&'static Path> {
    static HARNESS: OnceLock<Option<PathBuf>> = OnceLock::new();
    HARNESS
        .get_or_init(|| {
            let go = on_path("go")?;
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gitops-argocd-lua");
            std::fs::create_dir_all(&dir).expect("harness directory");
            std::fs::write(dir.join("main.go"), LUA_HARNESS).expect("main.go");
            std::fs::write(dir.join("go.mod"), LUA_HARNESS_GO_MOD).expect("go.mod");
            let binary = dir.join("argocd-lua");
            let out = output(
                Command::new(go)
                    .current_dir(&dir)
                    .args(["build", "-mod=mod", "-o"])
                    .arg(&binary)
                    .arg("."),
            );
            assert!(
                out.status.success(),
                "building the Lua harness (gopher-lua from the Go module proxy) failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(binary)
        })
        .as_deref()
}

/// The health scripts of examples/gitops/argocd/argocd-cm-health.yaml, by kind.
fn argocd_health_scripts() -> BTreeMap<String, String> {
    let docs = yaml_documents(
        &repo_root()
            .join(GITOPS_DIR)
            .join("argocd/argocd-cm-health.yaml"),
    );
    let data = docs[0]["data"].as_object().expect("argocd-cm data");
    data.iter()
        .map(|(key, script)| {
            let kind = key
                .strip_prefix("resource.customizations.health.msp-operator.io_")
                .unwrap_or_else(|| panic!("unexpected argocd-cm key {key}"));
            (
                kind.to_string(),
                script.as_str().expect("script").to_string(),
            )
        })
        .collect()
}

/// The Argo CD health the Lua gives each seen object matches its kstatus:
/// Current is Healthy, InProgress Progressing, Failed Degraded (the message
/// starting with the Stalled reason).
fn argocd_health_agrees(seen: &[Seen]) {
    let Some(harness) = lua_harness() else {
        eprintln!(
            "gitops: SKIPPED the Argo CD Lua health check: no `go` on PATH to build the gopher-lua harness"
        );
        return;
    };
    let scripts = argocd_health_scripts();
    let inputs: Vec<Value> = seen
        .iter()
        .map(|s| {
            let kind = s.object["kind"].as_str().expect("kind");
            json!({"script": scripts[kind], "object": s.object})
        })
        .collect();
    let mut child = Command::new(harness)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Lua harness");
    serde_json::to_writer(child.stdin.take().expect("stdin"), &inputs).expect("write objects");
    let out = child.wait_with_output().expect("Lua harness");
    assert!(
        out.status.success(),
        "Lua harness: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).expect("harness output");
    assert_eq!(verdicts.len(), seen.len());
    for (s, verdict) in seen.iter().zip(&verdicts) {
        assert!(
            verdict["error"].is_null(),
            "{}: Lua error {verdict}",
            s.what
        );
        let expected = match s.expected {
            KStatus::Current => "Healthy",
            KStatus::InProgress => "Progressing",
            KStatus::Failed => "Degraded",
        };
        assert_eq!(
            verdict["status"], expected,
            "{}: Argo CD health {verdict}",
            s.what
        );
        let message = verdict["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{}: no message", s.what);
        if s.expected == KStatus::Failed {
            let reason = cond(&s.object, "Stalled").expect("Stalled").1;
            assert!(
                message.starts_with(&format!("{reason}: ")),
                "{}: {message}",
                s.what
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Re-apply
// ---------------------------------------------------------------------------

/// Server-side applies `object` as `manager`, without force (as a GitOps tool
/// does when nobody else owns its fields).
async fn apply_as<K>(client: &Client, object: &K, manager: &str) -> Result<K, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().expect("namespace"));
    let mut body = to_json(object);
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    api.patch(
        &object.name_any(),
        &PatchParams::apply(manager),
        &Patch::Apply(&body),
    )
    .await
}

/// The managers of an object's fields, with their operation.
fn managers<K: kube::Resource>(object: &K) -> Vec<(String, String)> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The operator's labels and finalizer are on `delegation`.
fn assert_operator_fields(delegation: &Delegation) {
    for label in OPERATOR_LABELS {
        assert!(
            delegation.labels().contains_key(label),
            "label {label} missing: {:?}",
            delegation.labels()
        );
    }
    assert!(
        delegation.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer missing: {:?}",
        delegation.finalizers()
    );
}

/// Waits until the offer's status counts `delegations` ready delegations of
/// `plan` (the operator's last write to the offer for them).
async fn wait_offer_adoption(client: &Client, ns: &str, name: &str, plan: &str, delegations: i32) {
    let api: Api<ManagedServiceOffer> = Api::namespaced(client.clone(), ns);
    wait_for(
        &api,
        name,
        TIMEOUT,
        "plan adoption in the offer status",
        |o| {
            kstatus(&to_json(o)) == KStatus::Current
                && o.status.as_ref().is_some_and(|s| {
                    s.plans.iter().any(|p| {
                        p.name == plan
                            && p.delegations == delegations
                            && p.ready_delegations == delegations
                    })
                })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn reapplying_as_flux_or_argocd_changes_nothing_and_keeps_the_operators_fields() {
    let env = env();
    let admin = env.client().await;
    for manager in GITOPS_MANAGERS {
        let provider_tenant = unique_name("ra-prov");
        let customer_tenant = unique_name("ra-cust");
        let provider = env
            .namespace_with_labels("ra-p", &[(TENANT, &provider_tenant)])
            .await;
        let customer = env
            .namespace_with_labels("ra-c", &[(TENANT, &customer_tenant)])
            .await;
        let the_offer = offer(
            &provider,
            "monitoring",
            &provider_tenant,
            vec![plan(
                "basic",
                "1.0.0",
                vec![auth(
                    PrincipalKind::Group,
                    &unique_name("oncall"),
                    "msp-operator:reader",
                )],
            )],
        );
        let the_delegation = delegation(
            &customer,
            "monitoring",
            (&provider, "monitoring"),
            "basic",
            "1.0.0",
            None,
        );
        apply_as(&admin, &the_offer, manager)
            .await
            .unwrap_or_else(|e| panic!("{manager}: first apply of the offer: {e}"));
        let first = apply_as(&admin, &the_delegation, manager)
            .await
            .unwrap_or_else(|e| panic!("{manager}: first apply of the delegation: {e}"));
        // Labels and finalizer come with the create
        // (deploy/delegation-metadata.yaml), owned by no field manager.
        assert!(first.status.is_none());
        assert_operator_fields(&first);

        // The operator adds its status.
        let ready = wait_condition(
            &admin,
            &customer,
            "monitoring",
            "Ready",
            "True",
            Some("Granted"),
        )
        .await;
        assert_operator_fields(&ready);
        wait_offer_adoption(&admin, &provider, "monitoring", "basic", 1).await;
        let offers: Api<ManagedServiceOffer> = Api::namespaced(admin.clone(), &provider);
        let delegations: Api<Delegation> = Api::namespaced(admin.clone(), &customer);
        let offer_before = offers.get("monitoring").await.expect("offer");
        let delegation_before = delegations.get("monitoring").await.expect("delegation");
        let owners = managers(&delegation_before);
        // The operator never writes the Delegation itself, only its status.
        assert!(
            owners.contains(&(manager.to_string(), "Apply".to_string()))
                && !owners.contains(&(OPERATOR_MANAGER.to_string(), "Apply".to_string())),
            "{manager}: field managers {owners:?}"
        );

        // The same manifests again, without force: no conflict, no write.
        let offer_again = apply_as(&admin, &the_offer, manager)
            .await
            .unwrap_or_else(|e| panic!("{manager}: second apply of the offer conflicts: {e}"));
        let delegation_again = apply_as(&admin, &the_delegation, manager)
            .await
            .unwrap_or_else(|e| panic!("{manager}: second apply of the delegation conflicts: {e}"));
        for (what, before, again) in [
            ("offer", &offer_before.metadata, &offer_again.metadata),
            (
                "delegation",
                &delegation_before.metadata,
                &delegation_again.metadata,
            ),
        ] {
            assert_eq!(
                again.resource_version, before.resource_version,
                "{manager}: the second apply wrote the {what}"
            );
            assert_eq!(
                again.generation, before.generation,
                "{manager}: the second apply changed the {what}'s spec"
            );
        }
        assert_operator_fields(&delegation_again);
        assert_eq!(
            delegation_again.status, delegation_before.status,
            "{manager}: status"
        );
        // And nothing follows from it: the operator does not write either.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let delegation_after = delegations.get("monitoring").await.expect("delegation");
        assert_eq!(
            delegation_after.resource_version(),
            delegation_before.resource_version(),
            "{manager}: the delegation was written after the second apply"
        );
    }
}

// ---------------------------------------------------------------------------
// kubectl with the examples
// ---------------------------------------------------------------------------

/// Resource versions of the samples' objects, by object.
async fn sample_versions(client: &Client) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in SAMPLE_NAMESPACES {
        let ns = namespaces.get(name).await.expect("sample namespace");
        versions.insert(
            format!("namespace/{name}"),
            ns.resource_version().unwrap_or_default(),
        );
    }
    let offer = Api::<ManagedServiceOffer>::namespaced(client.clone(), "contoso-msp")
        .get("monitoring")
        .await
        .expect("sample offer");
    versions.insert("offer".into(), offer.resource_version().unwrap_or_default());
    let delegation = Api::<Delegation>::namespaced(client.clone(), "fabrikam-web")
        .get("contoso-monitoring")
        .await
        .expect("sample delegation");
    versions.insert(
        "delegation".into(),
        delegation.resource_version().unwrap_or_default(),
    );
    versions
}

#[tokio::test]
async fn kubectl_server_side_apply_of_the_gitops_samples_is_idempotent() {
    let env = env();
    let admin = env.client().await;
    let samples = repo_root().join(SAMPLES_DIR);
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    // The samples have fixed names. On this binary's own control plane they
    // are free; against an existing cluster, wait out a deletion from an
    // earlier run.
    for name in SAMPLE_NAMESPACES {
        msp_testenv::wait_until(
            std::time::Duration::from_secs(120),
            &format!("namespace {name} absent or not terminating"),
            || {
                let namespaces = namespaces.clone();
                async move {
                    match namespaces.get_opt(name).await {
                        Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => {
                            Err("terminating".to_string())
                        }
                        Ok(_) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let kubectl_apply = |env: &msp_testenv::TestEnv| {
        let mut command = env.kubectl();
        command
            .args([
                "apply",
                "--server-side",
                "--field-manager=kustomize-controller",
                "-k",
            ])
            .arg(&samples);
        command
    };

    let first = run(&mut kubectl_apply(env));
    eprintln!("gitops: first apply:\n{first}");
    let ready = wait_condition(
        &admin,
        "fabrikam-web",
        "contoso-monitoring",
        "Ready",
        "True",
        Some("Granted"),
    )
    .await;
    assert_operator_fields(&ready);
    assert_eq!(kstatus(&to_json(&ready)), KStatus::Current);
    wait_offer_adoption(&admin, "contoso-msp", "monitoring", "basic", 1).await;
    let before = sample_versions(&admin).await;

    // A server-side diff (what Argo CD's ServerSideDiff and Flux's dry-run
    // drift detection do) sees nothing to change.
    let mut diff = env.kubectl();
    diff.args([
        "diff",
        "--server-side",
        "--field-manager=kustomize-controller",
        "-k",
    ])
    .arg(&samples);
    let diffed = output(&mut diff);
    assert_eq!(
        diffed.status.code(),
        Some(0),
        "kubectl diff --server-side reports a difference:\n{}\n{}",
        String::from_utf8_lossy(&diffed.stdout),
        String::from_utf8_lossy(&diffed.stderr)
    );
    assert!(diffed.stdout.is_empty());

    // The second apply, without --force-conflicts: nothing is written.
    let second = run(&mut kubectl_apply(env));
    eprintln!("gitops: second apply:\n{second}");
    assert_eq!(
        sample_versions(&admin).await,
        before,
        "the second apply wrote an object"
    );
    let delegations: Api<Delegation> = Api::namespaced(admin.clone(), "fabrikam-web");
    assert_operator_fields(
        &delegations
            .get("contoso-monitoring")
            .await
            .expect("delegation"),
    );

    // Clean up: the operator revokes the grants, then the namespaces go.
    delegations
        .delete("contoso-monitoring", &DeleteParams::default())
        .await
        .expect("delete the sample delegation");
    msp_testenv::wait_until(TIMEOUT, "the sample delegation is gone", || {
        let delegations = delegations.clone();
        async move {
            match delegations.get_opt("contoso-monitoring").await {
                Ok(None) => Ok(()),
                Ok(Some(d)) => Err(format!("finalizers {:?}", d.finalizers())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    for name in SAMPLE_NAMESPACES {
        namespaces
            .delete(name, &DeleteParams::background())
            .await
            .expect("delete a sample namespace");
    }
}

// ---------------------------------------------------------------------------
// The examples themselves
// ---------------------------------------------------------------------------

/// Every YAML document of `path`, as JSON values (empty documents skipped).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Every `*.yaml` file under `dir`, relative to it, sorted.
fn yaml_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const KUSTOMIZE: (&str, &str) = ("kustomize.config.k8s.io/v1beta1", "Kustomization");
const FLUX_KUSTOMIZATION: (&str, &str) = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization");
const HELM_RELEASE: (&str, &str) = ("helm.toolkit.fluxcd.io/v2", "HelmRelease");
const GIT_REPOSITORY: (&str, &str) = ("source.toolkit.fluxcd.io/v1", "GitRepository");
const APPLICATION: (&str, &str) = ("argoproj.io/v1alpha1", "Application");
const CONFIG_MAP: (&str, &str) = ("v1", "ConfigMap");
const NAMESPACE: (&str, &str) = ("v1", "Namespace");
const OFFER: (&str, &str) = ("msp-operator.io/v1alpha1", "ManagedServiceOffer");
const DELEGATION: (&str, &str) = ("msp-operator.io/v1alpha1", "Delegation");

/// Every YAML file under examples/gitops/ and the apiVersion/kind of each of
/// its documents, in order.
fn expected_documents() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    BTreeMap::from([
        ("argocd/applications.yaml", vec![APPLICATION, APPLICATION]),
        ("argocd/argocd-cm-health.yaml", vec![CONFIG_MAP]),
        ("flux/kustomization.yaml", vec![KUSTOMIZE]),
        (
            "flux/kustomizations.yaml",
            vec![FLUX_KUSTOMIZATION, FLUX_KUSTOMIZATION],
        ),
        ("flux/operator/helmrelease.yaml", vec![HELM_RELEASE]),
        ("flux/operator/kustomization.yaml", vec![KUSTOMIZE]),
        ("flux/source.yaml", vec![GIT_REPOSITORY]),
        (
            "offers-and-delegations/00-namespaces.yaml",
            vec![NAMESPACE, NAMESPACE, NAMESPACE],
        ),
        ("offers-and-delegations/10-offer.yaml", vec![OFFER]),
        (
            "offers-and-delegations/20-delegation.yaml",
            vec![DELEGATION],
        ),
        ("offers-and-delegations/kustomization.yaml", vec![KUSTOMIZE]),
    ])
}

/// The documents of examples/gitops/`file`.
fn gitops(file: &str) -> Vec<Value> {
    yaml_documents(&repo_root().join(GITOPS_DIR).join(file))
}

/// The one document of `file` named `name`.
fn named(file: &str, name: &str) -> Value {
    gitops(file)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{file} has no object named {name}"))
}

/// A repository path as Flux writes it (`./x`) or Argo CD does (`x`) exists
/// as a directory.
fn repo_dir(path: &str) -> PathBuf {
    let dir = repo_root().join(path.trim_start_matches("./"));
    assert!(dir.is_dir(), "{path} is not a directory of the repository");
    dir
}

/// Every key of `values` (recursively) exists in the chart's defaults; an
/// empty map in the defaults (podAnnotations, ...) takes any key.
fn assert_values_exist(values: &Value, defaults: &Value, path: &str) {
    let Some(values) = values.as_object() else {
        return;
    };
    let defaults = defaults
        .as_object()
        .unwrap_or_else(|| panic!("{path} is not a map in charts/msp-operator/values.yaml"));
    if defaults.is_empty() {
        return;
    }
    for (key, value) in values {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let default = defaults
            .get(key)
            .unwrap_or_else(|| panic!("{at} is not in charts/msp-operator/values.yaml"));
        assert_values_exist(value, default, &at);
    }
}

/// Renders the chart at `chart_dir` as release msp-operator in msp-system
/// with `values`, and returns its Deployment.
fn render_deployment(chart_dir: &Path, values: &Value, what: &str) -> Value {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gitops-tests");
    std::fs::create_dir_all(tmp.join("helm-home")).expect("tmp dir");
    let values_file = tmp.join(format!("{what}-values.yaml"));
    std::fs::write(&values_file, serde_yaml::to_string(values).expect("yaml")).expect("values");
    let rendered = run(Command::new(helm_binary())
        .env("HELM_CACHE_HOME", tmp.join("helm-home/cache"))
        .env("HELM_CONFIG_HOME", tmp.join("helm-home/config"))
        .env("HELM_DATA_HOME", tmp.join("helm-home/data"))
        .args(["template", "msp-operator"])
        .arg(chart_dir)
        .args([
            "--namespace",
            "msp-system",
            "--kube-version",
            "1.33.0",
            "-f",
        ])
        .arg(&values_file));
    serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|d| Value::deserialize(d).ok())
        .find(|d| d["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("{what}: no Deployment rendered"))
}

/// The values ask for two replicas under leader election, and the chart
/// renders that.
fn assert_chart_values(chart_dir: &Path, values: &Value, what: &str) {
    let defaults: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir.join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    assert_values_exist(values, &defaults, "");
    assert_eq!(values["replicaCount"], 2, "{what}");
    assert_eq!(values["leaderElection"]["enabled"], true, "{what}");
    let deployment = render_deployment(chart_dir, values, what);
    assert_eq!(deployment["spec"]["replicas"], 2, "{what}");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "MSP_LEADER_ELECT" && e["value"] == "true"),
        "{what}: leader election is off: {env:?}"
    );
}

/// `kubectl kustomize dir`, as objects.
fn kustomize(dir: &Path) -> Vec<Value> {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    let kubectl = KUBECTL.get_or_init(|| {
        Binaries::locate()
            .unwrap_or_else(|e| panic!("kubectl: {e:#}"))
            .kubectl
    });
    let built = run(Command::new(kubectl).arg("kustomize").arg(dir));
    serde_yaml::Deserializer::from_str(&built)
        .map(|d| Value::deserialize(d).expect("kustomize output parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// (apiVersion, kind) of each object.
fn types_of(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn gitops_examples_parse_and_agree_with_the_chart_and_the_samples() {
    let root = repo_root();
    let gitops_dir = root.join(GITOPS_DIR);

    // Every document parses and has the expected apiVersion and kind.
    let expected = expected_documents();
    let found = yaml_files(&gitops_dir);
    assert_eq!(
        found,
        expected.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        "YAML files under {GITOPS_DIR} (a new one needs an entry in expected_documents)"
    );
    for (file, types) in &expected {
        let docs = gitops(file);
        let got = types_of(&docs);
        let want: Vec<(String, String)> = types
            .iter()
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect();
        assert_eq!(got, want, "{file}");
        for doc in &docs {
            if (doc["apiVersion"].as_str(), doc["kind"].as_str())
                != (Some(KUSTOMIZE.0), Some(KUSTOMIZE.1))
            {
                assert!(
                    doc["metadata"]["name"].is_string(),
                    "{file}: a document without metadata.name"
                );
            }
            // The samples are valid objects of the operator's API.
            match doc["kind"].as_str() {
                Some("ManagedServiceOffer") => {
                    serde_json::from_value::<ManagedServiceOffer>(doc.clone())
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                Some("Delegation") => {
                    serde_json::from_value::<Delegation>(doc.clone())
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                _ => {}
            }
        }
    }

    // The samples are the files of examples/, byte for byte.
    for file in SAMPLE_FILES {
        let original = std::fs::read(root.join("examples").join(file)).expect("examples/ file");
        let copy = std::fs::read(root.join(SAMPLES_DIR).join(file)).expect("sample copy");
        assert!(
            original == copy,
            "{SAMPLES_DIR}/{file} differs from examples/{file}: copy it again"
        );
    }

    // Each kustomization.yaml lists exactly the other YAML files of its
    // directory, and builds.
    for (dir, expected_kinds) in [
        (
            "flux",
            vec![GIT_REPOSITORY, FLUX_KUSTOMIZATION, FLUX_KUSTOMIZATION],
        ),
        ("flux/operator", vec![HELM_RELEASE]),
        (
            "offers-and-delegations",
            vec![NAMESPACE, NAMESPACE, NAMESPACE, OFFER, DELEGATION],
        ),
    ] {
        let kustomization = &gitops(&format!("{dir}/kustomization.yaml"))[0];
        let mut listed: Vec<String> = kustomization["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| r.as_str().expect("resource").to_string())
            .collect();
        listed.sort();
        let mut present: Vec<String> = std::fs::read_dir(gitops_dir.join(dir))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .filter(|name| name != "kustomization.yaml")
            .collect();
        present.sort();
        assert_eq!(listed, present, "{dir}/kustomization.yaml resources");
        let mut built = types_of(&kustomize(&gitops_dir.join(dir)));
        let mut want: Vec<(String, String)> = expected_kinds
            .iter()
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect();
        built.sort();
        want.sort();
        assert_eq!(built, want, "kubectl kustomize {dir}");
    }

    // Flux: the source is the placeholder repository, marked as such.
    let source_text =
        std::fs::read_to_string(gitops_dir.join("flux/source.yaml")).expect("source.yaml");
    assert!(source_text.contains("PLACEHOLDER"));
    let source = &gitops("flux/source.yaml")[0];
    assert_eq!(source["spec"]["url"], PLACEHOLDER_REPO);
    let source_name = source["metadata"]["name"].as_str().expect("source name");
    let source_namespace = source["metadata"]["namespace"].as_str().expect("namespace");

    // Flux Kustomizations: their source, existing paths and dependencies.
    let kustomizations = gitops("flux/kustomizations.yaml");
    let names: Vec<&str> = kustomizations
        .iter()
        .map(|k| k["metadata"]["name"].as_str().expect("name"))
        .collect();
    for k in &kustomizations {
        let name = &k["metadata"]["name"];
        assert_eq!(k["metadata"]["namespace"], source_namespace, "{name}");
        assert_eq!(k["spec"]["sourceRef"]["kind"], "GitRepository", "{name}");
        assert_eq!(k["spec"]["sourceRef"]["name"], source_name, "{name}");
        assert_eq!(k["spec"]["wait"], true, "{name}: wait");
        assert_eq!(k["spec"]["prune"], true, "{name}: prune");
        let path = k["spec"]["path"].as_str().expect("path");
        assert!(path.starts_with("./"), "{name}: Flux paths start with ./");
        assert!(
            repo_dir(path).join("kustomization.yaml").is_file(),
            "{name}: {path} has no kustomization.yaml"
        );
        for dependency in k["spec"]["dependsOn"].as_array().into_iter().flatten() {
            let dependency = dependency["name"].as_str().expect("dependsOn name");
            assert!(
                names.contains(&dependency),
                "{name}: dependsOn {dependency}"
            );
        }
    }
    let operator_ks = named("flux/kustomizations.yaml", "msp-operator");
    assert_eq!(
        operator_ks["spec"]["path"],
        "./examples/gitops/flux/operator"
    );
    let samples_ks = named("flux/kustomizations.yaml", "msp-offers-and-delegations");
    assert_eq!(samples_ks["spec"]["path"], format!("./{SAMPLES_DIR}"));
    assert_eq!(
        samples_ks["spec"]["dependsOn"],
        json!([{"name": "msp-operator"}])
    );
    let exprs = samples_ks["spec"]["healthCheckExprs"]
        .as_array()
        .expect("healthCheckExprs");
    let mut kinds: Vec<&str> = exprs
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["Delegation", "ManagedServiceOffer"]);
    for expr in exprs {
        assert_eq!(expr["apiVersion"], "msp-operator.io/v1alpha1");
        assert_eq!(expr["inProgress"], EXPR_IN_PROGRESS, "{expr}");
        assert_eq!(expr["failed"], EXPR_FAILED, "{expr}");
        assert_eq!(expr["current"], EXPR_CURRENT, "{expr}");
    }

    // The HelmRelease: the chart from the Git source, values the chart has.
    let release = &gitops("flux/operator/helmrelease.yaml")[0];
    let chart = &release["spec"]["chart"]["spec"];
    assert_eq!(chart["sourceRef"]["kind"], "GitRepository");
    assert_eq!(chart["sourceRef"]["name"], source_name);
    assert_eq!(chart["sourceRef"]["namespace"], source_namespace);
    assert_eq!(chart["reconcileStrategy"], "Revision");
    let chart_dir = repo_dir(chart["chart"].as_str().expect("chart path"));
    let chart_yaml: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir.join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart_yaml["name"], "msp-operator");
    assert_eq!(release["spec"]["releaseName"], "msp-operator");
    assert_chart_values(&chart_dir, &release["spec"]["values"], "HelmRelease");

    // Argo CD: the chart and the samples, from the placeholder repository,
    // with server-side apply.
    let chart_app = named("argocd/applications.yaml", "msp-operator");
    let samples_app = named("argocd/applications.yaml", "msp-offers-and-delegations");
    for app in [&chart_app, &samples_app] {
        let name = &app["metadata"]["name"];
        assert_eq!(app["spec"]["source"]["repoURL"], PLACEHOLDER_REPO, "{name}");
        let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .expect("syncOptions")
            .iter()
            .map(|o| o.as_str().expect("option"))
            .collect();
        assert!(
            options.contains(&"ServerSideApply=true"),
            "{name}: {options:?}"
        );
    }
    let chart_path = chart_app["spec"]["source"]["path"].as_str().expect("path");
    assert_eq!(repo_dir(chart_path), chart_dir);
    assert_eq!(
        chart_app["spec"]["source"]["helm"]["releaseName"],
        "msp-operator"
    );
    assert_chart_values(
        &chart_dir,
        &chart_app["spec"]["source"]["helm"]["valuesObject"],
        "Application",
    );
    assert_eq!(samples_app["spec"]["source"]["path"], SAMPLES_DIR);
    assert!(repo_dir(SAMPLES_DIR).join("kustomization.yaml").is_file());

    // Argo CD health: one script, for both kinds.
    let scripts = argocd_health_scripts();
    assert_eq!(
        scripts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Delegation", "ManagedServiceOffer"]
    );
    assert_eq!(scripts["Delegation"], scripts["ManagedServiceOffer"]);
}
