//! Loading published connector versions: what precompiled artifacts save.
//!
//! - cold load: `Runtime::load_cached` with an empty artifact directory, i.e. compile the
//!   component, validate it (interface, imports, exports, the manifest called in a sandbox)
//!   and write its artifact;
//! - warm load: `load_cached` again, which reads the artifact and validates the same way;
//! - a restart: every component that loads (first-party plugins and test components) from
//!   their artifacts, against compiling them all, one after the other and all at once.
//!
//! One engine (`Runtime::new` with the default options) for everything, as in the service.
//!
//! `cargo bench -p junction-tests --bench catalog -- [--cold-runs N] [--warm-runs N]
//! [--restarts N]`

#![allow(clippy::unwrap_used)]

use junction::runtime::{ArtifactCache, EngineOptions, Limits, LoadOrigin, Runtime};
use junction_tests::bench_arg as arg;
use junction_tests::components;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every component that loads: the plugins, then the test components.
const LOADABLE: &[(&str, &str)] = &[
    ("github", components::GITHUB),
    ("http", components::HTTP),
    ("versioned 1.0.0", components::VERSIONED_1),
    ("versioned 2.0.0", components::VERSIONED_2),
    ("versioned 3.0.0-beta.1", components::VERSIONED_3),
    ("probe", components::PROBE),
    ("minimal", components::MINIMAL),
];

/// The components measured one by one: the largest plugin and a small connector (the three
/// versions of `versioned` are the same code and load in the same time).
const MEASURED: &[&str] = &["github", "versioned 1.0.0"];

struct Component {
    label: &'static str,
    path: PathBuf,
    digest: String,
    size: u64,
}

fn component(label: &'static str, path: &str) -> Component {
    let bytes = std::fs::read(path).unwrap();
    Component {
        label,
        path: PathBuf::from(path),
        digest: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        size: bytes.len() as u64,
    }
}

/// Fresh, empty directories under the system's temporary directory, removed on drop.
struct Scratch {
    root: PathBuf,
    next: u32,
}

impl Scratch {
    fn new() -> Self {
        let root =
            std::env::temp_dir().join(format!("junction-bench-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self { root, next: 0 }
    }
    fn empty_dir(&mut self) -> PathBuf {
        self.next += 1;
        let dir = self.root.join(self.next.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn load(
    runtime: &Runtime,
    c: &Component,
    cache: &ArtifactCache,
    expected: LoadOrigin,
) -> Duration {
    let started = Instant::now();
    let (connector, origin) = runtime
        .load_cached(&c.path, &c.digest, cache, c.label)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.label));
    let elapsed = started.elapsed();
    assert_eq!(origin, expected, "{}", c.label);
    std::hint::black_box(connector);
    elapsed
}

/// Loads every component, one after the other or all at once; the total time.
async fn restart(
    runtime: &Runtime,
    all: &[&Component],
    cache: &ArtifactCache,
    expected: LoadOrigin,
    concurrent: bool,
) -> Duration {
    let started = Instant::now();
    if concurrent {
        futures_util::future::join_all(all.iter().map(|c| load(runtime, c, cache, expected))).await;
    } else {
        for c in all {
            load(runtime, c, cache, expected).await;
        }
    }
    started.elapsed()
}

struct Stats {
    median: Duration,
    p95: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Stats {
        median: at(0.5),
        p95: at(0.95),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn artifact_size(cache: &ArtifactCache, c: &Component) -> u64 {
    std::fs::metadata(cache.artifact_path(&c.digest))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a smaller check that the paths work (one small component, fewer runs).
    let benching = std::env::args().any(|a| a == "--bench");
    let cold_runs = arg("--cold-runs", if benching { 5 } else { 1 }).max(1) as usize;
    let warm_runs = arg("--warm-runs", if benching { 20 } else { 2 }).max(1) as usize;
    let restarts = arg("--restarts", if benching { 10 } else { 1 }).max(1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let runtime = Runtime::new(EngineOptions::default(), Limits::default(), junction_tests::loopback_egress()).unwrap();
        let all: Vec<Component> = LOADABLE
            .iter()
            .map(|(label, path)| component(label, path))
            .collect();
        let measured: Vec<&Component> = all
            .iter()
            .filter(|c| MEASURED.contains(&c.label))
            .filter(|c| benching || c.label.starts_with("versioned"))
            .collect();
        let restarted: Vec<&Component> = all
            .iter()
            .filter(|c| benching || c.label.starts_with("versioned"))
            .collect();
        let mut scratch = Scratch::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("loading connector versions: one engine (default options), {cores} cores");
        println!(
            "cold = load_cached with an empty artifact directory: compile + validate + write the artifact"
        );
        println!("warm = load_cached again: read the artifact + validate");
        println!();
        println!(
            "{:<18} {:>8} {:>9}   {:>11} {:>11}   {:>11} {:>11}   {:>7}",
            "component",
            "wasm KiB",
            "cwasm KiB",
            "cold p50 ms",
            "cold p95 ms",
            "warm p50 ms",
            "warm p95 ms",
            "speedup"
        );
        for c in &measured {
            let mut cold = Vec::with_capacity(cold_runs);
            let mut cache = None;
            for _ in 0..cold_runs {
                let fresh = runtime.artifact_cache(&scratch.empty_dir());
                cold.push(load(&runtime, c, &fresh, LoadOrigin::Compiled).await);
                cache = Some(fresh);
            }
            let cache = cache.unwrap();
            let mut warm = Vec::with_capacity(warm_runs);
            for _ in 0..warm_runs {
                warm.push(load(&runtime, c, &cache, LoadOrigin::Precompiled).await);
            }
            let (cold, warm) = (stats(cold), stats(warm));
            println!(
                "{:<18} {:>8.0} {:>9.0}   {:>11.1} {:>11.1}   {:>11.2} {:>11.2}   {:>6.0}x",
                c.label,
                c.size as f64 / 1024.0,
                artifact_size(&cache, c) as f64 / 1024.0,
                ms(cold.median),
                ms(cold.p95),
                ms(warm.median),
                ms(warm.p95),
                cold.median.as_secs_f64() / warm.median.as_secs_f64()
            );
        }
        println!("({cold_runs} cold and {warm_runs} warm runs each)");

        println!();
        println!(
            "restart: {} components ({}), total time",
            restarted.len(),
            restarted
                .iter()
                .map(|c| c.label)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "{:<22} {:>12} {:>15}   {:>7}",
            "", "compile ms", "artifacts ms", "speedup"
        );
        let modes: &[bool] = if benching { &[false, true] } else { &[true] };
        for &concurrent in modes {
            // Compiling everything is the slow part: once per mode. Then the restart from
            // the artifacts it wrote, `restarts` times (median).
            let cache = runtime.artifact_cache(&scratch.empty_dir());
            let compiled =
                restart(&runtime, &restarted, &cache, LoadOrigin::Compiled, concurrent).await;
            let mut mapped = Vec::with_capacity(restarts);
            for _ in 0..restarts {
                mapped.push(
                    restart(&runtime, &restarted, &cache, LoadOrigin::Precompiled, concurrent)
                        .await,
                );
            }
            let mapped = stats(mapped);
            println!(
                "{:<22} {:>12.1} {:>9.1} (p50)   {:>6.0}x",
                if concurrent {
                    "all at once"
                } else {
                    "one after the other"
                },
                ms(compiled),
                ms(mapped.median),
                compiled.as_secs_f64() / mapped.median.as_secs_f64()
            );
        }
        println!("(compiled once per row; restarted from the artifacts {restarts} times)");
    });
}
