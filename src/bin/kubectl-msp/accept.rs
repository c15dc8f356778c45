//! `kubectl msp accept`: informed consent in one step. It looks the plan up
//! in the customer's catalog, shows exactly what accepting it grants, asks,
//! creates the Delegation and tells in plain words whether the operator
//! granted it or why not.

use crate::catalog;
use crate::cluster::{Cluster, WAIT, poll};
use crate::errors::Request;
use crate::identity::{self, Me};
use anyhow::{Context, anyhow, bail};
use kube::Api;
use kube::api::PostParams;
use msp_operator::api::{
    CatalogAuthorization, CatalogEligibleAuthorization, CatalogOffer, CatalogPlan,
    DELEGATION_DELETER_ROLE, Delegation, DelegationSpec, NamespaceName, OfferRef, PersonKind,
    PrincipalKind, ROLE_ASSIGNER_ROLE, RoleName,
};
use std::io::{BufRead, IsTerminal, Write};

/// Arguments of `accept`.
#[derive(clap::Args, Debug)]
pub struct AcceptArgs {
    /// The offer: NAMESPACE/NAME as `kubectl msp offers` lists it, or just
    /// NAME when only one provider uses it.
    pub offer: String,
    /// The plan to accept.
    pub plan: String,
    /// The version you expect to accept (default: the published one).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Name of the Delegation (default: <offer>-<plan>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The namespaces to delegate, of your tenant (default: the
    /// Delegation's own namespace).
    #[arg(long, value_name = "NS,NS", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Accept knowingly that ROLE can run workloads (repeatable); the
    /// operator refuses such a role otherwise.
    #[arg(long = "acknowledge-workload-role", value_name = "ROLE")]
    pub acknowledge_workload_roles: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `accept`.
pub async fn run(cluster: &Cluster, args: &AcceptArgs) -> anyhow::Result<()> {
    let ns = cluster.namespace.as_str();
    let status = catalog::load(cluster, ns).await?;
    let offer = catalog::find_offer(&status, &args.offer, ns).map_err(|e| anyhow!(e))?;
    let plan = catalog::find_plan(offer, &args.plan).map_err(|e| anyhow!(e))?;
    catalog::check_version(plan, args.version.as_deref()).map_err(|e| anyhow!(e))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(&offer.name, &plan.name),
    };
    let namespaces = target_namespaces(&args.namespaces, ns)?;
    crate::output::print(&describe(offer, plan, &namespaces, ns, &name))?;
    if !args.yes && !confirm(&format!("Create Delegation {name} in {ns}? [y/N] "))? {
        bail!("nothing created");
    }
    // Admission requires the consent record to name you; where the
    // consent recorder is installed it writes the same values itself.
    let me = identity::whoami(&cluster.client).await.ok();
    let delegation = build(
        ns,
        &name,
        offer,
        plan,
        &args.namespaces,
        &args.acknowledge_workload_roles,
        me.as_ref(),
    );
    let api: Api<Delegation> = Api::namespaced(cluster.client.clone(), ns);
    api.create(&PostParams::default(), &delegation)
        .await
        .map_err(|e| {
            Request::new("create", "delegations")
                .namespace(ns)
                .name(&name)
                .if_missing(format!(
                    "`kubectl msp status {name} -n {ns}` explains it; pass --name for another one"
                ))
                .if_forbidden(format!(
                    "ask an admin of namespace {ns} to accept it, or to let you create Delegations"
                ))
                .explain(e)
        })?;
    crate::output::print(&format!("delegation.msp-operator.io/{name} created\n"))?;
    report(&api, ns, &name).await
}

/// The Delegation's default name: `<offer>-<plan>`, reduced to what a
/// Kubernetes name allows (lowercase letters, digits, dashes; 63 at most).
pub fn default_name(offer: &str, plan: &str) -> String {
    let raw = format!("{offer}-{plan}").to_ascii_lowercase();
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    name.truncate(63);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "delegation".to_string()
    } else {
        name.to_string()
    }
}

fn target_namespaces(listed: &[String], own: &str) -> anyhow::Result<Vec<String>> {
    if listed.iter().any(|n| n.trim().is_empty()) {
        bail!("--namespaces lists an empty name: write --namespaces a,b");
    }
    let mut names: Vec<String> = if listed.is_empty() {
        vec![own.to_string()]
    } else {
        listed.iter().map(|n| n.trim().to_string()).collect()
    };
    names.sort();
    names.dedup();
    Ok(names)
}

