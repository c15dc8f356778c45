//! Step 4a, consent: before a plan version, or a changed Delegation, is
//! granted for the first time, check that the identity that consented could
//! have created the same grants itself under Kubernetes' RBAC escalation rule
//! (see [`crate::domain::escalation`]), then record the consent. A consent
//! that exceeds its consenter grants nothing.

use crate::api::{
    ACTIVATION_APPROVER_ROLE, ACTIVATION_REQUESTER_ROLE, DELEGATION_DELETER_ROLE, Delegation,
    GROUP, ROLE_ASSIGNER_ROLE,
};
use crate::delegation::snapshot;
use crate::delegation::validate::{Decision, Refused};
use crate::domain::conditions::Reason;
use crate::domain::consent::Consenter;
use crate::domain::delegability::RoleCatalog;
use crate::domain::escalation::{self, Question};
use crate::runtime::access;
use crate::runtime::errors::Error;
use crate::runtime::writer::Writer;
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use std::collections::BTreeSet;

/// Verifies and records a consent `decision` still needs; turns the decision
/// into a refusal when the consenter is unknown or could not grant it.
pub async fn record(
    writer: &Writer,
    delegation: &Delegation,
    decision: &mut Decision,
    roles: &RoleCatalog<'_>,
) -> Result<(), Error> {
    let (authorizations, namespaces) = match &decision.outcome {
        Ok(accepted) if accepted.new_snapshot => (
            // Eligible roles are consented to now too: an activation later
            // grants them without asking the customer again.
            accepted
                .plan
                .authorizations
                .iter()
                .map(|a| a.role_ref.clone())
                .chain(
                    accepted
                        .plan
                        .eligible_authorizations
                        .iter()
                        .map(|e| e.role_ref.clone()),
                )
                .collect::<BTreeSet<String>>(),
            // A tenant-wide Delegation reaches namespaces that do not exist
            // yet: its consenter must be able to grant in every namespace
            // (the empty namespace asks cluster-wide).
            if delegation.is_tenant_wide() {
                vec![String::new()]
            } else {
                accepted
                    .namespaces
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
            },
        ),
        _ => return Ok(()),
    };
    let Some(consenter) = Consenter::of(delegation) else {
        decision.outcome = Err(Refused {
            reason: Reason::ConsenterUnknown,
            message: format!(
                "metadata.annotations[{:?}] is missing, so nobody is known to have consented (the Delegation was created before the msp-operator consent recorder was in force, or the cluster has no MutatingAdmissionPolicy); set it to your own user name, or delete and re-create the Delegation",
                crate::domain::names::CONSENTED_BY_ANNOTATION
            ),
        });
        return Ok(());
    };
    let eligible = decision
        .outcome
        .as_ref()
        .is_ok_and(|a| !a.plan.eligible_authorizations.is_empty());
    // What role assigners may bind, the consenter must be able to grant.
    let delegated: BTreeSet<String> = decision
        .outcome
        .as_ref()
        .map(|a| {
            a.plan
                .authorizations
                .iter()
                .flat_map(|x| x.delegated_roles.iter().flatten().map(|r| r.0.clone()))
                .collect()
        })
        .unwrap_or_default();
    let asked = Asked {
        roles: &authorizations,
        delegated: &delegated,
        eligible,
        namespaces: &namespaces,
    };
    if let Some(denied) = exceeds(writer, delegation, &consenter, &asked, roles).await? {
        decision.outcome = Err(Refused {
            reason: Reason::ConsentExceedsConsenter,
            message: denied,
        });
        return Ok(());
    }
    let Ok(accepted) = &mut decision.outcome else {
        return Ok(());
    };
    let generation = delegation.metadata.generation.unwrap_or_default();
    accepted.plan = accepted.plan.stamped(consenter, generation);
    let Some(revision) = snapshot::to_revision(delegation, &accepted.plan) else {
        return Ok(());
    };
    let api: Api<ControllerRevision> = writer.api(&delegation.namespace().unwrap_or_default());
    match writer
        .limited(api.create(&PostParams::default(), &revision))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a consent asks of its consenter.
struct Asked<'a> {
    /// Every role the plan grants, permanently or eligibly.
    roles: &'a BTreeSet<String>,
    /// The roles role assigners may bind.
    delegated: &'a BTreeSet<String>,
    /// The plan has eligible authorizations.
    eligible: bool,
    /// Where (`""`: every namespace).
    namespaces: &'a [String],
}

