//! Applying YAML manifests the way `kubectl apply --server-side` does, from Rust:
//! used by `make run` and by tests to install CRDs and examples.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};
use std::time::Duration;

/// Splits multi-document YAML into objects, skipping empty documents.
pub fn parse_documents(yaml: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_yaml::from_value(value)?);
    }
    Ok(objects)
}

use serde::Deserialize;

async fn resolve(
    client: &Client,
    gvk: &GroupVersionKind,
) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
    // A CRD applied a moment ago may not be in discovery yet: retry briefly.
    let mut last = None;
    for _ in 0..50 {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow::anyhow!(
        "{gvk:?} is not served by the API server: {last:?}"
    ))
}

/// Server-side applies every object in `yaml` with `field_manager` (forcing
/// conflicts), in order. A namespaced object without a namespace goes into
/// `default_namespace`. Each CRD is waited for until Established, so that
/// later documents may use it.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    field_manager: &str,
    default_namespace: &str,
) -> anyhow::Result<Vec<DynamicObject>> {
    let params = PatchParams::apply(field_manager).force();
    let mut applied = Vec::new();
    for object in parse_documents(yaml)? {
        let types = object
            .types
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a document has no apiVersion/kind"))?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let name = object
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a {} has no metadata.name", types.kind))?;
        let (resource, capabilities) = resolve(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let namespace = object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_string());
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
        };
        let result = api
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|e| anyhow::anyhow!("apply {} {name}: {e}", types.kind))?;
        if types.kind == "CustomResourceDefinition" {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            kube::runtime::wait::await_condition(
                crds,
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            )
            .await?;
        }
        applied.push(result);
    }
    Ok(applied)
}

/// Waits until the MutatingAdmissionPolicy of
/// deploy/delegation-metadata.yaml is in force: a Delegation created before
/// would get its labels and finalizer from the operator instead, one write
/// more than the design needs.
pub async fn wait_for_delegation_metadata(client: &Client) -> anyhow::Result<()> {
    wait_for_delegation_mutation(
        client,
        "the Delegation metadata policy (deploy/delegation-metadata.yaml)",
        |d| {
            d.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == "msp-operator.io/cleanup"))
        },
    )
    .await
}

/// Waits until msp-operator's consent recorder (a MutatingAdmissionPolicy)
/// is in force: admission policies take effect a moment after they are
/// created, and a Delegation created before would carry no consenter.
pub async fn wait_for_consent_recorder(client: &Client) -> anyhow::Result<()> {
    wait_for_delegation_mutation(
        client,
        "the consent recorder (deploy/consent-recorder.yaml)",
        |d| {
            d.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("msp-operator.io/consented-by"))
        },
    )
    .await
}

/// Waits (up to a minute) until a Delegation created now is `mutated` at
/// admission (mutating policies take effect a moment after they are
/// created). Probes with a dry-run Delegation in `default`; nothing is
/// stored.
async fn wait_for_delegation_mutation(
    client: &Client,
    what: &str,
    mutated: impl Fn(&DynamicObject) -> bool,
) -> anyhow::Result<()> {
    let probe: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "msp-operator.io/v1alpha1",
        "kind": "Delegation",
        "metadata": {"name": "admission-probe", "namespace": "default"},
        "spec": {"offerRef": {"namespace": "default", "name": "o"}, "plan": "p", "planVersion": "1.0.0"}
    }))?;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "msp-operator.io",
        "v1alpha1",
        "Delegation",
    ));
    crate::wait::wait_for_admission(
        &Api::namespaced_with(client.clone(), "default", &resource),
        &probe,
        std::time::Duration::from_secs(60),
        what,
        |answer| answer.as_ref().is_ok_and(&mutated),
    )
    .await
}
