//! The host attaches credentials for each auth scheme, only on allowed destinations, and
//! follows redirects only inside the allow-list.

use super::limits;
use junction::runtime::{ConnectorError, InvokeError};
use junction_tests::api::Api;
use junction_tests::components::PROBE;
use junction_tests::{connection, connector, runtime_with};
use serde_json::{Value, json};

async fn fetch(conn: Value, input: Value) -> Result<String, InvokeError> {
    let probe = connector(PROBE).await;
    let conn = connection(&probe, conn);
    runtime_with(limits())
        .execute(&probe, conn, "fetch", &input.to_string())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_scheme_puts_its_credential_where_it_belongs() {
    let api = Api::start("t").await;
    let base = api.base_url.clone();
    let cases = [
        (
            json!({"auth": "bearer", "fields": {"base_url": base, "token": "tok-1"}}),
            "authorization",
            "Bearer tok-1",
        ),
        (
            json!({"auth": "header-key", "fields": {"base_url": base, "api_key": "key-2"}}),
            "x-api-key",
            "key-2",
        ),
        (
            json!({"auth": "basic", "fields": {"base_url": base, "username": "ann", "password": "pw-3"}}),
            "authorization",
            "Basic YW5uOnB3LTM=",
        ),
    ];
    for (conn, header, value) in cases {
        fetch(conn, json!({"url": "/ping"})).await.unwrap();
        let seen = api.seen().pop().unwrap();
        assert_eq!(seen.headers[header], value);
    }
    fetch(
        json!({"auth": "query-key", "fields": {"base_url": base, "api_key": "key 4"}}),
        json!({"url": "/ping?page=2"}),
    )
    .await
    .unwrap();
    let seen = api.seen().pop().unwrap();
    assert_eq!(seen.query.as_deref(), Some("page=2&api_key=key+4"));
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_cannot_replace_the_credential_the_host_attaches() {
    let api = Api::start("t").await;
    fetch(
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": "real"}}),
        json!({"url": "/ping", "headers": {"Authorization": "Bearer forged", "Host": "evil.test"}}),
    )
    .await
    .unwrap();
    let seen = api.seen().pop().unwrap();
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(seen.headers["authorization"], "Bearer real");
    assert_ne!(seen.headers["host"], "evil.test");
    assert!(
        seen.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("junction/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_outside_the_allow_list_is_not_followed_and_gets_no_token() {
    let api = Api::start("t").await;
    let elsewhere = Api::start("t").await;
    let target = format!("{}/ping", elsewhere.base_url);
    let e = fetch(
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": "tok-redirect"}}),
        json!({"url": format!("/redirect?to={target}")}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &e,
            InvokeError::Connector {
                error: ConnectorError::Denied { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        elsewhere.seen().is_empty(),
        "the redirect target got nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_inside_the_allow_list_is_followed_with_credentials() {
    let api = Api::start("t").await;
    let out = fetch(
        json!({"auth": "bearer", "fields": {"base_url": api.base_url, "token": "tok-follow"}}),
        json!({"url": format!("/redirect?to={}/status/201", api.base_url), "method": "POST"}),
    )
    .await
    .unwrap();
    assert!(out.contains("\"status\":201"), "{out}");
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, "GET", "a 302 after POST continues as GET");
    assert_eq!(seen[1].headers["authorization"], "Bearer tok-follow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_a_typed_error_naming_the_origin() {
    // Port 9 (discard) is closed on loopback.
    let e = fetch(
        json!({"auth": "none", "fields": {"base_url": "http://127.0.0.1:9"}}),
        json!({"url": "/ping"}),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("cannot reach http://127.0.0.1:9"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_fields_are_refused_to_the_connector_unless_revealed() {
    let probe = connector(PROBE).await;
    let runtime = runtime_with(limits());
    let conn = connection(
        &probe,
        json!({"auth": "bearer", "fields": {"token": "tok-x", "shown_key": "visible", "note": "n"}}),
    );
    let e = runtime
        .execute(&probe, conn.clone(), "field", r#"{"name": "token"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            InvokeError::Connector {
                error: ConnectorError::Denied { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("tok-x"));
    let e = runtime
        .execute(&probe, conn.clone(), "reveal", r#"{"name": "token"}"#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("reveal-fields"), "{e}");
    let out = runtime
        .execute(&probe, conn.clone(), "reveal", r#"{"name": "shown_key"}"#)
        .await
        .unwrap();
    assert_eq!(out, r#"{"note":"visible"}"#);
    let out = runtime
        .execute(&probe, conn, "field", r#"{"name": "note"}"#)
        .await
        .unwrap();
    assert_eq!(out, r#"{"note":"n"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_is_computed_by_the_host_with_the_secret_field() {
    let probe = connector(PROBE).await;
    let conn = connection(
        &probe,
        json!({"auth": "none", "fields": {"signing_key": "key"}}),
    );
    let out = runtime_with(limits())
        .execute(
            &probe,
            conn,
            "hmac",
            r#"{"field": "signing_key", "message": "The quick brown fox jumps over the lazy dog"}"#,
        )
        .await
        .unwrap();
    // RFC 4231-style reference value for this key and message.
    assert_eq!(
        out,
        r#"{"hex":"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_fit_the_connector_names_the_problem() {
    let probe = connector(PROBE).await;
    let prepare = |spec: Value| {
        probe
            .prepare(&serde_json::from_value(spec).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert!(prepare(json!({"fields": {}})).contains("supports several auth schemes"));
    assert!(prepare(json!({"auth": "saml"})).contains("unknown auth scheme `saml`"));
    // Run locally (no service to run the grant), an OAuth scheme needs a token given.
    assert!(
        prepare(json!({"auth": "oauth", "fields": {"issuer": "http://127.0.0.1:9"}}))
            .contains("access_token")
    );
    assert!(prepare(json!({"auth": "bearer"})).contains("field `token` is required"));
    assert!(
        prepare(json!({"auth": "none", "fields": {"colour": "red"}}))
            .contains("unknown field `colour`")
    );
    assert!(
        prepare(json!({"auth": "none", "fields": {"token": "t"}}))
            .contains("does not belong to auth scheme `none`")
    );
    assert!(
        prepare(json!({"auth": "none", "fields": {"base_url": "not a url"}}))
            .contains("must be an absolute http or https URL")
    );
}
