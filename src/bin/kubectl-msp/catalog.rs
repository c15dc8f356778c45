//! The customer's catalog: the namespace's `OfferCatalog`, created on first
//! use, and looking offers and plans up in it.
//!
//! Customers never read offers (a Private plan's audience is another
//! customer's business); the operator projects what the namespace's tenant
//! may accept into the `OfferCatalog` named `catalog`. `offers` and
//! `accept` both start here, so both see exactly the same catalog and
//! refuse unknown names with the same list of what exists.

use crate::cluster::{Cluster, WAIT, poll};
use crate::errors::{Request, is_conflict};
use anyhow::anyhow;
use kube::Api;
use kube::api::PostParams;
use msp_operator::api::{
    CATALOG_NAME, CatalogOffer, CatalogPlan, OfferCatalog, OfferCatalogSpec, OfferCatalogStatus,
};

/// The catalog of namespace `ns`, as the operator last wrote it. Creates it
/// when missing and waits (up to [`WAIT`]) for the operator to fill it.
pub async fn load(cluster: &Cluster, ns: &str) -> anyhow::Result<OfferCatalogStatus> {
    let api: Api<OfferCatalog> = Api::namespaced(cluster.client.clone(), ns);
    let get = |api: Api<OfferCatalog>| async move {
        api.get_opt(CATALOG_NAME).await.map_err(|e| {
            Request::new("get", "offercatalogs")
                .namespace(ns)
                .if_forbidden(format!(
                    "ask an admin of namespace {ns} for the view role there"
                ))
                .explain(e)
        })
    };
    if get(api.clone()).await?.is_none() {
        create(&api, ns).await?;
    }
    let filled = poll(WAIT, || {
        let api = api.clone();
        async move { Ok(get(api).await?.and_then(current_status)) }
    })
    .await?;
    filled.ok_or_else(|| {
        anyhow!(
            "the offer catalog of namespace {ns} was not filled within {}s: is msp-operator running? (`kubectl -n {ns} get offercatalog {CATALOG_NAME}`)",
            WAIT.as_secs()
        )
    })
}

async fn create(api: &Api<OfferCatalog>, ns: &str) -> anyhow::Result<()> {
    let mut catalog = OfferCatalog::new(CATALOG_NAME, OfferCatalogSpec::default());
    catalog.metadata.namespace = Some(ns.to_string());
    match api.create(&PostParams::default(), &catalog).await {
        Ok(_) => Ok(()),
        // Someone else created it meanwhile: just as good.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(Request::new("create", "offercatalogs")
            .namespace(ns)
            .if_forbidden(format!(
                "namespace {ns} has no offer catalog yet; ask someone who may edit it to run `kubectl msp offers -n {ns}` once"
            ))
            .explain(e)),
    }
}

/// The status, once the operator has written it for the current spec.
fn current_status(catalog: OfferCatalog) -> Option<OfferCatalogStatus> {
    let generation = catalog.metadata.generation;
    catalog
        .status
        .filter(|s| s.observed_generation.is_some() && s.observed_generation >= generation)
}

/// What the user should know about a catalog beyond its rows (for stderr).
pub fn notes(status: &OfferCatalogStatus, ns: &str) -> Vec<String> {
    let mut notes = Vec::new();
    if status.truncated {
        notes.push(format!(
            "note: more plans are offered to tenant {} than the catalog holds; only {} are listed. To see one provider's: kubectl -n {ns} patch offercatalog {CATALOG_NAME} --type merge -p '{{\"spec\":{{\"provider\":\"TENANT\"}}}}'",
            status.tenant.as_deref().unwrap_or("?"),
            status.plan_count
        ));
    }
    notes
}

