//! Checks at start-up that the operator can work at all, so a wrong
//! kubeconfig, an unreachable API server, CRDs that were never installed or a
//! missing permission fail at once with the cause and the fix, instead of
//! watches retrying quietly for ever.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

/// What the operator must be able to do, cluster-wide: (group, resource,
/// verb). Reading every cached kind, and the writes of a first grant.
const NEEDED: [(&str, &str, &str); 22] = [
    ("msp-operator.io", "managedserviceoffers", "watch"),
    ("msp-operator.io", "delegations", "watch"),
    ("msp-operator.io", "activations", "watch"),
    ("msp-operator.io", "clusterproviderpolicies", "watch"),
    ("msp-operator.io", "providerpolicies", "watch"),
    ("msp-operator.io", "offercatalogs", "watch"),
    ("msp-operator.io", "customerdelegations", "watch"),
    ("msp-operator.io", "customerdelegations", "create"),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "watch",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "watch",
    ),
    ("msp-operator.io", "delegations", "patch"),
    ("", "namespaces", "watch"),
    ("rbac.authorization.k8s.io", "clusterroles", "watch"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("rbac.authorization.k8s.io", "rolebindings", "watch"),
    ("rbac.authorization.k8s.io", "rolebindings", "create"),
    ("rbac.authorization.k8s.io", "roles", "watch"),
    ("rbac.authorization.k8s.io", "roles", "create"),
    ("apps", "controllerrevisions", "watch"),
    ("apps", "controllerrevisions", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ("events.k8s.io", "events", "create"),
];

/// Connects and checks; the error says what is wrong and how to fix it.
pub async fn check(client: &Client) -> anyhow::Result<String> {
    let version = client.apiserver_version().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kubernetes API server ({e}); check KUBECONFIG (or the in-cluster ServiceAccount) and that the server is up"
        )
    })?;
    let served = client
        .list_api_group_resources("msp-operator.io/v1alpha1")
        .await
        .map(|list| {
            [
                "managedserviceoffers",
                "delegations",
                "activations",
                "clusterproviderpolicies",
                "providerpolicies",
                "offercatalogs",
                "customerdelegations",
            ]
            .iter()
            .all(|r| list.resources.iter().any(|x| x.name == *r))
        })
        .unwrap_or(false);
    if !served {
        anyhow::bail!(
            "the msp-operator.io/v1alpha1 CRDs are not installed (ManagedServiceOffer, Delegation, Activation, ClusterProviderPolicy, ProviderPolicy, OfferCatalog, CustomerDelegation); install them with `kubectl apply --server-side -f crds/` or the Helm chart (crds.enabled=true)"
        );
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for (group, resource, verb) in NEEDED {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await
            .map(|r| r.status.is_some_and(|s| s.allowed))
            .map_err(|e| anyhow::anyhow!("cannot check the operator's own permissions: {e}"))?;
        if !allowed {
            let group = if group.is_empty() { "core" } else { group };
            missing.push(format!("{verb} {resource} ({group})"));
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the operator's identity may not {}; bind it to the ClusterRole msp-operator (deploy/operator-clusterrole.yaml, or the Helm chart with rbac.create=true)",
            missing.join(", ")
        );
    }
    Ok(version.git_version)
}
