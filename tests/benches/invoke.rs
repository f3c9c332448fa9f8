//! Isolated invocation: a fresh store and instance from a pre-instantiated component, then
//! its `note` action, which does no I/O and makes one host call (`connection.field`).
//! Measured for `minimal` (a connector as lean as the SDK makes one) and for `probe` (which
//! also imports WASI filesystem and sockets, so it can try to misuse them).
//! Compared with the same logic called natively: decode the input, one call through a
//! trait object for the field, encode the output.
//!
//! `cargo bench -p junction-tests --bench invoke`; add `-- --iterations N` to change N, and
//! `--component minimal|probe` to measure one component only, and `--max-instances N` for a
//! smaller instance pool (callgrind cannot reserve the default pool's address space).

#![allow(clippy::unwrap_used)]

use junction::runtime::{EngineOptions, Limits, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Empty {}

#[derive(Serialize)]
struct NoteOutput {
    note: Option<String>,
}

trait Fields {
    fn field(&self, name: &str) -> Option<String>;
}

impl Fields for BTreeMap<String, String> {
    fn field(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

fn native_note(input: &str, fields: &dyn Fields) -> String {
    let _: Empty = serde_json::from_str(input).unwrap();
    serde_json::to_string(&NoteOutput {
        note: fields.field("note"),
    })
    .unwrap()
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} p50 {:>9.2} µs   p99 {:>9.2} µs   mean {:>9.2} µs   ({} runs)",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        samples.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: usize = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let max_instances: u32 = args
        .iter()
        .position(|a| a == "--max-instances")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(EngineOptions::default().max_instances);
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--component")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = EngineOptions {
            max_instances,
            ..EngineOptions::default()
        };
        let runtime = Runtime::new(
            options,
            Limits::default(),
            junction_tests::loopback_egress(),
        )
        .unwrap();
        let expected = r#"{"note":"benchmark"}"#;
        let mut wasm = Vec::new();
        for (name, path) in [
            ("minimal", junction_tests::components::MINIMAL),
            ("probe", junction_tests::components::PROBE),
        ] {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let connector = runtime.load_file(std::path::Path::new(path)).await.unwrap();
            let connection = junction_tests::connection(
                &connector,
                serde_json::json!({"auth": "none", "fields": {"note": "benchmark"}}),
            );
            assert_eq!(
                runtime
                    .execute(&connector, connection.clone(), "note", "{}")
                    .await
                    .unwrap(),
                expected
            );
            let mut samples = Vec::with_capacity(iterations);
            for i in 0..iterations + iterations / 10 {
                let start = Instant::now();
                let out = runtime
                    .execute(&connector, connection.clone(), "note", "{}")
                    .await
                    .unwrap();
                let elapsed = start.elapsed();
                black_box(out);
                if i >= iterations / 10 {
                    samples.push(elapsed);
                }
            }
            wasm.push((name, samples));
        }

        let fields: BTreeMap<String, String> = [("note".to_owned(), "benchmark".to_owned())].into();
        assert_eq!(native_note("{}", &fields), expected);
        let mut native = Vec::with_capacity(iterations);
        for i in 0..iterations + iterations / 10 {
            let start = Instant::now();
            black_box(native_note(black_box("{}"), &fields));
            let elapsed = start.elapsed();
            if i >= iterations / 10 {
                native.push(elapsed);
            }
        }
        println!("isolated invocation (fresh instance + `note` action with one host call)");
        for (name, samples) in wasm {
            report(&format!("wasm, fresh {name} instance"), samples);
        }
        report("native, same logic", native);
    });
}