/// The offer `wanted` names: `namespace/name`, or a name that only one
/// provider uses. The error lists what the catalog holds.
pub fn find_offer<'a>(
    status: &'a OfferCatalogStatus,
    wanted: &str,
    ns: &str,
) -> Result<&'a CatalogOffer, String> {
    let matches: Vec<&CatalogOffer> = match wanted.split_once('/') {
        Some((offer_ns, name)) => status
            .offers
            .iter()
            .filter(|o| o.namespace == offer_ns && o.name == name)
            .collect(),
        None => status.offers.iter().filter(|o| o.name == wanted).collect(),
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "offer {wanted} is not in the catalog of namespace {ns}; {}",
            offer_list(status)
        )),
        several => Err(format!(
            "offer name {wanted} is used by several providers ({}): name it as NAMESPACE/NAME",
            several
                .iter()
                .map(|o| format!("{}/{}", o.namespace, o.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn offer_list(status: &OfferCatalogStatus) -> String {
    if status.offers.is_empty() {
        return "it is empty: no provider offers your tenant anything yet".to_string();
    }
    let names: Vec<String> = status
        .offers
        .iter()
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect();
    format!("it offers {}", names.join(", "))
}

/// The plan `wanted` of `offer`; the error lists the plans you may accept.
pub fn find_plan<'a>(offer: &'a CatalogOffer, wanted: &str) -> Result<&'a CatalogPlan, String> {
    offer
        .plans
        .iter()
        .find(|p| p.name == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = offer.plans.iter().map(|p| p.name.as_str()).collect();
            format!(
                "offer {}/{} has no plan {wanted} that you may accept; its plans for you: {}",
                offer.namespace,
                offer.name,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
}

/// Refuses a `--version` other than the published one.
pub fn check_version(plan: &CatalogPlan, wanted: Option<&str>) -> Result<(), String> {
    match wanted {
        Some(v) if v != plan.version => Err(format!(
            "version {v} of plan {} is not published; the latest is {}",
            plan.name, plan.version
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use msp_operator::api::{CatalogAuthorization, Visibility};

    pub fn plan(name: &str, version: &str) -> CatalogPlan {
        CatalogPlan {
            name: name.into(),
            version: version.into(),
            visibility: Some(Visibility::Public),
            authorizations: vec![CatalogAuthorization {
                principal: "jane".into(),
                role_ref: "msp-operator:reader".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    pub fn offer(ns: &str, name: &str, tenant: &str, plans: Vec<CatalogPlan>) -> CatalogOffer {
        CatalogOffer {
            namespace: ns.into(),
            name: name.into(),
            display_name: format!("{name} by {tenant}"),
            provider_tenant: tenant.into(),
            plans,
            ..Default::default()
        }
    }

    pub fn catalog(offers: Vec<CatalogOffer>) -> OfferCatalogStatus {
        OfferCatalogStatus {
            observed_generation: Some(1),
            tenant: Some("fabrikam".into()),
            plan_count: offers.iter().map(|o| o.plans.len() as i32).sum(),
            offers,
            ..Default::default()
        }
    }

    #[test]
    fn offers_are_found_by_namespace_and_name_or_by_a_unique_name() {
        let status = catalog(vec![
            offer("contoso", "ops", "contoso", vec![plan("basic", "1.0.0")]),
            offer("tailspin", "ops", "tailspin", vec![]),
            offer("tailspin", "backup", "tailspin", vec![]),
        ]);
        assert_eq!(
            find_offer(&status, "tailspin/ops", "c").unwrap().namespace,
            "tailspin"
        );
        assert_eq!(find_offer(&status, "backup", "c").unwrap().name, "backup");
        let ambiguous = find_offer(&status, "ops", "c").unwrap_err();
        assert!(
            ambiguous.contains("contoso/ops, tailspin/ops"),
            "{ambiguous}"
        );
        let unknown = find_offer(&status, "nope", "c").unwrap_err();
        assert_eq!(
            unknown,
            "offer nope is not in the catalog of namespace c; it offers contoso/ops, tailspin/ops, tailspin/backup"
        );
        let empty = find_offer(&catalog(vec![]), "x/y", "c").unwrap_err();
        assert!(
            empty.contains("no provider offers your tenant anything"),
            "{empty}"
        );
    }

    #[test]
    fn plans_and_versions_are_checked_against_the_catalog() {
        let o = offer(
            "contoso",
            "ops",
            "contoso",
            vec![plan("basic", "1.2.0"), plan("gold", "2.0.0")],
        );
        assert_eq!(find_plan(&o, "gold").unwrap().version, "2.0.0");
        assert_eq!(
            find_plan(&o, "silver").unwrap_err(),
            "offer contoso/ops has no plan silver that you may accept; its plans for you: basic, gold"
        );
        let basic = find_plan(&o, "basic").unwrap();
        assert!(check_version(basic, None).is_ok());
        assert!(check_version(basic, Some("1.2.0")).is_ok());
        assert_eq!(
            check_version(basic, Some("1.0.0")).unwrap_err(),
            "version 1.0.0 of plan basic is not published; the latest is 1.2.0"
        );
    }

    #[test]
    fn a_truncated_catalog_says_so_and_how_to_narrow_it() {
        let mut status = catalog(vec![]);
        assert!(notes(&status, "shop").is_empty());
        status.truncated = true;
        status.plan_count = 500;
        let note = &notes(&status, "shop")[0];
        assert!(note.contains("only 500 are listed"), "{note}");
        assert!(
            note.contains("kubectl -n shop patch offercatalog catalog"),
            "{note}"
        );
    }

    #[test]
    fn only_a_status_for_the_current_generation_counts() {
        let mut c = OfferCatalog::new(CATALOG_NAME, OfferCatalogSpec::default());
        c.metadata.generation = Some(2);
        assert!(current_status(c.clone()).is_none());
        c.status = Some(OfferCatalogStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        assert!(current_status(c.clone()).is_none());
        c.status = Some(OfferCatalogStatus {
            observed_generation: Some(2),
            ..Default::default()
        });
        assert!(current_status(c).is_some());
    }
}
