//! Proof that the suite runs against a real Kubernetes control plane: CEL
//! validation, RBAC authorization, authentication by client certificate and
//! ServiceAccount token, namespace deletion and garbage collection all behave
//! as they do in a cluster. Every other integration test stands on these.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use msp_testenv::{TestEnv, manifests, wait_until};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.msp-operator.io
spec:
  group: testenv.msp-operator.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: "spec.replicas must not exceed spec.maxReplicas"
            properties:
              replicas: {type: integer}
              maxReplicas: {type: integer}
"#;

fn widget(namespace: &str, name: &str, replicas: i64, max: i64) -> String {
    format!(
        "apiVersion: testenv.msp-operator.io/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  replicas: {replicas}\n  maxReplicas: {max}\n"
    )
}

async fn who_am_i(client: Client) -> (String, Vec<String>) {
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("self subject review");
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    (
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default(),
    )
}

#[tokio::test]
async fn server_reports_a_real_release() {
    let env = TestEnv::shared();
    let version = env
        .client()
        .await
        .apiserver_version()
        .await
        .expect("version");
    assert_eq!(version.major, "1");
    let minor: u32 = version.minor.trim_end_matches('+').parse().expect("minor");
    assert!(
        minor >= 33,
        "the server reports {}, older than the oldest supported 1.33",
        version.git_version
    );
    if env.is_local() {
        assert!(
            version.git_version.starts_with("v1.3"),
            "the locally built server must report its real version, not {}",
            version.git_version
        );
    }
}

#[tokio::test]
async fn cel_validation_rejects_a_bad_object_with_the_rules_message() {
    let env = TestEnv::shared();
    let client = env.client().await;
    let ns = env.namespace("cel").await;
    manifests::apply_yaml(&client, WIDGET_CRD, "msp-testenv", &ns)
        .await
        .expect("install CRD");

    // Through the API: 422 Invalid carrying the rule's message.
    let resource = ApiResource {
        group: "testenv.msp-operator.io".into(),
        version: "v1".into(),
        api_version: "testenv.msp-operator.io/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let bad: DynamicObject = serde_yaml::from_str(&widget(&ns, "bad", 5, 3)).expect("yaml");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("CEL rule must reject replicas > maxReplicas");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status
            .message
            .contains("spec.replicas must not exceed spec.maxReplicas"),
        "{}",
        status.message
    );
    let good: DynamicObject = serde_yaml::from_str(&widget(&ns, "good", 2, 3)).expect("yaml");
    api.create(&PostParams::default(), &good)
        .await
        .expect("a valid widget is accepted");

    // Through kubectl, as a user would meet it.
    let mut child = env
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(widget(&ns, "bad-kubectl", 9, 1).as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("kubectl output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "kubectl apply must fail");
    assert!(
        stderr.contains("spec.replicas must not exceed spec.maxReplicas"),
        "kubectl said: {stderr}"
    );
}

#[tokio::test]
async fn a_user_is_refused_until_a_rolebinding_grants_access() {
    let env = TestEnv::shared();
    let ns = env.namespace("rbac").await;
    let other = env.namespace("rbac-other").await;
    let alice = env.user_client("alice", &["provider-a"]).await;

    assert_eq!(
        who_am_i(alice.clone()).await,
        (
            "alice".to_string(),
            vec!["provider-a".to_string(), "system:authenticated".to_string()]
        )
    );

    let pods: Api<Pod> = Api::namespaced(alice.clone(), &ns);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("alice must be forbidden before any grant, got {other:?}"),
    }

    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("alice-view".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            name: "provider-a".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(env.client().await, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create rolebinding");

    wait_until(TIMEOUT, "alice to list pods via her group", || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
    .expect("access granted");

    // The grant is namespaced: the other namespace stays closed.
    let elsewhere: Api<Pod> = Api::namespaced(alice, &other);
    match elsewhere.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("alice must stay forbidden elsewhere, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_account_token_authenticates() {
    let env = TestEnv::shared();
    let ns = env.namespace("sa").await;
    let client = env.service_account_client(&ns, "robot").await;
    let (user, groups) = who_am_i(client).await;
    assert_eq!(user, format!("system:serviceaccount:{}:robot", &*ns));
    assert!(groups.contains(&format!("system:serviceaccounts:{}", &*ns)));
    assert!(groups.contains(&"system:serviceaccounts".to_string()));
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let env = TestEnv::shared();
    let client = env.client().await;
    let ns = env.namespace("doomed").await;
    let name = ns.name().to_string();
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("content".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), &name)
        .create(&PostParams::default(), &config_map)
        .await
        .expect("configmap");
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The namespace controller (kube-controller-manager) must empty it and
    // remove the `kubernetes` finalizer.
    wait_until(TIMEOUT, "namespace to disappear", || {
        let namespaces = namespaces.clone();
        let name = name.clone();
        async move {
            match namespaces.get_opt(&name).await {
                Ok(None) => Ok(()),
                Ok(Some(ns)) => Err(format!("phase {:?}", ns.status.and_then(|s| s.phase))),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .expect("namespace deleted");
}

#[tokio::test]
async fn garbage_collection_removes_dependents() {
    let env = TestEnv::shared();
    let ns = env.namespace("gc").await;
    let api: Api<ConfigMap> = Api::namespaced(env.client().await, &ns);
    let owner = api
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("owner");
    let dependent = ConfigMap {
        metadata: ObjectMeta {
            name: Some("dependent".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().expect("uid"),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &dependent)
        .await
        .expect("dependent");
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    wait_until(
        TIMEOUT,
        "the garbage collector to delete the dependent",
        || {
            let api = api.clone();
            async move {
                match api.get_opt("dependent").await {
                    Ok(None) => Ok(()),
                    Ok(Some(_)) => Err("dependent still exists".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await
    .expect("dependent collected");
    assert!(api.get_opt("owner").await.expect("get").is_none());
}