/// Why `consenter` could not have granted what `asked` names itself, or
/// None when it could: for each role and namespace, Kubernetes allows a
/// binding to a user who may `bind` the role there or who holds every
/// permission it grants there. The deleter right needs `get` and `delete`
/// on this Delegation; with eligible roles, the rights to request and
/// approve Activations are granted in the Delegation's own namespace; the
/// role assigner's right needs RoleBinding writes and each role it may bind
/// (its admission markers name no real resource and are not asked).
async fn exceeds(
    writer: &Writer,
    delegation: &Delegation,
    consenter: &Consenter,
    asked: &Asked<'_>,
    roles: &RoleCatalog<'_>,
) -> Result<Option<String>, Error> {
    let namespaces = asked.namespaces;
    let own = [delegation.namespace().unwrap_or_default()];
    let rights = [ACTIVATION_REQUESTER_ROLE, ACTIVATION_APPROVER_ROLE];
    let rights = rights
        .iter()
        .filter(|_| asked.eligible)
        .map(|r| (*r, &own[..]));
    // The assigner Role grants `bind` on each delegated role, which
    // Kubernetes lets only a holder of that `bind` write.
    for role in asked.delegated {
        if access::allowed(writer, consenter, &Question::bind("", role)).await? {
            continue;
        }
        for namespace in namespaces {
            let question = Question::bind(namespace, role);
            if !access::allowed(writer, consenter, &question).await? {
                return Ok(Some(denial(consenter, role, &question)));
            }
        }
    }
    let plan_roles = asked.roles.iter().map(|r| (r.as_str(), namespaces));
    for (role, namespaces) in plan_roles.chain(rights) {
        if role == ROLE_ASSIGNER_ROLE {
            for namespace in namespaces {
                for verb in ["get", "list", "watch", "create", "patch", "delete"] {
                    let question = Question::Resource {
                        namespace: namespace.clone(),
                        verb: verb.into(),
                        group: crate::domain::RBAC_GROUP.into(),
                        resource: "rolebindings".into(),
                        subresource: String::new(),
                        name: String::new(),
                    };
                    if !access::allowed(writer, consenter, &question).await? {
                        return Ok(Some(denial(consenter, ROLE_ASSIGNER_ROLE, &question)));
                    }
                }
            }
            continue;
        }
        if role == DELEGATION_DELETER_ROLE {
            let own = delegation.namespace().unwrap_or_default();
            for verb in ["get", "delete"] {
                let question = Question::Resource {
                    namespace: own.clone(),
                    verb: verb.into(),
                    group: GROUP.into(),
                    resource: "delegations".into(),
                    subresource: String::new(),
                    name: delegation.name_any(),
                };
                if !access::allowed(writer, consenter, &question).await? {
                    return Ok(Some(denial(consenter, DELEGATION_DELETER_ROLE, &question)));
                }
            }
            continue;
        }
        // One question first: whoever may bind the role cluster-wide (a
        // cluster admin, most often) may bind it in every namespace.
        if access::allowed(writer, consenter, &Question::bind("", role)).await? {
            continue;
        }
        for namespace in namespaces {
            if access::allowed(writer, consenter, &Question::bind(namespace, role)).await? {
                continue;
            }
            for question in escalation::holds_all(namespace, &roles.effective_rules(role)) {
                if !access::allowed(writer, consenter, &question).await? {
                    return Ok(Some(denial(consenter, role, &question)));
                }
            }
        }
    }
    Ok(None)
}

fn denial(consenter: &Consenter, role: &str, question: &Question) -> String {
    format!(
        "{:?}, who consented, could not grant ClusterRole {role:?} themselves: they may neither bind it nor {question}; nothing is granted. Someone who may (a namespace admin with bind on the role) must apply this Delegation",
        consenter.user
    )
}
