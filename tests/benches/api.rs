//! End-to-end invoke over the HTTP API against a plain client, in one run.
//!
//! A local API answers `GET /ping`. Three loads of the same concurrency and duration:
//! - direct: keep-alive hyper clients call the local API;
//! - through a bare forwarding proxy: a hyper server that reads the request, makes the same
//!   call to the local API with a pooled hyper client and returns the body: the least any
//!   service that forwards a call must do on this machine;
//! - through Junction: the same clients call `POST /v1/connections/{id}/invocations` on the
//!   service (the `http` connector's `request` action, which makes that same call).
//!
//! Then one client, sequential: Junction's added latency over the forwarding proxy.
//!
//! The service runs in this process exactly as `junction serve` builds it: store on disk
//! (WAL, synchronous commits, invocation records by group commit), token authentication,
//! permission checks, input validation, a fresh instance per invocation, metrics.
//!
//! `cargo bench -p junction-tests --bench api -- [--seconds N] [--concurrency N] [--only-junction]`
//!
//! `ratio_to_forwarding_proxy` is Junction's throughput as a share of the proxy's.

#![allow(clippy::unwrap_used)]

use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use junction_tests::bench_arg as arg;

/// The bare forwarding proxy: every request, whatever its path, becomes `GET /ping` on
/// `upstream` through one pooled client; the upstream's body is the answer.
async fn forwarding_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let target: http::Uri = format!("http://{upstream}/ping").parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let client = client.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        let target = target.clone();
                        async move {
                            // The request is read whole, as a service that looks at it must.
                            let _ = request.into_body().collect().await?.to_bytes();
                            let forwarded = http::Request::get(target)
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            let response = client.request(forwarded).await.unwrap();
                            let (parts, body) = response.into_parts();
                            let body = body.collect().await?.to_bytes();
                            Ok::<_, hyper::Error>(http::Response::from_parts(
                                parts,
                                Full::new(body),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

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

        let proxy = forwarding_proxy(upstream).await;
        let proxied = retarget(&through, proxy);

        // Warm up every path, then measure each in turn. `--only-junction` skips the
        // direct and proxied loads (to profile the service alone).
        let only_junction = std::env::args().any(|a| a == "--only-junction");
        let skipped = || Load {
            per_second: f64::NAN,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        };
        if !only_junction {
            load(upstream, direct.clone(), concurrency, 1).await;
            load(proxy, proxied.clone(), concurrency, 1).await;
        }
        load(junction, through.clone(), concurrency, 1).await;
        let (d, p) = if only_junction {
            (skipped(), skipped())
        } else {
            (
                load(upstream, direct, concurrency, seconds).await,
                load(proxy, proxied.clone(), concurrency, seconds).await,
            )
        };
        let j = load(junction, through.clone(), concurrency, seconds).await;
        println!("{concurrency} keep-alive clients, {seconds} s each:");
        let line = |name: &str, l: &Load| {
            println!(
                "{name:<28}{:>9.0} req/s   p50 {:>8.1?}  p99 {:>8.1?}",
                l.per_second, l.p50, l.p99
            );
        };
        line("direct to the local API", &d);
        line("bare forwarding proxy", &p);
        line("invoke through Junction", &j);
        println!(
            "ratio_to_forwarding_proxy   {:>8.1}%",
            100.0 * j.per_second / p.per_second
        );
        println!(
            "ratio_to_direct             {:>8.1}%",
            100.0 * j.per_second / d.per_second
        );
        if only_junction {
            return;
        }
        // One client, one request after the other: what Junction adds to a call.
        let p1 = load(proxy, proxied, 1, seconds).await;
        let j1 = load(junction, through, 1, seconds).await;
        println!("1 client, sequential, {seconds} s each:");
        line("bare forwarding proxy", &p1);
        line("invoke through Junction", &j1);
        println!(
            "added_latency               p50 {:>8.1?}  p99 {:>8.1?}",
            j1.p50.saturating_sub(p1.p50),
            j1.p99.saturating_sub(p1.p99)
        );
    });
}

/// `request` sent to another address (its body, method and headers kept).
fn retarget(
    request: &http::Request<Full<Bytes>>,
    to: std::net::SocketAddr,
) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::new(request.body().clone());
    *r.method_mut() = request.method().clone();
    *r.headers_mut() = request.headers().clone();
    r.headers_mut()
        .insert("host", to.to_string().parse().unwrap());
    let path = request.uri().path_and_query().unwrap().as_str();
    *r.uri_mut() = format!("http://{to}{path}").parse().unwrap();
    r
}
