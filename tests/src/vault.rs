//! A real server of the HashiCorp Vault HTTP API for the tests: RustyVault (`rvault`, crate
//! `rusty_vault` 0.2.1, built into `target/tools` by `make test-tools`), started on a free
//! loopback port with a file storage in a fresh temp directory, initialised (one unseal key),
//! unsealed, with:
//!
//! - a KV secrets engine (version 1) at `kv/`: [`VaultServer::put_v1`] writes `kv/<path>`,
//!   and `GET /v1/kv/<path>` answers `{"data": {...}, "lease_duration": 3600, ...}`;
//! - a second KV version 1 engine at `kv2/` standing in for a KV version 2 engine, which
//!   RustyVault does not have. [`VaultServer::put_v2`] writes `{"data": {...}, "metadata":
//!   {"version": n, ...}}` at `kv2/data/<path>`, so `GET /v1/kv2/data/<path>` answers exactly
//!   the read shape of KV version 2, `{"data": {"data": {...}, "metadata": {...}}, ...}`.
//!   Only that read is faithful: there are no versions to ask for (`?version=` is ignored),
//!   no `kv2/metadata/` endpoints, and a delete removes the secret (a later read is a 404)
//!   instead of marking the latest version deleted;
//! - AppRole auth at `auth/approle/` with one role: [`VaultServer::approle`] gives its role
//!   id and a fresh secret id, for `POST /v1/auth/approle/login`.
//!
//! What RustyVault 0.2.1 does not do, so tests cannot rely on it: ACL policies are accepted
//! nowhere over HTTP (`/v1/sys/policy/*` answers 404) and enforced nowhere, so every valid
//! token (an AppRole login's, a child token's) may read and write everything. Only an
//! unknown, revoked or expired token is refused (403), and a request without one (400).
//! Tokens with a TTL are revoked by a timer when it runs out. Its error bodies are
//! `{"error": "..."}`, not Vault's `{"errors": [...]}`, and a read of a missing secret is a
//! 404 with an empty body (Vault's is `{"errors": []}`).
//!
//! Reads are counted from the server's own log: the harness starts it with the debug log of
//! its HTTP layer on, which prints one line per request under `/v1/` (other than `/v1/sys/`)
//! before handling it (`logical request, ..., method: GET, path: Path("kv/x")`), into
//! `server.log` in the temp directory. [`VaultServer::reads`] counts the `GET` lines of a
//! path written since the harness finished starting, so the harness's own set-up reads are
//! not counted; afterwards it reads no secret itself (only role ids, in
//! [`VaultServer::approle_with_token_ttl`]). A line is written before the request
//! is answered: once a client has its answer, the read is counted.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many free ports to try when another process takes the one picked first.
const START_ATTEMPTS: usize = 3;

/// Where the KV version 1 engine is mounted.
pub const KV_V1_MOUNT: &str = "kv";

/// Where the KV engine that stands in for KV version 2 is mounted.
pub const KV_V2_MOUNT: &str = "kv2";

/// The AppRole role [`VaultServer::approle`] gives credentials of.
pub const ROLE: &str = "junction";

/// The log filter given to the server (its `log_level`, which it copies into `RUST_LOG`):
/// the request line of its HTTP layer (counted by [`VaultServer::reads`]), the access log
/// (method, path and status of each request, for failure messages), the start-up messages
/// (one says it listens), and warnings.
const LOG_FILTER: &str = "warn,rusty_vault::http::logical=debug,\
    rusty_vault::cli::command::server=info,actix_web::middleware::logger=info";

/// What the server logs once it has bound its port.
const LISTENING: &str = "rusty_vault server starts, waiting for request";

/// The `rvault` binary: `$JUNCTION_TEST_RVAULT`, else `<workspace>/target/tools/bin/rvault`.
pub fn rvault_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JUNCTION_TEST_RVAULT") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package is inside the workspace")
        .join("target")
        .join("tools")
        .join("bin")
        .join("rvault")
}

