//! OAuth 2.0 connections end to end: the real `junction serve`, a real authorization server
//! (oidc-provider, started by the suite on loopback), a browser driving the consent as a
//! user would, and an API that checks tokens by introspection at the provider.

use crate::bin;
use junction_tests::browser::{Browser, Page, junction_start_form};
use junction_tests::components;
use junction_tests::oauth::{OAuthServer, PASSWORD, RegisteredClient};
use junction_tests::resource::Resource;
use junction_tests::service::{self, Client, Exchange, Service};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A provider, an API protected by it, and a service with a tenant whose administrator
/// the test acts as.
struct World {
    oauth: OAuthServer,
    resource: Resource,
    service: Service,
    api: Client,
    browser: Browser,
    /// The administrator's API token.
    token: String,
}

/// `junction serve` on `dir`, listening on `listen`, with `extra` flags and `env`. It loads
/// only the probe (each connector loaded is compiled at start: the others would only slow
/// every test down) and runs no background health check (it would change the connections'
/// health between the checks of a test).
fn serve(dir: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Service {
    let mut command = Command::new(bin());
    command
        .arg("--log-json")
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir)
        .arg("--connectors")
        .arg(components::PROBE)
        .args(["--health-check-interval", "0"])
        .args(service::LOOPBACK_EGRESS)
        .args(extra)
        .env("RUST_LOG", "info,junction=debug,sqlx=warn");
    for (k, v) in env {
        command.env(k, v);
    }
    blocking(|| Service::start_command(command, dir))
        .unwrap_or_else(|e| panic!("junction serve: {e}"))
}

/// A fresh data directory with tenant `acme`; returns it and its administrator's token.
fn tenant(name: &str) -> (PathBuf, String) {
    let dir = service::data_dir(name);
    let created = blocking(|| service::create_tenant(bin(), &dir, "acme", "ada"));
    let token = created["token"]["token"].as_str().unwrap().to_owned();
    (dir, token)
}

async fn world(name: &str, extra: &[&str]) -> World {
    world_with_env(name, extra, &[]).await
}

async fn world_with_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> World {
    let oauth = blocking(OAuthServer::start);
    let resource = Resource::start(&oauth).await;
    let (dir, token) = tenant(name);
    let service = serve(&dir, "127.0.0.1:0", extra, env);
    World::new(oauth, resource, service, token)
}

impl World {
    fn new(oauth: OAuthServer, resource: Resource, service: Service, token: String) -> World {
        let api = service.client(&token);
        World {
            oauth,
            resource,
            service,
            api,
            browser: Browser::new(),
            token,
        }
    }

    fn redirect_uri(&self) -> String {
        format!("{}/v1/oauth/callback", self.service.url)
    }

    /// Stops the service (SIGTERM) unless it was stopped already, and starts it again on
    /// the same data directory.
    fn restart(&mut self) {
        if self.service.pid().is_some() {
            let status = self.service.stop();
            assert!(status.success(), "{status}: {}", self.service.logs());
        }
        let dir = self.service.data_dir.clone();
        self.service = serve(&dir, "127.0.0.1:0", &[], &[]);
        self.api = self.service.client(&self.token);
    }

