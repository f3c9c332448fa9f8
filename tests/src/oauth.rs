//! A real OAuth 2.0 / OpenID Connect authorization server for the tests: panva's
//! oidc-provider, configured in `tests/servers/oauth/server.mjs` and run with Node.js on
//! loopback. The harness reads the events the server prints (every token grant, every token
//! saved), so a test can count token requests and look up token values as an administrator
//! of the provider could, and it speaks the provider's standard endpoints: dynamic client
//! registration (RFC 7591), the token endpoint, revocation (RFC 7009) and introspection
//! (RFC 7662).

use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The password of every user of the password grant. The browser sign-in page of the
/// provider's development interactions accepts any password; the harness's browser sends
/// this one anyway.
pub const PASSWORD: &str = "wonderland";

/// A client registered at the provider.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_secret: String,
    /// The whole registration response (RFC 7591 section 3.2.1).
    pub registration: Value,
}

/// A token endpoint response: its status and JSON body.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub status: u16,
    pub body: Value,
}

impl TokenResponse {
    /// A field of the body as text (`access_token`, `refresh_token`, `error`, …).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.body[name].as_str()
    }
}

/// The running authorization server; killed when dropped.
#[derive(Debug)]
pub struct OAuthServer {
    issuer: String,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The server's standard input: kept open for its life, and where marks are written.
    stdin: Mutex<Option<ChildStdin>>,
    /// The last mark written, and the last the server echoed.
    marks_sent: AtomicU64,
    marks_seen: Arc<AtomicU64>,
}

/// The directory of the server and its npm packages.
pub fn server_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join("oauth")
}

/// A client of the provider. Built per call here, so that no pooled connection outlives
/// the async runtime of the test that made it; the resource API keeps one.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        // Node closes idle keep-alive connections after 5 s; a pooled connection reused
        // just then fails. Dropping them sooner avoids the race.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

