//! The service's lifecycle and its secret hygiene, driven through the real binary: restarts,
//! the key that encrypts secrets at rest (creation, refusal of a wrong or missing one,
//! rotation, interrupted rotation), graceful shutdown, connection health, the operational
//! endpoints and the configuration.
//!
//! Every test has its own data directory and its own local upstream API, so tests run in
//! parallel. Waiting on the service process blocks, so it happens in `block_in_place`: the
//! local API runs on the test's async runtime and must keep answering meanwhile.

use crate::bin;
use junction::credentials::at_rest::MasterKey;
use junction_tests::api::Api;
use junction_tests::components;
use junction_tests::service::{
    Client, Exchange, Service, StartFailure, contains, create_tenant, data_dir, exchanges,
    files_under,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A test's data directory, removed when the test passes (kept for a look when it fails).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn scratch(name: &str) -> Scratch {
    Scratch(data_dir(name))
}

/// Runs blocking work (waiting for a process) without stalling the async runtime that
/// serves the local API.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn start(dir: &Path, extra: &[&str]) -> Service {
    start_with_env(dir, extra, &[])
}

fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Service {
    blocking(|| Service::start_with_env(bin(), dir, extra, env))
        .unwrap_or_else(|failure| panic!("the service did not start: {failure}"))
}

/// Starts the service where it must refuse to start, and returns how it failed; the exit
/// status must be 2.
fn refused(dir: &Path, env: &[(&str, &str)]) -> StartFailure {
    match blocking(|| Service::start_with_env(bin(), dir, &[], env)) {
        Ok(service) => panic!("the service started but had to refuse:\n{}", service.logs()),
        Err(failure) => {
            assert_eq!(
                failure.status.and_then(|s| s.code()),
                Some(2),
                "a refused start exits with status 2: {failure}"
            );
            failure
        }
    }
}

/// SIGTERM, and the process must exit 0.
fn stop(service: &mut Service) {
    let status = blocking(|| service.stop());
    assert!(
        status.success(),
        "the service did not exit cleanly on SIGTERM ({status}):\n{}",
        service.logs()
    );
}

/// Checks an answer's status and returns its JSON; on failure, shows the exchange and the
/// service's log.
#[track_caller]
fn check(service: &Service, exchange: &Exchange, status: u16) -> Value {
    assert_eq!(
        exchange.status.as_u16(),
        status,
        "{} {} answered {}: {}\n--- service log ---\n{}",
        exchange.method,
        exchange.path,
        exchange.status,
        exchange.text,
        service.logs()
    );
    exchange.json()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// A tenant and its administrator, made offline on `dir`; returns the admin's token.
fn admin_token(dir: &Path) -> String {
    let created = blocking(|| create_tenant(bin(), dir, "acme", "ada"));
    text(&created["token"]["token"])
}

/// A GitHub connection (personal access token) against `base_url`.
async fn github(
    service: &Service,
    client: &Client,
    name: &str,
    token: &str,
    base_url: &str,
    folder_id: Option<&str>,
) -> Value {
    let mut body = json!({
        "connector": "github",
        "name": name,
        "auth": "pat",
        "fields": {"token": token, "base_url": base_url},
    });
    if let Some(folder) = folder_id {
        body["folder_id"] = json!(folder);
    }
    check(service, &client.post("/v1/connections", body).await, 201)
}

/// An `http` connection without credentials against `base_url`.
async fn plain_http(service: &Service, client: &Client, base_url: &str) -> Value {
    let body = json!({
        "connector": "http",
        "name": "plain",
        "auth": "none",
        "fields": {"base_url": base_url},
    });
    check(service, &client.post("/v1/connections", body).await, 201)
}

async fn invoke(client: &Client, connection: &Value, action: &str, input: Value) -> Exchange {
    let id = text(&connection["id"]);
    client
        .post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": action, "input": input}),
        )
        .await
}

/// Invokes `get-authenticated-user` and expects it to work: the stored token was decrypted
/// and sent.
async fn invoke_works(service: &Service, client: &Client, connection: &Value) -> Value {
    let out = check(
        service,
        &invoke(client, connection, "get-authenticated-user", json!({})).await,
        200,
    );
    assert_eq!(out["output"]["login"], "octocat", "{out}");
    assert_eq!(out["invocation"]["outcome"], "ok", "{out}");
    out
}

/// How many requests reached `/user` with `Bearer <token>`.
fn calls_with_token(api: &Api, token: &str) -> usize {
    let expected = format!("Bearer {token}");
    api.seen()
        .iter()
        .filter(|s| {
            s.path == "/user"
                && s.headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(expected.as_str())
        })
        .count()
}