    /// A client registered at the provider with Junction's redirect URI: the user's own
    /// OAuth app.
    async fn own_app(&self, extra: Value) -> RegisteredClient {
        let mut metadata = json!({
            "redirect_uris": [self.redirect_uri()],
            "grant_types": ["authorization_code", "refresh_token", "password", "client_credentials"],
            "response_types": ["code"],
        });
        if let (Some(m), Some(e)) = (metadata.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        self.oauth.register_client(metadata).await
    }

    /// Creates a connection of the probe with `auth` and `fields` (the issuer and the API
    /// added).
    async fn create(&self, name: &str, auth: &str, fields: Value) -> Exchange {
        let mut all = json!({"issuer": self.oauth.issuer(), "base_url": self.resource.base_url});
        if let (Some(m), Some(e)) = (all.as_object_mut(), fields.as_object()) {
            m.extend(e.clone());
        }
        self.api
            .post(
                "/v1/connections",
                json!({"connector": "probe", "name": name, "auth": auth, "fields": all}),
            )
            .await
    }

    /// Creates a code-flow connection with the user's own app; returns its id and the
    /// authorization URL to open.
    async fn create_pending(
        &self,
        name: &str,
        auth: &str,
        app: &RegisteredClient,
    ) -> (String, String) {
        let created = self
            .create(
                name,
                auth,
                json!({"client_id": app.client_id, "client_secret": app.client_secret}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let body = created.json();
        assert_eq!(body["health"]["status"], "pending_authorization", "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let url = body["authorization"]["url"].as_str().unwrap().to_owned();
        (id, url)
    }

    /// Creates a connection with the user's own app and consents as `login`.
    async fn connect(&self, name: &str, app: &RegisteredClient, login: &str) -> (String, Page) {
        let (id, url) = self.create_pending(name, "oauth", app).await;
        let page = self.browser.consent(&url, login).await;
        (id, page)
    }

    /// Like [`World::connect`], and checks that the consent connected it.
    async fn connected(&self, name: &str, app: &RegisteredClient, login: &str) -> (String, Page) {
        let (id, page) = self.connect(name, app, login).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("is connected"), "{}", page.body);
        assert_eq!(self.health(&id).await, "healthy");
        (id, page)
    }

    async fn whoami(&self, id: &str) -> Exchange {
        self.fetch(id, "/whoami").await
    }

    /// `n` whoami invocations sent at once.
    async fn whoami_at_once(&self, id: &str, n: usize) -> Vec<Exchange> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..n {
            let api = self.api.clone();
            let path = format!("/v1/connections/{id}/invocations");
            calls.spawn(async move {
                api.post(
                    &path,
                    json!({"action": "fetch", "input": {"url": "/whoami"}}),
                )
                .await
            });
        }
        calls.join_all().await
    }

    async fn fetch(&self, id: &str, url: &str) -> Exchange {
        self.api
            .post(
                &format!("/v1/connections/{id}/invocations"),
                json!({"action": "fetch", "input": {"url": url}}),
            )
            .await
    }

    async fn connection(&self, id: &str) -> Value {
        self.api.get(&format!("/v1/connections/{id}")).await.json()
    }

    async fn health(&self, id: &str) -> String {
        self.connection(id).await["health"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn connection_count(&self) -> usize {
        let list = self.api.get("/v1/connections").await;
        assert_eq!(list.status, 200, "{}", list.text);
        list.json()["items"].as_array().unwrap().len()
    }

    async fn reconnect(&self, id: &str) -> Exchange {
        self.api
            .post(&format!("/v1/connections/{id}/reconnect"), json!({}))
            .await
    }

    /// The OAuth callback opened by a program asking for JSON: `url` is a callback URL of
    /// this service, with its query; the world's browser's cookies go with it (the consent
    /// binding the callback requires).
    async fn callback_json(&self, url: &str) -> Exchange {
        let path = url
            .strip_prefix(&self.service.url)
            .unwrap_or_else(|| panic!("{url} is not a URL of {}", self.service.url));
        let cookies = self.browser.cookies_for(url).unwrap_or_default();
        self.service
            .anonymous()
            .send(
                "GET",
                path,
                None,
                &[("accept", "application/json"), ("cookie", &cookies)],
            )
            .await
    }

    /// Token requests of `client_id` the provider answered, successful or not.
    fn token_requests(&self, client_id: &str) -> usize {
        self.oauth
            .events()
            .iter()
            .filter(|e| {
                (e["event"] == "grant.success" || e["event"] == "grant.error")
                    && e["client_id"] == client_id
            })
            .count()
    }

    /// Every grant error of `client_id`, whatever the grant type.
    fn grant_errors(&self, client_id: &str) -> Vec<Value> {
        self.oauth
            .events()
            .into_iter()
            .filter(|e| e["event"] == "grant.error" && e["client_id"] == client_id)
            .collect()
    }
}

/// The identity the API saw, from a `fetch /whoami` invocation: `{sub, client_id, scope}`.
fn identity(exchange: &Exchange) -> Value {
    assert_eq!(exchange.status, 200, "{}", exchange.text);
    let output = &exchange.json()["output"];
    assert_eq!(output["status"], 200, "{output}");
    serde_json::from_str(output["body"].as_str().unwrap()).unwrap()
}

/// The `sub` the API saw, from a `fetch /whoami` invocation.
fn subject(exchange: &Exchange) -> String {
    identity(exchange)["sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The error envelope of a response, after checking its status and code.
fn api_error(exchange: &Exchange, status: u16, code: &str) -> Value {
    assert_eq!(exchange.status, status, "{}", exchange.text);
    let error = exchange.json()["error"].clone();
    assert_eq!(error["code"], code, "{error}");
    error
}

/// The error page the callback answered a browser with, after checking its status and
/// that it is an HTML page naming `code`.
fn error_page(page: &Page, code: &str) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.starts_with("<!doctype html>"), "{}", page.body);
    assert!(
        page.body.contains(&format!("Error code: {code}")),
        "{code} missing from {}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_flow_with_pkce_connects_through_the_consent_and_calls_the_api_with_the_token() {
    let w = world("oauth-code", &[]).await;
    let app = w.own_app(json!({})).await;
    let created = w
        .create(
            "crm",
            "oauth",
            json!({"client_id": app.client_id, "client_secret": app.client_secret}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    assert_eq!(body["health"]["status"], "pending_authorization");
    let id = body["id"].as_str().unwrap().to_owned();
    let url = body["authorization"]["url"].as_str().unwrap().to_owned();
    assert_eq!(body["authorization"]["redirect_uri"], w.redirect_uri());
    // Ten minutes to consent (from the authorization's start, just after the creation).
    let at = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let window = at(&body["authorization"]["expires_at"])
        .duration_since(at(&body["created_at"]))
        .unwrap();
    assert!(
        (Duration::from_secs(595)..=Duration::from_secs(605)).contains(&window),
        "{body}"
    );
    // The link opens this service's start page, which sends the browser to the provider.
    assert!(
        url.starts_with(&format!("{}/v1/oauth/start/", w.service.url)),
        "{url}"
    );
    // Before the consent, an invocation fails at once and says why.
    let early = w.whoami(&id).await;
    assert_eq!(early.status, 409, "{}", early.text);
    assert_eq!(early.json()["error"]["code"], "needs_reauthentication");

    let page = w.browser.consent(&url, "ann").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let provider_url = page.visited_url(w.oauth.issuer()).unwrap();
    for part in [
        "code_challenge=",
        "code_challenge_method=S256",
        "state=",
        "prompt=consent",
    ] {
        assert!(
            provider_url.contains(part),
            "{part} missing from {provider_url}"
        );
    }
    assert!(!provider_url.contains("code_verifier"), "{provider_url}");
    assert!(page.url.starts_with(&w.redirect_uri()), "{}", page.url);
    assert!(page.body.contains("is connected"), "{}", page.body);
    assert_eq!(w.connection(&id).await["health"]["status"], "healthy");
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 1);

    assert_eq!(subject(&w.whoami(&id).await), "ann");
    assert_eq!(w.resource.tokens_seen().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Grants without a browser
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_client_credentials_grant_with_the_users_own_app_connects_at_creation_and_a_wrong_secret_creates_nothing()
 {
    let w = world("oauth-cc", &[]).await;
    let machine = w
        .oauth
        .register_client(json!({
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "access_token_ttl": 4,
        }))
        .await;

    let created = w
        .create(
            "machine",
            "oauth-service",
            json!({"client_id": machine.client_id, "client_secret": machine.client_secret}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    assert_eq!(body["health"]["status"], "healthy", "{body}");
    assert!(body.get("authorization").is_none(), "{body}");
    assert_eq!(body["secrets"]["client_secret"], true, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(w.oauth.grants("client_credentials", &machine.client_id), 1);

    // The API sees the client itself: no user.
    let who = identity(&w.whoami(&id).await);
    assert!(who["sub"].is_null(), "{who}");
    assert_eq!(who["client_id"], machine.client_id.as_str(), "{who}");
    // The token obtained at creation served the invocation.
    assert_eq!(w.oauth.grants("client_credentials", &machine.client_id), 1);

    // Reconnecting runs the grant again, on the same connection.
    let reconnected = w.reconnect(&id).await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    let body = reconnected.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["health"]["status"], "healthy", "{body}");
    assert!(body.get("authorization").is_none(), "{body}");
    assert_eq!(w.oauth.grants("client_credentials", &machine.client_id), 2);
    let who = identity(&w.whoami(&id).await);
    assert_eq!(who["client_id"], machine.client_id.as_str(), "{who}");
    let seen = w.resource.tokens_seen();
    assert_ne!(seen[0], seen[1], "the reconnect did not replace the token");

    // No refresh token: when the token is due for renewal (at 2 s), the grant runs again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let who = identity(&w.whoami(&id).await);
    assert_eq!(who["client_id"], machine.client_id.as_str(), "{who}");
    assert_eq!(w.oauth.grants("client_credentials", &machine.client_id), 3);
    assert_eq!(w.oauth.grants("refresh_token", &machine.client_id), 0);
    assert_eq!(w.resource.unauthorized_count(), 0);

    // A connection without OAuth has nothing to reconnect.
    let bearer = w
        .api
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "plain", "auth": "bearer",
                   "fields": {"token": "t0k3n", "base_url": w.resource.base_url}}),
        )
        .await;
    assert_eq!(bearer.status, 201, "{}", bearer.text);
    let plain = bearer.json()["id"].as_str().unwrap().to_owned();
    let refused = w.reconnect(&plain).await;
    let error = api_error(&refused, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "auth", "{error}");

    let refused = w
        .create(
            "machine-wrong",
            "oauth-service",
            json!({"client_id": machine.client_id, "client_secret": "not-the-secret"}),
        )
        .await;
    let error = api_error(&refused, 400, "authorization_failed");
    assert_eq!(
        error["details"]["provider_error"], "invalid_client",
        "{error}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("client secret"), "{message}");
    assert!(!refused.text.contains("not-the-secret"), "{}", refused.text);
    assert_eq!(
        w.connection_count().await,
        2,
        "a refused grant created a connection"
    );
    assert_eq!(w.grant_errors(&machine.client_id).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_connects_as_the_user_and_a_wrong_password_creates_nothing() {
    let w = world("oauth-password", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 4})).await;
    let fields = |password: &str| {
        json!({
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "username": "alice",
            "password": password,
        })
    };

    let created = w.create("mail", "oauth-password", fields(PASSWORD)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    assert_eq!(body["health"]["status"], "healthy", "{body}");
    assert_eq!(body["secrets"]["password"], true, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(w.oauth.grants("password", &app.client_id), 1);
    assert_eq!(subject(&w.whoami(&id).await), "alice");

    // The grant revoked at the provider: the refresh is refused, and the password (still
    // right) gets new tokens without the user.
    let refresh = w
        .oauth
        .latest_token("refresh_token", &app.client_id)
        .unwrap();
    w.oauth.revoke(&app, &refresh).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(subject(&w.whoami(&id).await), "alice");
    let errors = w.oauth.grant_errors("refresh_token", &app.client_id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"], "invalid_grant");
    assert_eq!(w.oauth.grants("password", &app.client_id), 2);
    assert_eq!(w.health(&id).await, "healthy");

    let refused = w
        .create("mail-wrong", "oauth-password", fields("guess"))
        .await;
    let error = api_error(&refused, 400, "authorization_failed");
    assert_eq!(
        error["details"]["provider_error"], "invalid_grant",
        "{error}"
    );
    assert_eq!(
        w.connection_count().await,
        1,
        "a refused grant created a connection"
    );
    assert_eq!(w.oauth.grants("password", &app.client_id), 2);
}

// ---------------------------------------------------------------------------------------
// The service's own OAuth app
// ---------------------------------------------------------------------------------------

/// A loopback port nothing listens on: one the system just gave and took back.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes `[oauth_apps.probe]` for `app` (its secret read from `$PROBE_SECRET`), with the
/// provider's endpoints when `endpoints` is given.
fn write_app_config(
    dir: &Path,
    app: &RegisteredClient,
    endpoints: Option<&OAuthServer>,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let mut text = format!(
        "[oauth_apps.probe]\nclient_id = {}\nclient_secret_env = \"PROBE_SECRET\"\n",
        quoted(&app.client_id)
    );
    if let Some(oauth) = endpoints {
        text.push_str(&format!(
            "authorize_url = {}\ntoken_url = {}\n",
            quoted(&format!("{}/auth?prompt=consent", oauth.issuer())),
            quoted(&oauth.token_endpoint()),
        ));
    }
    let file = dir.join("junction.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_own_app_from_its_configuration_connects_a_connection_that_brings_no_app() {
    let oauth = blocking(OAuthServer::start);
    let resource = Resource::start(&oauth).await;
    // The app is registered with the service's callback before the service starts: its
    // address is chosen first.
    let listen = format!("127.0.0.1:{}", free_port());
    let app = oauth
        .register_client(json!({
            "redirect_uris": [format!("http://{listen}/v1/oauth/callback")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }))
        .await;
    let (dir, token) = tenant("oauth-service-app");
    let config = write_app_config(&dir.with_extension("config"), &app, Some(&oauth));
    let secret_env = [("PROBE_SECRET", app.client_secret.as_str())];
    let config_flag = ["--config", config.to_str().unwrap()];
    let service = serve(&dir, &listen, &config_flag, &secret_env);
    let w = World::new(oauth, resource, service, token);
    assert_eq!(w.service.url, format!("http://{listen}"));

    let uri = w.api.get("/v1/oauth/redirect-uri").await;
    assert_eq!(uri.status, 200, "{}", uri.text);
    assert_eq!(uri.json()["redirect_uri"], w.redirect_uri());

    // No client_id: the service's app.
    let created = w.create("crm", "oauth", json!({})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    let url = body["authorization"]["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/v1/oauth/start/", w.service.url)),
        "{url}"
    );
    let page = w.browser.consent(&url, "bea").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let provider_url = page
        .visited_url(&format!("{}/auth?", w.oauth.issuer()))
        .unwrap_or_else(|| panic!("{:?}", page.visited))
        .to_owned();
    assert!(
        provider_url.contains(&format!("client_id={}", app.client_id)),
        "{provider_url}"
    );
    assert!(page.body.contains("is connected"), "{}", page.body);
    assert_eq!(w.health(&id).await, "healthy");
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 1);
    let who = identity(&w.whoami(&id).await);
    assert_eq!(who["sub"], "bea", "{who}");
    assert_eq!(who["client_id"], app.client_id.as_str(), "{who}");
    // The service's secret is its configuration's, never the connection's.
    assert_eq!(w.connection(&id).await["secrets"]["client_secret"], false);
    assert!(!w.service.logs().contains(&app.client_secret));

    // Without the endpoints in the configuration, the service's app is not sent to the
    // ones the connector builds from the `issuer` field a user chose.
    let (bare_dir, bare_token) = tenant("oauth-service-app-bare");
    let bare_config = write_app_config(&bare_dir.with_extension("config"), &app, None);
    let bare_flag = ["--config", bare_config.to_str().unwrap()];
    let bare = serve(&bare_dir, "127.0.0.1:0", &bare_flag, &secret_env);
    let api = bare.client(&bare_token);
    let refused = api
        .post(
            "/v1/connections",
            json!({
                "connector": "probe",
                "name": "crm",
                "auth": "oauth",
                "fields": {"issuer": w.oauth.issuer(), "base_url": w.resource.base_url},
            }),
        )
        .await;
    let error = api_error(&refused, 400, "invalid_request");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("only sent to endpoints its configuration names"),
        "{message}"
    );
    assert!(
        message.contains("authorize_url") && message.contains("token_url"),
        "{message}"
    );
    let list = api.get("/v1/connections").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 1);
}

// ---------------------------------------------------------------------------------------
// Renewal
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_is_renewed_before_it_expires_without_the_api_ever_refusing_it() {
    let w = world("oauth-refresh-early", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 4})).await;
    let (id, _) = w.connected("crm", &app, "cal").await;
    assert_eq!(subject(&w.whoami(&id).await), "cal");
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 0);

    // Renewal is due at half the lifetime (2 s), well before the expiry (4 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(subject(&w.whoami(&id).await), "cal");

    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 1);
    assert_eq!(
        w.resource.unauthorized_count(),
        0,
        "{:?}",
        w.resource.seen()
    );
    let mut seen = w.resource.tokens_seen();
    assert_eq!(seen.len(), 2);
    seen.dedup();
    assert_eq!(seen.len(), 2, "the second call did not use a new token");
    assert_eq!(
        seen.last().cloned(),
        w.oauth.latest_token("access_token", &app.client_id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_the_api_refuses_is_renewed_once_and_the_request_sent_again() {
    let w = world("oauth-refresh-401", &[]).await;
    let app = w.own_app(json!({})).await;
    let (id, _) = w.connected("crm", &app, "dan").await;
    assert_eq!(subject(&w.whoami(&id).await), "dan");

    // The API ends the token's session on its own; the provider still says it is active.
    w.resource.reject_tokens_seen();
    let retried = w.whoami(&id).await;
    assert_eq!(subject(&retried), "dan");
    assert_eq!(
        w.resource.unauthorized_count(),
        1,
        "{:?}",
        w.resource.seen()
    );
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 1);
    assert_eq!(w.resource.tokens_seen().len(), 3);

    // The renewed token is kept: the next call uses it without another renewal.
    assert_eq!(subject(&w.whoami(&id).await), "dan");
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 1);
    assert_eq!(w.resource.unauthorized_count(), 1);
    assert_eq!(w.health(&id).await, "healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_invocations_share_one_renewal_before_expiry_and_after_a_401() {
    let w = world("oauth-refresh-once", &[]).await;
    // Rotation on: two renewals with the same refresh token would be refused, and the
    // provider would then revoke the grant.
    let app = w.own_app(json!({"access_token_ttl": 6})).await;
    let (id, _) = w.connected("crm", &app, "ned").await;
    assert_eq!(subject(&w.whoami(&id).await), "ned");
    const CALLS: usize = 6;

    // Due for renewal (at 3 s), all at once.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    for done in w.whoami_at_once(&id, CALLS).await {
        assert_eq!(subject(&done), "ned");
    }
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 1);

    // Refused by the API, all at once: one renewal; each call refused is sent again with
    // its token (a call that starts after the renewal uses the new token at once).
    w.resource.reject_tokens_seen();
    for done in w.whoami_at_once(&id, CALLS).await {
        assert_eq!(subject(&done), "ned");
    }
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 2);
    assert_eq!(w.grant_errors(&app.client_id), Vec::<Value>::new());
    let refused = w.resource.unauthorized_count();
    assert!((1..=CALLS).contains(&refused), "{:?}", w.resource.seen());
    assert_eq!(w.resource.tokens_seen().len(), 1 + 2 * CALLS + refused);
    assert_eq!(w.health(&id).await, "healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_without_a_refresh_token_serves_until_it_expires_then_the_connection_needs_reauthentication()
 {
    let w = world("oauth-no-refresh-token", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 8})).await;
    // Without `offline_access` the provider issues no refresh token.
    let created = w
        .create(
            "crm",
            "oauth",
            json!({"client_id": app.client_id, "client_secret": app.client_secret, "scopes": "read"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    let url = body["authorization"]["url"].as_str().unwrap().to_owned();

    // The callback, as a program asking for JSON sees it: connected, with a warning.
    let stopped = w
        .browser
        .consent_until(&url, "oli", &w.redirect_uri())
        .await;
    let provider_url = stopped.visited_url(w.oauth.issuer()).unwrap();
    assert!(!provider_url.contains("offline_access"), "{provider_url}");
    let connected = w.callback_json(&stopped.url).await;
    let consented = std::time::Instant::now();
    assert_eq!(connected.status, 200, "{}", connected.text);
    let done = connected.json();
    assert_eq!(done["connection_id"], id.as_str(), "{done}");
    assert_eq!(done["health"], "healthy", "{done}");
    assert_eq!(done["refresh_token"], false, "{done}");
    assert_eq!(done["scopes"], json!(["read"]), "{done}");
    let warning = done["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("no refresh token") && warning.contains("when it expires"),
        "{done}"
    );
    assert_eq!(subject(&w.whoami(&id).await), "oli");

    // Past the point where a token with a refresh token would be renewed (half its life),
    // the token is still valid: with nothing to renew it with, it is used until it
    // expires, as the warning said.
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(consented.elapsed())).await;
    let later = w.whoami(&id).await;
    assert_eq!(
        later.status, 200,
        "a valid access token was given up at half its lifetime: {}",
        later.text
    );
    assert_eq!(subject(&later), "oli");

    // Once it has expired, only a new consent helps, and the connection says so.
    tokio::time::sleep(Duration::from_millis(8600).saturating_sub(consented.elapsed())).await;
    let expired = w.whoami(&id).await;
    let error = api_error(&expired, 409, "needs_reauthentication");
    assert!(
        error["message"].as_str().unwrap().contains("reconnect"),
        "{error}"
    );
    assert_eq!(w.health(&id).await, "needs_reauthentication");
    assert_eq!(
        w.token_requests(&app.client_id),
        1,
        "{}",
        w.oauth.events_text()
    );
}

/// Calls whoami on `id` `renewals` times, each after its token is due for renewal (the
/// app's tokens live 2 s: renewal at 1 s); each must succeed as `login`.
async fn call_across_renewals(w: &World, id: &str, login: &str, renewals: usize) {
    for _ in 0..renewals {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(subject(&w.whoami(id).await), login);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_refresh_tokens_are_saved_before_use_and_survive_a_restart() {
    let mut w = world("oauth-rotation", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 2})).await;
    let (id, _) = w.connected("crm", &app, "eve").await;
    assert_eq!(subject(&w.whoami(&id).await), "eve");

    call_across_renewals(&w, &id, "eve", 3).await;
    let renewed = w.oauth.grants("refresh_token", &app.client_id);
    assert!(
        renewed >= 3,
        "{renewed} renewals; events:\n{}",
        w.oauth.events_text()
    );
    assert_eq!(w.grant_errors(&app.client_id), Vec::<Value>::new());
    // Each renewal rotated the refresh token: the provider issued one per grant.
    assert_eq!(
        w.oauth.tokens("refresh_token", &app.client_id).len(),
        renewed + 1,
        "{}",
        w.oauth.events_text()
    );

    // A new process reads the last refresh token from the store: reusing an older one
    // would be refused (and would revoke the grant).
    w.restart();
    call_across_renewals(&w, &id, "eve", 1).await;
    assert!(w.oauth.grants("refresh_token", &app.client_id) > renewed);
    assert_eq!(w.grant_errors(&app.client_id), Vec::<Value>::new());
    assert_eq!(w.health(&id).await, "healthy");
    assert_eq!(
        w.resource.unauthorized_count(),
        0,
        "{:?}",
        w.resource.seen()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_the_provider_does_not_rotate_keeps_working_across_renewals() {
    let w = world("oauth-no-rotation", &[]).await;
    let app = w
        .own_app(json!({"access_token_ttl": 2, "refresh_token_rotation": "never"}))
        .await;
    let (id, _) = w.connected("crm", &app, "fay").await;
    assert_eq!(subject(&w.whoami(&id).await), "fay");

    call_across_renewals(&w, &id, "fay", 3).await;
    assert!(w.oauth.grants("refresh_token", &app.client_id) >= 3);
    assert_eq!(w.grant_errors(&app.client_id), Vec::<Value>::new());
    // One refresh token all along.
    assert_eq!(w.oauth.tokens("refresh_token", &app.client_id).len(), 1);
    assert_eq!(w.health(&id).await, "healthy");
}

// ---------------------------------------------------------------------------------------
// Re-authentication
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_grant_makes_the_connection_need_reauthentication_until_a_reconnect_that_keeps_its_id()
 {
    let w = world("oauth-revoked", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 2})).await;
    let (id, _) = w.connected("crm", &app, "gil").await;
    assert_eq!(subject(&w.whoami(&id).await), "gil");

    // The user revokes the access at the provider.
    let refresh = w
        .oauth
        .latest_token("refresh_token", &app.client_id)
        .unwrap();
    w.oauth.revoke(&app, &refresh).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let refused = w.whoami(&id).await;
    let error = api_error(&refused, 409, "needs_reauthentication");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("reconnect"), "{message}");
    assert!(!message.contains(&refresh), "{message}");
    let errors = w.oauth.grant_errors("refresh_token", &app.client_id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"], "invalid_grant");
    let health = w.connection(&id).await["health"].clone();
    assert_eq!(health["status"], "needs_reauthentication", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("invalid_grant"),
        "{health}"
    );

    // From now on an invocation fails at once: no token request, no API call.
    let requests = w.token_requests(&app.client_id);
    let api_calls = w.resource.seen().len();
    let again = w.whoami(&id).await;
    let error = api_error(&again, 409, "needs_reauthentication");
    assert!(
        error["message"].as_str().unwrap().contains("reconnect"),
        "{error}"
    );
    assert_eq!(w.token_requests(&app.client_id), requests);
    assert_eq!(w.resource.seen().len(), api_calls);

    // Reconnecting keeps the connection (and its id) and asks for a new consent.
    let reconnected = w.reconnect(&id).await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    let body = reconnected.json();
    assert_eq!(body["id"], id.as_str());
    let url = body["authorization"]["url"].as_str().unwrap().to_owned();
    assert_eq!(body["authorization"]["redirect_uri"], w.redirect_uri());
    let page = w.browser.consent(&url, "gil").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.visited_url(w.oauth.issuer())
            .is_some_and(|u| u.contains("state=")),
        "{:?}",
        page.visited
    );
    assert!(page.body.contains("is connected"), "{}", page.body);
    let health = w.connection(&id).await["health"].clone();
    assert_eq!(health["status"], "healthy", "{health}");
    assert!(health["reason"].is_null(), "{health}");
    assert_eq!(subject(&w.whoami(&id).await), "gil");
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 2);
    assert_eq!(w.connection_count().await, 1);

    // The invocations before and after are records of the same connection.
    let list = w
        .api
        .get(&format!("/v1/invocations?connection_id={id}"))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(
        items.iter().all(|i| i["connection_id"] == id.as_str()),
        "{items:?}"
    );
    let outcomes: Vec<&str> = items
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "needs_reauthentication",
            "needs_reauthentication",
            "ok"
        ],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_needs_the_edit_permission_while_invoking_needs_only_use() {
    let w = world("oauth-reconnect-permission", &[]).await;
    let app = w.own_app(json!({})).await;
    let folder = w.api.post("/v1/folders", json!({"name": "shared"})).await;
    assert_eq!(folder.status, 201, "{}", folder.text);
    let folder = folder.json()["id"].as_str().unwrap().to_owned();
    let created = w
        .api
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "crm", "auth": "oauth", "folder_id": folder,
                   "fields": {"issuer": w.oauth.issuer(), "base_url": w.resource.base_url,
                              "client_id": app.client_id, "client_secret": app.client_secret}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let url = created.json()["authorization"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = w.browser.consent(&url, "pat").await;
    assert_eq!(page.status, 200, "{}", page.body);

    let member = w
        .api
        .post("/v1/principals", json!({"name": "mia", "role": "member"}))
        .await;
    assert_eq!(member.status, 201, "{}", member.text);
    let member = member.json();
    let member_id = member["principal"]["id"].as_str().unwrap().to_owned();
    let mia = w.service.client(member["token"]["token"].as_str().unwrap());
    let grants = format!("/v1/folders/{folder}/grants/{member_id}");
    let grant = |permissions: Value| w.api.put(&grants, json!({ "permissions": permissions }));
    let granted = grant(json!(["view", "use"])).await;
    assert_eq!(granted.status, 200, "{}", granted.text);

    let path = format!("/v1/connections/{id}/invocations");
    let input = json!({"action": "fetch", "input": {"url": "/whoami"}});
    assert_eq!(subject(&mia.post(&path, input.clone()).await), "pat");
    let refused = mia
        .post(&format!("/v1/connections/{id}/reconnect"), json!({}))
        .await;
    api_error(&refused, 403, "forbidden");
    assert_eq!(w.health(&id).await, "healthy");

    let granted = grant(json!(["view", "use", "edit"])).await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    let reconnected = mia
        .post(&format!("/v1/connections/{id}/reconnect"), json!({}))
        .await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    let url = reconnected.json()["authorization"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // Mia consents as herself: the connection now acts as her.
    let page = Browser::new().consent(&url, "mia").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(subject(&mia.post(&path, input).await), "mia");
    assert_eq!(subject(&w.whoami(&id).await), "mia");
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_client_secret_drops_the_tokens_until_the_connection_is_reconnected() {
    let w = world("oauth-edit-secret", &[]).await;
    let app = w.own_app(json!({})).await;
    let (id, _) = w.connected("crm", &app, "hal").await;
    assert_eq!(subject(&w.whoami(&id).await), "hal");

    // An edit that does not touch the grant keeps the tokens.
    let noted = w
        .api
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"name": "crm-renamed", "fields": {"note": "hello"}}),
        )
        .await;
    assert_eq!(noted.status, 200, "{}", noted.text);
    assert_eq!(
        noted.json()["health"]["status"],
        "healthy",
        "{}",
        noted.text
    );
    assert_eq!(subject(&w.whoami(&id).await), "hal");
    assert_eq!(w.resource.tokens_seen().len(), 2);
    assert_eq!(w.oauth.grants("refresh_token", &app.client_id), 0);

    // Another provider would receive the client secret: it must be given again.
    let moved = w
        .api
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"fields": {"issuer": "http://127.0.0.1:1"}}),
        )
        .await;
    let error = api_error(&moved, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "fields.client_secret", "{error}");
    assert_eq!(
        w.connection(&id).await["fields"]["issuer"],
        w.oauth.issuer()
    );
    assert_eq!(w.health(&id).await, "healthy");
    let api_calls = w.resource.seen().len();

    // The same value: the service cannot tell a secret is unchanged without keeping it
    // in the clear, and tokens belong to the app they were granted to.
    let edited = w
        .api
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"fields": {"client_secret": app.client_secret}}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.json()["health"]["status"], "pending_authorization");
    let refused = w.whoami(&id).await;
    api_error(&refused, 409, "needs_reauthentication");
    assert_eq!(w.resource.seen().len(), api_calls, "the old token was used");

    let reconnected = w.reconnect(&id).await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    let url = reconnected.json()["authorization"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = w.browser.consent(&url, "hal").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(w.health(&id).await, "healthy");
    assert_eq!(subject(&w.whoami(&id).await), "hal");
    let seen = w.resource.tokens_seen();
    assert_ne!(seen.first(), seen.last(), "the token was not replaced");

    // Other scopes need another consent too.
    let rescoped = w
        .api
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"fields": {"scopes": "offline_access read write"}}),
        )
        .await;
    assert_eq!(rescoped.status, 200, "{}", rescoped.text);
    assert_eq!(rescoped.json()["health"]["status"], "pending_authorization");
    api_error(&w.whoami(&id).await, 409, "needs_reauthentication");
}