/// What accepting `plan` grants, in words, before anything is created.
pub fn describe(
    offer: &CatalogOffer,
    plan: &CatalogPlan,
    namespaces: &[String],
    own: &str,
    name: &str,
) -> String {
    let provider = match &offer.provider_display_name {
        Some(d) => format!("{d} (tenant {})", offer.provider_tenant),
        None => format!("tenant {}", offer.provider_tenant),
    };
    let plan_name = match &plan.display_name {
        Some(d) => format!("\"{d}\" ({})", plan.name),
        None => plan.name.clone(),
    };
    let mut text = format!(
        "Offer:      \"{}\" ({}/{}) of provider {provider}\nPlan:       {plan_name}, version {}\nNamespaces: {}\n\n",
        offer.display_name,
        offer.namespace,
        offer.name,
        plan.version,
        namespaces.join(", ")
    );
    text.push_str(&format!(
        "Delegation {own}/{name} grants the provider, in each of these namespaces:\n"
    ));
    for a in &plan.authorizations {
        text.push_str(&format!("  {}\n", authorization_line(a, own)));
    }
    if !plan.eligible_authorizations.is_empty() {
        text.push_str(
            "Just-in-time access (nothing is granted until an activation is approved):\n",
        );
        for e in &plan.eligible_authorizations {
            text.push_str(&format!("  {}\n", eligible_line(e)));
        }
    }
    text.push('\n');
    text
}

fn principal_text(kind: Option<&str>, name: &str, display: Option<&str>) -> String {
    let mut text = format!("{} {name}", kind.unwrap_or("Principal"));
    if let Some(d) = display {
        text.push_str(&format!(" (\"{d}\")"));
    }
    text
}

fn authorization_line(a: &CatalogAuthorization, own: &str) -> String {
    let kind = a.principal_kind.map(|k| match k {
        PrincipalKind::User => "User",
        PrincipalKind::Group => "Group",
        PrincipalKind::ServiceAccount => "ServiceAccount",
    });
    let who = principal_text(kind, &a.principal, a.principal_display_name.as_deref());
    let what = if a.role_ref == DELEGATION_DELETER_ROLE {
        format!(
            "{DELEGATION_DELETER_ROLE} (may delete this Delegation, which ends the provider's access; in {own} only)"
        )
    } else if a.role_ref == ROLE_ASSIGNER_ROLE {
        format!(
            "{ROLE_ASSIGNER_ROLE} (may bind {} to ServiceAccounts of the namespace)",
            a.delegated_roles.join(", ")
        )
    } else {
        a.role_ref.clone()
    };
    format!("{who}: {what}")
}

fn eligible_line(e: &CatalogEligibleAuthorization) -> String {
    let kind = e.principal_kind.map(|k| match k {
        PersonKind::User => "User",
        PersonKind::Group => "Group",
    });
    let who = principal_text(kind, &e.principal, e.principal_display_name.as_deref());
    let mut terms = vec![format!("for at most {}", e.max_duration)];
    if e.approval_required {
        terms.push("approved by the provider".into());
    }
    if e.justification_required {
        terms.push("with a justification".into());
    }
    format!("{who}: {} {}", e.role_ref, terms.join(", "))
}

/// Asks on the terminal; refuses to guess without one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not asking for confirmation without a terminal: pass --yes to create the Delegation"
        );
    }
    let mut err = std::io::stderr();
    err.write_all(question.as_bytes())
        .and_then(|()| err.flush())
        .context("write the question")?;
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The Delegation accepting `plan` as shown.
pub fn build(
    ns: &str,
    name: &str,
    offer: &CatalogOffer,
    plan: &CatalogPlan,
    namespaces: &[String],
    acknowledged: &[String],
    me: Option<&Me>,
) -> Delegation {
    let mut d = Delegation::new(
        name,
        DelegationSpec {
            offer_ref: OfferRef {
                namespace: offer.namespace.clone(),
                name: offer.name.clone(),
            },
            plan: plan.name.clone(),
            plan_version: plan.version.clone(),
            namespaces: (!namespaces.is_empty()).then(|| {
                namespaces
                    .iter()
                    .map(|n| NamespaceName(n.trim().to_string()))
                    .collect()
            }),
            namespace_selector: None,
            acknowledged_workload_roles: (!acknowledged.is_empty())
                .then(|| acknowledged.iter().map(|r| RoleName(r.clone())).collect()),
            activation_terms: None,
        },
    );
    d.metadata.namespace = Some(ns.to_string());
    if let Some(me) = me {
        d.metadata.annotations = Some(
            [
                (
                    "msp-operator.io/consented-by".to_string(),
                    me.username.clone(),
                ),
                (
                    "msp-operator.io/consented-by-groups".to_string(),
                    me.groups.join(","),
                ),
            ]
            .into(),
        );
    }
    d
}

