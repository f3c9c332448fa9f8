//! Misbehaving guests: each gets the right typed error, quickly, and the host keeps serving.

use super::{code, host_still_serves, limits};
use junction::runtime::{ConnectorError, InvokeError, LimitExceeded, Limits};
use junction_tests::api::Api;
use junction_tests::components::PROBE;
use junction_tests::{connection, connector, runtime_with};
use serde_json::json;
use std::time::{Duration, Instant};

async fn probe_call(
    limits: Limits,
    fields: serde_json::Value,
    action: &str,
    input: &str,
) -> Result<String, InvokeError> {
    let probe = connector(PROBE).await;
    let conn = connection(&probe, json!({"auth": "none", "fields": fields}));
    runtime_with(limits)
        .execute(&probe, conn, action, input)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_cpu_limit() {
    let started = Instant::now();
    let limits = Limits {
        cpu_time: Duration::from_millis(200),
        ..limits()
    };
    let e = probe_call(limits, json!({}), "spin", "{}")
        .await
        .unwrap_err();
    match &e {
        InvokeError::LimitExceeded { connector, limit } => {
            assert_eq!(connector.to_string(), "probe@0.1.0");
            assert_eq!(*limit, LimitExceeded::CpuTime(Duration::from_millis(200)));
        }
        other => panic!("expected the CPU limit, got {other}"),
    }
    assert!(e.to_string().contains("probe@0.1.0"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped quickly"
    );
    host_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_spent_in_host_calls_counts_against_the_wall_clock_limit_only() {
    let api = Api::start("unused").await;
    // The request takes 1.5 s in the host: well over the CPU limit, which must not fire,
    // and over the wall-clock limit, which must.
    let tight = Limits {
        cpu_time: Duration::from_millis(500),
        wall_time: Duration::from_millis(1000),
        ..limits()
    };
    let started = Instant::now();
    let e = probe_call(
        tight,
        json!({"base_url": api.base_url}),
        "fetch",
        r#"{"url": "/slow/1500"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "limit_wall_time", "{e}");
    assert!(started.elapsed() < Duration::from_millis(1400));

    // With a wall-clock limit to spare, the same slow call succeeds: its host time does not
    // count as CPU time.
    let roomy = Limits {
        cpu_time: Duration::from_millis(500),
        wall_time: Duration::from_secs(10),
        ..limits()
    };
    let out = probe_call(
        roomy,
        json!({"base_url": api.base_url}),
        "fetch",
        r#"{"url": "/slow/800"}"#,
    )
    .await
    .unwrap();
    assert!(out.contains("finally"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let started = Instant::now();
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..limits()
    };
    let e = probe_call(limits, json!({}), "allocate", "{}")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, InvokeError::LimitExceeded { limit: LimitExceeded::Memory(b), .. } if *b == 32 << 20),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "probe@0.1.0 was stopped: it exceeded the memory limit of 32 MiB"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    host_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_only_that_invocation_with_its_message() {
    let e = probe_call(limits(), json!({}), "panic", "{}")
        .await
        .unwrap_err();
    let InvokeError::Trap { connector, message } = &e else {
        panic!("expected a trap, got {e}");
    };
    assert_eq!(connector.to_string(), "probe@0.1.0");
    assert!(
        message.contains("the probe panicked on purpose"),
        "{message}"
    );
    host_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_host_outside_the_allow_list_is_denied_before_anything_is_sent() {
    let allowed = Api::start("t").await;
    let forbidden = Api::start("t").await;
    let input = json!({"url": format!("{}/ping", forbidden.base_url)}).to_string();
    let e = probe_call(
        limits(),
        json!({"base_url": allowed.base_url}),
        "fetch",
        &input,
    )
    .await
    .unwrap_err();
    match &e {
        InvokeError::Connector {
            error: ConnectorError::Denied { message },
            ..
        } => assert!(
            message.contains("not among this connection's allowed hosts"),
            "{message}"
        ),
        other => panic!("expected a denial, got {other}"),
    }
    assert!(
        forbidden.seen().is_empty(),
        "nothing may reach the forbidden host"
    );
    assert!(allowed.seen().is_empty());
    host_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_cannot_read_a_file() {
    let out = probe_call(limits(), json!({}), "read-file", "{}")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["succeeded"], false, "{out}");
    assert!(
        !out.contains("root:"),
        "no file content may come back: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sees_no_environment_variable() {
    let out = probe_call(limits(), json!({}), "read-env", "{}")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["succeeded"], false, "{out}");
    assert!(
        v["detail"].as_str().unwrap().starts_with("0 variables"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_cannot_open_a_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(2), listener.accept())
            .await
            .is_ok()
    });
    let input = json!({ "address": address }).to_string();
    let out = probe_call(limits(), json!({}), "open-socket", &input)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["succeeded"], false, "{out}");
    assert!(
        !accepted.await.unwrap(),
        "no connection may reach the listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_larger_than_the_cap_fails_with_the_size_limit() {
    let api = Api::start("t").await;
    let limits = Limits {
        response_bytes: 64 << 10,
        ..limits()
    };
    for path in ["/big/200000", "/big-chunked/200000"] {
        let input = json!({ "url": path }).to_string();
        let e = probe_call(
            limits.clone(),
            json!({"base_url": api.base_url}),
            "fetch",
            &input,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                &e,
                InvokeError::LimitExceeded {
                    limit: LimitExceeded::ResponseSize(65536),
                    ..
                }
            ),
            "{path}: {e}"
        );
    }
    // Just under the cap is fine.
    let input = json!({ "url": "/big/65536" }).to_string();
    let out = probe_call(limits, json!({"base_url": api.base_url}), "fetch", &input)
        .await
        .unwrap();
    assert!(out.contains("\"body_len\":65536"), "{out}");
    host_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_per_invocation_are_capped() {
    let api = Api::start("t").await;
    let limits = Limits {
        requests: 3,
        ..limits()
    };
    let input = json!({"url": "/ping", "times": 10}).to_string();
    let e = probe_call(limits, json!({"base_url": api.base_url}), "fetch", &input)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "limit_requests", "{e}");
    assert_eq!(api.seen().len(), 3, "the fourth request is never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_output_and_logs_reach_the_host_log_tagged_with_the_connector() {
    let marker = "log-marker-6f1c";
    let input = json!({"lines": 2, "text": marker}).to_string();
    probe_call(limits(), json!({}), "print", &input)
        .await
        .unwrap();
    let logs = junction_tests::logs::captured();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(marker)).collect();
    assert_eq!(
        lines.len(),
        4,
        "two log lines, one stdout, one stderr: {lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("connector=probe@0.1.0")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_guest_is_cut_at_the_log_budget() {
    let marker = "budget-marker-91aa";
    let limits = Limits {
        log_bytes: 100,
        ..limits()
    };
    let input = json!({"lines": 50, "text": marker}).to_string();
    probe_call(limits, json!({}), "print", &input)
        .await
        .unwrap();
    let logs = junction_tests::logs::captured();
    let kept = logs
        .lines()
        .filter(|l| l.contains(marker) && !l.contains("stream="))
        .count();
    assert!((1..50).contains(&kept), "kept {kept} of 50 lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_in_parallel_and_one_failure_does_not_affect_the_others() {
    let mut tasks = Vec::new();
    for i in 0..24 {
        tasks.push(tokio::spawn(async move {
            let action = if i % 4 == 0 { "panic" } else { "echo" };
            let input = json!({"value": i}).to_string();
            (i, probe_call(limits(), json!({}), action, &input).await)
        }));
    }
    for t in tasks {
        let (i, result) = t.await.unwrap();
        if i % 4 == 0 {
            assert_eq!(code(&result.unwrap_err()), "trap");
        } else {
            assert_eq!(result.unwrap(), i.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_timeout_error_the_connector_sees() {
    let api = Api::start("t").await;
    let limits = Limits {
        read_timeout: Duration::from_millis(300),
        ..limits()
    };
    let started = Instant::now();
    let e = probe_call(
        limits,
        json!({"base_url": api.base_url}),
        "fetch",
        r#"{"url": "/slow/3000"}"#,
    )
    .await
    .unwrap_err();
    match &e {
        InvokeError::Connector {
            error: ConnectorError::Timeout { message },
            ..
        } => assert!(message.contains("did not answer within 300ms"), "{message}"),
        other => panic!("expected an upstream timeout, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_guest_yields_so_the_wall_clock_limit_fires_on_time() {
    let limits = Limits {
        cpu_time: Duration::from_secs(60),
        wall_time: Duration::from_millis(300),
        ..limits()
    };
    // Loaded (compiled) first: only the invocation is timed.
    connector(PROBE).await;
    let started = Instant::now();
    let e = probe_call(limits, json!({}), "spin", "{}")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "limit_wall_time", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    host_still_serves().await;
}

/// Eight guests computing at once on one executor thread take turns (each yields at every
/// epoch tick), so each waits for the others far longer than it computes. Only its own
/// computing counts against its CPU limit: with a limit of four times what one needs,
/// they all finish.
#[test]
fn time_parked_waiting_for_the_executor_is_not_charged_as_cpu_time() {
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    executor.block_on(async {
        let probe = connector(PROBE).await;
        let runtime = runtime_with(Limits {
            cpu_time: Duration::from_millis(600),
            ..limits()
        });
        let burn = |iterations: u64| {
            let runtime = runtime.clone();
            let probe = probe.clone();
            async move {
                let conn = connection(&probe, json!({"auth": "none"}));
                let input = json!({"iterations": iterations}).to_string();
                runtime.execute(&probe, conn, "burn", &input).await
            }
        };
        // About 150 ms of computing, measured here, alone.
        let mut iterations: u64 = 1 << 20;
        let alone = loop {
            let started = Instant::now();
            burn(iterations).await.unwrap();
            let took = started.elapsed();
            if took >= Duration::from_millis(40) {
                iterations = (iterations as f64 * 0.150 / took.as_secs_f64()) as u64;
                break took;
            }
            iterations *= 4;
        };
        let started = Instant::now();
        let results = futures_util::future::join_all((0..8).map(|_| burn(iterations))).await;
        let together = started.elapsed();
        for r in &results {
            assert!(r.is_ok(), "{r:?} (alone {alone:?}, together {together:?})");
        }
        // The guests did wait for each other: the charge would have exceeded the limit.
        assert!(
            together > Duration::from_millis(600),
            "{together:?}: the guests did not contend"
        );
    });
}
