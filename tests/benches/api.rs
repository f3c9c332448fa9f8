//! End-to-end invoke over the HTTP API against a plain client, in one run.
//!
//! A local API answers `GET /ping`. Two loads of the same concurrency and duration:
//! - direct: keep-alive hyper clients call the local API;
//! - through Junction: the same clients call `POST /v1/connections/{id}/invocations` on the
//!   service (the `http` connector's `request` action, which makes that same call).
//!
//! The service runs in this process exactly as `junction serve` builds it: store on disk
//! (WAL, synchronous commits, invocation records by group commit), token authentication,
//! permission checks, input validation, a fresh instance per invocation, metrics.
//!
//! `cargo bench -p junction-tests --bench api -- [--seconds N] [--concurrency N] [--only-junction]`

#![allow(clippy::unwrap_used)]

use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use junction_tests::bench_arg as arg;

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One keep-alive connection sending the same request until `stop`; the latencies.
async fn client(
    addr: std::net::SocketAddr,
    request: http::Request<Full<Bytes>>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut r = http::Request::new(request.body().clone());
        *r.method_mut() = request.method().clone();
        *r.uri_mut() = request.uri().clone();
        *r.headers_mut() = request.headers().clone();
        let started = Instant::now();
        sender.ready().await.unwrap();
        let response = sender.send_request(r).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(status.is_success(), "{status}: {body:?}");
        latencies.push(started.elapsed());
    }
    latencies
}

struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    addr: std::net::SocketAddr,
    request: http::Request<Full<Bytes>>,
    concurrency: u64,
    seconds: u64,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(client(addr, request.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Load {
        per_second: all.len() as f64 / seconds as f64,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a short check that the path works.
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds = arg("--seconds", if benching { 5 } else { 1 });
    let concurrency = arg("--concurrency", 32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let upstream = serve(axum::Router::new().route("/ping", get(|| async { "pong" }))).await;

        let service =
            junction_tests::inprocess::InProcess::start("api", &[junction_tests::components::HTTP])
                .await;
        let junction = service.addr;
        let token = service.token.clone();

        let api = junction_tests::service::Client::new(&format!("http://{junction}"), Some(&token));
        let created = api
            .post(
                "/v1/connections",
                serde_json::json!({
                    "connector": "http", "name": "bench", "auth": "none",
                    "fields": {"base_url": format!("http://{upstream}")}
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json()["id"].as_str().unwrap().to_owned();

        let direct = http::Request::builder()
            .uri(format!("http://{upstream}/ping"))
            .header("host", upstream.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let body = serde_json::json!({"action": "request", "input": {"path": "/ping"}}).to_string();
        let through = http::Request::builder()
            .method("POST")
            .uri(format!("http://{junction}/v1/connections/{id}/invocations"))
            .header("host", junction.to_string())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();

        // Warm up both paths, then measure each in turn. `--only-junction` skips the direct
        // load (to profile the service alone).
        let only_junction = std::env::args().any(|a| a == "--only-junction");
        if !only_junction {
            load(upstream, direct.clone(), concurrency, 1).await;
        }
        load(junction, through.clone(), concurrency, 1).await;
        let d = if only_junction {
            Load {
                per_second: f64::NAN,
                p50: Duration::ZERO,
                p99: Duration::ZERO,
            }
        } else {
            load(upstream, direct, concurrency, seconds).await
        };
        let j = load(junction, through, concurrency, seconds).await;
        println!("{concurrency} keep-alive clients, {seconds} s each:");
        println!(
            "direct to the local API     {:>9.0} req/s   p50 {:>8.1?}  p99 {:>8.1?}",
            d.per_second, d.p50, d.p99
        );
        println!(
            "invoke through Junction     {:>9.0} req/s   p50 {:>8.1?}  p99 {:>8.1?}",
            j.per_second, j.p50, j.p99
        );
        println!(
            "ratio                       {:>8.1}%",
            100.0 * j.per_second / d.per_second
        );
    });
}
