//! A connector that asks for what the egress policy refuses: every class of address that is
//! not globally reachable, a redirect from an allowed host to a refused address, a name
//! that resolves to loopback, and a metadata service. The policy is checked on the
//! resolved address when the connection is made, so each case fails with the typed
//! `denied` error naming the class, and nothing reaches the destination.

use super::limits;
use junction::egress::{AllowRule, EgressPolicy};
use junction::runtime::{ConnectorError, InvokeError, Runtime};
use junction_tests::api::Api;
use junction_tests::components::PROBE;
use junction_tests::{connection, connector, runtime_with};
use serde_json::{Value, json};
use std::sync::Arc;

/// A runtime under `policy` (the suite's runtimes open loopback; these do not unless told).
fn runtime_under(policy: EgressPolicy) -> Runtime {
    runtime_with(limits()).with_egress(Arc::new(policy))
}

fn rule(text: &str) -> AllowRule {
    text.parse().unwrap()
}

async fn fetch(runtime: &Runtime, fields: Value, url: &str) -> Result<String, InvokeError> {
    let probe = connector(PROBE).await;
    let conn = connection(&probe, json!({"auth": "none", "fields": fields}));
    runtime
        .execute(&probe, conn, "fetch", &json!({"url": url}).to_string())
        .await
}

/// The message of a `denied` error; panics on anything else.
#[track_caller]
fn denial(result: Result<String, InvokeError>) -> String {
    match result {
        Err(InvokeError::Connector {
            error: ConnectorError::Denied { message },
            connector,
        }) => {
            assert_eq!(connector.name, "probe");
            message
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_of_address_that_is_not_global_is_refused_by_name() {
    let runtime = runtime_under(EgressPolicy::new(Vec::new()));
    let cases = [
        ("http://127.0.0.1:9", "a loopback address"),
        ("http://[::1]:9", "a loopback address"),
        ("http://10.0.0.1", "a private network address"),
        ("http://172.16.5.4", "a private network address"),
        ("http://192.168.1.1", "a private network address"),
        ("http://169.254.10.1", "a link-local address"),
        ("http://[fe80::1]", "a link-local address"),
        ("http://100.64.0.1", "a shared (carrier-grade NAT) address"),
        (
            "http://0.0.0.0",
            "an unspecified (\"this network\") address",
        ),
        ("http://192.0.0.8", "an IETF protocol assignment address"),
        ("http://192.0.2.1", "a documentation address"),
        ("http://198.18.0.1", "a benchmarking address"),
        ("http://240.0.0.1", "a reserved address"),
        ("http://224.0.0.1", "a multicast address"),
        ("http://[fd00::1]", "a unique-local (private IPv6) address"),
        ("http://[64:ff9b::a00:1]", "a NAT64 address"),
        ("http://[2002:a00:1::1]", "a 6to4 address"),
        ("http://[2001::1]", "a Teredo address"),
        ("http://[::ffff:10.0.0.1]", "an IPv4-mapped IPv6 address"),
        ("http://169.254.169.254", "a cloud metadata service address"),
        ("http://168.63.129.16", "a cloud metadata service address"),
    ];
    for (base, class) in cases {
        let message = denial(fetch(&runtime, json!({"base_url": base}), "/latest").await);
        assert_eq!(
            message,
            format!(
                "cannot reach {}: {class} is not allowed by the egress policy",
                url::Url::parse(base)
                    .map(|u| format!(
                        "{}://{}:{}",
                        u.scheme(),
                        u.host_str().unwrap(),
                        u.port_or_known_default().unwrap()
                    ))
                    .unwrap()
            ),
            "{base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_refused_without_naming_the_address() {
    let api = Api::start("t").await;
    let port = api.addr.port();
    let strict = runtime_under(EgressPolicy::new(Vec::new()));
    let base = format!("http://localhost:{port}");
    let message = denial(fetch(&strict, json!({"base_url": base}), "/ping").await);
    assert_eq!(
        message,
        format!(
            "cannot reach http://localhost:{port}: a loopback address is not allowed by the egress policy"
        )
    );
    assert!(!message.contains("127.0.0.1") && !message.contains("::1"));
    assert!(api.seen().is_empty(), "nothing reached the API");

    // Opened by the operator, the same request goes through.
    let opened = runtime_under(EgressPolicy::new(EgressPolicy::loopback().to_vec()));
    let out = fetch(&opened, json!({"base_url": base}), "/ping")
        .await
        .unwrap();
    assert!(out.contains("pong"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_allowed_host_to_a_refused_address_is_not_followed() {
    let api = Api::start("t").await;
    let internal = Api::start("t").await;
    // Only the first API's port is opened: the second stands for an internal service.
    let runtime = runtime_under(EgressPolicy::new(vec![rule(&format!(
        "127.0.0.1/32:{}",
        api.addr.port()
    ))]));
    let fields = json!({"base_url": api.base_url, "second_url": internal.base_url});
    let to_internal = format!("/redirect?to={}/ping", internal.base_url);
    let message = denial(fetch(&runtime, fields.clone(), &to_internal).await);
    assert!(
        message.ends_with("a loopback address is not allowed by the egress policy"),
        "{message}"
    );
    assert_eq!(
        api.seen().len(),
        1,
        "the allowed host answered the redirect"
    );
    assert!(
        internal.seen().is_empty(),
        "the redirect target got nothing"
    );

    let fields = json!({"base_url": api.base_url, "second_url": "http://10.1.2.3"});
    let message = denial(fetch(&runtime, fields, "/redirect?to=http://10.1.2.3/x").await);
    assert_eq!(
        message,
        "cannot reach http://10.1.2.3:80: a private network address is not allowed by the egress policy"
    );

    // The allowed API itself is reachable: the port rule is what opened it.
    let out = fetch(&runtime, json!({"base_url": api.base_url}), "/ping")
        .await
        .unwrap();
    assert!(out.contains("pong"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_own_listener_is_refused_even_with_loopback_allowed() {
    let own = Api::start("t").await;
    let policy = EgressPolicy::new(EgressPolicy::loopback().to_vec());
    policy.add_own_listener(own.addr);
    let runtime = runtime_under(policy);
    for base in [
        own.base_url.clone(),
        format!("http://localhost:{}", own.addr.port()),
    ] {
        let message = denial(fetch(&runtime, json!({"base_url": base}), "/ping").await);
        assert!(
            message.ends_with("this service's own address is not allowed by the egress policy"),
            "{message}"
        );
    }
    assert!(own.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_service_stays_refused_inside_an_allowed_range() {
    let runtime = runtime_under(EgressPolicy::new(vec![rule("169.254.0.0/16")]));
    let message = denial(
        fetch(
            &runtime,
            json!({"base_url": "http://169.254.169.254"}),
            "/latest/meta-data/iam/security-credentials/",
        )
        .await,
    );
    assert!(
        message.contains("a cloud metadata service address"),
        "{message}"
    );
}