/// A client for the server. Built per call, so that no pooled connection outlives the async
/// runtime of the test that made it (or a server that was stopped); never through a proxy.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// A running RustyVault server; killed when dropped, and its directory removed. (A test
/// process killed outright leaves it running, as it does `junction serve`.)
#[derive(Debug)]
pub struct VaultServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    unseal_key: String,
    root_token: String,
    role_id: String,
    /// The length of `server.log` when the harness had finished starting: only lines after
    /// it are counted.
    counted_from: u64,
    /// The version last written by `put_v2`, per path.
    versions: Mutex<HashMap<String, u64>>,
}

impl VaultServer {
    /// Starts `rvault server` on a free loopback port and sets it up (see the module
    /// documentation). Panics with the server's output when it does not come up.
    pub async fn start() -> VaultServer {
        let binary = rvault_binary();
        assert!(
            binary.is_file(),
            "RustyVault is not installed at {}: run `make test-tools` (it runs `cargo install \
             rusty_vault --version 0.2.1 --locked --debug --root target/tools`), or set \
             JUNCTION_TEST_RVAULT to an `rvault` binary",
            binary.display()
        );
        let dir = fresh_dir();
        std::fs::create_dir_all(dir.join("data")).expect("create the server's directory");

        let mut attempt = 0;
        let (child, port) = loop {
            attempt += 1;
            let port = free_port();
            write_config(&dir, port);
            let before = listening_messages(&dir);
            let mut child = spawn(&binary, &dir);
            match wait_until_listening(&mut child, port, &dir, before).await {
                Ok(()) => break (child, port),
                // The port was taken between picking it and binding it: pick another.
                Err(log) if log.contains("Address already in use") && attempt < START_ATTEMPTS => {
                    continue;
                }
                Err(log) => panic!("RustyVault did not come up on port {port}; its output:\n{log}"),
            }
        };

        let mut server = VaultServer {
            child: Some(child),
            port,
            dir,
            unseal_key: String::new(),
            root_token: String::new(),
            role_id: String::new(),
            counted_from: 0,
            versions: Mutex::new(HashMap::new()),
        };
        server.set_up().await;
        server.counted_from = server.log_len();
        server
    }