/// Polls `probe` every 50 ms until it gives a value, for at most `seconds`.
async fn eventually<T>(
    seconds: u64,
    what: &str,
    service: &Service,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {seconds} s\n--- service log ---\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the local API has received a request for `path`.
async fn upstream_received(api: &Api, path: &str, service: &Service) {
    eventually(
        60,
        &format!("the upstream receives {path}"),
        service,
        async || api.seen().iter().any(|s| s.path == path).then_some(()),
    )
    .await;
}

/// The `junction` binary with `args`, without any key from the environment unless `env`
/// gives one.
fn junction(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin());
    command
        .args(args)
        .env_remove("JUNCTION_KEY")
        .env_remove("JUNCTION_KEY_FILE")
        .env_remove("JUNCTION_DATA_DIR")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    blocking(|| command.output()).expect("run junction")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn key_file(dir: &Path) -> PathBuf {
    dir.join("junction.key")
}

fn pending_key_file(dir: &Path) -> PathBuf {
    dir.join("junction.key.new")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The public id of a base64 key (as messages and logs name it).
fn key_id(encoded: &str) -> String {
    MasterKey::from_encoded(encoded, "test")
        .unwrap()
        .id()
        .to_owned()
}

/// A new key, as `junction keys generate` prints it.
fn generate_key() -> String {
    let out = junction(&["keys", "generate"], &[]);
    assert!(out.status.success(), "keys generate: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Replaces the key file with `encoded`, with permissions `mode`.
#[cfg(unix)]
fn write_key(path: &Path, encoded: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::write(path, format!("{encoded}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The key id the service opened its store with (its `store open` log line).
fn opened_with(service: &Service) -> String {
    let lines = service.log_lines_with("store open");
    let line = lines
        .first()
        .unwrap_or_else(|| panic!("no `store open` line:\n{}", service.logs()));
    text(&line["key"])
}

/// A metric's value: the sample of `name` whose labels include every `labels` pair.
fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        (series_name == name
            && labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
        .then(|| value.parse().ok())
        .flatten()
    })
}

/// An address where nothing listens: a port the system just gave and took back.
fn closed_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------
// 1. Restart
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_record_and_stored_secrets_still_decrypt() {
    let dir = scratch("restart");
    let admin_token = admin_token(&dir);
    let secret = "ghp_RestartKeepsThisToken_31f0";
    let api = Api::start(secret).await;
    // No background health check: it would change the connections between the snapshots.
    let quiet = ["--health-check-interval", "0"];
    let mut service = start(&dir, &quiet);
    let admin = service.client(&admin_token);

    let member = check(
        &service,
        &admin
            .post("/v1/principals", json!({"name": "bob", "role": "member"}))
            .await,
        201,
    );
    let member_id = text(&member["principal"]["id"]);
    let member_token = text(&member["token"]["token"]);
    let folder = check(
        &service,
        &admin.post("/v1/folders", json!({"name": "team"})).await,
        201,
    );
    let folder_id = text(&folder["id"]);
    check(
        &service,
        &admin
            .put(
                &format!("/v1/folders/{folder_id}/grants/{member_id}"),
                json!({"permissions": ["view", "use"]}),
            )
            .await,
        200,
    );
    let connection = github(
        &service,
        &admin,
        "team github",
        secret,
        &api.base_url,
        Some(&folder_id),
    )
    .await;
    let connection_id = text(&connection["id"]);
    // The member uses the shared connection through the grant: the secret is decrypted
    // and reaches the upstream.
    let member_client = service.client(&member_token);
    invoke_works(&service, &member_client, &connection).await;
    assert_eq!(calls_with_token(&api, secret), 1);

    let admin_views = [
        "/v1/tenant".to_owned(),
        "/v1/principals".to_owned(),
        format!("/v1/principals/{member_id}"),
        "/v1/folders".to_owned(),
        format!("/v1/folders/{folder_id}"),
        format!("/v1/folders/{folder_id}/grants"),
        "/v1/connections".to_owned(),
        format!("/v1/connections/{connection_id}"),
        "/v1/invocations".to_owned(),
    ];
    let member_views = [
        "/v1/me",
        "/v1/folders",
        "/v1/connections",
        "/v1/invocations",
    ];
    async fn snapshot(
        service: &Service,
        client: &Client,
        paths: &[impl AsRef<str>],
    ) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for path in paths {
            let path = path.as_ref();
            out.push((
                path.to_owned(),
                check(service, &client.get(path).await, 200),
            ));
        }
        out
    }
    let before_admin = snapshot(&service, &admin, &admin_views).await;
    let before_member = snapshot(&service, &member_client, &member_views).await;
    let invocations = &before_admin.last().unwrap().1["items"];
    assert_eq!(
        invocations.as_array().map(Vec::len),
        Some(1),
        "{invocations}"
    );
    let key_before = opened_with(&service);
    stop(&mut service);

    let mut service = start(&dir, &quiet);
    assert_eq!(
        opened_with(&service),
        key_before,
        "the store opens with its key"
    );
    assert!(
        service.log_lines().iter().all(|l| l["key_file"].is_null()),
        "a restart must not create a key:\n{}",
        service.logs()
    );
    let admin = service.client(&admin_token);
    let member_client = service.client(&member_token);
    let after_admin = snapshot(&service, &admin, &admin_views).await;
    let after_member = snapshot(&service, &member_client, &member_views).await;
    for ((path, before), (_, after)) in before_admin
        .iter()
        .zip(&after_admin)
        .chain(before_member.iter().zip(&after_member))
    {
        assert_eq!(before, after, "GET {path} changed across the restart");
    }

    // The stored secret still decrypts: the member invokes again, and the upstream sees
    // the same token.
    let again = invoke_works(&service, &member_client, &connection).await;
    assert_eq!(calls_with_token(&api, secret), 2);
    let listed = check(&service, &admin.get("/v1/invocations").await, 200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert_eq!(items[0], again["invocation"], "newest first");
    assert_eq!(items[1], invocations[0]);
    stop(&mut service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_outlives_a_restart_without_its_connector_and_works_when_it_returns() {
    let dir = scratch("connector-gone");
    let admin_token = admin_token(&dir);
    let secret = "ghp_ConnectorGoneToken_5d2e";
    let api = Api::start(secret).await;
    let mut service = start(&dir, &["--health-check-interval", "0"]);
    let connection = github(
        &service,
        &service.client(&admin_token),
        "gh",
        secret,
        &api.base_url,
        None,
    )
    .await;
    let id = text(&connection["id"]);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);

    // The installed GitHub connector cannot be loaded (its published file and compiled
    // artifact are gone): the service starts without it, the connection is still there
    // and says why it cannot be used.
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(std::fs::read(components::GITHUB).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let catalog = dir.join("catalog");
    std::fs::remove_file(catalog.join("components").join(format!("{digest}.wasm"))).unwrap();
    for engine in std::fs::read_dir(catalog.join("compiled")).unwrap() {
        let _ = std::fs::remove_file(engine.unwrap().path().join(format!("{digest}.cwasm")));
    }
    let command = serve_command(
        &[
            "--log-json",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.to_str().unwrap(),
            "--connectors",
            components::HTTP,
            "--health-check-interval",
            "0",
        ],
        &[],
    );
    let mut service = start_command(command, &dir).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(loaded_connectors(&service), ["http", "probe"]);
    let failed = service
        .log_lines_with("cannot load an installed connector; its connections fail until it loads");
    let failed: Vec<String> = failed.iter().map(|l| text(&l["connector"])).collect();
    assert_eq!(failed, ["github"], "{}", service.logs());
    let admin = service.client(&admin_token);
    let shown = check(
        &service,
        &admin.get(&format!("/v1/connections/{id}")).await,
        200,
    );
    assert_eq!(shown["connector_version"], Value::Null, "{shown}");
    assert_eq!(shown["secrets"], json!({"token": true}), "{shown}");
    assert_eq!(shown["name"], connection["name"]);
    let error = check(
        &service,
        &invoke(&admin, &connection, "get-authenticated-user", json!({})).await,
        503,
    );
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    assert!(
        text(&error["error"]["message"]).contains("`github`"),
        "the message names the connector: {error}"
    );
    stop(&mut service);

    // Given its component again: the connection works, its secret intact.
    let mut service = start(&dir, &["--health-check-interval", "0"]);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    assert_eq!(calls_with_token(&api, secret), 2);
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 2. The key file of a new data directory
// ---------------------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_creates_an_owner_only_key_file_and_says_where_it_is() {
    let dir = scratch("first-start");
    assert!(!dir.exists());
    let mut service = start(&dir, &[]);
    let key_path = key_file(&dir);
    assert!(key_path.is_file(), "no key file at {}", key_path.display());
    assert_eq!(mode(&key_path), 0o600, "the key file is owner-only");
    assert_eq!(mode(&dir), 0o700, "the data directory is owner-only");
    assert_eq!(
        mode(&dir.join("junction.db")),
        0o600,
        "the database is owner-only"
    );

    let announced: Vec<Value> = service
        .log_lines()
        .into_iter()
        .filter(|l| l["key_file"].is_string())
        .collect();
    assert_eq!(
        announced.len(),
        1,
        "one log line names the new key file:\n{}",
        service.logs()
    );
    let line = &announced[0];
    assert_eq!(line["key_file"], key_path.display().to_string(), "{line}");
    assert_eq!(line["level"], "WARN", "{line}");
    let message = text(&line["message"]);
    assert!(
        message.contains("created a new encryption key") && message.contains("back it up"),
        "{message}"
    );
    // The key named in the log is the store's, and its material is nowhere in the log.
    let encoded = read(&key_path);
    assert_eq!(opened_with(&service), key_id(&encoded));
    assert!(
        !service.logs().contains(encoded.trim()),
        "the key leaked into the log"
    );
    stop(&mut service);

    // A second start reuses the key and says nothing about creating one.
    let mut service = start(&dir, &[]);
    assert_eq!(read(&key_path), encoded);
    assert!(
        service.log_lines().iter().all(|l| l["key_file"].is_null()),
        "{}",
        service.logs()
    );
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 3. A wrong, missing or exposed key
// ---------------------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_missing_or_exposed_key_refuses_to_start_with_a_clear_message() {
    let dir = scratch("wrong-key");
    let admin_token = admin_token(&dir);
    let secret = "ghp_WrongKeyStoreToken_a02d";
    let api = Api::start(secret).await;
    let mut service = start(&dir, &[]);
    let connection = github(
        &service,
        &service.client(&admin_token),
        "gh",
        secret,
        &api.base_url,
        None,
    )
    .await;
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);

    let key_path = key_file(&dir);
    let right = read(&key_path).trim().to_owned();
    let right_id = key_id(&right);
    let other = generate_key();
    let other_id = key_id(&other);
    assert_ne!(right_id, other_id);
    let no_key_material = |failure: &StartFailure| {
        assert!(
            !failure.log.contains(&right) && !failure.log.contains(&other),
            "key material in the message:\n{}",
            failure.log
        );
    };

    // Another valid key in the key file.
    write_key(&key_path, &other, 0o600);
    let failure = refused(&dir, &[]);
    for needed in [
        "is not the key of the store",
        &key_path.display().to_string(),
        &other_id,
        &right_id,
    ] {
        assert!(
            failure.log.contains(needed),
            "`{needed}` missing: {failure}"
        );
    }
    no_key_material(&failure);

    // No key file on a store that has secrets: refused, and no new key is made up.
    std::fs::remove_file(&key_path).unwrap();
    let failure = refused(&dir, &[]);
    assert!(failure.log.contains("key is missing"), "{failure}");
    assert!(
        failure
            .log
            .contains(&format!("no key file at {}", key_path.display())),
        "{failure}"
    );
    assert!(!key_path.exists(), "a refused start created a key file");
    assert!(!pending_key_file(&dir).exists());

    // The right key, readable by others: refused with the fix.
    write_key(&key_path, &right, 0o644);
    let failure = refused(&dir, &[]);
    assert!(
        failure
            .log
            .contains(&format!("run `chmod 600 {}`", key_path.display())),
        "{failure}"
    );
    assert!(
        failure.log.contains("can be read by other users"),
        "{failure}"
    );
    no_key_material(&failure);

    // JUNCTION_KEY instead of the file: the right key works (and the secret decrypts)…
    std::fs::remove_file(&key_path).unwrap();
    let mut service = start_with_env(&dir, &[], &[("JUNCTION_KEY", &right)]);
    assert_eq!(opened_with(&service), right_id);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);
    assert!(
        !key_path.exists(),
        "a key from the environment is never written"
    );

    // …a wrong one refuses, naming the variable and both keys.
    let failure = refused(&dir, &[("JUNCTION_KEY", &other)]);
    for needed in [
        "JUNCTION_KEY",
        "is not the key of the store",
        &other_id,
        &right_id,
    ] {
        assert!(
            failure.log.contains(needed),
            "`{needed}` missing: {failure}"
        );
    }
    no_key_material(&failure);

    // The refused starts changed nothing: the right key file opens the store again.
    write_key(&key_path, &right, 0o600);
    let mut service = start(&dir, &[]);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    assert_eq!(calls_with_token(&api, secret), 3);
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 4. Key rotation
// ---------------------------------------------------------------------------------------

/// A data directory with a tenant, a GitHub connection holding `secret`, and a first
/// invocation through it; the service is stopped. Returns the admin's token and the
/// connection.
async fn store_with_a_secret(dir: &Path, secret: &str, api: &Api) -> (String, Value) {
    let admin_token = admin_token(dir);
    let mut service = start(dir, &[]);
    let client = service.client(&admin_token);
    let connection = github(&service, &client, "gh", secret, &api.base_url, None).await;
    invoke_works(&service, &client, &connection).await;
    stop(&mut service);
    (admin_token, connection)
}

fn rotate(dir: &Path, env: &[(&str, &str)]) -> Output {
    junction(
        &["keys", "rotate", "--data-dir", dir.to_str().unwrap()],
        env,
    )
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_refuses_while_the_service_runs_then_re_encrypts_every_secret() {
    let dir = scratch("rotate");
    let secret = "ghp_RotatedStoreToken_77c4";
    let api = Api::start(secret).await;
    let (admin_token, connection) = store_with_a_secret(&dir, secret, &api).await;
    let key_path = key_file(&dir);
    let old = read(&key_path);

    // The running service holds the data directory.
    let mut service = start(&dir, &[]);
    let out = rotate(&dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is in use by a running `junction serve`; stop it first"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&key_path), old, "a refused rotation changed the key");
    assert!(!pending_key_file(&dir).exists());
    // So does a second service on the same directory.
    let failure = refused(&dir, &[]);
    assert!(
        failure.log.contains("in use by a running `junction serve`"),
        "{failure}"
    );
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);

    // A directory without a store has no key to rotate: nothing is created there.
    let nowhere = scratch("rotate-nowhere");
    let out = rotate(&nowhere, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "there is no store at {}",
            nowhere.join("junction.db").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!nowhere.exists(), "rotate created {}", nowhere.display());

    // Stopped: the rotation runs.
    let out = rotate(&dir, &[]);
    assert!(out.status.success(), "rotate: {}", stderr(&out));
    let new = read(&key_path);
    assert_ne!(new, old, "the key file content changes");
    assert_eq!(mode(&key_path), 0o600, "the new key file is owner-only");
    assert!(!pending_key_file(&dir).exists());
    let (old_id, new_id) = (key_id(&old), key_id(&new));
    assert_ne!(old_id, new_id);
    let said = stdout(&out);
    for needed in [
        "1 secret values re-encrypted",
        &old_id,
        &new_id,
        &key_path.display().to_string(),
    ] {
        assert!(said.contains(needed), "`{needed}` missing from: {said}");
    }
    assert!(!stdout(&out).contains(new.trim()) && !stderr(&out).contains(new.trim()));

    // The service opens the store with the new key, and the old secret still decrypts.
    let mut service = start(&dir, &[]);
    assert_eq!(opened_with(&service), new_id);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    assert_eq!(calls_with_token(&api, secret), 3);
    stop(&mut service);

    // The old key no longer opens it.
    write_key(&key_path, old.trim(), 0o600);
    let failure = refused(&dir, &[]);
    assert!(
        failure.log.contains(&new_id) && failure.log.contains(&old_id),
        "{failure}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_interrupted_before_its_commit_leaves_the_old_key_in_use() {
    let dir = scratch("rotate-before-commit");
    let secret = "ghp_InterruptedEarly_5e2b";
    let api = Api::start(secret).await;
    let (admin_token, connection) = store_with_a_secret(&dir, secret, &api).await;
    let key_path = key_file(&dir);
    let old = read(&key_path);

    let out = rotate(&dir, &[("JUNCTION_TEST_CRASH_AT", "before-commit")]);
    assert!(
        !out.status.success(),
        "the rotation was to abort before its commit: {}",
        stdout(&out)
    );
    assert!(
        pending_key_file(&dir).exists(),
        "the interrupted rotation left its pending key"
    );
    assert_eq!(read(&key_path), old);

    let mut service = start(&dir, &[]);
    assert_eq!(opened_with(&service), key_id(&old), "the old key stays");
    assert!(
        !pending_key_file(&dir).exists(),
        "the stale pending key is removed"
    );
    assert_eq!(read(&key_path), old);
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    assert_eq!(calls_with_token(&api, secret), 2);
    stop(&mut service);

    // A rotation after that works as usual.
    let out = rotate(&dir, &[]);
    assert!(out.status.success(), "rotate: {}", stderr(&out));
    let mut service = start(&dir, &[]);
    assert_eq!(opened_with(&service), key_id(&read(&key_path)));
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_interrupted_after_its_commit_is_completed_by_the_next_start() {
    let dir = scratch("rotate-after-commit");
    let secret = "ghp_InterruptedLate_c81d";
    let api = Api::start(secret).await;
    let (admin_token, connection) = store_with_a_secret(&dir, secret, &api).await;
    let key_path = key_file(&dir);
    let old = read(&key_path);

    let out = rotate(&dir, &[("JUNCTION_TEST_CRASH_AT", "after-commit")]);
    assert!(
        !out.status.success(),
        "the rotation was to abort after its commit: {}",
        stdout(&out)
    );
    let pending = read(&pending_key_file(&dir));
    assert_ne!(pending, old);
    assert_eq!(read(&key_path), old, "the rename had not happened yet");

    let mut service = start(&dir, &[]);
    assert!(
        !service
            .log_lines_with("completed a key rotation that had been interrupted")
            .is_empty(),
        "the start says it completed the rotation:\n{}",
        service.logs()
    );
    assert_eq!(opened_with(&service), key_id(&pending));
    assert_eq!(
        read(&key_path),
        pending,
        "the pending key replaced the key file"
    );
    assert_eq!(mode(&key_path), 0o600);
    assert!(!pending_key_file(&dir).exists());
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    assert_eq!(calls_with_token(&api, secret), 2);
    stop(&mut service);

    // And the next start is an ordinary one.
    let mut service = start(&dir, &[]);
    assert!(
        service
            .log_lines_with("completed a key rotation that had been interrupted")
            .is_empty()
    );
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 5. Secret hygiene
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_written_through_the_api_never_appears_in_clear() {
    // Distinctive values, so that a hit can only be a leak.
    let good = "ghp_HygieneAcceptedToken_9d1e7a4c";
    let rejected = "ghp_HygieneRejectedToken_52b0c3f8";
    let patched = "ghp_HygienePatchedToken_e6a91d27";
    let query_key = "hk_HygieneQueryKey_0c7d5e19";
    let unreachable_key = "hk_HygieneUnreachable_3fb2a860";
    let refused_body = "ghp_HygieneRefusedBody_81d4c0aa";
    let misplaced = "ghp_HygieneMisplaced_6a0f2d93";
    let numeric: u64 = 918_273_645_546_372_819;
    let numeric_text = numeric.to_string();
    let secrets = [
        good,
        rejected,
        patched,
        query_key,
        unreachable_key,
        refused_body,
        misplaced,
        numeric_text.as_str(),
    ];

    let dir = scratch("hygiene");
    let admin_token = admin_token(&dir);
    let api = Api::start(good).await;
    let mut service = start(&dir, &[]);
    let admin = service.client(&admin_token);

    // Reads show whether a secret is set, never its value.
    let accepted = github(&service, &admin, "accepted", good, &api.base_url, None).await;
    assert_eq!(accepted["secrets"], json!({"token": true}), "{accepted}");
    assert_eq!(
        accepted["fields"],
        json!({"base_url": api.base_url}),
        "{accepted}"
    );
    invoke_works(&service, &admin, &accepted).await;
    assert_eq!(calls_with_token(&api, good), 1, "the secret is really used");
    let tested = check(
        &service,
        &admin
            .post(
                &format!("/v1/connections/{}/test", text(&accepted["id"])),
                json!({}),
            )
            .await,
        200,
    );
    assert_eq!(tested["health"]["status"], "healthy", "{tested}");

    // The upstream refuses a token: the error names the problem, not the token.
    let refused = github(&service, &admin, "refused", rejected, &api.base_url, None).await;
    let error = check(
        &service,
        &invoke(&admin, &refused, "get-authenticated-user", json!({})).await,
        502,
    );
    assert_eq!(error["error"]["code"], "unauthorized", "{error}");
    let refused_id = text(&refused["id"]);
    let tested = check(
        &service,
        &admin
            .post(&format!("/v1/connections/{refused_id}/test"), json!({}))
            .await,
        200,
    );
    assert_eq!(
        tested["health"]["status"], "needs_reauthentication",
        "{tested}"
    );
    let edited = check(
        &service,
        &admin
            .patch(
                &format!("/v1/connections/{refused_id}"),
                json!({"description": "edited", "fields": {"token": patched}}),
            )
            .await,
        200,
    );
    assert_eq!(edited["secrets"], json!({"token": true}), "{edited}");
    check(
        &service,
        &invoke(&admin, &refused, "get-authenticated-user", json!({})).await,
        502,
    );
    assert!(
        api.everything_received()
            .contains(&format!("Bearer {patched}")),
        "the edited token is the one sent"
    );

    // A key that travels in the query string, refused by the upstream and unreachable.
    let in_query = check(
        &service,
        &admin
            .post(
                "/v1/connections",
                json!({
                    "connector": "http",
                    "name": "query key",
                    "auth": "api-key-query",
                    "fields": {"base_url": api.base_url, "api_key": query_key},
                }),
            )
            .await,
        201,
    );
    assert_eq!(in_query["secrets"], json!({"api_key": true}), "{in_query}");
    check(
        &service,
        &invoke(&admin, &in_query, "request", json!({"path": "/ping"})).await,
        200,
    );
    assert!(
        api.seen()
            .iter()
            .any(|s| s.path == "/ping"
                && s.query.as_deref() == Some(&format!("api_key={query_key}"))),
        "the key is sent in the query"
    );
    let error = check(
        &service,
        &invoke(&admin, &in_query, "request", json!({"path": "/status/401"})).await,
        502,
    );
    assert_eq!(error["error"]["details"]["source"], "connector", "{error}");
    let unreachable = check(
        &service,
        &admin
            .post(
                "/v1/connections",
                json!({
                    "connector": "http",
                    "name": "unreachable",
                    "auth": "api-key-query",
                    "fields": {"base_url": closed_base_url(), "api_key": unreachable_key},
                }),
            )
            .await,
        201,
    );
    let error = invoke(&admin, &unreachable, "request", json!({"path": "/x"})).await;
    assert!(error.status.is_server_error(), "{}", error.text);
    let tested = check(
        &service,
        &admin
            .post(
                &format!("/v1/connections/{}/test", text(&unreachable["id"])),
                json!({}),
            )
            .await,
        200,
    );
    assert_eq!(tested["health"]["status"], "failing", "{tested}");

    // A create refused for another field does not echo the secret given with it.
    let bad = check(
        &service,
        &admin
            .post(
                "/v1/connections",
                json!({
                    "connector": "github",
                    "name": "bad",
                    "auth": "pat",
                    "fields": {"token": refused_body, "bogus": "x"},
                }),
            )
            .await,
        400,
    );
    assert_eq!(bad["error"]["details"]["field"], "fields.bogus", "{bad}");
    // A secret given with the wrong JSON type: the error names the place and the type found,
    // not the value.
    for (fields, place) in [
        (json!(misplaced), "fields"),
        (json!({"token": numeric}), "fields.token"),
    ] {
        let wrong = check(
            &service,
            &admin
                .post(
                    "/v1/connections",
                    json!({"connector": "github", "name": "wrong type", "auth": "pat", "fields": fields}),
                )
                .await,
            400,
        );
        assert_eq!(wrong["error"]["code"], "malformed_json", "{wrong}");
        let message = text(&wrong["error"]["message"]);
        assert!(message.contains(place), "{message}");
    }
    let wrong = check(
        &service,
        &admin
            .patch(
                &format!("/v1/connections/{refused_id}"),
                json!({"fields": {"token": numeric}}),
            )
            .await,
        400,
    );
    assert_eq!(wrong["error"]["code"], "malformed_json", "{wrong}");

    // Every read: only booleans for secrets.
    let listed = check(&service, &admin.get("/v1/connections").await, 200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{listed}");
    for item in items {
        let shown = check(
            &service,
            &admin
                .get(&format!("/v1/connections/{}", text(&item["id"])))
                .await,
            200,
        );
        assert_eq!(&shown, item);
        let secrets_shown = shown["secrets"].as_object().unwrap();
        assert_eq!(secrets_shown.len(), 1, "{shown}");
        assert!(secrets_shown.values().all(|v| v == &json!(true)), "{shown}");
        let fields = shown["fields"].as_object().unwrap();
        assert!(
            fields.keys().all(|k| k == "base_url"),
            "secret fields among the plain ones: {shown}"
        );
    }
    check(&service, &admin.get("/v1/invocations").await, 200);
    check(&service, &admin.get("/metrics").await, 200);

    let find_in_files = |when: &str| {
        let files = files_under(&dir);
        assert!(
            files.iter().any(|(p, _)| p.ends_with("junction.db")),
            "no database among {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        // The search does find what is stored in clear: a plain field's value.
        assert!(
            files
                .iter()
                .any(|(_, bytes)| contains(bytes, &api.base_url)),
            "{when}: the plain base_url is in no file, so the search cannot be trusted"
        );
        for (path, bytes) in &files {
            for secret in secrets {
                assert!(
                    !contains(bytes, secret),
                    "{when}: `{secret}` in clear in {}",
                    path.display()
                );
            }
        }
        files.len()
    };
    let files_running = find_in_files("while the service runs");
    assert!(
        files_running >= 3,
        "the database, its WAL and the key file are checked"
    );
    stop(&mut service);
    find_in_files("after the service stopped");

    let logs = service.logs();
    let accepted_id = text(&accepted["id"]);
    assert!(
        logs.contains("connection created") && logs.contains(&accepted_id),
        "the log was captured:\n{logs}"
    );
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "`{secret}` in the service log:\n{logs}"
        );
    }
    let exchanges = exchanges();
    assert!(
        exchanges.iter().any(|e| e.text.contains(&accepted_id)),
        "this test's exchanges were recorded"
    );
    for exchange in exchanges {
        for secret in secrets {
            assert!(
                !exchange.text.contains(secret) && !exchange.headers.contains(secret),
                "`{secret}` in the answer to {} {}: {} {}",
                exchange.method,
                exchange.path,
                exchange.headers,
                exchange.text
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_invocation_in_flight_finish_and_exits_0() {
    let dir = scratch("shutdown");
    let admin_token = admin_token(&dir);
    let api = Api::start("unused").await;
    let mut service = start(&dir, &[]);
    let admin = service.client(&admin_token);
    let connection = plain_http(&service, &admin, &api.base_url).await;
    let address = service.url.trim_start_matches("http://").to_owned();
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_ok(),
        "before SIGTERM the service accepts connections"
    );

    let in_flight = {
        let admin = admin.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            invoke(
                &admin,
                &connection,
                "request",
                json!({"path": "/slow/3000"}),
            )
            .await
        })
    };
    upstream_received(&api, "/slow/3000", &service).await;
    service.signal_stop();

    // While the invocation runs, the service accepts no new connection.
    let refused_while_running = eventually(60, "new connections refused", &service, async || {
        if in_flight.is_finished() {
            return Some(false);
        }
        match tokio::net::TcpStream::connect(&address).await {
            Err(_) => Some(true),
            Ok(_) => None,
        }
    })
    .await;
    assert!(
        refused_while_running,
        "a new connection was accepted until the invocation in flight ended"
    );

    let exchange = in_flight.await.unwrap();
    let out = check(&service, &exchange, 200);
    assert_eq!(out["output"]["status"], 200, "{out}");
    assert_eq!(out["output"]["body"], "finally", "{out}");
    let status = blocking(|| service.wait());
    assert_eq!(status.code(), Some(0), "{}", service.logs());
    assert!(
        !service
            .log_lines_with("stopped; the store is closed")
            .is_empty(),
        "{}",
        service.logs()
    );

    // The invocation that finished during the shutdown was recorded.
    let mut service = start(&dir, &[]);
    let admin = service.client(&admin_token);
    let listed = check(&service, &admin.get("/v1/invocations").await, 200);
    assert_eq!(listed["items"], json!([out["invocation"]]), "{listed}");
    stop(&mut service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_too_and_a_request_past_the_grace_period_is_cut() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = scratch("shutdown-grace");
    let admin_token = admin_token(&dir);
    let api = Api::start("unused").await;
    let mut service = start(&dir, &["--shutdown-grace", "1"]);
    let admin = service.client(&admin_token);
    let connection = plain_http(&service, &admin, &api.base_url).await;
    let id = text(&connection["id"]);

    // A request on a connection of its own, read to the end: whatever the service does
    // with it, the client sees.
    let address = service.url.trim_start_matches("http://").to_owned();
    let body = json!({"action": "request", "input": {"path": "/slow/120000"}}).to_string();
    let request = format!(
        "POST /v1/connections/{id}/invocations HTTP/1.1\r\nhost: {address}\r\n\
         authorization: Bearer {admin_token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let in_flight = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    upstream_received(&api, "/slow/120000", &service).await;

    let pid = service.pid().unwrap().to_string();
    let sent = blocking(|| Command::new("kill").args(["-INT", &pid]).status()).unwrap();
    assert!(sent.success());
    let status = blocking(|| service.wait());
    assert_eq!(status.code(), Some(0), "{}", service.logs());
    for said in [
        "stopping: no new connections; requests in flight may finish",
        "requests still running after the grace period; cutting them (503)",
        "stopped; the store is closed",
    ] {
        assert_eq!(
            service.log_lines_with(said).len(),
            1,
            "`{said}`:\n{}",
            service.logs()
        );
    }
    // The cut request's work was dropped, so nothing held the invocation log open.
    assert!(
        service
            .log_lines_with("the invocation log did not drain in time")
            .is_empty(),
        "{}",
        service.logs()
    );
    // The service did not wait for the upstream's two minutes: the client was told.
    let answer = in_flight.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("\"unavailable\""),
        "the request past the grace period was not answered 503: {answer}"
    );

    // The store is intact.
    let mut service = start(&dir, &[]);
    let admin = service.client(&admin_token);
    check(&service, &service.anonymous().get("/readyz").await, 200);
    let shown = check(
        &service,
        &admin.get(&format!("/v1/connections/{id}")).await,
        200,
    );
    assert_eq!(shown["id"], connection["id"]);
    let listed = check(&service, &admin.get("/v1/invocations").await, 200);
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] != "ok"),
        "{listed}"
    );
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 7. Health
// ---------------------------------------------------------------------------------------

fn assert_checked_at(health: &Value) {
    let at = text(&health["checked_at"]);
    assert!(
        humantime::parse_rfc3339(&at).is_ok() && at.ends_with('Z') && at.len() == 24,
        "checked_at is RFC 3339 UTC with milliseconds: {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_a_connection_records_healthy_failing_or_needs_reauthentication() {
    let dir = scratch("health");
    let admin_token = admin_token(&dir);
    let token = "ghp_HealthRightToken_0a93";
    let api = Api::start(token).await;
    // No background checks: only the tests change health here.
    let mut service = start(&dir, &["--health-check-interval", "0"]);
    let admin = service.client(&admin_token);
    let unreachable_url = closed_base_url();
    let cases = [
        ("right token", token, api.base_url.as_str(), "healthy"),
        (
            "refused token",
            "ghp_HealthWrongToken_77e2",
            api.base_url.as_str(),
            "needs_reauthentication",
        ),
        ("unreachable", token, unreachable_url.as_str(), "failing"),
    ];
    let mut ids = Vec::new();
    for (name, token, base_url, _) in cases {
        let created = github(&service, &admin, name, token, base_url, None).await;
        assert_eq!(
            created["health"],
            json!({"status": "unknown", "reason": null, "checked_at": null}),
            "{created}"
        );
        ids.push(text(&created["id"]));
    }

    for ((name, _, _, expected), id) in cases.iter().zip(&ids) {
        let tested = check(
            &service,
            &admin
                .post(&format!("/v1/connections/{id}/test"), json!({}))
                .await,
            200,
        );
        assert_eq!(tested["connection_id"], id.as_str(), "{tested}");
        let health = &tested["health"];
        assert_eq!(health["status"], *expected, "{name}: {tested}");
        assert_checked_at(health);
        if *expected == "healthy" {
            assert_eq!(health["reason"], Value::Null, "{name}: {tested}");
        } else {
            let reason = text(&health["reason"]);
            assert!(!reason.is_empty(), "{name}: a reason is given");
            assert!(
                reason.contains("github@"),
                "{name}: the reason names the connector: {reason}"
            );
        }
        // The health is recorded on the connection.
        let shown = check(
            &service,
            &admin.get(&format!("/v1/connections/{id}")).await,
            200,
        );
        assert_eq!(&shown["health"], health, "{name}");
    }
    let failing = check(
        &service,
        &admin.get("/v1/connections?health=failing").await,
        200,
    );
    let failing_ids: Vec<&Value> = failing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(failing_ids, vec![&json!(ids[2])], "{failing}");

    // Health survives a restart.
    let before = check(
        &service,
        &admin.get(&format!("/v1/connections/{}", ids[1])).await,
        200,
    );
    stop(&mut service);
    let mut service = start(&dir, &["--health-check-interval", "0"]);
    let after = check(
        &service,
        &service
            .client(&admin_token)
            .get(&format!("/v1/connections/{}", ids[1]))
            .await,
        200,
    );
    assert_eq!(before["health"], after["health"]);
    stop(&mut service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_health_check_updates_health_without_being_asked() {
    let dir = scratch("health-background");
    let admin_token = admin_token(&dir);
    let token = "ghp_BackgroundHealth_1c5f";
    let api = Api::start(token).await;
    let mut service = start(&dir, &["--health-check-interval", "1"]);
    let admin = service.client(&admin_token);
    let right = github(&service, &admin, "right", token, &api.base_url, None).await;
    let wrong = github(
        &service,
        &admin,
        "wrong",
        "ghp_BackgroundWrong_9e0d",
        &api.base_url,
        None,
    )
    .await;
    for (connection, expected) in [(&right, "healthy"), (&wrong, "needs_reauthentication")] {
        let path = format!("/v1/connections/{}", text(&connection["id"]));
        let health = eventually(
            30,
            "the background check records health",
            &service,
            async || {
                let shown = admin.get(&path).await;
                let health = shown.json()["health"].clone();
                (health["status"] != "unknown").then_some(health)
            },
        )
        .await;
        assert_eq!(health["status"], expected, "{health}");
        assert_checked_at(&health);
    }
    assert!(
        !service.log_lines_with("health check").is_empty(),
        "{}",
        service.logs()
    );
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 8. Operational endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_request_ids_serve_operators() {
    let dir = scratch("observability");
    let admin_token = admin_token(&dir);
    let token = "ghp_MetricsToken_4b7a";
    let api = Api::start(token).await;
    let mut service = start(&dir, &[]);
    let anonymous = service.anonymous();
    let admin = service.client(&admin_token);

    assert_eq!(
        check(&service, &anonymous.get("/healthz").await, 200),
        json!({"status": "ok"})
    );
    assert_eq!(
        check(&service, &anonymous.get("/readyz").await, 200),
        json!({"status": "ready"})
    );

    // Request ids: echoed when sane, generated otherwise, on successes and errors alike.
    for path in ["/healthz", "/v1/no-such-route", "/v1/me"] {
        let echoed = anonymous
            .send("GET", path, None, &[("x-request-id", "abc-123")])
            .await;
        assert_eq!(
            echoed.header("x-request-id").as_deref(),
            Some("abc-123"),
            "{path}: {}",
            echoed.headers
        );
    }
    let first = anonymous.get("/healthz").await.header("x-request-id");
    let second = anonymous.get("/healthz").await.header("x-request-id");
    let insane = anonymous
        .send(
            "GET",
            "/healthz",
            None,
            &[("x-request-id", "no spaces allowed")],
        )
        .await
        .header("x-request-id");
    for generated in [&first, &second, &insane] {
        let id = generated.as_deref().unwrap_or_default();
        assert!(
            id.starts_with("req_") && id.len() > 8,
            "generated id: {generated:?}"
        );
    }
    assert_ne!(first, second, "each request gets its own id");

    // Invocations by outcome, their durations, and the instances running.
    let gh = github(&service, &admin, "gh", token, &api.base_url, None).await;
    invoke_works(&service, &admin, &gh).await;
    let not_found = check(
        &service,
        &invoke(
            &admin,
            &gh,
            "get-repository",
            json!({"owner": "nobody", "repo": "nothing"}),
        )
        .await,
        502,
    );
    assert_eq!(not_found["error"]["code"], "not_found", "{not_found}");
    let http = plain_http(&service, &admin, &api.base_url).await;
    let slow = {
        let admin = admin.clone();
        tokio::spawn(async move {
            invoke(&admin, &http, "request", json!({"path": "/slow/3000"})).await
        })
    };
    upstream_received(&api, "/slow/3000", &service).await;
    let during = check(&service, &anonymous.get("/metrics").await, 200);
    let during = during.as_str().unwrap_or_default().to_owned();
    assert_eq!(
        metric(&during, "junction_active_instances", &[]),
        Some(1.0),
        "one instance runs the slow invocation:\n{during}"
    );
    check(&service, &slow.await.unwrap(), 200);

    let exchange = anonymous.get("/metrics").await;
    check(&service, &exchange, 200);
    assert!(
        exchange
            .header("content-type")
            .is_some_and(|t| t.contains("text")),
        "{}",
        exchange.headers
    );
    let metrics = exchange.text;
    let expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(
            metric(&metrics, name, labels),
            Some(value),
            "{name} {labels:?}:\n{metrics}"
        );
    };
    expect(
        "junction_invocations_total",
        &[("connector", "github"), ("outcome", "ok")],
        1.0,
    );
    expect(
        "junction_invocations_total",
        &[("connector", "github"), ("outcome", "not_found")],
        1.0,
    );
    expect(
        "junction_invocations_total",
        &[("connector", "http"), ("outcome", "ok")],
        1.0,
    );
    expect(
        "junction_invocation_duration_seconds_count",
        &[("connector", "github")],
        2.0,
    );
    expect(
        "junction_invocation_duration_seconds_bucket",
        &[("connector", "http"), ("le", "+Inf")],
        1.0,
    );
    assert!(
        metric(
            &metrics,
            "junction_invocation_duration_seconds_sum",
            &[("connector", "http")]
        )
        .is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    expect("junction_active_instances", &[], 0.0);
    expect("junction_queued_invocations", &[], 0.0);
    expect(
        "junction_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/v1/connections/{id}/invocations"),
            ("status", "200"),
        ],
        2.0,
    );
    expect(
        "junction_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/v1/connections/{id}/invocations"),
            ("status", "502"),
        ],
        1.0,
    );
    assert!(
        metric(
            &metrics,
            "junction_http_requests_total",
            &[("method", "GET"), ("route", "/healthz"), ("status", "200")]
        )
        .is_some_and(|n| n >= 5.0),
        "{metrics}"
    );
    for family in [
        "junction_invocations",
        "junction_invocation_duration_seconds",
        "junction_active_instances",
        "junction_http_requests",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {family} ")),
            "{family} is described:\n{metrics}"
        );
    }
    stop(&mut service);
}

// ---------------------------------------------------------------------------------------
// 9. Configuration
// ---------------------------------------------------------------------------------------

/// `junction serve` with `args` only (no flag from the harness), logging at info.
fn serve_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin());
    command
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info,sqlx=warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

fn start_command(command: Command, data_dir: &Path) -> Result<Service, StartFailure> {
    blocking(|| Service::start_command(command, data_dir))
}

/// The connectors a service loaded, by name, from its log.
fn loaded_connectors(service: &Service) -> Vec<String> {
    let mut names: Vec<String> = service
        .log_lines_with("connector loaded")
        .iter()
        .map(|l| text(&l["connector"]).split('@').next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn database_of(service: &Service) -> PathBuf {
    let lines = service.log_lines_with("store open");
    PathBuf::from(text(&lines[0]["database"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_sets_the_service_and_variables_and_flags_override_it() {
    let dir = scratch("config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("junction.toml");
    let toml_string = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        &config,
        format!(
            "# the test's configuration\n\
             listen = \"127.0.0.1:0\"\n\
             data_dir = \"from-file\"\n\
             connectors = [{}, {}]\n\
             log_json = true\n\
             health_check_interval = 0\n\
             [limits]\n\
             timeout = 30\n",
            toml_string(components::GITHUB),
            toml_string(components::HTTP),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();

    // The file alone: its listen address (port 0, not the default 7480), its data
    // directory (relative to the file), its connectors, and its JSON logs (the harness
    // finds the `listening` line only in JSON).
    let from_file = dir.join("from-file");
    let mut service = start_command(serve_command(&["--config", config_arg], &[]), &from_file)
        .unwrap_or_else(|f| panic!("{f}"));
    assert!(!service.url.ends_with(":7480"), "{}", service.url);
    assert_eq!(database_of(&service), from_file.join("junction.db"));
    assert_eq!(loaded_connectors(&service), ["github", "http"]);
    let admin_token = admin_token(&from_file);
    let listed = check(
        &service,
        &service.client(&admin_token).get("/v1/connectors").await,
        200,
    );
    let names: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("github"), &json!("http")], "{listed}");
    stop(&mut service);

    // Variables win over the file.
    let from_env = dir.join("from-env");
    let env = [
        ("JUNCTION_DATA_DIR", from_env.to_str().unwrap()),
        ("JUNCTION_CONNECTORS", components::PROBE),
    ];
    let mut service = start_command(serve_command(&["--config", config_arg], &env), &from_env)
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(database_of(&service), from_env.join("junction.db"));
    assert_eq!(loaded_connectors(&service), ["probe"]);
    stop(&mut service);

    // Flags win over variables and the file.
    let from_flag = dir.join("from-flag");
    let mut service = start_command(
        serve_command(
            &[
                "--config",
                config_arg,
                "--data-dir",
                from_flag.to_str().unwrap(),
                "--connectors",
                components::HTTP,
            ],
            &env,
        ),
        &from_flag,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(database_of(&service), from_flag.join("junction.db"));
    assert_eq!(loaded_connectors(&service), ["http"]);
    stop(&mut service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_with_an_unknown_or_bad_setting_is_refused_by_name() {
    let dir = scratch("config-unknown");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("listn = \"127.0.0.1:0\"\n", "listn"),
        ("listen = \"127.0.0.1:0\"\n[limits]\ntimeot = 5\n", "timeot"),
        ("listen = \"not an address\"\n", "listen"),
    ];
    for (i, (content, named)) in cases.into_iter().enumerate() {
        let config = dir.join(format!("junction-{i}.toml"));
        std::fs::write(&config, content).unwrap();
        let data = dir.join(format!("data-{i}"));
        let command = serve_command(
            &[
                "--log-json",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &[],
        );
        match start_command(command, &data) {
            Ok(service) => panic!("started with {content:?}:\n{}", service.logs()),
            Err(failure) => {
                assert_eq!(
                    failure.status.and_then(|s| s.code()),
                    Some(2),
                    "{content:?}: {failure}"
                );
                assert!(
                    failure.log.contains(&format!("`{named}`"))
                        || failure.log.contains(&format!("{named} ")),
                    "{content:?}: the message names `{named}`: {failure}"
                );
                assert!(
                    failure.log.contains(config.to_str().unwrap()),
                    "{content:?}: the message names the file: {failure}"
                );
            }
        }
        assert!(
            !data.exists(),
            "a refused configuration created the data directory"
        );
    }
}

#[test]
fn serve_help_documents_every_setting_and_its_variable() {
    let out = junction(&["serve", "--help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for (flag, variable) in [
        ("--config", "JUNCTION_CONFIG"),
        ("--listen", "JUNCTION_LISTEN"),
        ("--data-dir", "JUNCTION_DATA_DIR"),
        ("--key-file", "JUNCTION_KEY_FILE"),
        ("--connectors", "JUNCTION_CONNECTORS"),
        ("--max-body-bytes", "JUNCTION_MAX_BODY_BYTES"),
        ("--health-check-interval", "JUNCTION_HEALTH_CHECK_INTERVAL"),
        ("--shutdown-grace", "JUNCTION_SHUTDOWN_GRACE"),
        ("--max-instances", "JUNCTION_MAX_INSTANCES"),
        ("--timeout", "JUNCTION_TIMEOUT"),
        ("--cpu-time", "JUNCTION_CPU_TIME"),
        ("--memory-mib", "JUNCTION_MEMORY_MIB"),
        ("--max-requests", "JUNCTION_MAX_REQUESTS"),
        ("--max-response-mib", "JUNCTION_MAX_RESPONSE_MIB"),
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
        assert!(
            help.contains(&format!("[env: {variable}=]")),
            "{variable} missing from:\n{help}"
        );
    }
    for mention in [
        "JUNCTION_KEY ",
        "--log-json",
        "TOML",
        "[limits]",
        "127.0.0.1:7480",
        "junction.key",
        "SIGTERM",
    ] {
        assert!(help.contains(mention), "`{mention}` missing from:\n{help}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_during_a_rotation_leaves_the_pending_key_alone() {
    let dir = scratch("rotate-concurrent-admin");
    let secret = "ghp_RotationInProgress_1d9e";
    let api = Api::start(secret).await;
    let (admin_token, connection) = store_with_a_secret(&dir, secret, &api).await;
    // A rotation in progress elsewhere: its new key is written, its commit not yet made.
    let pending = generate_key();
    write_key(&pending_key_file(&dir), &pending, 0o600);

    // An offline command does not hold the data directory: it must not "repair" the
    // rotation by deleting the only copy of the key about to be committed.
    blocking(|| create_tenant(bin(), &dir, "globex", "grace"));
    assert_eq!(
        read(&pending_key_file(&dir)).trim(),
        pending,
        "the pending key was touched by a command without the lock"
    );

    // The service holds the lock: the rotation is over (never committed), so it discards
    // the stale key and keeps the store's.
    let mut service = start(&dir, &[]);
    assert!(!pending_key_file(&dir).exists());
    invoke_works(&service, &service.client(&admin_token), &connection).await;
    stop(&mut service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_echoed_by_the_upstream_stays_out_of_responses_records_and_the_database() {
    let dir = scratch("echoed-secret");
    let secret = "tok-EchoedByUpstream-93b1c7";
    let api = Api::start("unused").await;
    let admin_token = admin_token(&dir);
    let mut service = start(&dir, &[]);
    let client = service.client(&admin_token);
    let body = json!({
        "connector": "http",
        "name": "careless",
        "auth": "bearer",
        "fields": {"base_url": api.base_url, "token": secret},
    });
    let connection = check(&service, &client.post("/v1/connections", body).await, 201);

    // The upstream answers 401 and repeats the token: as an error…
    let failed = invoke(
        &client,
        &connection,
        "request",
        json!({"path": "/echo-credentials"}),
    )
    .await;
    assert_eq!(failed.status.as_u16(), 502, "{}", failed.text);
    // …and as a response the connector returns.
    let returned = check(
        &service,
        &invoke(
            &client,
            &connection,
            "request",
            json!({"path": "/echo-credentials", "allow_error_status": true}),
        )
        .await,
        200,
    );
    assert!(
        returned.to_string().contains("Bearer [redacted]"),
        "{returned}"
    );
    // The upstream did get the token; nothing that came back carries it.
    assert!(
        api.seen()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {secret}"))
    );
    let listed = client.get("/v1/invocations").await;
    let tested = client
        .post(
            &format!("/v1/connections/{}/test", text(&connection["id"])),
            json!({}),
        )
        .await;
    for exchange in [&failed, &listed, &tested] {
        assert!(
            !exchange.text.contains(secret) && !exchange.headers.contains(secret),
            "{} {}: {}",
            exchange.method,
            exchange.path,
            exchange.text
        );
    }
    assert!(!returned.to_string().contains(secret));
    stop(&mut service);
    for (path, bytes) in files_under(&dir) {
        assert!(
            !contains(&bytes, secret),
            "the secret is in {} in clear",
            path.display()
        );
    }
    assert!(!service.logs().contains(secret));
}
