//! Waiting for the cluster to reach a state, with failures that show what was
//! last seen, because "timed out" alone does not debug a controller.

use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);

/// Polls `name` until `condition` holds; on timeout the error shows the last
/// observed object as YAML (or that it did not exist).
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&K) -> bool,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
    K::DynamicType: Default,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<K> = None;
    let mut last_error = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(object)) => {
                if condition(&object) {
                    return Ok(object);
                }
                last = Some(object);
            }
            Ok(None) => last = None,
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() >= deadline {
            let seen = match &last {
                Some(object) => serde_yaml::to_string(object).unwrap_or_default(),
                None => "<object did not exist>".to_string(),
            };
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what} on {} {name}\nlast error: {}\nlast observed:\n{seen}",
                K::kind(&Default::default()),
                last_error.as_deref().unwrap_or("none")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Ok(value)`; on timeout the error carries the
/// last `Err` the probe gave, which should describe what was observed.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(observed) if Instant::now() >= deadline => {
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what}; last observed: {observed}"
                )
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Creates `object` with `dryRun=All` until the API server's answer
/// satisfies `admitted`: admission policies take effect a moment after they
/// are created, and a test must not race them. Nothing is stored.
pub async fn wait_for_admission<K>(
    api: &Api<K>,
    object: &K,
    timeout: Duration,
    what: &str,
    admitted: impl Fn(&Result<K, kube::Error>) -> bool,
) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    let deadline = Instant::now() + timeout;
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    loop {
        let answer = api.create(&params, object).await;
        if admitted(&answer) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what}; last answer: {answer:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
