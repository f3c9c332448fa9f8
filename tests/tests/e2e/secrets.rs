//! A secret given to a connection never enters guest memory, the logs or an error.

use super::limits;
use junction_tests::api::Api;
use junction_tests::components::PROBE;
use junction_tests::{connection, connector, runtime_with};
use serde_json::json;

/// The probe's rolling hash, computed natively.
fn needle(text: &str) -> (usize, u64) {
    const BASE: u64 = 1_099_511_628_211;
    let hash = text
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(BASE).wrapping_add(b as u64));
    (text.len(), hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_given_to_a_connection_never_enters_guest_memory() {
    let secret = "ghp_S3cr3tNeverInGuestMemory0123456789";
    let note = "a-note-that-is-not-secret-5e2f";
    let api = Api::start("t").await;
    let probe = connector(PROBE).await;
    let conn = connection(
        &probe,
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": secret, "note": note}}),
    );
    let input = json!({"path": "/ping", "needles": [needle(secret), needle(note)]}).to_string();
    let out = runtime_with(limits())
        .execute(&probe, conn, "scan-memory", &input)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["scanned_bytes"].as_u64().unwrap() >= 1 << 20, "{out}");
    // The control: the non-secret field the probe read is found, so the scan works.
    assert!(
        v["hits"][1].as_u64().unwrap() >= 1,
        "the scan must find the note: {out}"
    );
    assert_eq!(
        v["hits"][0], 0,
        "the token must not be in guest memory: {out}"
    );
    // And the host did send it, on the allowed request.
    assert_eq!(
        api.seen()[0].headers["authorization"],
        format!("Bearer {secret}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_errors() {
    let secrets = [
        "tok-NeverLogged-7c1d0e",
        "key-NeverLogged-aa93f1",
        "pw-NeverLogged-51b0c2",
    ];
    let api = Api::start("t").await;
    let elsewhere = Api::start("t").await;
    let probe = connector(PROBE).await;
    let runtime = runtime_with(limits());
    let conns = [
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": secrets[0]}}),
        json!({"auth": "query-key", "fields": {"base_url": api.base_url, "api_key": secrets[1], "signing_key": secrets[0]}}),
        json!({"auth": "basic", "fields": {"base_url": api.base_url, "username": "u", "password": secrets[2]}}),
        // Nothing listens on port 9: the connection error must not carry the query's key.
        json!({"auth": "query-key", "fields": {"base_url": "http://127.0.0.1:9", "api_key": secrets[1]}}),
    ];
    let mut outputs = String::new();
    for spec in conns {
        let conn = connection(&probe, spec);
        outputs.push_str(&format!("{conn:?}\n"));
        for (action, input) in [
            ("fetch", json!({"url": "/ping"})),
            ("fetch", json!({"url": "/status/401"})),
            (
                "fetch",
                json!({"url": format!("{}/ping", elsewhere.base_url)}),
            ),
            (
                "fetch",
                json!({"url": format!("/redirect?to={}/ping", elsewhere.base_url)}),
            ),
            ("field", json!({"name": "token"})),
            ("reveal", json!({"name": "password"})),
            ("hmac", json!({"field": "signing_key", "message": "m"})),
            ("panic", json!({})),
        ] {
            let result = runtime
                .execute(&probe, conn.clone(), action, &input.to_string())
                .await;
            match result {
                Ok(out) => outputs.push_str(&out),
                Err(e) => outputs.push_str(&format!("{e}\n{e:?}\n")),
            }
        }
    }
    let logs = junction_tests::logs::captured();
    assert!(logs.contains("connector=probe@0.1.0"), "the capture works");
    assert!(
        outputs.contains("cannot reach http://127.0.0.1:9"),
        "the unreachable case ran"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(
            !outputs.contains(secret),
            "{secret} leaked into a result or an error"
        );
    }
    assert!(elsewhere.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_echoed_by_an_upstream_api_are_scrubbed_before_the_connector_sees_them() {
    let token = "tok-EchoedBack-4f9a1c";
    let password = "pw-EchoedBack-0b7e2d";
    let api = Api::start("t").await;
    let probe = connector(PROBE).await;
    let rt = runtime_with(limits());
    let fetch = json!({"url": "/echo-credentials"}).to_string();

    let bearer = connection(
        &probe,
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": token}}),
    );
    let out = rt
        .execute(&probe, bearer.clone(), "fetch", &fetch)
        .await
        .unwrap();
    assert!(
        !out.contains(token),
        "the echoed token reached the guest: {out}"
    );
    assert!(out.contains("Bearer [redacted]"), "{out}");
    // The host did send it; only the echo was scrubbed.
    assert_eq!(
        api.seen()[0].headers["authorization"],
        format!("Bearer {token}")
    );
    // Nor does it reach guest memory, header included.
    let scan = json!({"path": "/echo-credentials", "needles": [needle(token)]}).to_string();
    let out = rt
        .execute(&probe, bearer, "scan-memory", &scan)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hits"][0], 0, "{out}");

    // Basic credentials come back base64-encoded: that form is scrubbed too.
    let basic = connection(
        &probe,
        json!({"auth": "basic", "fields": {"base_url": api.base_url, "username": "ada", "password": password}}),
    );
    let out = rt.execute(&probe, basic, "fetch", &fetch).await.unwrap();
    let encoded = base64_of(&format!("ada:{password}"));
    assert!(!out.contains(&encoded) && !out.contains(password), "{out}");
    assert!(out.contains("Basic [redacted]"), "{out}");
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revealed_secret_that_the_connector_logs_prints_or_panics_with_is_scrubbed() {
    let shown = "shown-Key-NeverInTheLog-3f9a7c";
    let marker = "reveal-log-marker-0b7e";
    let probe = connector(PROBE).await;
    let runtime = runtime_with(limits());
    let conn = || {
        connection(
            &probe,
            json!({"auth": "none", "fields": {"shown_key": shown}}),
        )
    };
    let input = json!({"lines": 2, "text": marker, "reveal": "shown_key"});
    runtime
        .execute(&probe, conn(), "print", &input.to_string())
        .await
        .unwrap();
    let mut panicking = input.clone();
    panicking["then_panic"] = json!(true);
    let error = runtime
        .execute(&probe, conn(), "print", &panicking.to_string())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(marker),
        "the panic's message is kept: {message}"
    );
    assert!(!message.contains(shown), "{message}");
    assert!(message.contains("[redacted]"), "{message}");

    let logs = junction_tests::logs::captured();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(marker)).collect();
    // Two log lines, stdout and stderr, twice; the panic's own lines on stderr.
    assert!(lines.len() >= 8, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("[redacted]")), "{lines:#?}");
    assert!(!logs.contains(shown), "the revealed value reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_cut_at_the_budget_is_scrubbed_before_it_is_cut() {
    let shown = "cutKey-NeverInTheLogEvenInPart-8d2e41";
    let marker = "budget-cut-marker-77a1";
    let probe = connector(PROBE).await;
    let runtime = runtime_with(junction::runtime::Limits {
        // The second line's budget ends inside the secret.
        log_bytes: 100,
        ..limits()
    });
    let conn = connection(
        &probe,
        json!({"auth": "none", "fields": {"shown_key": shown}}),
    );
    let input = json!({"lines": 3, "text": marker, "reveal": "shown_key"});
    runtime
        .execute(&probe, conn, "print", &input.to_string())
        .await
        .unwrap();
    let logs = junction_tests::logs::captured();
    assert!(logs.contains(marker), "the lines were logged");
    assert!(
        !logs.contains(&shown[..12]),
        "a part of the revealed value reached the log"
    );
}
