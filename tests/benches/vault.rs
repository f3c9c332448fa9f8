//! Credential assets under load: a connection whose API key lives in a vault, invoked
//! 10,000 times with 32 invocations in flight. The host must read the vault exactly once
//! (the first resolve, when the connection is created; every invocation after it is served
//! from the in-memory cache), and every invocation must reach the API with the key. Then
//! the price of that cache: the time of one cache hit (`CredentialStores::resolve` on a hot
//! entry: a lookup, opening the sealed value), and for context one invocation's latency on
//! a connection with the same key stored as a plain secret beside the vault reference.
//!
//! Real pieces: RustyVault on loopback (`make test-tools`), a local API that checks the
//! `X-API-Key` header, the service built in this process as `junction serve` builds it,
//! with one credential store, and the `probe` connector's `fetch` action (scheme
//! `header-key`).
//!
//! `cargo bench -p junction-tests --bench vault -- [--invocations N] [--concurrency N]
//! [--hits N] [--latency-runs N]`

#![allow(clippy::unwrap_used)]

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use junction::capabilities::http::ClientOptions;
use junction::capabilities::proxy::ProxySetting;
use junction::credentials::Secret;
use junction::vault::{CredentialRef, KvVersion, StoreAuth, StoreSettings};
use junction_tests::bench_arg as arg;
use junction_tests::inprocess::InProcess;
use junction_tests::service::Client;
use junction_tests::vault::{KV_V1_MOUNT, VaultServer};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const STORE: &str = "corp";
const SECRET_PATH: &str = "bench/api";
const API_KEY: &str = "k-7f3a9c1e5b2d4f60";

