//! The just-in-time phase of `make bench`: `count` eligible users, one per
//! customer, activate at once; how long from each Activation's creation
//! until its RoleBinding exists (activation to grant), and from each
//! `expiresAt` until the RoleBinding is gone (revocation lateness).
//!
//! Times come from one watch of the operator's activation RoleBindings,
//! stamped on arrival; `expiresAt` from the Activations' status (whole
//! seconds, as Kubernetes stores times, and the operator grants until that
//! stored second).

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use msp_operator::api::*;
use msp_operator::fixtures;
use msp_testenv::LocalControlPlane;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long each activation lasts: long enough for all of them to be
/// granted before the first expires.
const DURATION_SECONDS: u64 = 90;
const GROUP: &str = "bench-oncall";

/// When the watch saw each activation's binding appear and disappear, by
/// `namespace/activation`.
#[derive(Default)]
struct Seen {
    added: HashMap<String, Timestamp>,
    deleted: HashMap<String, Timestamp>,
}

/// Runs the phase: an offer with an eligible authorization in
/// `provider_ns` (tenant `provider_tenant`), a Delegation to it in each of
/// `customer_namespaces`, then one Activation in each by its own user.
pub async fn measure(
    admin: &Client,
    plane: &LocalControlPlane,
    provider_ns: &str,
    provider_tenant: &str,
    customer_namespaces: &[String],
) -> anyhow::Result<serde_json::Value> {
    let count = customer_namespaces.len();
    let mut plan = fixtures::plan(
        "jit",
        "1.0.0",
        vec![fixtures::auth(
            PrincipalKind::Group,
            "bench-readers",
            "msp-operator:reader",
        )],
    );
    plan.eligible_authorizations = Some(vec![fixtures::eligible(
        fixtures::person(PersonKind::Group, GROUP),
        "msp-operator:reader",
        "1h",
        Vec::new(),
    )]);
    Api::<ManagedServiceOffer>::namespaced(admin.clone(), provider_ns)
        .create(
            &PostParams::default(),
            &fixtures::offer(provider_ns, "jit", provider_tenant, vec![plan]),
        )
        .await?;
    let setup = Instant::now();
    super::for_all(customer_namespaces.to_vec(), 16, |ns| {
        let api: Api<Delegation> = Api::namespaced(admin.clone(), &ns);
        let d = fixtures::delegation(&ns, "jit", (provider_ns, "jit"), "jit", "1.0.0", None);
        async move {
            api.create(&PostParams::default(), &d)
                .await
                .expect("jit delegation");
        }
    })
    .await;
    super::wait_all_ready(admin, count, "1.0.0").await;
    eprintln!(
        "bench: {count} Delegations with an eligible authorization Ready in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // Each user authenticates with a client certificate of its own.
    let mut users = Vec::with_capacity(count);
    for (i, ns) in customer_namespaces.iter().enumerate() {
        let user = format!("bench-engineer-{i}");
        let cert = plane.pki().client_cert(&user, &[GROUP])?;
        let yaml = msp_testenv::kubeconfig::render_kubeconfig(
            plane.server(),
            &plane.pki().server_ca_pem(),
            &user,
            &msp_testenv::kubeconfig::Credentials::ClientCertificate(cert),
        );
        users.push((
            ns.clone(),
            msp_testenv::kubeconfig::client_from_yaml(&yaml).await?,
        ));
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = {
        let seen = seen.clone();
        let api: Api<RoleBinding> = Api::all(admin.clone());
        let config =
            watcher::Config::default().labels(msp_operator::domain::names::ACTIVATION_LABEL);
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, config));
            while let Some(event) = events.next().await {
                let now = Timestamp::now();
                let key = |rb: &RoleBinding| {
                    format!(
                        "{}/{}",
                        rb.namespace().unwrap_or_default(),
                        rb.labels()
                            .get(msp_operator::domain::names::ACTIVATION_LABEL)
                            .cloned()
                            .unwrap_or_default()
                    )
                };
                let Ok(mut seen) = seen.lock() else { return };
                match event {
                    Ok(Event::Apply(rb) | Event::InitApply(rb)) => {
                        seen.added.entry(key(&rb)).or_insert(now);
                    }
                    Ok(Event::Delete(rb)) => {
                        seen.deleted.entry(key(&rb)).or_insert(now);
                    }
                    _ => {}
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let created: Arc<Mutex<HashMap<String, Timestamp>>> = Arc::default();
    let started = Instant::now();
    super::for_all(users, 64, |(ns, client)| {
        let created = created.clone();
        async move {
            let activation = fixtures::activation(
                &ns,
                "a",
                "jit",
                fixtures::person(PersonKind::Group, GROUP),
                "msp-operator:reader",
                &format!("{DURATION_SECONDS}s"),
            );
            let api: Api<Activation> = Api::namespaced(client, &ns);
            // RBAC sees a new requester binding a moment after it exists.
            for attempt in 0.. {
                match api.create(&PostParams::default(), &activation).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 403 && attempt < 50 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("activation in {ns}: {e}"),
                }
            }
            if let Ok(mut created) = created.lock() {
                created.insert(format!("{ns}/a"), Timestamp::now());
            }
        }
    })
    .await;
    let create_seconds = started.elapsed().as_secs_f64();
    let granted = wait(&seen, count, |s| s.added.len(), "granted").await;
    eprintln!(
        "bench: {count} activations created in {create_seconds:.1}s, all granted after {:.1}s",
        granted.as_secs_f64()
    );

    // Their deadlines, as the operator recorded them.
    let expires: HashMap<String, Timestamp> = Api::<Activation>::all(admin.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|a| {
            let at = a.status.as_ref()?.expires_at.as_ref()?.0;
            Some((format!("{}/{}", a.namespace()?, a.name_any()), at))
        })
        .collect();
    let all_expired = wait(&seen, count, |s| s.deleted.len(), "revoked at expiry").await;
    watch.abort();
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let created = created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut to_grant: Vec<f64> = created
        .iter()
        .filter_map(|(k, at)| Some(seen.added.get(k)?.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    let mut lateness: Vec<f64> = expires
        .iter()
        .filter_map(|(k, at)| Some(seen.deleted.get(k)?.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    to_grant.sort_by(f64::total_cmp);
    lateness.sort_by(f64::total_cmp);
    let pick = |v: &[f64], p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "bench: activation to grant p50 {:.0}ms p99 {:.0}ms; revocation lateness p50 {:.0}ms p99 {:.0}ms max {:.0}ms (n={})",
        pick(&to_grant, 0.5),
        pick(&to_grant, 0.99),
        pick(&lateness, 0.5),
        pick(&lateness, 0.99),
        pick(&lateness, 1.0),
        lateness.len()
    );
    Ok(serde_json::json!({
        "activations": count,
        "duration_seconds": DURATION_SECONDS,
        "create_all_seconds": create_seconds,
        "all_granted_after_seconds": granted.as_secs_f64(),
        "activation_to_grant_ms": {"p50": pick(&to_grant, 0.5), "p99": pick(&to_grant, 0.99), "max": pick(&to_grant, 1.0)},
        "revocation_lateness_ms": {"p50": pick(&lateness, 0.5), "p99": pick(&lateness, 0.99), "max": pick(&lateness, 1.0), "min": pick(&lateness, 0.0)},
        "all_revoked_after_seconds": all_expired.as_secs_f64(),
    }))
}

/// Waits until `measure(seen)` reaches `count`; how long it took.
async fn wait(
    seen: &Mutex<Seen>,
    count: usize,
    measure: impl Fn(&Seen) -> usize,
    what: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = seen.lock().map(|s| measure(&s)).unwrap_or_default();
        if now >= count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(DURATION_SECONDS * 3 + 300),
            "only {now}/{count} {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
