//! An operator started after offers and delegations already exist converges
//! them: every cache is synced before the first reconcile acts, and no
//! reconcile waits forever for a cache (a regression: kube-runtime's
//! `wait_until_ready` wakes only the last of several concurrent waiters).
//! A test binary of its own, so the operator starts after the objects.

mod support;

use support::*;

#[tokio::test]
async fn an_operator_started_late_converges_existing_delegations() {
    let env = install();
    let admin = env.client().await;
    let tenant = msp_testenv::unique_name("late-prov");
    let provider = env
        .namespace_with_labels("late-p", &[("msp-operator.io/tenant", &tenant)])
        .await;
    let customers = [
        env.namespace("late-c1").await,
        env.namespace("late-c2").await,
        env.namespace("late-c3").await,
    ];
    let user = msp_testenv::unique_name("late-user");
    apply(&admin, &reader_offer(&provider, &tenant, &user)).await;
    for customer in &customers {
        apply(
            &admin,
            &delegation(customer, "d", (&provider, "o"), "p", "1.0.0", None),
        )
        .await;
    }
    start_operator();
    let provider_client = env.user_client(&user, &[]).await;
    for customer in &customers {
        wait_condition(&admin, customer, "d", "Ready", "True", Some("Granted")).await;
        wait_access(&provider_client, customer, true).await;
    }
}