/// A local API: `GET /check` answers 200 with the right `X-API-Key`, else 401; counts both.
struct KeyedApi {
    base_url: String,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn keyed_api() -> KeyedApi {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let (ok, bad) = (accepted.clone(), refused.clone());
    let app = axum::Router::new().route(
        "/check",
        get(move |headers: HeaderMap| {
            let (ok, bad) = (ok.clone(), bad.clone());
            async move {
                if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY) {
                    ok.fetch_add(1, Ordering::Relaxed);
                    (StatusCode::OK, "ok")
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    (StatusCode::UNAUTHORIZED, "bad key")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    KeyedApi {
        base_url,
        accepted,
        refused,
        _stop: junction_tests::serve_until_dropped(listener, app),
    }
}

/// One invocation of `fetch /check`; its latency. Panics unless the API answered 200.
async fn invoke(client: &reqwest::Client, url: &str, token: &str) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({"action": "fetch", "input": {"url": "/check"}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let elapsed = started.elapsed();
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(body["output"]["status"], 200, "{body}");
    elapsed
}

/// `n` invocations with `concurrency` in flight; their latencies, sorted.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: u64,
    concurrency: u64,
) -> Vec<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token, next) = (
                client.clone(),
                url.to_owned(),
                token.to_owned(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    latencies.push(invoke(&client, &url, &token).await);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n as usize);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    all
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `junction_credential_store_reads_total` as `/metrics` shows it.
async fn scraped_reads(client: &reqwest::Client, base: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("junction_credential_store_reads_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, as a smaller check (a debug build, beside other tests) that the path works.
    let benching = std::env::args().any(|a| a == "--bench");
    let invocations = arg("--invocations", if benching { 10_000 } else { 200 });
    let concurrency = arg("--concurrency", 32).max(1);
    let hits = arg("--hits", if benching { 200_000 } else { 2_000 }).max(100);
    let latency_runs = arg("--latency-runs", if benching { 2_000 } else { 50 }).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let vault = VaultServer::start().await;
        vault.put_v1(SECRET_PATH, json!({"api_key": API_KEY})).await;
        let api = keyed_api().await;
        let store = StoreSettings {
            name: STORE.to_owned(),
            address: vault.address().parse().unwrap(),
            auth: StoreAuth::Token(Secret::new(vault.root_token())),
            mount: KV_V1_MOUNT.to_owned(),
            kv_version: KvVersion::V1,
            namespace: None,
            timeout: Duration::from_secs(5),
            client: ClientOptions {
                proxy: ProxySetting::Direct,
                ..ClientOptions::new(Duration::from_secs(2), junction_tests::loopback_egress())
            },
            tenants: junction::vault::StoreTenants::All,
            path_prefix: None,
        };
        let service = InProcess::start_with_stores(
            "vault",
            &[junction_tests::components::PROBE],
            vec![store],
        )
        .await;
        let admin = Client::new(&service.url(), Some(&service.token));
        let reference = CredentialRef {
            store: STORE.to_owned(),
            path: SECRET_PATH.to_owned(),
            key: "api_key".to_owned(),
        };
        let mut ids = Vec::new();
        for (name, api_key) in [
            ("from-vault", json!(reference)),
            ("stored", json!(API_KEY)),
        ] {
            let created = admin
                .post(
                    "/v1/connections",
                    json!({"connector": "probe", "name": name, "auth": "header-key",
                        "fields": {"base_url": api.base_url, "api_key": api_key}}),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.text);
            ids.push(created.json()["id"].as_str().unwrap().to_owned());
        }
        let url = |id: &str| format!("{}/v1/connections/{id}/invocations", service.url());
        let (vault_url, stored_url) = (url(&ids[0]), url(&ids[1]));
        let vault_path = format!("{KV_V1_MOUNT}/{SECRET_PATH}");
        assert_eq!(vault.reads(&vault_path), 1, "the reference is resolved on creation");

        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(concurrency as usize)
            .build()
            .unwrap();

        // 1. Many invocations of the one connection: one vault read in all.
        let started = Instant::now();
        let all = load(&client, &vault_url, &service.token, invocations, concurrency).await;
        let wall = started.elapsed();
        assert_eq!(all.len() as u64, invocations);
        let vault_reads = vault.reads(&vault_path);
        let counted_reads = service.service.vaults.reads();
        let scraped = scraped_reads(&client, &service.url()).await;
        let accepted = api.accepted.load(Ordering::Relaxed);
        let refused = api.refused.load(Ordering::Relaxed);

        // 2. A cache hit: `resolve` on the hot entry, in batches (p50/p99 of batch means).
        let vaults = service.service.vaults.clone();
        let batch = 1_000.min(hits / 100).max(1);
        let batches = hits.div_ceil(batch);
        for _ in 0..batch * 10 {
            black_box(vaults.resolve(&reference).await.unwrap());
        }
        let mut per_hit = Vec::with_capacity(batches as usize);
        let started = Instant::now();
        for _ in 0..batches {
            let t = Instant::now();
            for _ in 0..batch {
                let resolved = vaults.resolve(black_box(&reference)).await.unwrap();
                black_box(resolved);
            }
            per_hit.push(t.elapsed() / batch as u32);
        }
        let hits_total = batches * batch;
        let mean_hit = started.elapsed() / hits_total as u32;
        per_hit.sort();
        // The same on every worker thread at once (the cache shared by concurrent
        // invocations).
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let started = Instant::now();
        let tasks: Vec<_> = (0..threads)
            .map(|_| {
                let (vaults, reference) = (vaults.clone(), reference.clone());
                let n = hits_total / threads;
                tokio::spawn(async move {
                    for _ in 0..n {
                        black_box(vaults.resolve(&reference).await.unwrap());
                    }
                    n
                })
            })
            .collect();
        let mut parallel_hits = 0;
        for t in tasks {
            parallel_hits += t.await.unwrap();
        }
        let parallel = started.elapsed();
        let value = vaults.resolve(&reference).await.unwrap();
        assert_eq!(value.value.expose(), API_KEY);

        // 3. One invocation at a time, alternating a plain stored key and the vault
        // reference: the difference of the medians is what resolving adds.
        let mut stored_lat = Vec::new();
        let mut vault_lat = Vec::new();
        for _ in 0..latency_runs / 10 + 1 {
            invoke(&client, &stored_url, &service.token).await;
            invoke(&client, &vault_url, &service.token).await;
        }
        for _ in 0..latency_runs {
            stored_lat.push(invoke(&client, &stored_url, &service.token).await);
            vault_lat.push(invoke(&client, &vault_url, &service.token).await);
        }
        stored_lat.sort();
        vault_lat.sort();

        let final_vault_reads = vault.reads(&vault_path);
        let final_counted = service.service.vaults.reads();
        let final_refused = api.refused.load(Ordering::Relaxed);

        println!();
        println!("credential assets: one connection, API key in RustyVault (KV v1, token auth)");
        println!(
            "  {invocations} invocations, {concurrency} in flight: {:.2?} ({:.0}/s)",
            wall,
            invocations as f64 / wall.as_secs_f64()
        );
        println!(
            "    latency   p50 {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs",
            us(pct(&all, 0.5)),
            us(pct(&all, 0.99)),
            us(all[all.len() - 1])
        );
        println!(
            "    API answers: {accepted} accepted (right key), {refused} refused"
        );
        println!(
            "    vault reads: {vault_reads} (RustyVault's log), {counted_reads} (service counter), {} (/metrics)",
            scraped.map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
        println!("  cache hit (`resolve` of the hot entry), {hits_total} calls in batches of {batch}:");
        println!(
            "    mean {:>7.3} µs   p50 {:>7.3} µs   p99 {:>7.3} µs   ({:.0} ns mean)",
            us(mean_hit),
            us(pct(&per_hit, 0.5)),
            us(pct(&per_hit, 0.99)),
            mean_hit.as_secs_f64() * 1e9
        );
        println!(
            "    on {threads} threads at once: {parallel_hits} hits in {:.2?} ({:.2} µs per hit per thread, {:.2} M hits/s)",
            parallel,
            us(parallel) * threads as f64 / parallel_hits as f64,
            parallel_hits as f64 / parallel.as_secs_f64() / 1e6
        );
        println!("  one invocation at a time ({latency_runs} each, alternating):");
        println!(
            "    stored secret     p50 {:>9.1} µs   p99 {:>9.1} µs",
            us(pct(&stored_lat, 0.5)),
            us(pct(&stored_lat, 0.99))
        );
        println!(
            "    vault reference   p50 {:>9.1} µs   p99 {:>9.1} µs",
            us(pct(&vault_lat, 0.5)),
            us(pct(&vault_lat, 0.99))
        );
        println!(
            "    difference of p50s: {:+.1} µs (one cache hit: {:.2} µs)",
            us(pct(&vault_lat, 0.5)) - us(pct(&stored_lat, 0.5)),
            us(mean_hit)
        );
        println!(
            "  vault reads over the whole run: {final_vault_reads} (log), {final_counted} (counter)"
        );

        assert_eq!(accepted, invocations, "every invocation reached the API with the key");
        assert_eq!(
            api.accepted.load(Ordering::Relaxed),
            invocations + 2 * (latency_runs + latency_runs / 10 + 1)
        );
        assert_eq!(refused + final_refused, 0, "no invocation sent a wrong key");
        assert_eq!(vault_reads, 1, "one vault read for {invocations} invocations");
        assert_eq!(counted_reads, 1, "the service counted one read");
        assert_eq!(scraped, Some(1), "/metrics shows one read");
        assert_eq!(final_vault_reads, 1, "no read for the cache hits either");
        assert_eq!(final_counted, 1);
    });
}
