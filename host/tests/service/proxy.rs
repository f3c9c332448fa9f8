//! Outbound HTTP through a real forward proxy (tinyproxy), end to end: `junction serve` given
//! `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (and their lower-case forms), and the client of
//! the library built with explicit options (a proxy URL, extra trust roots, a client
//! certificate), against local APIs on loopback: plain HTTP, and HTTPS through a `CONNECT`
//! tunnel with TLS end to end (`openssl s_server` with a throwaway CA).
//!
//! Every test has its own proxy, upstream and, for the service's, data directory: they run in
//! parallel.

use crate::bin;
use base64::Engine as _;
use junction::capabilities::http::{
    ClientError, ClientOptions, ExchangeError, HttpClient, ProxySetting,
};
use junction_tests::api::Api;
use junction_tests::proxy::{ForwardProxy, TestCa, TlsServer, free_port};
use junction_tests::service::{Client, Exchange, Service, create_tenant, data_dir, exchanges};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A test's data directory, removed when the test passes.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A service with `env` (the proxy variables the test gives it), its data directory, and
/// an administrator's client.
struct Started {
    service: Service,
    admin: Client,
    _dir: Scratch,
}

/// Starts `junction serve` with `env` (waiting on the process happens off the async runtime
/// that serves the test's upstreams).
fn start(name: &str, env: &[(&str, &str)]) -> Started {
    let dir = Scratch(data_dir(name));
    tokio::task::block_in_place(|| {
        let created = create_tenant(bin(), &dir.0, "acme", "ada");
        let token = created["token"]["token"]
            .as_str()
            .expect("create-tenant prints the token")
            .to_owned();
        let service =
            Service::start_with_env(bin(), &dir.0, &["--health-check-interval", "0"], env)
                .unwrap_or_else(|failure| panic!("the service did not start: {failure}"));
        let admin = service.client(&token);
        Started {
            service,
            admin,
            _dir: dir,
        }
    })
}

impl Started {
    fn check(&self, exchange: &Exchange, status: u16) -> Value {
        assert_eq!(
            exchange.status.as_u16(),
            status,
            "{} {} answered {}: {}\n--- service log ---\n{}",
            exchange.method,
            exchange.path,
            exchange.status,
            exchange.text,
            self.service.logs()
        );
        exchange.json()
    }

    /// A probe connection (no credentials) whose requests go to `base_url`.
    async fn connection(&self, name: &str, base_url: &str) -> String {
        let created = self.check(
            &self
                .admin
                .post(
                    "/v1/connections",
                    json!({
                        "connector": "probe",
                        "auth": "none",
                        "name": name,
                        "fields": {"base_url": base_url},
                    }),
                )
                .await,
            201,
        );
        created["id"].as_str().expect("an id").to_owned()
    }

    /// The probe's `fetch` of `path` (below the connection's base URL).
    async fn fetch(&self, connection: &str, path: &str) -> Exchange {
        self.admin
            .post(
                &format!("/v1/connections/{connection}/invocations"),
                json!({"action": "fetch", "input": {"url": path}}),
            )
            .await
    }

    /// A fetch that must succeed; returns the probe's output (`status`, `body`).
    async fn fetched(&self, connection: &str, path: &str) -> Value {
        let out = self.check(&self.fetch(connection, path).await, 200);
        out["output"].clone()
    }
}

/// How many requests for `path` the API received.
fn seen(api: &Api, path: &str) -> usize {
    api.seen().iter().filter(|s| s.path == path).count()
}

/// `Basic` credentials as a proxy receives them.
fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Checks that `secret` (a proxy password, or its Basic form) appears nowhere the service
/// shows: its log, and every answer of this test binary.
fn assert_nowhere(service: &Service, secret: &str) {
    let logs = service.logs();
    assert!(
        !logs.contains(secret),
        "the service logged a proxy credential:\n{logs}"
    );
    for exchange in exchanges() {
        assert!(
            !exchange.text.contains(secret) && !exchange.headers.contains(secret),
            "{} {} answered a proxy credential: {} {}",
            exchange.method,
            exchange.path,
            exchange.headers,
            exchange.text
        );
    }
}

