//! The egress policy in `junction serve`: a tenant's connection cannot reach the service
//! itself, its network or a metadata service; an OAuth token endpoint on a refused address
//! is never asked; the operator opens ranges through the configuration, the environment or
//! a flag, and the service's own port stays refused whatever they say.

use crate::bin;
use junction_tests::api::Api;
use junction_tests::service::{self, Exchange, Service};
use serde_json::{Value, json};
use std::process::Command;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `junction serve` with the test connectors and `egress` flags (none: the default policy).
fn serve(name: &str, egress: &[&str], env: &[(&str, &str)]) -> Service {
    let dir = service::data_dir(name);
    let mut command = Command::new(bin());
    command
        .args(["--log-json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--connectors")
        .arg(service::test_connectors())
        .args(["--health-check-interval", "0"])
        .args(egress)
        .env("RUST_LOG", "info,junction=debug,sqlx=warn");
    for (k, v) in env {
        command.env(k, v);
    }
    blocking(|| Service::start_command(command, &dir)).unwrap_or_else(|e| panic!("{e}"))
}

/// A member of a new tenant of `service`, with a client holding their token.
async fn member(service: &Service, tenant: &str) -> service::Client {
    let created = blocking(|| service::create_tenant(bin(), &service.data_dir, tenant, "ada"));
    let admin = service.client(created["token"]["token"].as_str().unwrap());
    let member = admin
        .post("/v1/principals", json!({"name": "bob", "role": "member"}))
        .await;
    assert_eq!(member.status, 201, "{}", member.text);
    service.client(member.json()["token"]["token"].as_str().unwrap())
}

/// Creates an `http` connection to `base_url` and invokes `GET path` through it.
async fn request_through(client: &service::Client, base_url: &str, path: &str) -> Exchange {
    let created = client
        .post(
            "/v1/connections",
            json!({"connector": "http", "name": format!("to {base_url}"), "auth": "none",
                   "fields": {"base_url": base_url}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    client
        .post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "request", "input": {"method": "GET", "path": path}}),
        )
        .await
}

/// The error of a refused invocation: 502 `denied`, naming the connector.
#[track_caller]
fn denied(ex: &Exchange) -> Value {
    assert_eq!(ex.status, 502, "{}", ex.text);
    let error = ex.json()["error"].clone();
    assert_eq!(error["code"], "denied", "{error}");
    assert!(
        error["details"]["connector"]
            .as_str()
            .is_some_and(|c| c.starts_with("http@")),
        "{error}"
    );
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reaches_neither_the_service_nor_its_network_nor_a_metadata_service() {
    let service = serve("egress-default", &[], &[]);
    let bob = member(&service, "acme").await;

    // The report: the service's own metrics, through a connection.
    let error = denied(&request_through(&bob, &service.url, "/metrics").await);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("this service's own address is not allowed by the egress policy"),
        "{message}"
    );
    // Anything else on loopback, by name: the tenant learns the class, not what the name
    // resolves to.
    let api = Api::start("t").await;
    let api_port = api.addr.port();
    let error =
        denied(&request_through(&bob, &format!("http://localhost:{api_port}"), "/ping").await);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("a loopback address is not allowed by the egress policy"),
        "{message}"
    );
    assert!(
        !message.contains("127.0.0.1") && !message.contains("::1"),
        "{message}"
    );
    assert!(api.seen().is_empty());

    let error =
        denied(&request_through(&bob, "http://169.254.169.254", "/latest/meta-data/").await);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("a cloud metadata service address"),
        "{error}"
    );
    let error = denied(&request_through(&bob, "http://10.0.0.1", "/").await);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("a private network address"),
        "{error}"
    );

    // Recorded like any failure, with the code.
    let invocations = bob.get("/v1/invocations").await.json();
    let outcomes: Vec<&str> = invocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["denied"; 4]);

    // The operator's log names the address refused, and the request that asked for it.
    let refusals = service.log_lines_with("outbound connection refused by the egress policy");
    assert!(
        refusals.iter().any(|l| l["host"] == "localhost"
            && l["class"] == "loopback"
            && l["address"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":{api_port}")))),
        "{refusals:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_own_port_is_refused_even_when_loopback_is_opened() {
    let service = serve("egress-own", &service::LOOPBACK_EGRESS, &[]);
    let bob = member(&service, "acme").await;
    let error = denied(&request_through(&bob, &service.url, "/metrics").await);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("this service's own address is not allowed by the egress policy"),
        "{error}"
    );
    // Another server on loopback is reachable: the operator opened loopback.
    let api = Api::start("t").await;
    let ok = request_through(&bob, &api.base_url, "/ping").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(api.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_token_endpoint_on_a_refused_address_is_never_asked() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = serve("egress-oauth", &[], &[]);
    let created = blocking(|| service::create_tenant(bin(), &service.data_dir, "acme", "ada"));
    let admin = service.client(created["token"]["token"].as_str().unwrap());
    let ex = admin
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "internal idp", "auth": "oauth-password",
                   "fields": {"issuer": format!("http://localhost:{port}"), "username": "u",
                              "password": "p", "client_id": "c", "client_secret": "s"}}),
        )
        .await;
    assert_eq!(ex.status, 502, "{}", ex.text);
    let message = ex.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("a loopback address is not allowed by the egress policy"),
        "{message}"
    );
    assert!(!message.contains("127.0.0.1"), "{message}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the token endpoint was connected to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_open_ranges_in_the_file_the_environment_or_a_flag() {
    let api = Api::start("t").await;
    let port = api.addr.port();
    let dir = service::data_dir("egress-config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("junction.toml");
    std::fs::write(
        &config,
        format!("[egress]\nallow = [\"127.0.0.1/32:{port}\"]\n"),
    )
    .unwrap();
    let config = config.display().to_string();

    // From the file: that one port of loopback, nothing else.
    let service = serve("egress-file", &["--config", &config], &[]);
    let bob = member(&service, "acme").await;
    assert_eq!(
        request_through(&bob, &api.base_url, "/ping").await.status,
        200
    );
    let other = Api::start("t").await;
    denied(&request_through(&bob, &other.base_url, "/ping").await);
    drop(service);

    // The variable replaces the file's list, and the flag the variable's.
    let service = serve(
        "egress-env",
        &["--config", &config],
        &[(
            "JUNCTION_EGRESS_ALLOW",
            &format!("10.9.0.0/16,127.0.0.1/32:{}", other.addr.port()),
        )],
    );
    let bob = member(&service, "acme").await;
    assert_eq!(
        request_through(&bob, &other.base_url, "/ping").await.status,
        200
    );
    denied(&request_through(&bob, &api.base_url, "/ping").await);
    drop(service);

    let service = serve(
        "egress-flag",
        &["--config", &config, "--egress-allow", "127.0.0.0/8"],
        &[("JUNCTION_EGRESS_ALLOW", "10.9.0.0/16")],
    );
    let bob = member(&service, "acme").await;
    assert_eq!(
        request_through(&bob, &api.base_url, "/ping").await.status,
        200
    );
    assert_eq!(
        request_through(&bob, &other.base_url, "/ping").await.status,
        200
    );
}

#[test]
fn an_unusable_allow_entry_stops_the_start_with_the_fix() {
    let dir = service::data_dir("egress-bad");
    for (entry, says) in [
        (
            "10.20.1.0/16",
            "egress-allow: `10.20.1.0/16` has bits set after its prefix; did you mean `10.20.0.0/16`?",
        ),
        ("intranet", "`intranet` is not an address range"),
    ] {
        let out = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--egress-allow", entry])
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("JUNCTION_EGRESS_ALLOW")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(!dir.exists(), "a refused start created the data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own_are_neither_on_the_api_nor_reachable_by_connections() {
    let service = serve(
        "egress-metrics",
        &[
            service::LOOPBACK_EGRESS[0],
            service::LOOPBACK_EGRESS[1],
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let at = service.log_lines_with("metrics listening")[0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = service::Client::new(&format!("http://{at}"), None);
    let metrics = private.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("# EOF"), "{}", metrics.text);
    assert_eq!(private.get("/healthz").await.status, 404);
    // The API's listener no longer has them.
    let on_api = service.anonymous().get("/metrics").await;
    assert_eq!(on_api.status, 404, "{}", on_api.text);
    assert_eq!(on_api.json()["error"]["code"], "no_route");
    // And a connection cannot read them, loopback opened or not.
    let bob = member(&service, "acme").await;
    let error = denied(&request_through(&bob, &format!("http://{at}"), "/metrics").await);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("this service's own address"),
        "{error}"
    );
}
