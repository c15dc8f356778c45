//! Shared setup of the operator integration tests: CRDs, the shipped RBAC and
//! admission policies, and one operator per test binary running as its own
//! user (`msp-operator`) under exactly the shipped ClusterRole.

#![allow(dead_code)]

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
/// Test object builders, shared with the unit tests.
#[allow(unused_imports)]
pub use msp_operator::fixtures::{auth, delegation, offer, plan, reader_offer};
use msp_operator::runtime::context::Settings;
use msp_operator::runtime::controllers;

pub mod invariant;
pub mod process;
use msp_testenv::binaries::repo_root;
use msp_testenv::{TestEnv, manifests, wait_for, wait_until};
use std::sync::OnceLock;
use std::time::Duration;

/// The user the operator authenticates as in these tests.
pub const OPERATOR_USER: &str = "msp-operator";
/// Generous: the operator converges in well under a second when healthy.
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The environment with CRDs, RBAC and policies installed and the operator
/// running (once per test binary).
pub fn env() -> &'static TestEnv {
    let env = install();
    start_operator();
    env
}

/// The environment with CRDs, the shipped RBAC and admission policies
/// installed, without starting the operator (once per test binary).
pub fn install() -> &'static TestEnv {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let env = TestEnv::shared();
    INSTALLED.get_or_init(|| {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = env.client().await;
                for file in [
                    "crds/managedserviceoffers.yaml",
                    "crds/delegations.yaml",
                    "crds/activations.yaml",
                    "crds/clusterproviderpolicies.yaml",
                    "crds/providerpolicies.yaml",
                    "crds/offercatalogs.yaml",
                    "crds/customerdelegations.yaml",
                    "deploy/operator-clusterrole.yaml",
                    "deploy/delegable-roles.yaml",
                    "deploy/activation-roles.yaml",
                    "deploy/admission-policies.yaml",
                    "deploy/provider-policies.yaml",
                    "deploy/views.yaml",
                    "deploy/consent-recorder.yaml",
                    "deploy/delegation-metadata.yaml",
                ] {
                    manifests::apply_yaml(&client, &read(file), "msp-tests", "default")
                        .await
                        .unwrap_or_else(|e| panic!("apply {file}: {e:#}"));
                }
                let binding = ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some("msp-operator-tests".into()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "ClusterRole".into(),
                        name: "msp-operator".into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "User".into(),
                        name: OPERATOR_USER.into(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        ..Default::default()
                    }]),
                };
                Api::<ClusterRoleBinding>::all(client.clone())
                    .patch(
                        "msp-operator-tests",
                        &PatchParams::apply("msp-tests").force(),
                        &Patch::Apply(&binding),
                    )
                    .await
                    .expect("bind operator");
                wait_for_policies(&client).await;
            });
        })
        .join()
        .expect("setup");
    });
    env
}

/// Waits until the admission policies are in force (they take effect a
/// moment after they are created): the consent recorder fills in the
/// consenter, and the validating policies refuse a spoofed offer.
pub async fn wait_for_policies(client: &Client) {
    manifests::wait_for_consent_recorder(client)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    manifests::wait_for_delegation_metadata(client)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let spoofed = reader_offer("default", "not-default", "x");
    msp_testenv::wait_for_admission(
        &Api::<ManagedServiceOffer>::namespaced(client.clone(), "default"),
        &spoofed,
        Duration::from_secs(60),
        "the validating admission policies",
        |answer| matches!(answer, Err(kube::Error::Api(s)) if s.message.contains("spec.provider.tenant")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    // The provider-policy admission policies take their params from this
    // project's CRDs; right after an API server (re)start they refuse every
    // Delegation ("failed to find resource referenced by paramKind") until
    // the server has found those kinds again.
    let probe = msp_operator::fixtures::delegation(
        "default",
        "admission-probe",
        ("default", "no-offer"),
        "p",
        "1.0.0",
        None,
    );
    msp_testenv::wait_for_admission(
        &Api::<Delegation>::namespaced(client.clone(), "default"),
        &probe,
        Duration::from_secs(60),
        "the provider-policy admission policies to find their params",
        |answer| !matches!(answer, Err(kube::Error::Api(s)) if s.message.contains("failed to configure policy")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Starts the operator (once per test binary) as user `msp-operator`, on a
/// runtime of its own that outlives every test.
pub fn start_operator() {
    static STARTED: OnceLock<()> = OnceLock::new();
    let env = install();
    STARTED.get_or_init(|| {
        // Operator logs go to stderr, filtered by RUST_LOG (default: warnings).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .try_init();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = env.user_client(OPERATOR_USER, &[]).await;
                let settings = Settings {
                    resync: Duration::from_secs(3600),
                    ..Settings::default()
                };
                controllers::run(client, settings, futures::future::pending()).await;
            });
        });
    });
}

/// Server-side applies `object` as the test (a GitOps tool would do the same).
pub async fn apply<K>(client: &Client, object: &K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().expect("namespace"));
    let mut body = serde_json::to_value(object).expect("json");
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    api.patch(
        &object.name_any(),
        &PatchParams::apply("msp-tests").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {}: {e}", K::kind(&()), object.name_any()))
}

/// Waits until `name` no longer exists (its finalizers released).
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(TIMEOUT, &format!("{name} to be gone"), || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("gone");
}

/// The condition `type_` of a delegation, as (status, reason, message).
pub fn condition(d: &Delegation, type_: &str) -> Option<(String, String, String)> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until delegation `ns/name` has condition `type_` = `status` (and,
/// when given, `reason`) for its current generation.
pub async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Delegation {
    let api: Api<Delegation> = Api::namespaced(client.clone(), ns);
    wait_for(
        &api,
        name,
        TIMEOUT,
        &format!("{type_}={status} {reason:?}"),
        |d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == d.metadata.generation)
                && condition(d, type_)
                    .is_some_and(|(s, r, _)| s == status && reason.is_none_or(|want| want == r))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The RoleBindings the operator manages for delegation `ns/name`.
pub async fn managed_bindings(client: &Client, ns: &str, name: &str) -> Vec<RoleBinding> {
    Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "msp-operator.io/delegation-namespace={ns},msp-operator.io/delegation={name}"
        )))
        .await
        .expect("list rolebindings")
        .items
}

