//! Step 7, the provider's record: mirror the Delegation into the offer's
//! namespace as a [`CustomerDelegation`] ("My customers"), so the provider
//! sees who accepted what and whether it works without any access to
//! customer namespaces.
//!
//! Written in the same reconcile as the Delegation's status and only when
//! what it says differs from the cached record: at most one write per
//! Delegation state change, none at rest. Owned by the offer (same
//! namespace), so the garbage collector removes the records of a deleted
//! offer; [`super::cleanup`] removes the record of a deleted Delegation,
//! and its sweep any record whose Delegation is gone.

use crate::api::{
    Activation, ActivationPhase, CustomerDelegation, CustomerDelegationSpec, Delegation,
    DelegationRef, DelegationStatus, MAX_RECORDED_NAMESPACES, ManagedServiceOffer,
};
use crate::domain::conditions::types;
use crate::domain::names;
use crate::runtime::context::Context;
use crate::runtime::errors::Error;
use crate::runtime::keys;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The record of `delegation` with its new `status`, in `offer`'s namespace
/// (pure); none without the offer (nowhere to put it: its namespace is the
/// provider's only while the offer is there).
pub fn build(
    delegation: &Delegation,
    status: &DelegationStatus,
    offer: Option<&ManagedServiceOffer>,
    activations: &[Arc<Activation>],
) -> Option<CustomerDelegation> {
    let offer = offer?;
    let namespace = delegation.namespace()?;
    let name = delegation.name_any();
    let ready = status.conditions.iter().find(|c| c.type_ == types::READY);
    let accepted = status
        .conditions
        .iter()
        .find(|c| c.type_ == types::ACCEPTED && c.status == "True");
    let names: Vec<String> = status.namespaces.iter().map(|n| n.name.clone()).collect();
    let phase_count = |phase: ActivationPhase| {
        activations
            .iter()
            .filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(phase))
            .count() as i32
    };
    let labels = BTreeMap::from([
        (
            names::MANAGED_BY_LABEL.to_string(),
            names::MANAGED_BY.to_string(),
        ),
        (
            names::DELEGATION_NAMESPACE_LABEL.to_string(),
            namespace.clone(),
        ),
        (names::DELEGATION_LABEL.to_string(), name.clone()),
        (names::OFFER_LABEL.to_string(), offer.name_any()),
    ]);
    Some(CustomerDelegation {
        metadata: ObjectMeta {
            name: Some(CustomerDelegation::name_for(&namespace, &name)),
            namespace: offer.namespace(),
            labels: Some(labels),
            owner_references: offer_owner(offer).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: CustomerDelegationSpec {
            offer: delegation.spec.offer_ref.name.clone(),
            plan: delegation.spec.plan.clone(),
            customer_tenant: status.customer_tenant.clone().unwrap_or_default(),
            delegation: DelegationRef { namespace, name },
            requested_version: delegation.spec.plan_version.clone(),
            applied_version: status.applied_version.clone(),
            pending_version: status.pending_update.as_ref().map(|u| u.version.clone()),
            namespace_count: names.len() as i32,
            namespaces: names.into_iter().take(MAX_RECORDED_NAMESPACES).collect(),
            tenant_wide: delegation.is_tenant_wide(),
            ready: ready.is_some_and(|c| c.status == "True"),
            reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
            message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
            accepted_since: accepted.map(|c| c.last_transition_time.clone()),
            active_activations: phase_count(ActivationPhase::Active),
            pending_activations: phase_count(ActivationPhase::Pending),
        },
    })
}

/// The offer as the record's owner (not blocking its deletion).
fn offer_owner(offer: &ManagedServiceOffer) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: ManagedServiceOffer::api_version(&()).into_owned(),
        kind: ManagedServiceOffer::kind(&()).into_owned(),
        name: offer.name_any(),
        uid: offer.uid()?,
        ..OwnerReference::default()
    })
}

/// The version an absent record is tracked under in
/// [`crate::runtime::own_writes`] (a create supersedes "no object").
const ABSENT: &str = "absent";