/// Where a Delegation stands, for its current generation.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every grant is in place.
    Ready(String),
    /// Refused (Stalled): reason and message (which names the fix).
    Refused(String, String),
}

/// The outcome, once the operator has decided; `None` while reconciling.
pub fn outcome(d: &Delegation) -> Option<Outcome> {
    let status = d.status.as_ref()?;
    if status.observed_generation != d.metadata.generation {
        return None;
    }
    let find = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    let ready = find("Ready")?;
    if ready.status == "True" {
        return Some(Outcome::Ready(ready.message.clone()));
    }
    match find("Stalled") {
        Some(s) if s.status == "True" => Some(Outcome::Refused(
            ready.reason.clone(),
            ready.message.clone(),
        )),
        _ => None,
    }
}

async fn report(api: &Api<Delegation>, ns: &str, name: &str) -> anyhow::Result<()> {
    let get = |api: Api<Delegation>| async move {
        api.get(name).await.map_err(|e| {
            Request::new("get", "delegations")
                .namespace(ns)
                .name(name)
                .explain(e)
        })
    };
    let decided = poll(WAIT, || {
        let api = api.clone();
        async move { Ok(outcome(&get(api).await?)) }
    })
    .await?;
    match decided {
        Some(Outcome::Ready(message)) => crate::output::print(&format!(
            "Delegation {name} is Ready: {message}\n`kubectl msp providers -n {ns}` shows who has which role now.\n"
        )),
        Some(Outcome::Refused(reason, message)) => {
            let mut text = format!("Delegation {name} was refused ({reason}): {message}");
            if reason == "WorkloadAccessNotAcknowledged" {
                text.push_str(&format!(
                    "\nTo accept that knowingly: kubectl -n {ns} delete delegation {name}, then accept again with --acknowledge-workload-role ROLE"
                ));
            }
            Err(anyhow!(text))
        }
        None => {
            let last = get(api.clone()).await.ok();
            let now = last.as_ref().and_then(|d| {
                let s = d.status.as_ref()?;
                let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                Some(format!(
                    " (Ready={}, {}: {})",
                    c.status, c.reason, c.message
                ))
            });
            crate::output::print(&format!(
                "Delegation {name} was created and is still reconciling{}; follow it with `kubectl msp status {name} -n {ns}`.\n",
                now.unwrap_or_default()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{offer, plan};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use msp_operator::api::DelegationStatus;

    #[test]
    fn default_names_are_dns_safe_and_short() {
        assert_eq!(default_name("ops", "basic"), "ops-basic");
        assert_eq!(
            default_name("Ops.Offer", "gold_plan"),
            "ops-offer-gold-plan"
        );
        let long = default_name(&"a".repeat(60), "plan");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-pl"));
        assert_eq!(default_name(&"a".repeat(62), "b"), "a".repeat(62));
        assert_eq!(default_name("--", "_"), "delegation");
    }

    #[test]
    fn the_summary_names_every_grant() {
        let mut p = plan("basic", "1.0.0");
        p.authorizations.push(CatalogAuthorization {
            principal_kind: Some(PrincipalKind::Group),
            principal: "contoso:ci".into(),
            role_ref: ROLE_ASSIGNER_ROLE.into(),
            delegated_roles: vec!["msp-operator:reader".into()],
            ..Default::default()
        });
        p.authorizations.push(CatalogAuthorization {
            principal_kind: Some(PrincipalKind::User),
            principal: "lena".into(),
            principal_display_name: Some("Lena".into()),
            role_ref: DELEGATION_DELETER_ROLE.into(),
            ..Default::default()
        });
        p.eligible_authorizations
            .push(CatalogEligibleAuthorization {
                principal_kind: Some(PersonKind::Group),
                principal: "contoso:oncall".into(),
                role_ref: "msp-operator:operator".into(),
                max_duration: "4h".into(),
                approval_required: true,
                justification_required: true,
                ..Default::default()
            });
        let o = offer("contoso", "ops", "contoso", vec![]);
        let text = describe(&o, &p, &["shop".into(), "web".into()], "shop", "ops-basic");
        assert_eq!(
            text,
            "Offer:      \"ops by contoso\" (contoso/ops) of provider tenant contoso\n\
             Plan:       basic, version 1.0.0\n\
             Namespaces: shop, web\n\n\
             Delegation shop/ops-basic grants the provider, in each of these namespaces:\n  \
             Principal jane: msp-operator:reader\n  \
             Group contoso:ci: msp-operator:role-assigner (may bind msp-operator:reader to ServiceAccounts of the namespace)\n  \
             User lena (\"Lena\"): msp-operator:delegation-deleter (may delete this Delegation, which ends the provider's access; in shop only)\n\
             Just-in-time access (nothing is granted until an activation is approved):\n  \
             Group contoso:oncall: msp-operator:operator for at most 4h, approved by the provider, with a justification\n\n"
        );
    }

    #[test]
    fn the_delegation_is_what_was_shown() {
        let o = offer("contoso", "ops", "contoso", vec![]);
        let p = plan("basic", "1.2.0");
        let me = Me {
            username: "carol".into(),
            groups: vec!["admins".into(), "system:authenticated".into()],
        };
        let d = build(
            "shop",
            "x",
            &o,
            &p,
            &["web".into()],
            &["msp-operator:operator".into()],
            Some(&me),
        );
        assert_eq!(d.spec.offer_ref.namespace, "contoso");
        assert_eq!(d.spec.plan_version, "1.2.0");
        assert_eq!(d.spec.namespaces, Some(vec![NamespaceName("web".into())]));
        assert!(d.acknowledges_workload_role("msp-operator:operator"));
        let annotations = d.metadata.annotations.unwrap();
        assert_eq!(annotations["msp-operator.io/consented-by"], "carol");
        assert_eq!(
            annotations["msp-operator.io/consented-by-groups"],
            "admins,system:authenticated"
        );
        let own = build("shop", "x", &o, &p, &[], &[], None);
        assert_eq!(own.spec.namespaces, None);
        assert_eq!(own.spec.acknowledged_workload_roles, None);
        assert!(own.metadata.annotations.is_none());
        assert_eq!(target_namespaces(&[], "shop").unwrap(), vec!["shop"]);
        assert!(target_namespaces(&["a".into(), String::new()], "shop").is_err());
    }

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        crate::output::fixtures::condition(type_, status, reason, &format!("{reason} message"))
    }

    #[test]
    fn outcomes_wait_for_the_current_generation_and_tell_refusals_from_progress() {
        let o = offer("contoso", "ops", "contoso", vec![]);
        let mut d = build("shop", "x", &o, &plan("basic", "1.0.0"), &[], &[], None);
        d.metadata.generation = Some(2);
        assert_eq!(outcome(&d), None);
        d.status = Some(DelegationStatus {
            observed_generation: Some(1),
            conditions: vec![condition("Ready", "True", "Granted")],
            ..Default::default()
        });
        assert_eq!(outcome(&d), None);
        let status = d.status.as_mut().unwrap();
        status.observed_generation = Some(2);
        assert_eq!(outcome(&d), Some(Outcome::Ready("Granted message".into())));
        d.status.as_mut().unwrap().conditions = vec![
            condition("Ready", "False", "Progressing"),
            condition("Reconciling", "True", "Progressing"),
        ];
        assert_eq!(outcome(&d), None);
        d.status.as_mut().unwrap().conditions = vec![
            condition("Ready", "False", "NotInAudience"),
            condition("Stalled", "True", "NotInAudience"),
        ];
        assert_eq!(
            outcome(&d),
            Some(Outcome::Refused(
                "NotInAudience".into(),
                "NotInAudience message".into()
            ))
        );
    }
}
