//! Tenants share the connector instances fairly: one tenant saturating them against a slow
//! upstream does not hold up another tenant's invocations, a burst waits rather than fails,
//! and a wait beyond the bound is a 429 with `Retry-After`.

use crate::bin;
use junction_tests::api::Api;
use junction_tests::service::{self, Client, Exchange, Service};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A service with `flags`, and the administrators of two tenants of it.
fn serve(name: &str, flags: &[&str]) -> (Service, Client, Client) {
    let dir = service::data_dir(name);
    let service = blocking(|| Service::start(bin(), &dir, flags)).unwrap_or_else(|e| panic!("{e}"));
    let admin = |tenant: &str| {
        let created = blocking(|| service::create_tenant(bin(), &dir, tenant, "admin"));
        service.client(created["token"]["token"].as_str().unwrap())
    };
    let (a, b) = (admin("alpha"), admin("bravo"));
    (service, a, b)
}

/// An `http` connection of `client` to `base_url`; its id.
async fn connection(client: &Client, base_url: &str) -> String {
    let created = client
        .post(
            "/v1/connections",
            json!({"connector": "http", "name": "api", "auth": "none",
                   "fields": {"base_url": base_url}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.json()["id"].as_str().unwrap().to_owned()
}

async fn get(client: &Client, connection: &str, path: &str) -> Exchange {
    client
        .post(
            &format!("/v1/connections/{connection}/invocations"),
            json!({"action": "request", "input": {"method": "GET", "path": path}}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_saturating_the_instances_does_not_hold_up_another_tenants_invocations() {
    let api = Api::start("t").await;
    let (_service, alpha, bravo) = serve(
        "fair-share",
        &["--health-check-interval", "0", "--max-instances", "4"],
    );
    let alphas = connection(&alpha, &api.base_url).await;
    let bravos = connection(&bravo, &api.base_url).await;

    // alpha: 40 invocations at once against an upstream that takes 400 ms; 4 instances.
    let alpha_done = Arc::new(AtomicUsize::new(0));
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (alpha, alphas, done) = (alpha.clone(), alphas.clone(), alpha_done.clone());
        burst.spawn(async move {
            let answer = get(&alpha, &alphas, "/slow/400").await;
            done.fetch_add(1, Ordering::SeqCst);
            answer
        });
    }
    // Once the instances are all taken and alpha's backlog queued…
    while api.seen().iter().filter(|s| s.path == "/slow/400").count() < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = alpha_done.load(Ordering::SeqCst);
    // …bravo's invocations start at the next releases, not behind alpha's 36.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (bravo, bravos) = (bravo.clone(), bravos.clone());
        calls.spawn(async move { get(&bravo, &bravos, "/ping").await });
    }
    let bravo_calls = calls.join_all().await;
    let alpha_meanwhile = alpha_done.load(Ordering::SeqCst) - before;
    for answer in &bravo_calls {
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert!(
        alpha_meanwhile <= 16,
        "bravo waited behind alpha's backlog: {alpha_meanwhile} of alpha's invocations finished while bravo's 5 waited"
    );
    // The burst itself waited rather than failed.
    for answer in burst.join_all().await {
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_beyond_the_queue_bound_is_a_429_with_retry_after_and_is_recorded() {
    let api = Api::start("t").await;
    let (_service, alpha, bravo) = serve(
        "fair-bound",
        &[
            "--health-check-interval",
            "0",
            "--max-instances",
            "1",
            "--queue-timeout",
            "0.5",
        ],
    );
    let alphas = connection(&alpha, &api.base_url).await;
    let bravos = connection(&bravo, &api.base_url).await;
    let holder = {
        let (alpha, alphas) = (alpha.clone(), alphas.clone());
        tokio::spawn(async move { get(&alpha, &alphas, "/slow/3000").await })
    };
    while api.seen().iter().all(|s| s.path != "/slow/3000") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = get(&bravo, &bravos, "/ping").await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    let error = refused.json()["error"].clone();
    assert_eq!(error["code"], "busy", "{error}");
    assert_eq!(error["details"]["retry_after_seconds"], 5, "{error}");
    assert_eq!(refused.header("retry-after").as_deref(), Some("5"));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("busy for 500ms"),
        "{error}"
    );
    // A connection test that finds no free instance changes nothing of the health.
    let test = bravo
        .post(&format!("/v1/connections/{bravos}/test"), json!({}))
        .await;
    assert_eq!(test.status, 429, "{}", test.text);
    let shown = bravo.get(&format!("/v1/connections/{bravos}")).await;
    assert_eq!(
        shown.json()["health"]["status"],
        "unknown",
        "{}",
        shown.text
    );

    assert_eq!(holder.await.unwrap().status, 200);
    let invocations = bravo.get("/v1/invocations").await.json();
    assert_eq!(invocations["items"][0]["outcome"], "busy", "{invocations}");
}