    /// Initialises and unseals the server, mounts the engines, enables AppRole, and checks
    /// that an AppRole login's token reads `kv/`.
    async fn set_up(&mut self) {
        let (status, init) = self
            .call(
                reqwest::Method::PUT,
                "sys/init",
                None,
                Some(json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await;
        self.expect_ok("PUT sys/init", status, &init);
        self.unseal_key = init["keys"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no unseal key in {init}"))
            .to_owned();
        self.root_token = init["root_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no root token in {init}"))
            .to_owned();
        self.unseal().await;

        let root = self.root_token.clone();
        for mount in [KV_V1_MOUNT, KV_V2_MOUNT] {
            let body = json!({"type": "kv", "description": "junction tests"});
            let path = format!("sys/mounts/{mount}");
            let (status, answer) = self
                .call(reqwest::Method::POST, &path, Some(&root), Some(body))
                .await;
            self.expect_ok(&format!("POST {path}"), status, &answer);
        }
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "sys/auth/approle",
                Some(&root),
                Some(json!({"type": "approle"})),
            )
            .await;
        self.expect_ok("POST sys/auth/approle", status, &answer);

        let role = format!("auth/approle/role/{ROLE}");
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &role,
                Some(&root),
                Some(json!({"bind_secret_id": true, "token_policies": ["junction-read"]})),
            )
            .await;
        self.expect_ok(&format!("POST {role}"), status, &answer);
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                &format!("{role}/role-id"),
                Some(&root),
                None,
            )
            .await;
        self.expect_ok(&format!("GET {role}/role-id"), status, &answer);
        self.role_id = answer["data"]["role_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no role id in {answer}"))
            .to_owned();

        // The whole path a client takes: log in with AppRole, read a secret.
        self.put_v1("harness/probe", json!({"ok": true})).await;
        let (role_id, secret_id) = self.approle().await;
        let token = self.login(&role_id, &secret_id).await;
        let (status, answer) = self
            .call(reqwest::Method::GET, "kv/harness/probe", Some(&token), None)
            .await;
        assert!(
            status == 200 && answer["data"]["ok"] == true,
            "an AppRole token cannot read kv/: {status} {answer}; the server's output:\n{}",
            self.output()
        );
        self.delete("kv/harness/probe").await;
    }

    /// `http://127.0.0.1:<port>`; the API is under `/v1/`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (the same after [`VaultServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The root token (policy `root`).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The role id of [`ROLE`] and a new secret id for it (each call makes another; each
    /// may log in any number of times).
    pub async fn approle(&self) -> (String, String) {
        let path = format!("auth/approle/role/{ROLE}/secret-id");
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(&self.root_token),
                Some(json!({})),
            )
            .await;
        self.expect_ok(&format!("POST {path}"), status, &answer);
        let secret_id = answer["data"]["secret_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret id in {answer}"))
            .to_owned();
        (self.role_id.clone(), secret_id)
    }

    /// The role id and a new secret id of a role whose login tokens the server revokes after
    /// `ttl` (whole seconds, at least 1; the role `junction-ttl-<seconds>`, made on first
    /// use). A request with such a token after that is refused (403), as with an unknown one.
    pub async fn approle_with_token_ttl(&self, ttl: Duration) -> (String, String) {
        let secs = ttl.as_secs().max(1);
        let role = format!("auth/approle/role/{ROLE}-ttl-{secs}");
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &role,
                Some(&self.root_token),
                Some(json!({"bind_secret_id": true, "token_ttl": format!("{secs}s")})),
            )
            .await;
        self.expect_ok(&format!("POST {role}"), status, &answer);
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                &format!("{role}/role-id"),
                Some(&self.root_token),
                None,
            )
            .await;
        self.expect_ok(&format!("GET {role}/role-id"), status, &answer);
        let role_id = answer["data"]["role_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no role id in {answer}"))
            .to_owned();
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &format!("{role}/secret-id"),
                Some(&self.root_token),
                Some(json!({})),
            )
            .await;
        self.expect_ok(&format!("POST {role}/secret-id"), status, &answer);
        let secret_id = answer["data"]["secret_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret id in {answer}"))
            .to_owned();
        (role_id, secret_id)
    }

    /// Logs in with AppRole (`POST /v1/auth/approle/login`) and returns the client token.
    pub async fn login(&self, role_id: &str, secret_id: &str) -> String {
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "auth/approle/login",
                None,
                Some(json!({"role_id": role_id, "secret_id": secret_id})),
            )
            .await;
        self.expect_ok("POST auth/approle/login", status, &answer);
        answer["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no client token in {answer}"))
            .to_owned()
    }

    /// A new token that is not the root token: a child of it (`POST
    /// /v1/auth/token/create`) with the policy `junction-read`. RustyVault does not enforce
    /// policies, so it may in fact read and write everything, like the root token.
    pub async fn token_with_read_access(&self) -> String {
        self.create_token(json!({"policies": ["junction-read"]}))
            .await
    }

    /// A child token of the root token that the server revokes after `ttl` (whole seconds,
    /// at least 1): from then on it is refused like an unknown token (403).
    pub async fn token_with_ttl(&self, ttl: Duration) -> String {
        let ttl = format!("{}s", ttl.as_secs().max(1));
        self.create_token(json!({"policies": ["junction-read"], "ttl": ttl}))
            .await
    }

    async fn create_token(&self, body: Value) -> String {
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "auth/token/create",
                Some(&self.root_token),
                Some(body),
            )
            .await;
        self.expect_ok("POST auth/token/create", status, &answer);
        answer["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no client token in {answer}"))
            .to_owned()
    }

    /// Revokes `token` (`POST /v1/auth/token/revoke/<token>`): later requests with it are
    /// refused (403).
    pub async fn revoke(&self, token: &str) {
        let path = format!("auth/token/revoke/{token}");
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(&self.root_token),
                Some(json!({})),
            )
            .await;
        self.expect_ok("POST auth/token/revoke/<token>", status, &answer);
    }

    /// Writes `data` (a JSON object) at `kv/<path>`.
    pub async fn put_v1(&self, path: &str, data: Value) {
        self.write(&format!("{KV_V1_MOUNT}/{path}"), data).await;
    }

    /// Writes `data` (a JSON object) as the next version of `<path>` in the stand-in for KV
    /// version 2: `{"data": data, "metadata": {"version": n, "created_time": now, ...}}` at
    /// `kv2/data/<path>`, where a read gets the KV version 2 shape. Returns `n` (1 for the
    /// first write of a path).
    pub async fn put_v2(&self, path: &str, data: Value) -> u64 {
        let version = {
            let mut versions = self.versions.lock().expect("the versions lock");
            let version = versions.entry(path.to_owned()).or_insert(0);
            *version += 1;
            *version
        };
        let metadata = json!({
            "created_time": rfc3339(SystemTime::now()),
            "custom_metadata": null,
            "deletion_time": "",
            "destroyed": false,
            "version": version,
        });
        self.write(
            &format!("{KV_V2_MOUNT}/data/{path}"),
            json!({"data": data, "metadata": metadata}),
        )
        .await;
        version
    }

    /// Deletes the secret at the API path `path` (`kv/<path>` or `kv2/data/<path>`); a later
    /// read of it is a 404.
    pub async fn delete(&self, path: &str) {
        let (status, answer) = self
            .call(reqwest::Method::DELETE, path, Some(&self.root_token), None)
            .await;
        self.expect_ok(&format!("DELETE {path}"), status, &answer);
    }

    async fn write(&self, path: &str, data: Value) {
        assert!(data.is_object(), "a secret is a JSON object, not {data}");
        let (status, answer) = self
            .call(
                reqwest::Method::PUT,
                path,
                Some(&self.root_token),
                Some(data),
            )
            .await;
        self.expect_ok(&format!("PUT {path}"), status, &answer);
    }

    /// How many `GET /v1/<path>` requests the server received since the harness finished
    /// starting, whatever their answer (`path` as in the URL after `/v1/`, without the
    /// query: `kv/db`, `kv2/data/db`). Includes reads before a [`VaultServer::restart`].
    pub fn reads(&self, path: &str) -> usize {
        self.requests("GET", path)
    }

    /// How many `method` requests (`GET`, `POST`, `PUT`, `DELETE`, `LIST`) on `/v1/<path>`
    /// the server received since the harness finished starting (e.g. `("POST",
    /// "auth/approle/login")` counts logins). Requests under `/v1/sys/` are not logged, so
    /// not counted. The harness's own writes count: `put_v1` is a `PUT`, `delete` a
    /// `DELETE`, [`VaultServer::approle`] a `POST` on `auth/approle/role/junction/secret-id`.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("v1/").unwrap_or(path);
        let line_end = format!(", method: {method}, path: Path({path:?})");
        let log = self.log_bytes();
        let start = usize::try_from(self.counted_from).unwrap_or(usize::MAX);
        let counted = log.get(start..).unwrap_or_default();
        String::from_utf8_lossy(counted)
            .lines()
            .filter(|line| line.contains("logical request") && line.ends_with(&line_end))
            .count()
    }

    /// Everything the server wrote (its log, across restarts), for failure messages.
    pub fn output(&self) -> String {
        read_log(&self.dir)
    }

    /// Kills the server (SIGKILL to its process id) and waits until its port refuses
    /// connections. Its storage stays for [`VaultServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.socket_addr(), Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts connections after the server was killed",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server if it runs, starts it again on the same port and storage, and
    /// unseals it: the secrets, the tokens and the AppRole credentials stay valid.
    pub async fn restart(&mut self) {
        self.stop();
        let mut before = listening_messages(&self.dir);
        let mut child = spawn(&rvault_binary(), &self.dir);
        // The port may stay taken for a moment after the kill: retry while it is.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match wait_until_listening(&mut child, self.port, &self.dir, before).await {
                Ok(()) => break,
                Err(log) if log.contains("Address already in use") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    before = listening_messages(&self.dir);
                    child = spawn(&rvault_binary(), &self.dir);
                }
                Err(log) => panic!(
                    "RustyVault did not come back on port {}; its output:\n{log}",
                    self.port
                ),
            }
        }
        self.child = Some(child);
        self.unseal().await;
    }

    /// Seals the server (`PUT /v1/sys/seal`): until [`VaultServer::unseal`], every request
    /// but those under `/v1/sys/` answers 503 `{"error": "RustyVault is sealed."}`.
    pub async fn seal(&self) {
        let (status, answer) = self
            .call(
                reqwest::Method::PUT,
                "sys/seal",
                Some(&self.root_token),
                None,
            )
            .await;
        self.expect_ok("PUT sys/seal", status, &answer);
    }

    /// Unseals the server with its unseal key (`PUT /v1/sys/unseal`).
    pub async fn unseal(&self) {
        let (status, answer) = self
            .call(
                reqwest::Method::PUT,
                "sys/unseal",
                None,
                Some(json!({"key": self.unseal_key})),
            )
            .await;
        self.expect_ok("PUT sys/unseal", status, &answer);
        assert_eq!(
            answer["sealed"],
            false,
            "still sealed after the unseal key: {answer}; the server's output:\n{}",
            self.output()
        );
    }

    /// One request to `/v1/<path>`; the status and the JSON body (`null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = http().request(method.clone(), format!("{}/v1/{path}", self.address()));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{method} /v1/{path} failed: {e}; the server's output:\n{}",
                self.output()
            )
        });
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    fn expect_ok(&self, what: &str, status: u16, answer: &Value) {
        assert!(
            (200..300).contains(&status),
            "{what} answered {status} {answer}; the server's output:\n{}",
            self.output()
        );
    }

    fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("server.log")).unwrap_or_default()
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.dir.join("server.log")).map_or(0, |m| m.len())
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        // SIGKILL to this child's process id.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh, empty directory under the system's temp directory.
fn fresh_dir() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("junction-vault-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `config.json` in `dir`: the file storage in `dir/data`, plain HTTP on `127.0.0.1:port`.
fn write_config(dir: &Path, port: u16) {
    let config = json!({
        "storage": {"file": {"path": dir.join("data")}},
        "listener": {"tcp": {"address": format!("127.0.0.1:{port}"), "tls_disable": true}},
        "api_addr": format!("http://127.0.0.1:{port}"),
        "log_level": LOG_FILTER,
        "work_dir": dir,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write the config");
}

/// `rvault server --config dir/config.json`, its output appended to `dir/server.log`.
fn spawn(binary: &Path, dir: &Path) -> Child {
    let log: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("open the server's log");
    let err = log.try_clone().expect("clone the log's handle");
    Command::new(binary)
        .arg("server")
        .arg("--config")
        .arg(dir.join("config.json"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// `dir/server.log` as text.
fn read_log(dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join("server.log")).unwrap_or_default()).into_owned()
}

/// How many times the log says a server listens (it is appended to across restarts).
fn listening_messages(dir: &Path) -> usize {
    read_log(dir).matches(LISTENING).count()
}

/// Waits until `child`, spawned when the log said [`LISTENING`] `before` times, says it
/// listens, then until its `GET /v1/sys/init` answers. Its own log says so, not just an
/// answer on the port, which another process may have taken. The error is its output when
/// it exited first or did not answer in time (then it is killed).
async fn wait_until_listening(
    child: &mut Child,
    port: u16,
    dir: &Path,
    before: usize,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/v1/sys/init");
    let client = http();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("(exited: {status})\n{}", read_log(dir)));
        }
        if listening_messages(dir) > before
            && let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "(no answer within {START_TIMEOUT:?}; killed)\n{}",
                read_log(dir)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `time` as RFC 3339 in UTC with nanoseconds, as Vault writes `created_time`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.000000005Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap_day), "2000-02-29T00:00:00.000000000Z");
    }
}