// ---------------------------------------------------------------------------------------
// The callback's `state`
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_consent_link_names_who_asks_and_only_the_browser_that_continued_from_it_can_connect() {
    let w = world("oauth-consent-link", &[]).await;
    let app = w.own_app(json!({})).await;
    let (id, url) = w.create_pending("crm", "oauth", &app).await;
    let path = url.strip_prefix(&w.service.url).unwrap().to_owned();

    // The page names the connection, its tenant and who started it, and cannot be framed.
    let shown = w.service.anonymous().get(&path).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    for part in [
        "<strong>crm</strong>",
        "<strong>ada</strong>",
        "<strong>acme</strong>",
        "your account at 127.0.0.1",
        "Continue only if you asked for this",
    ] {
        assert!(shown.text.contains(part), "{part} missing: {}", shown.text);
    }
    assert_eq!(shown.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(
        shown
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("frame-ancestors 'none'")),
        "{}",
        shown.headers
    );
    assert_eq!(shown.header("cache-control").as_deref(), Some("no-store"));
    let check_cookie = shown.header("set-cookie").unwrap();
    assert!(
        check_cookie.starts_with("junction_check_")
            && check_cookie.contains("HttpOnly")
            && check_cookie.contains("SameSite=Strict"),
        "{check_cookie}"
    );

    // A form posted from another site (it lacks the page's cookie) goes nowhere.
    let page = Browser::new().get(&url).await;
    let (action, fields) = junction_start_form(&page).expect("the start page's form");
    let forged = Browser::new().post_form(&action, &fields).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(forged.visited.len(), 1, "{:?}", forged.visited);

    // The owner continues from the page, up to the provider: their browser is bound.
    let owner = Browser::new();
    let at_provider = owner.consent_until(&url, "ann", w.oauth.issuer()).await;
    assert!(at_provider.url.contains("state="), "{}", at_provider.url);
    assert!(
        owner
            .cookies_for(&w.redirect_uri())
            .is_some_and(|c| c.contains("junction_consent_")),
        "the binding cookie is sent to the callback"
    );
    // Nobody else can continue now.
    let late = Browser::new();
    let page = late.get(&url).await;
    let (action, fields) = junction_start_form(&page).unwrap();
    let taken = late.post_form(&action, &fields).await;
    assert_eq!(taken.status, 409, "{}", taken.body);

    // The provider's URL handed to someone else: their consent connects nothing.
    let victim = Browser::new();
    let refused = victim.consent(&at_provider.url, "mallory").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("oauth_browser_mismatch"),
        "{}",
        refused.body
    );
    assert_eq!(w.health(&id).await, "pending_authorization");
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 0);

    // The owner's consent still connects: the refusal consumed nothing.
    let connected = owner.consent(&at_provider.url, "ann").await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    assert!(
        connected.body.contains("is connected"),
        "{}",
        connected.body
    );
    assert_eq!(subject(&w.whoami(&id).await), "ann");
    // And the link is spent.
    let spent = Browser::new().get(&url).await;
    assert_eq!(spent.status, 410, "{}", spent.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_with_an_unknown_a_replayed_or_no_state_is_refused_and_changes_nothing() {
    let w = world("oauth-state", &[]).await;
    let app = w.own_app(json!({})).await;
    let (id, page) = w.connected("crm", &app, "ivy").await;
    let connected_at = page.url.clone();
    assert!(
        connected_at.contains("code=") && connected_at.contains("state="),
        "{connected_at}"
    );
    assert_eq!(subject(&w.whoami(&id).await), "ivy");

    // A state this service never issued: an HTML page for a browser, JSON on request.
    let made_up = format!("{}?code=abc&state=made-up", w.redirect_uri());
    let page = w.browser.get(&made_up).await;
    error_page(&page, "oauth_state_invalid");
    let json = w.callback_json(&made_up).await;
    let error = api_error(&json, 400, "oauth_state_invalid");
    assert!(
        error["message"].as_str().unwrap().contains("reconnect"),
        "{error}"
    );
    assert!(
        json.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{}",
        json.headers
    );

    // The exact callback the consent ended on, once more.
    let replayed = w.browser.get(&connected_at).await;
    error_page(&replayed, "oauth_state_used");
    api_error(
        &w.callback_json(&connected_at).await,
        400,
        "oauth_state_used",
    );
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 1);
    let health = w.connection(&id).await["health"].clone();
    assert_eq!(health["status"], "healthy", "{health}");
    assert!(health["reason"].is_null(), "{health}");
    assert_eq!(subject(&w.whoami(&id).await), "ivy");

    // No state at all.
    let stateless = format!("{}?code=abc", w.redirect_uri());
    error_page(&w.browser.get(&stateless).await, "oauth_state_missing");
    api_error(
        &w.callback_json(&stateless).await,
        400,
        "oauth_state_missing",
    );
    let empty = format!("{}?code=abc&state=", w.redirect_uri());
    api_error(&w.callback_json(&empty).await, 400, "oauth_state_missing");
    assert_eq!(w.health(&id).await, "healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consent_finished_after_the_authorization_expired_is_refused() {
    // A consent window of four seconds: the consents stop before the callback, which is
    // opened once the window has passed.
    let ttl = Duration::from_secs(4);
    let w = world_with_env(
        "oauth-state-expired",
        &[],
        &[(
            "JUNCTION_TEST_AUTHORIZATION_TTL_MS",
            &ttl.as_millis().to_string(),
        )],
    )
    .await;
    let app = w.own_app(json!({})).await;

    let started = std::time::Instant::now();
    let (id, url) = w.create_pending("crm", "oauth", &app).await;
    let (other, other_url) = w.create_pending("crm-2", "oauth", &app).await;
    let first = w
        .browser
        .consent_until(&url, "jon", &w.redirect_uri())
        .await;
    let stopped = w
        .browser
        .consent_until(&other_url, "jon", &w.redirect_uri())
        .await;
    assert!(first.url.contains("code="), "{}", first.url);
    assert!(stopped.url.contains("code="), "{}", stopped.url);
    tokio::time::sleep(ttl.saturating_sub(started.elapsed()) + Duration::from_millis(200)).await;

    let page = w.browser.get(&first.url).await;
    error_page(&page, "oauth_state_expired");
    assert!(page.body.contains("expired"), "{}", page.body);
    assert_eq!(w.health(&id).await, "pending_authorization");
    // The start link has expired too.
    let start = w.browser.get(&url).await;
    assert_eq!(start.status, 410, "{}", start.body);
    assert!(start.body.contains("expired"), "{}", start.body);

    // The same for a program asking for JSON.
    let error = api_error(
        &w.callback_json(&stopped.url).await,
        400,
        "oauth_state_expired",
    );
    assert!(
        error["message"].as_str().unwrap().contains("reconnect"),
        "{error}"
    );
    assert_eq!(w.health(&other).await, "pending_authorization");
    // The codes were never exchanged.
    assert_eq!(w.oauth.grants("authorization_code", &app.client_id), 0);
    api_error(&w.whoami(&other).await, 409, "needs_reauthentication");
}

// ---------------------------------------------------------------------------------------
// What the provider refuses
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_consent_a_wrong_client_secret_and_a_scope_the_app_may_not_ask_for_are_explained()
 {
    let w = world("oauth-provider-errors", &[]).await;

    // The user cancels at the provider.
    let app = w.own_app(json!({})).await;
    let (declined, url) = w.create_pending("declined", "oauth", &app).await;
    let page = w.browser.abort(&url).await;
    assert!(page.url.starts_with(&w.redirect_uri()), "{}", page.url);
    error_page(&page, "authorization_failed");
    assert!(page.body.contains("access_denied"), "{}", page.body);
    assert!(page.body.contains("declined"), "{}", page.body);
    let health = w.connection(&declined).await["health"].clone();
    assert_eq!(health["status"], "pending_authorization", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("access_denied"),
        "{health}"
    );

    // The app's secret is wrong: the consent works, the code exchange does not.
    let wrong = RegisteredClient {
        client_secret: "not-the-app-secret".into(),
        ..app.clone()
    };
    let (id, url) = w.create_pending("wrong-secret", "oauth", &wrong).await;
    let page = w.browser.consent(&url, "kim").await;
    error_page(&page, "authorization_failed");
    assert!(page.body.contains("invalid_client"), "{}", page.body);
    assert!(
        page.body
            .contains("check the client id and the client secret"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("not-the-app-secret"), "{}", page.body);
    let health = w.connection(&id).await["health"].clone();
    assert_eq!(health["status"], "pending_authorization", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("invalid_client"),
        "{health}"
    );
    let errors = w.grant_errors(&app.client_id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"], "invalid_client");

    // An app that may not ask for `read`, which the connector requires.
    let narrow = w.own_app(json!({"scope": "openid offline_access"})).await;
    let (id, url) = w.create_pending("narrow", "oauth", &narrow).await;
    let page = w.browser.consent(&url, "kim").await;
    assert!(page.url.starts_with(&w.redirect_uri()), "{}", page.url);
    error_page(&page, "authorization_failed");
    assert!(page.body.contains("invalid_scope"), "{}", page.body);
    assert!(page.body.contains("read"), "{}", page.body);
    assert_eq!(w.health(&id).await, "pending_authorization");
    assert_eq!(w.oauth.grants("authorization_code", &narrow.client_id), 0);

    for id in [&declined, &id] {
        api_error(&w.whoami(id).await, 409, "needs_reauthentication");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_without_a_mandatory_scope_is_refused_and_names_the_missing_scope() {
    let w = world("oauth-missing-scope", &[]).await;
    let app = w.own_app(json!({})).await;
    // The provider never grants `audit`.
    let (id, url) = w.create_pending("audited", "oauth-audit", &app).await;
    let page = w.browser.consent(&url, "lee").await;
    assert!(
        page.visited_url(w.oauth.issuer())
            .is_some_and(|u| u.contains("audit")),
        "{:?}",
        page.visited
    );
    error_page(&page, "missing_scopes");
    assert!(page.body.contains("audit"), "{}", page.body);
    let health = w.connection(&id).await["health"].clone();
    assert_eq!(health["status"], "pending_authorization", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("audit"),
        "{health}"
    );

    // The same for a program asking for JSON, after a reconnect.
    let reconnected = w.reconnect(&id).await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    let url = reconnected.json()["authorization"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let stopped = w
        .browser
        .consent_until(&url, "lee", &w.redirect_uri())
        .await;
    let json = w.callback_json(&stopped.url).await;
    let error = api_error(&json, 400, "missing_scopes");
    assert_eq!(
        error["details"]["missing_scopes"],
        json!(["audit"]),
        "{error}"
    );
    assert_eq!(error["details"]["connection_id"], id.as_str(), "{error}");
    assert_eq!(w.health(&id).await, "pending_authorization");
    api_error(&w.whoami(&id).await, 409, "needs_reauthentication");
    assert_eq!(w.resource.seen().len(), 0);
}

// ---------------------------------------------------------------------------------------
// Token hygiene
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_the_client_secret_appear_in_no_log_response_page_or_file_and_go_only_to_the_allowed_host()
 {
    let mut w = world("oauth-hygiene", &[]).await;
    let app = w.own_app(json!({"access_token_ttl": 2})).await;
    let (id, connected) = w.connected("crm", &app, "max").await;
    let mut pages = vec![connected];
    assert_eq!(subject(&w.whoami(&id).await), "max");
    // A renewal before expiry, then one after a 401.
    call_across_renewals(&w, &id, "max", 1).await;
    w.resource.reject_tokens_seen();
    assert_eq!(subject(&w.whoami(&id).await), "max");
    assert!(w.oauth.grants("refresh_token", &app.client_id) >= 2);
    // A replayed callback page.
    let replayed = w.browser.get(&pages[0].url).await;
    pages.push(replayed);
    // An API that echoes the token: the connector (and so the invocation's output) gets
    // it scrubbed.
    let echoed = w.fetch(&id, "/echo/authorization").await;
    assert_eq!(echoed.status, 200, "{}", echoed.text);
    let output = &echoed.json()["output"];
    let sent = w
        .resource
        .seen()
        .last()
        .unwrap()
        .bearer()
        .unwrap()
        .to_owned();
    assert_eq!(output["status"], 200, "{output}");
    assert!(
        !output["body"].as_str().unwrap().contains(&sent),
        "{output}"
    );
    // What the API says of the connection and its invocations.
    for path in [format!("/v1/connections/{id}"), "/v1/invocations".into()] {
        let read = w.api.get(&path).await;
        assert_eq!(read.status, 200, "{}", read.text);
    }

    // The provider is not an allowed host of the connection: the token is not sent there,
    // nor to the API under another name.
    let seen_before = w.resource.seen().len();
    let tokens_before = w.token_requests(&app.client_id);
    let api_port = w.resource.addr.port();
    for url in [
        format!("{}/me", w.oauth.issuer()),
        format!("http://localhost:{api_port}/whoami"),
    ] {
        let refused = w.fetch(&id, &url).await;
        let error = api_error(&refused, 502, "denied");
        assert!(
            error["message"].as_str().unwrap().contains("allowed hosts"),
            "{error}"
        );
    }
    assert_eq!(w.resource.seen().len(), seen_before);
    assert_eq!(w.token_requests(&app.client_id), tokens_before);

    let status = w.service.stop();
    assert!(status.success(), "{status}");

    let mut secrets: Vec<(String, String)> = Vec::new();
    for kind in ["access_token", "refresh_token"] {
        for value in w.oauth.tokens(kind, &app.client_id) {
            secrets.push((kind.to_owned(), value));
        }
    }
    assert!(secrets.len() >= 6, "{secrets:?}");
    for token in w.resource.tokens_seen() {
        assert!(
            secrets.iter().any(|(_, v)| *v == token),
            "{token} not issued to the app"
        );
    }
    secrets.push(("client_secret".into(), app.client_secret.clone()));

    let logs = w.service.logs();
    assert!(logs.contains("access token renewed"), "{logs}");
    let exchanges = service::exchanges();
    let files = service::files_under(&w.service.data_dir);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("junction.db")),
        "{:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (kind, value) in &secrets {
        assert!(!logs.contains(value.as_str()), "the {kind} is in the logs");
        for e in &exchanges {
            assert!(
                !e.text.contains(value.as_str()) && !e.headers.contains(value.as_str()),
                "the {kind} is in the response to {} {}",
                e.method,
                e.path
            );
        }
        for page in &pages {
            assert!(
                !page.body.contains(value.as_str()),
                "the {kind} is in a callback page"
            );
        }
        for (path, bytes) in &files {
            assert!(
                !service::contains(bytes, value),
                "the {kind} is in {}",
                path.display()
            );
        }
    }
    // The consent's authorization code and `state` (the authorization URL the API answers
    // carries the state) are kept out of the logs and the files too: only the state's hash
    // is stored.
    for name in ["code", "state"] {
        let value = pages[0].query(name).unwrap();
        assert!(!logs.contains(&value), "the {name} is in the logs");
        for (path, bytes) in &files {
            assert!(
                !service::contains(bytes, &value),
                "the {name} is in {}",
                path.display()
            );
        }
    }
    // Restarting keeps the tokens usable: they were sealed, not lost.
    w.restart();
    assert_eq!(subject(&w.whoami(&id).await), "max");
}
