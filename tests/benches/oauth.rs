//! An expired OAuth token under load: 1,000 invocations start at once on a connection
//! whose access token has just expired. The host must renew it with exactly one token
//! request (the others wait for that renewal and use its result); the figure that matters
//! besides that count is the latency the renewal adds.
//!
//! Real pieces: the suite's authorization server (oidc-provider, on loopback), an API that
//! checks every token by introspection at that server, the service built in this process
//! as `junction serve` builds it, and the consent driven by the test browser.
//!
//! `cargo bench -p junction-tests --bench oauth -- [--concurrency N] [--ttl SECONDS]`

#![allow(clippy::unwrap_used)]

use junction_tests::browser::Browser;
use junction_tests::inprocess::InProcess;
use junction_tests::oauth::OAuthServer;
use junction_tests::resource::Resource;
use junction_tests::service::Client;
use serde_json::json;
use std::time::{Duration, Instant};

use junction_tests::bench_arg as arg;

/// Latencies of `n` invocations started at once.
async fn burst(url: &str, token: &str, id: &str, n: u64) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n as usize)
        .build()
        .unwrap();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            let request = client
                .post(format!("{url}/v1/connections/{id}/invocations"))
                .bearer_auth(token)
                .json(&json!({"action": "fetch", "input": {"url": "/whoami"}}));
            tokio::spawn(async move {
                let started = Instant::now();
                let response = request.send().await.unwrap();
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap();
                assert!(status.is_success(), "{status}: {body}");
                assert_eq!(body["output"]["status"], 200, "{body}");
                started.elapsed()
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in calls {
        all.push(c.await.unwrap());
    }
    all.sort();
    all
}

fn summary(all: &[Duration]) -> String {
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    format!(
        "p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        pct(0.5),
        pct(0.99),
        all[all.len() - 1]
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, as a smaller check (a debug build, beside other tests) that the path works.
    let benching = std::env::args().any(|a| a == "--bench");
    let concurrency = arg("--concurrency", if benching { 1000 } else { 200 });
    // Long enough that a burst ends well before the renewed token is due for renewal
    // itself (half its lifetime).
    let ttl = arg("--ttl", if benching { 8 } else { 12 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let oauth = OAuthServer::start();
        let resource = Resource::start(&oauth).await;
        let service = InProcess::start("oauth", &[junction_tests::components::PROBE]).await;
        let api = Client::new(&service.url(), Some(&service.token));
        let app = oauth
            .register_client(json!({
                "redirect_uris": [format!("{}/v1/oauth/callback", service.url())],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "access_token_ttl": ttl,
            }))
            .await;
        let created = api
            .post(
                "/v1/connections",
                json!({"connector": "probe", "name": "bench", "auth": "oauth", "fields": {
                    "issuer": oauth.issuer(), "base_url": resource.base_url,
                    "client_id": app.client_id, "client_secret": app.client_secret}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let url = created.json()["authorization"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let page = Browser::new().consent(&url, "ann").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let consented = Instant::now();

        // Warm up (connections, compiled paths), then a burst on a fresh token: the
        // reference.
        burst(&service.url(), &service.token, &id, concurrency / 10).await;
        let fresh = burst(&service.url(), &service.token, &id, concurrency).await;
        assert_eq!(oauth.grants("refresh_token", &app.client_id), 0);

        // Let the token expire, then the same burst.
        let expiry = Duration::from_secs(ttl) + Duration::from_millis(500);
        tokio::time::sleep(expiry.saturating_sub(consented.elapsed())).await;
        let requests_before = service.service.oauth.token_requests();
        let expired = burst(&service.url(), &service.token, &id, concurrency).await;
        let refreshes = oauth.grants("refresh_token", &app.client_id);
        let requests = service.service.oauth.token_requests() - requests_before;

        // One invocation alone, on a fresh token (the median of 9) and then on a token that
        // has just expired: the difference is what the renewal adds to the invocation that
        // makes it.
        let mut alone = Vec::new();
        for _ in 0..9 {
            alone.extend(burst(&service.url(), &service.token, &id, 1).await);
        }
        alone.sort();
        tokio::time::sleep(expiry).await;
        let before = service.service.oauth.token_requests();
        let alone_expired = burst(&service.url(), &service.token, &id, 1).await[0];
        assert_eq!(service.service.oauth.token_requests() - before, 1);

        println!("one invocation alone: fresh token {:.1?} (median of 9), expired token {:.1?} (renewal included)", alone[4], alone_expired);
        println!("{concurrency} invocations started at once (each one API call, token checked by introspection):");
        println!("  fresh token     {}", summary(&fresh));
        println!("  expired token   {}", summary(&expired));
        println!(
            "  token requests for the expired burst: {requests} (the provider counted {refreshes} refresh grant(s))"
        );
        assert_eq!(requests, 1, "one renewal for the whole burst");
        assert_eq!(refreshes, 1, "the provider saw one refresh");
    });
}