/// Writes `desired` unless the cached record already says the same, or the
/// cache has not caught up with this operator's last write of it. The watch
/// event of that write needs no reconcile ([`is_own_echo`]); any other
/// change of a record (deleted or edited by someone) brings one that
/// restores it.
pub async fn publish(ctx: &Context, desired: Option<CustomerDelegation>) -> Result<(), Error> {
    let Some(desired) = desired else {
        return Ok(());
    };
    let namespace = desired.namespace().unwrap_or_default();
    let cached = ctx
        .caches
        .customer_records
        .get(&ObjectRef::new(&desired.name_any()).within(&namespace));
    let key = keys::object(&desired);
    let version = cached
        .as_ref()
        .and_then(|c| c.resource_version())
        .unwrap_or_else(|| ABSENT.to_string());
    if ctx.writer.own_writes.cache_is_behind(&key, Some(&version))
        || cached.as_deref().is_some_and(|c| matches(c, &desired))
    {
        return Ok(());
    }
    let api: kube::Api<CustomerDelegation> = ctx.writer.api(&namespace);
    let written = ctx
        .writer
        .write_grant(&api, &desired, cached.is_some())
        .await?;
    // A write that changed nothing brings no watch event to wait for.
    if written.resource_version().as_deref() != Some(version.as_str()) {
        ctx.writer.own_writes.record(&key, &[version]);
    }
    Ok(())
}

/// True when `existing` says what `desired` says, with its labels and owner.
fn matches(existing: &CustomerDelegation, desired: &CustomerDelegation) -> bool {
    existing.spec == desired.spec
        && existing.metadata.owner_references == desired.metadata.owner_references
        && desired
            .metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
}

/// True when `record`'s watch event is the echo of this operator's own last
/// write of it (see [`crate::runtime::own_writes::OwnWrites::is_own_write`]).
pub fn is_own_echo(writer: &crate::runtime::writer::Writer, record: &CustomerDelegation) -> bool {
    writer
        .own_writes
        .is_own_write(&keys::object(record), record.resource_version().as_deref())
}

/// Removes the record of a deleted `delegation` (gone already is fine).
pub async fn remove(
    writer: &crate::runtime::writer::Writer,
    delegation: &Delegation,
) -> Result<(), Error> {
    let offer = &delegation.spec.offer_ref;
    let name = CustomerDelegation::name_for(
        &delegation.namespace().unwrap_or_default(),
        &delegation.name_any(),
    );
    let api: kube::Api<CustomerDelegation> = writer.api(&offer.namespace);
    match writer
        .limited(api.delete(&name, &DeleteParams::default()))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NamespaceStatus;
    use crate::domain::conditions::{Conditions, Reason};
    use crate::fixtures;

    fn status(ready: bool) -> DelegationStatus {
        let mut conditions = Conditions::new(&[], Some(1), crate::delegation::now());
        conditions.set(types::ACCEPTED, true, Reason::Valid, "");
        let reason = if ready {
            Reason::Granted
        } else {
            Reason::Progressing
        };
        conditions.set(types::READY, ready, reason, "because");
        DelegationStatus {
            conditions: conditions.finish(),
            customer_tenant: Some("contoso".into()),
            applied_version: Some("1.0.0".into()),
            namespaces: (0..150)
                .map(|i| NamespaceStatus {
                    name: format!("ns-{i:03}"),
                    ready,
                    ..NamespaceStatus::default()
                })
                .collect(),
            ..DelegationStatus::default()
        }
    }

    #[test]
    fn a_record_says_who_accepted_what_and_whether_it_works() {
        let mut offer = fixtures::reader_offer("provider", "fabrikam", "alice");
        offer.metadata.uid = Some("offer-uid".into());
        let delegation =
            fixtures::delegation("customer", "d", ("provider", "o"), "p", "1.0.0", None);
        let record = build(&delegation, &status(true), Some(&offer), &[]).expect("record");
        assert_eq!(record.metadata.namespace.as_deref(), Some("provider"));
        assert_eq!(record.metadata.name.as_deref(), Some("customer.d"));
        assert_eq!(record.spec.customer_tenant, "contoso");
        assert!(record.spec.ready);
        assert_eq!(record.spec.reason, "Granted");
        assert_eq!(record.spec.namespace_count, 150);
        assert_eq!(record.spec.namespaces.len(), MAX_RECORDED_NAMESPACES);
        assert!(record.spec.accepted_since.is_some());
        let owner = &record.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.uid, "offer-uid");
        assert!(matches(&record, &record));
        let not_ready = build(&delegation, &status(false), Some(&offer), &[]).expect("record");
        assert!(!matches(&record, &not_ready));
        assert!(
            build(&delegation, &status(true), None, &[]).is_none(),
            "no offer, no record"
        );
    }
}