// ---------------------------------------------------------------------------------------
// The service, with the proxy variables of its environment
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_http_proxy_the_service_sends_requests_through_the_proxy() {
    let proxy = ForwardProxy::start();
    let api = Api::start("unused").await;
    let proxy_url = proxy.url();
    let s = start("proxy-http", &[("HTTP_PROXY", &proxy_url)]);
    let connection = s.connection("via proxy", &api.base_url).await;

    let output = s.fetched(&connection, "/ping").await;
    assert_eq!(output["status"], 200, "{output}");
    assert_eq!(output["body"], "pong", "{output}");
    assert_eq!(seen(&api, "/ping"), 1, "the API answered the request");
    assert_eq!(
        proxy.requests(),
        [format!("GET {}/ping", api.base_url)],
        "the proxy forwarded it, in absolute form; its log:\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_sends_the_hosts_it_names_direct() {
    let proxy = ForwardProxy::start();
    let api = Api::start("unused").await;
    let port = api.addr.port();
    let proxy_url = proxy.url();
    // The lower-case forms, as many systems set them.
    let s = start(
        "proxy-no-proxy",
        &[("http_proxy", &proxy_url), ("no_proxy", "localhost")],
    );
    let direct = s
        .connection("direct", &format!("http://localhost:{port}"))
        .await;
    let proxied = s
        .connection("proxied", &format!("http://127.0.0.1:{port}"))
        .await;

    // Alternating, twice: pooled connections keep each destination on its own route.
    for _ in 0..2 {
        assert_eq!(s.fetched(&direct, "/ping").await["body"], "pong");
        assert_eq!(s.fetched(&proxied, "/ping").await["body"], "pong");
    }
    assert_eq!(seen(&api, "/ping"), 4);
    let attempts = proxy.attempts();
    assert!(
        attempts.iter().all(|a| !a.contains("localhost")),
        "a host NO_PROXY names went through the proxy: {attempts:?}"
    );
    assert_eq!(
        proxy.requests(),
        [
            format!("GET http://127.0.0.1:{port}/ping"),
            format!("GET http://127.0.0.1:{port}/ping")
        ],
        "the other host went through the proxy; its log:\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_requiring_credentials_gets_them_from_the_url_and_they_stay_secret() {
    let (user, password) = ("junction", "Pr0xyPa55-4f1d7c");
    let proxy = ForwardProxy::with_basic_auth(user, password);
    let api = Api::start("unused").await;
    let proxy_url = proxy.url_with_credentials();
    let s = start(
        "proxy-auth",
        &[("HTTP_PROXY", &proxy_url), ("RUST_LOG", "debug,sqlx=warn")],
    );
    let connection = s
        .connection("via authenticating proxy", &api.base_url)
        .await;

    let output = s.fetched(&connection, "/ping").await;
    assert_eq!(
        output["status"], 200,
        "the proxy accepted the credentials: {output}"
    );
    assert_eq!(output["body"], "pong", "{output}");
    assert!(
        proxy.forwarded_to(&api.addr.to_string()),
        "its log:\n{}",
        proxy.log()
    );
    // Nothing shows them: not the service's (debug) log, not its answers; and they are no
    // header a connector could set or the destination receive from the host.
    let listed = s.check(&s.admin.get("/v1/invocations").await, 200);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    for secret in [password, &basic(user, password)] {
        assert_nowhere(&s.service, secret);
    }
    let received = api.everything_received();
    assert!(
        !received.contains(&basic(user, password)) && !received.contains(password),
        "the destination received the proxy's credentials: {received}"
    );
    let sneaky = s
        .admin
        .post(
            &format!("/v1/connections/{connection}/invocations"),
            json!({"action": "fetch", "input": {
                "url": "/ping",
                "headers": {"Proxy-Authorization": "Basic bWFsbG9yeTpndWVzcw=="}
            }}),
        )
        .await;
    assert_eq!(
        s.check(&sneaky, 200)["output"]["status"],
        200,
        "a connector's own Proxy-Authorization is dropped; the host's is sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_is_down_fails_the_invocation_naming_the_proxy() {
    let api = Api::start("unused").await;
    let port = free_port(); // nothing listens there
    let proxy_url = format!("http://someone:Sekr1t-Down@127.0.0.1:{port}");
    let s = start("proxy-down", &[("HTTP_PROXY", &proxy_url)]);
    let connection = s.connection("via a dead proxy", &api.base_url).await;

    let failed = s.check(&s.fetch(&connection, "/ping").await, 502);
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("through proxy http://127.0.0.1:{port}")),
        "the error names the proxy: {failed}"
    );
    assert!(
        message.contains("proxy"),
        "the error says the proxy failed: {failed}"
    );
    assert_eq!(seen(&api, "/ping"), 0, "nothing reached the API");
    assert_nowhere(&s.service, "Sekr1t-Down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_destination_is_tunnelled_and_tls_runs_end_to_end() {
    let ca = TestCa::new();
    let server = TlsServer::start(&ca, false);
    let (user, password) = ("tunnel", "Tunn3l-Secret-99");
    let proxy = ForwardProxy::with_basic_auth(user, password);
    let proxy_url = proxy.url_with_credentials();
    let ca_file = ca.cert_path();
    let s = start(
        "proxy-https",
        &[
            ("HTTPS_PROXY", &proxy_url),
            // The service trusts the test CA (and nothing else: it talks to loopback only).
            ("SSL_CERT_FILE", ca_file.to_str().expect("a UTF-8 path")),
        ],
    );
    let connection = s
        .connection("https via proxy", &server.url("localhost"))
        .await;

    let output = s.fetched(&connection, "/").await;
    assert_eq!(output["status"], 200, "{output}");
    assert!(
        output["body"]
            .as_str()
            .unwrap_or_default()
            .contains("<HTML>"),
        "{output}"
    );
    // The name is resolved and checked here; the proxy is asked for the address checked.
    assert_eq!(
        proxy.attempts(),
        [format!("CONNECT 127.0.0.1:{}", server.port())],
        "the proxy saw a tunnel, and no request; its log:\n{}",
        proxy.log()
    );
    assert!(proxy.forwarded_to(&format!("127.0.0.1:{}", server.port())));
    for secret in [password, &basic(user, password)] {
        assert_nowhere(&s.service, secret);
    }
}

// ---------------------------------------------------------------------------------------
// The client of the library, with explicit options
// ---------------------------------------------------------------------------------------

fn options(proxy: ProxySetting) -> ClientOptions {
    ClientOptions {
        proxy,
        ..ClientOptions::new(Duration::from_secs(5), junction_tests::loopback_egress())
    }
}

fn through(proxy: &str) -> ProxySetting {
    proxy.parse().expect("a proxy URL")
}

async fn get(client: &HttpClient, url: &str) -> Result<http::Response<Vec<u8>>, ExchangeError> {
    let request = http::Request::get(url).body(Vec::new()).expect("a request");
    client
        .exchange(request, Duration::from_secs(10), 1 << 20)
        .await
}

#[tokio::test]
async fn a_client_with_a_proxy_url_tunnels_https_and_trusts_its_extra_roots() {
    let ca = TestCa::new();
    let server = TlsServer::start(&ca, false);
    let proxy = ForwardProxy::with_basic_auth("vault", "V4ult-Proxy-Pass");
    let destination = server.url("127.0.0.1");

    let client = HttpClient::with_options(&ClientOptions {
        extra_roots_pem: vec![ca.cert_pem()],
        ..options(through(&proxy.url_with_credentials()))
    })
    .expect("usable options");
    assert_eq!(
        client.proxy_for(&Url::parse(&destination).expect("a URL")),
        Some(proxy.url()),
        "named by its origin, without credentials"
    );
    assert!(!format!("{client:?}").contains("V4ult"), "{client:?}");
    let response = get(&client, &destination).await.expect("an answer");
    assert_eq!(response.status(), 200);
    assert!(String::from_utf8_lossy(response.body()).contains("<HTML>"));
    assert_eq!(
        proxy.requests(),
        [format!("CONNECT 127.0.0.1:{}", server.port())],
        "its log:\n{}",
        proxy.log()
    );

    // Without the CA, the destination's certificate (seen through the tunnel) is refused.
    let untrusting = HttpClient::with_options(&options(through(&proxy.url_with_credentials())))
        .expect("usable options");
    let error = get(&untrusting, &destination)
        .await
        .expect_err("an untrusted certificate")
        .to_string();
    assert!(error.contains("certificate"), "{error}");
    assert!(
        error.contains(&format!("through proxy {}", proxy.url())),
        "{error}"
    );

    // Without credentials, or with wrong ones, the proxy refuses the tunnel.
    let anonymous = HttpClient::with_options(&ClientOptions {
        extra_roots_pem: vec![ca.cert_pem()],
        ..options(through(&proxy.url()))
    })
    .expect("usable options");
    let error = get(&anonymous, &destination)
        .await
        .expect_err("a refused tunnel")
        .to_string();
    assert!(
        error.contains("no tunnel through the proxy")
            && error.contains("proxy authorization required"),
        "{error}"
    );
    let wrong = format!("http://vault:Wr0ng-Pass@127.0.0.1:{}", proxy.port());
    let refused = HttpClient::with_options(&ClientOptions {
        extra_roots_pem: vec![ca.cert_pem()],
        ..options(through(&wrong))
    })
    .expect("usable options");
    let error = get(&refused, &destination)
        .await
        .expect_err("a refused tunnel")
        .to_string();
    assert!(error.contains("no tunnel through the proxy"), "{error}");
    assert!(!error.contains("Wr0ng"), "{error}");
}

#[tokio::test]
async fn a_client_presents_its_certificate_through_the_tunnel() {
    let ca = TestCa::new();
    let server = TlsServer::start(&ca, true);
    let proxy = ForwardProxy::start();
    let destination = server.url("localhost");
    let identity = ca.issue("client");

    let with_identity = HttpClient::with_options(&ClientOptions {
        extra_roots_pem: vec![ca.cert_pem()],
        client_identity_pem: Some((identity.cert_pem.clone(), identity.key_pem.clone())),
        ..options(through(&proxy.url()))
    })
    .expect("usable options");
    let response = get(&with_identity, &destination)
        .await
        .expect("the server accepts the client certificate");
    assert_eq!(response.status(), 200);

    let without = HttpClient::with_options(&ClientOptions {
        extra_roots_pem: vec![ca.cert_pem()],
        ..options(through(&proxy.url()))
    })
    .expect("usable options");
    let refused = get(&without, &destination).await;
    assert!(
        refused.is_err() || refused.as_ref().is_ok_and(|r| r.status() != 200),
        "the server requires a client certificate: {refused:?}"
    );
    assert_eq!(
        proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with("CONNECT"))
            .count(),
        2,
        "its log:\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_client_keeps_proxied_and_direct_destinations_apart() {
    let proxy = ForwardProxy::with_basic_auth("pool", "P00l-Pass");
    let api = Api::start("unused").await;
    let port = api.addr.port();
    let client = HttpClient::with_options(&ClientOptions {
        no_proxy: Some("localhost".into()),
        ..options(through(&proxy.url_with_credentials()))
    })
    .expect("usable options");
    let proxied = format!("http://127.0.0.1:{port}/ping");
    let direct = format!("http://localhost:{port}/ping");
    assert_eq!(
        client.proxy_for(&Url::parse(&proxied).expect("a URL")),
        Some(proxy.url())
    );
    assert_eq!(client.proxy_for(&Url::parse(&direct).expect("a URL")), None);
    for _ in 0..3 {
        for url in [&proxied, &direct] {
            let response = get(&client, url).await.expect("an answer");
            assert_eq!(response.status(), 200, "{url}");
            assert_eq!(response.body(), b"pong");
        }
    }
    assert_eq!(seen(&api, "/ping"), 6);
    assert_eq!(
        proxy.requests(),
        vec![format!("GET {proxied}"); 3],
        "its log:\n{}",
        proxy.log()
    );
    // The credentials went to the proxy, and only there.
    let received = api.everything_received();
    assert!(
        !received.contains(&basic("pool", "P00l-Pass")),
        "{received}"
    );
}

#[tokio::test]
async fn a_client_without_proxy_credentials_gets_the_proxys_refusal() {
    let proxy = ForwardProxy::with_basic_auth("someone", "Needed-1");
    let api = Api::start("unused").await;
    let client = HttpClient::with_options(&options(through(&proxy.url()))).expect("usable");
    let response = get(&client, &format!("{}/ping", api.base_url))
        .await
        .expect("the proxy answers");
    assert_eq!(response.status(), 407);
    assert_eq!(seen(&api, "/ping"), 0);
    assert_eq!(proxy.attempts().len(), 1);
    assert!(proxy.requests().is_empty(), "{}", proxy.log());
}

#[test]
fn unusable_options_are_refused_naming_the_setting_and_no_secret() {
    let timeout = Duration::from_secs(1);
    let refused = |options: ClientOptions| match HttpClient::with_options(&options) {
        Ok(_) => panic!("{options:?} was accepted"),
        Err(e) => e,
    };

    let e = refused(ClientOptions {
        proxy: ProxySetting::Url(Url::parse("socks5://u:S3cret@proxy:1080").expect("a URL")),
        ..ClientOptions::new(timeout, junction_tests::loopback_egress())
    });
    assert!(matches!(e, ClientError::Proxy(_)), "{e:?}");
    assert!(e.to_string().contains("socks5"), "{e}");
    assert!(!e.to_string().contains("S3cret"), "{e}");

    let e = refused(ClientOptions {
        extra_roots_pem: vec![b"not a certificate".to_vec()],
        ..ClientOptions::new(timeout, junction_tests::loopback_egress())
    });
    assert!(e.to_string().contains("trusted certificate #1"), "{e}");

    let ca = TestCa::new();
    let identity = ca.issue("client");
    let e = refused(ClientOptions {
        client_identity_pem: Some((identity.cert_pem.clone(), b"garbage".to_vec())),
        ..ClientOptions::new(timeout, junction_tests::loopback_egress())
    });
    assert!(matches!(e, ClientError::ClientKey), "{e:?}");
    let e = refused(ClientOptions {
        client_identity_pem: Some((Vec::new(), identity.key_pem.clone())),
        ..ClientOptions::new(timeout, junction_tests::loopback_egress())
    });
    assert!(matches!(e, ClientError::ClientCertificate(_)), "{e:?}");

    // Debug output shows neither the proxy's password nor the key.
    let options = ClientOptions {
        proxy: through("http://u:S3cret@proxy:3128"),
        client_identity_pem: Some((identity.cert_pem.clone(), identity.key_pem.clone())),
        ..ClientOptions::new(timeout, junction_tests::loopback_egress())
    };
    let shown = format!("{options:?}");
    let key = String::from_utf8_lossy(&identity.key_pem).into_owned();
    assert!(!shown.contains("S3cret"), "{shown}");
    assert!(
        !shown.contains(key.lines().nth(1).unwrap_or("-")),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------
// The egress policy through a proxy
// ---------------------------------------------------------------------------------------

/// A client through `proxy` under the default egress policy with `allow` opened: the proxy
/// itself (on loopback) is the operator's and is not checked.
fn strict_through(proxy: &str, allow: &[&str], proxy_enforces: bool) -> HttpClient {
    let allow = allow.iter().map(|a| a.parse().expect("a rule")).collect();
    let policy = junction::egress::EgressPolicy::new(allow).with_proxy_enforcing(proxy_enforces);
    HttpClient::with_options(&ClientOptions {
        proxy: through(proxy),
        ..ClientOptions::new(Duration::from_secs(5), std::sync::Arc::new(policy))
    })
    .expect("usable options")
}

#[tokio::test]
async fn a_destination_reached_through_a_proxy_is_resolved_and_checked_before_the_proxy_is_asked() {
    let proxy = ForwardProxy::start();
    let api = Api::start("unused").await;
    let ca = TestCa::new();
    let tls = TlsServer::start(&ca, false);

    // Nothing of loopback is opened: the proxy is reached, the destinations are not.
    let client = strict_through(&proxy.url(), &[], false);
    for destination in [
        format!("{}/ping", api.base_url),
        format!("http://localhost:{}/ping", api.addr.port()),
        tls.url("localhost"),
    ] {
        let error = get(&client, &destination).await.expect_err("refused");
        assert!(
            matches!(&error, ExchangeError::Denied { reason, .. }
                if reason == "a loopback address is not allowed by the egress policy"),
            "{destination}: {error}"
        );
    }
    assert!(proxy.attempts().is_empty(), "{}", proxy.log());
    assert_eq!(seen(&api, "/ping"), 0);

    // Opened by port, the same destination goes through the proxy.
    let opened = strict_through(
        &proxy.url(),
        &[&format!("127.0.0.1/32:{}", api.addr.port())],
        false,
    );
    let response = get(&opened, &format!("{}/ping", api.base_url))
        .await
        .expect("through the proxy");
    assert_eq!(response.status(), 200);
    assert_eq!(seen(&api, "/ping"), 1);
    assert_eq!(proxy.requests().len(), 1, "{}", proxy.log());
}

#[tokio::test]
async fn when_the_proxy_enforces_the_policy_names_are_left_to_it_and_addresses_still_checked() {
    let proxy = ForwardProxy::start();
    let api = Api::start("unused").await;
    let client = strict_through(&proxy.url(), &[], true);
    // A name goes to the proxy unresolved (tinyproxy, which here enforces nothing, forwards
    // it: the README says a proxy given this role must enforce the policy itself).
    let response = get(
        &client,
        &format!("http://localhost:{}/ping", api.addr.port()),
    )
    .await
    .expect("left to the proxy");
    assert_eq!(response.status(), 200);
    assert_eq!(seen(&api, "/ping"), 1);
    // An address is still checked here.
    let error = get(&client, &format!("{}/ping", api.base_url))
        .await
        .expect_err("an address is checked");
    assert!(matches!(error, ExchangeError::Denied { .. }), "{error}");
    assert_eq!(seen(&api, "/ping"), 1);
}

#[tokio::test]
async fn the_tunnel_asks_the_proxy_for_the_address_checked_here_and_tls_still_checks_the_name() {
    let ca = TestCa::new();
    let server = TlsServer::start(&ca, false);
    let proxy = ForwardProxy::start();
    let port = server.port();
    let client = |enforces: bool| {
        let allow = format!("127.0.0.1/32:{port}");
        let policy = junction::egress::EgressPolicy::new(vec![allow.parse().expect("a rule")])
            .with_proxy_enforcing(enforces);
        HttpClient::with_options(&ClientOptions {
            proxy: through(&proxy.url()),
            extra_roots_pem: vec![ca.cert_pem()],
            ..ClientOptions::new(Duration::from_secs(5), std::sync::Arc::new(policy))
        })
        .expect("usable options")
    };
    // By name: resolved and checked here; the proxy is asked for that address (a second
    // resolution by the proxy cannot lead elsewhere), and TLS verifies `localhost`.
    let response = get(&client(false), &server.url("localhost"))
        .await
        .expect("through the proxy");
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.requests(),
        [format!("CONNECT 127.0.0.1:{port}")],
        "{}",
        proxy.log()
    );
    // Left to a proxy that enforces the policy: the name is passed on.
    let response = get(&client(true), &server.url("localhost"))
        .await
        .expect("through the proxy");
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.requests().last().map(String::as_str),
        Some(format!("CONNECT localhost:{port}").as_str()),
        "{}",
        proxy.log()
    );
}