/// Whether `client` may list pods in `ns` (true), is forbidden (false).
pub async fn can_list_pods(client: &Client, ns: &str) -> bool {
    can_list::<k8s_openapi::api::core::v1::Pod>(client, ns).await
}

/// Whether `client` may list `K` in `ns` (true), is forbidden (false).
pub async fn can_list<K>(client: &Client, ns: &str) -> bool
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 403 => false,
        Err(e) => panic!("unexpected error listing {} in {ns}: {e}", K::plural(&())),
    }
}

/// Whether `client` may `verb` `group`/`resource` in `namespace`, as the
/// API server decides for the client's own identity (a
/// SelfSubjectAccessReview).
pub async fn can(
    client: &Client,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("self subject access review")
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until whether `client` may `verb` `group`/`resource` in
/// `namespace` (a SelfSubjectAccessReview, see [`can`]) is `expected`.
pub async fn wait_can(
    client: &Client,
    namespace: &str,
    (verb, group, resource): (&str, &str, &str),
    expected: bool,
) {
    msp_testenv::wait_until(
        TIMEOUT,
        &format!("{verb} {group}/{resource} in {namespace} == {expected}"),
        || async move {
            if can(client, namespace, verb, group, resource).await == expected {
                Ok(())
            } else {
                Err(format!("still {}", !expected))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Waits until `client`'s access to pods in `ns` is `expected`.
pub async fn wait_access(client: &Client, ns: &str, expected: bool) {
    wait_can_list::<k8s_openapi::api::core::v1::Pod>(client, ns, expected).await
}

/// Waits until whether `client` may list `K` in `ns` is `expected`.
pub async fn wait_can_list<K>(client: &Client, ns: &str, expected: bool)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    msp_testenv::wait_until(
        TIMEOUT,
        &format!("list {} in {ns} == {expected}", K::plural(&())),
        || {
            let client = client.clone();
            let ns = ns.to_string();
            async move {
                let can = can_list::<K>(&client, &ns).await;
                if can == expected {
                    Ok(())
                } else {
                    Err(format!("can={can}"))
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Creates `object` (for a create that is expected to work).
pub async fn create<K>(client: &Client, object: &K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), &object.namespace().expect("namespace"))
        .create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", object.name_any()))
}

/// Waits until an Event with `reason` about delegation `ns/name` exists.
pub async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    msp_testenv::wait_until(TIMEOUT, &format!("event {reason} on {ns}/{name}"), || {
        let api = api.clone();
        async move {
            let events = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let reasons: Vec<String> = events
                .items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .filter_map(|e| e.reason.clone())
                .collect();
            if reasons.iter().any(|r| r == reason) {
                Ok(())
            } else {
                Err(format!("{reasons:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// `kubectl apply --server-side` of `yaml` as admin: whether it succeeded,
/// and what kubectl printed (stdout, then stderr, where warnings go).
pub fn kubectl_apply(env: &msp_testenv::TestEnv, yaml: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = env
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager=msp-tests",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
