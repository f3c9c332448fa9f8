//! The cost of the egress policy's check of resolved addresses. The check runs when a
//! connection is made (a pooled keep-alive connection is checked once, not per request),
//! so its cost is measured where it is paid:
//!
//! - `EgressPolicy::check` alone, on a global address and on an allowed loopback one, with
//!   the service's own listener registered (on another port, and on the same port behind an
//!   unspecified address, which costs a `bind` to tell whether an address is the machine's);
//! - resolving a destination (an address, and `localhost` through the system resolver)
//!   with and without the check;
//! - a whole TCP connection to a listener on loopback, with and without the check.
//!
//! `cargo bench -p junction-tests --bench egress -- [--iterations N]`

#![allow(clippy::unwrap_used)]

use junction::egress::{EgressPolicy, TcpConnector, resolve_checked};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<48} p50 {:>9.3} µs   p99 {:>9.3} µs   mean {:>9.3} µs",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
    );
}

/// The mean time of one call of `f`, over batches of `batch` calls, `runs` times.
fn batched(runs: u64, batch: u32, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..batch {
                f();
            }
            started.elapsed() / batch
        })
        .collect()
}

fn main() {
    let iterations = junction_tests::bench_arg("--iterations", 2000);
    let allow = vec![
        "10.20.0.0/16".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
        "[fd00::/8]:443".parse().unwrap(),
    ];
    let policy = EgressPolicy::new(allow.clone());
    policy.add_own_listener("127.0.0.1:7480".parse().unwrap());
    let global: SocketAddr = "140.82.112.3:443".parse().unwrap();
    let allowed: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    println!("egress check, {iterations} runs (each the mean of a batch)");
    report(
        "check: a global address",
        batched(iterations, 1000, || {
            black_box(policy.check(black_box(global))).ok();
        }),
    );
    report(
        "check: an allowed loopback address",
        batched(iterations, 1000, || {
            black_box(policy.check(black_box(allowed))).ok();
        }),
    );
    let everywhere = EgressPolicy::new(allow);
    everywhere.add_own_listener("0.0.0.0:8080".parse().unwrap());
    // On the listener's port, an address that is not loopback costs a `bind` to tell.
    let elsewhere: SocketAddr = "10.20.0.5:8080".parse().unwrap();
    report(
        "check: own listener on 0.0.0.0, another address",
        batched(iterations, 10, || {
            black_box(everywhere.check(black_box(elsewhere))).ok();
        }),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let open = EgressPolicy::unrestricted();
        for host in ["127.0.0.1", "localhost"] {
            for (label, p) in [("checked", &policy), ("unrestricted", &open)] {
                let mut samples = Vec::new();
                for _ in 0..iterations {
                    let started = Instant::now();
                    black_box(resolve_checked(p, host, 8080).await.unwrap());
                    samples.push(started.elapsed());
                }
                report(&format!("resolve {host}, {label}"), samples);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
            }
        });
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let checked = TcpConnector::new(Arc::new(policy), Duration::from_secs(5));
        let unchecked = TcpConnector::new(Arc::new(open), Duration::from_secs(5));
        for round in 0..2 {
            for (label, connector) in [("checked", &checked), ("unrestricted", &unchecked)] {
                let mut samples = Vec::new();
                for _ in 0..iterations {
                    let started = Instant::now();
                    drop(connector.connect(&uri).await.unwrap());
                    samples.push(started.elapsed());
                }
                if round == 1 {
                    report(&format!("TCP connect to loopback, {label}"), samples);
                }
            }
        }
    });
}
