//! The validate step over arbitrary offers and Delegations. Invariants: a
//! refusal builds nothing; an acceptance builds only RoleBindings to a role
//! of the consented plan (or the Delegation's own deleter Role), in the
//! Delegation's namespaces, never to a `system:` identity.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use msp_operator::api::{DELEGATION_DELETER_ROLE, PrincipalKind, TenantId, Visibility};
use msp_operator::delegation::build;
use msp_operator::delegation::validate::{Inputs, decide};
use msp_operator::domain::tenancy::NamespaceInfo;
use msp_operator::fixtures;

const NAMES: &[&str] = &[
    "alice",
    "ops",
    "system:authenticated",
    "system:serviceaccount:x:y",
    "robot",
    "system:masters",
];
const ROLES: &[&str] = &["reader", "writer", "cluster-admin", DELEGATION_DELETER_ROLE];
const NAMESPACES: &[&str] = &["cust-a", "cust-b", "other", "provider", "missing"];
const VERSIONS: &[&str] = &["1.0.0", "1.1.0", "2.0.0"];

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let mut authorizations = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let kind = *u.choose(&[
            PrincipalKind::User,
            PrincipalKind::Group,
            PrincipalKind::ServiceAccount,
        ])?;
        let mut a = fixtures::auth(kind, u.choose(NAMES)?, u.choose(ROLES)?);
        if kind == PrincipalKind::ServiceAccount && u.arbitrary()? {
            a.principal.namespace = Some(u.choose(NAMESPACES)?.to_string());
        }
        authorizations.push(a);
    }
    let mut plan = fixtures::plan("p", u.choose(VERSIONS)?, authorizations);
    if u.arbitrary()? {
        plan.visibility = Visibility::Private;
        plan.audience = Some(vec![TenantId(
            u.choose(&["fabrikam", "other"])?.to_string(),
        )]);
    }
    let tenant = u.choose(&["acme", "fabrikam"])?;
    let offer = fixtures::offer("provider", "o", tenant, vec![plan.clone()]);
    let targets: Vec<&str> = (0..u.int_in_range(1..=3)?)
        .map(|_| u.choose(NAMESPACES).copied())
        .collect::<arbitrary::Result<_>>()?;
    let delegation = fixtures::with_uid(
        fixtures::delegation(
            u.choose(&["cust-a", "cust-b"])?,
            "d",
            ("provider", "o"),
            "p",
            u.choose(VERSIONS)?,
            Some(targets),
        ),
        "uid",
    );
    let namespace = |name: &str| {
        let tenant = match name {
            "cust-a" | "cust-b" => "fabrikam",
            "other" => "other",
            "provider" => "acme",
            _ => return None,
        };
        Some(NamespaceInfo {
            tenant: tenant.into(),
            terminating: false,
        })
    };
    let delegable = |role: &str| {
        if role == "reader" || role == "writer" {
            Ok(())
        } else {
            Err(msp_operator::domain::delegability::Refusal::NotLabeled)
        }
    };
    let decision = decide(&Inputs {
        delegation: &delegation,
        offer: if u.arbitrary()? { Some(&offer) } else { None },
        snapshot: None,
        carried: None,
        namespace: &namespace,
        role: &delegable,
        workload: &|_| Vec::new(),
    });
    let desired = build::for_decision(&delegation, &decision);
    match &decision.outcome {
        Err(_) => assert!(
            desired.role_bindings.is_empty() && desired.roles.is_empty(),
            "a refusal built {desired:?}"
        ),
        Ok(accepted) => {
            let roles: Vec<&str> = accepted
                .plan
                .authorizations
                .iter()
                .map(|a| a.role_ref.as_str())
                .collect();
            for rb in &desired.role_bindings {
                let ns = rb.metadata.namespace.clone().unwrap_or_default();
                match rb.role_ref.kind.as_str() {
                    "ClusterRole" => {
                        assert!(roles.contains(&rb.role_ref.name.as_str()), "{rb:?}");
                        assert!(delegation.target_namespaces().contains(&ns), "{rb:?}");
                        assert!(delegable(&rb.role_ref.name).is_ok(), "{rb:?}");
                    }
                    _ => assert_eq!(Some(ns), delegation.metadata.namespace.clone(), "{rb:?}"),
                }
                for s in rb.subjects.iter().flatten() {
                    assert!(!s.name.starts_with("system:"), "a system: subject: {rb:?}");
                    if s.kind == "ServiceAccount" {
                        assert_eq!(s.namespace.as_deref(), Some("provider"), "{rb:?}");
                    }
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
