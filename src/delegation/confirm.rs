//! Step 2a, confirm a refusal: a refusal revokes everything a Delegation
//! grants and ends its Activations for good, so one that may rest on a stale
//! cache is checked against the API server first.
//!
//! The offer and the Delegation come from two watches with no order between
//! them. A customer who moves to a version the provider has just published
//! can reach the operator's cache before the offer does; the cache then says
//! "version not published", and acting on it would revoke the access the
//! customer still consents to (the permanent grants included) until the
//! offer's watch event arrives. One GET of the offer, made only when the
//! decision is a refusal (a Delegation that stays refused pays it once per
//! resync), tells whether the cache is behind; if it is, the reconcile waits
//! for the watch instead. Only the offer's spec counts (`generation`): its
//! status changes every few seconds while customers converge and decides
//! nothing. When the GET itself fails, the refusal stands: the operator
//! fails closed.

use crate::api::{Delegation, ManagedServiceOffer};
use crate::runtime::writer::Writer;
use kube::ResourceExt;
use tracing::debug;

/// True when the API server holds another version of `delegation`'s offer
/// (by uid and generation) than `cached`, the one a refusal was decided
/// on; false when they agree or the API server cannot say.
pub async fn offer_cache_behind(
    writer: &Writer,
    delegation: &Delegation,
    cached: Option<&ManagedServiceOffer>,
) -> bool {
    let offer = &delegation.spec.offer_ref;
    let api = writer.api::<ManagedServiceOffer>(&offer.namespace);
    match api.get_opt(&offer.name).await {
        Ok(live) => {
            let behind = spec_version(live.as_ref()) != spec_version(cached);
            if behind {
                debug!(offer = %format!("{}/{}", offer.namespace, offer.name), "offer cache behind a refusal; waiting for the watch");
            }
            behind
        }
        Err(_) => false,
    }
}

/// What identifies an offer's spec: its uid and generation.
fn spec_version(offer: Option<&ManagedServiceOffer>) -> Option<(Option<String>, Option<i64>)> {
    offer.map(|o| (o.uid(), o.metadata.generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn only_the_spec_and_identity_of_an_offer_count() {
        let mut a = fixtures::offer("p", "o", "t", Vec::new());
        a.metadata.uid = Some("u1".into());
        a.metadata.generation = Some(2);
        let mut status_only = a.clone();
        status_only.metadata.resource_version = Some("999".into());
        assert_eq!(spec_version(Some(&a)), spec_version(Some(&status_only)));
        let mut newer = a.clone();
        newer.metadata.generation = Some(3);
        assert_ne!(spec_version(Some(&a)), spec_version(Some(&newer)));
        let mut recreated = a.clone();
        recreated.metadata.uid = Some("u2".into());
        assert_ne!(spec_version(Some(&a)), spec_version(Some(&recreated)));
        assert_ne!(spec_version(Some(&a)), spec_version(None));
        assert_eq!(spec_version(None), spec_version(None));
    }
}