impl OAuthServer {
    /// Starts `node server.mjs` on a free loopback port and waits until it listens.
    pub fn start() -> OAuthServer {
        let dir = server_dir();
        assert!(
            dir.join("node_modules").join("oidc-provider").is_dir(),
            "the OAuth test server's npm packages are not installed in {}: run `make setup` \
             (it runs `npm ci --prefix tests/servers/oauth`)",
            dir.display()
        );
        let mut child = Command::new("node")
            .args(["server.mjs", "0", "--stop-with-stdin"])
            .current_dir(&dir)
            // Kept open until the child is dropped, and written only marks: the server stops
            // at its end, also when this process dies without dropping it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `node server.mjs` (is Node.js installed?): {e}")
            });

        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let marks_seen = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let out = child.stdout.take().unwrap();
            let events = events.clone();
            let stderr = stderr.clone();
            let marks_seen = marks_seen.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(event) if event["event"] == "mark" => {
                            if let Some(id) = event["id"].as_str().and_then(|i| i.parse().ok()) {
                                marks_seen.store(id, Ordering::SeqCst);
                            }
                        }
                        Ok(event) => {
                            if event["event"] == "listening"
                                && let Some(issuer) = event["issuer"].as_str()
                            {
                                let _ = tx.send(issuer.to_owned());
                            }
                            events.lock().unwrap().push(event);
                        }
                        // Not an event: keep it with the diagnostics.
                        Err(_) => {
                            let mut log = stderr.lock().unwrap();
                            log.push_str(&line);
                            log.push('\n');
                        }
                    }
                }
            });
        }
        {
            let err = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut log = stderr.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(issuer) = rx.recv_timeout(Duration::from_millis(50)) {
                let stdin = Mutex::new(child.stdin.take());
                return OAuthServer {
                    issuer,
                    child,
                    events,
                    stderr,
                    stdin,
                    marks_sent: AtomicU64::new(0),
                    marks_seen,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader threads drain what the process wrote before it exited.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the OAuth server exited ({status}) before listening; its output:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OAuth server did not listen within {START_TIMEOUT:?}; its output:\n{}",
                    stderr.lock().unwrap()
                );
            }
        }
    }

    /// The issuer, `http://127.0.0.1:PORT`; every endpoint is under it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The authorization endpoint.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/auth", self.issuer)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The introspection endpoint (RFC 7662).
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// The revocation endpoint (RFC 7009).
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote that is not an event (its warnings on stderr), for
    /// failure messages.
    pub fn output(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every event so far, in order (the first is `listening`), including those of every
    /// request already answered: the server's output pipe may still hold them when a
    /// response arrives, so a mark is sent through the server and awaited first.
    pub fn events(&self) -> Vec<Value> {
        self.settle();
        self.events.lock().unwrap().clone()
    }

    /// Writes a mark to the server and waits until it comes back on its output, after
    /// everything the server printed before it.
    fn settle(&self) {
        let id = self.marks_sent.fetch_add(1, Ordering::SeqCst) + 1;
        let written = match self.stdin.lock().unwrap().as_mut() {
            Some(stdin) => writeln!(stdin, "{id}").and_then(|()| stdin.flush()).is_ok(),
            None => false,
        };
        if !written {
            return; // The server is gone: what was read is all there is.
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.marks_seen.load(Ordering::SeqCst) < id && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn events_where(&self, event: &str, grant_type: &str, client_id: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e["event"] == event && e["grant_type"] == grant_type && e["client_id"] == client_id
            })
            .collect()
    }

    /// How many token requests of `grant_type` by `client_id` succeeded.
    pub fn grants(&self, grant_type: &str, client_id: &str) -> usize {
        self.events_where("grant.success", grant_type, client_id)
            .len()
    }

    /// The failed token requests of `grant_type` by `client_id`: `grant.error` events, with
    /// `error` (`invalid_grant`, …) and `description`.
    pub fn grant_errors(&self, grant_type: &str, client_id: &str) -> Vec<Value> {
        self.events_where("grant.error", grant_type, client_id)
    }

    /// Every value of the tokens of `kind` (`access_token`, `refresh_token` or
    /// `client_credentials`) saved for `client_id`, oldest first.
    pub fn tokens(&self, kind: &str, client_id: &str) -> Vec<String> {
        let event = format!("{kind}.saved");
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event.as_str() && e["client_id"] == client_id)
            .filter(|e| e["consumed"] != true)
            .filter_map(|e| e["value"].as_str().map(str::to_owned))
            .collect()
    }

    /// The token of `kind` (`access_token`, `refresh_token` or `client_credentials`) last
    /// issued to `client_id`.
    pub fn latest_token(&self, kind: &str, client_id: &str) -> Option<String> {
        self.tokens(kind, client_id).pop()
    }

    /// Waits until `n` token requests of `grant_type` by `client_id` have succeeded; panics
    /// with the events after `timeout`. Returns the count.
    pub async fn wait_for_grants(
        &self,
        grant_type: &str,
        client_id: &str,
        n: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.grants(grant_type, client_id);
            if count >= n {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "{count} of {n} `{grant_type}` grants for {client_id} after {timeout:?}; events:\n{}",
                self.events_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events as text, one a line, for failure messages.
    pub fn events_text(&self) -> String {
        self.events()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Registers a client (RFC 7591) with `metadata`, e.g.
    /// `{"redirect_uris": [..], "grant_types": ["authorization_code", "refresh_token"],
    /// "response_types": ["code"], "access_token_ttl": 5}`. Panics unless the provider
    /// accepts it.
    pub async fn register_client(&self, metadata: Value) -> RegisteredClient {
        let response = http()
            .post(format!("{}/reg", self.issuer))
            .json(&metadata)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status.as_u16(),
            201,
            "the provider refused to register {metadata}: {body}"
        );
        RegisteredClient {
            client_id: body["client_id"].as_str().unwrap().to_owned(),
            client_secret: body["client_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            registration: body,
        }
    }

    /// A token request (`grant_type` and the rest in `params`) as `client`, authenticated
    /// with `client_secret_basic`.
    pub async fn token_request(
        &self,
        client: &RegisteredClient,
        params: &[(&str, &str)],
    ) -> TokenResponse {
        let response = http()
            .post(self.token_endpoint())
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(params)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        TokenResponse { status, body }
    }

    /// Revokes `token` (RFC 7009) as `client`, the client it was issued to. The provider
    /// revokes the whole grant with it: revoking an access token also revokes the refresh
    /// tokens (and other access tokens) of the same authorization.
    pub async fn revoke(&self, client: &RegisteredClient, token: &str) {
        let response = http()
            .post(self.revocation_endpoint())
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "revocation failed: {body}");
    }

    /// Introspects `token` (RFC 7662) as `client` (any confidential client may): `{"active":
    /// false}`, or `active: true` with `sub`, `client_id`, `scope`, `exp`, and `token_type`
    /// (`Bearer`) for access tokens only.
    pub async fn introspect(&self, client: &RegisteredClient, token: &str) -> Value {
        introspect(&http(), &self.introspection_endpoint(), client, token)
            .await
            .unwrap_or_else(|e| panic!("introspection failed: {e}"))
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub async fn discovery(&self) -> Value {
        http()
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// An introspection request; the error is a message.
pub(crate) async fn introspect(
    http: &reqwest::Client,
    endpoint: &str,
    client: &RegisteredClient,
    token: &str,
) -> Result<Value, String> {
    let response = http
        .post(endpoint)
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&[("token", token)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(json!({"status": status.as_u16(), "body": body}).to_string())
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        // SIGKILL to this child's process id; a graceful close would wait for keep-alive
        // connections.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
