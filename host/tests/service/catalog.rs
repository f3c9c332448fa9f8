//! The connector catalog end to end: publishing (validated, content-addressed, immutable,
//! never unpublished), install / upgrade / skip / rollback, the hot swap under a steady
//! load of invocations, restarts from precompiled artifacts, and tenants' policies.
//!
//! The `versioned` test connector comes in 1.0.0 (GA), 2.0.0 (GA) and 3.0.0-beta.1
//! (preview); its `version` action answers with the version that ran.

use crate::bin;
use junction_tests::components;
use junction_tests::service::{self, Client, Exchange, Service};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[track_caller]
fn expect(ex: &Exchange, status: u16) -> Value {
    assert_eq!(ex.status, status, "{} {}: {}", ex.method, ex.path, ex.text);
    ex.json()
}

#[track_caller]
fn api_error(ex: &Exchange, status: u16, code: &str) -> Value {
    let body = expect(ex, status);
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"].clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `junction admin <command> <name>` on a data directory: what it printed.
fn admin(dir: &Path, command: &str, name: &str) -> String {
    let out = Command::new(bin())
        .args(["admin", command, name, "--data-dir"])
        .arg(dir)
        .env_remove("JUNCTION_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `junction admin create-operator` (or `create-operator-token`): the operator's token.
fn operator_token(dir: &Path, command: &str, name: &str) -> String {
    let printed: Value = serde_json::from_str(&admin(dir, command, name)).unwrap();
    let token = printed["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("jo_"), "{printed}");
    token
}

/// A service on a data directory of its own, with an operator and a tenant `acme`.
struct World {
    dir: PathBuf,
    service: Service,
    operator: Client,
    operator_token: String,
    /// acme's administrator.
    admin: Client,
    admin_token: String,
    tenant: String,
    connectors: Vec<String>,
}

fn serve(dir: &Path, connectors: &[String]) -> Service {
    let mut command = Command::new(bin());
    command
        .arg("--log-json")
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir)
        .args(["--health-check-interval", "0"])
        .args(service::LOOPBACK_EGRESS)
        .env("RUST_LOG", "info,junction=debug,sqlx=warn");
    for c in connectors {
        command.arg("--connectors").arg(c);
    }
    blocking(|| Service::start_command(command, dir)).unwrap_or_else(|e| panic!("{e}"))
}

impl World {
    async fn start(name: &str, connectors: &[&str]) -> World {
        let dir = service::data_dir(name);
        let created = blocking(|| service::create_tenant(bin(), &dir, "acme", "ada"));
        let admin_token = created["token"]["token"].as_str().unwrap().to_owned();
        let tenant = created["tenant"]["id"].as_str().unwrap().to_owned();
        let operator_token = blocking(|| operator_token(&dir, "create-operator", "ops"));
        let connectors: Vec<String> = connectors.iter().map(|c| (*c).to_owned()).collect();
        let service = serve(&dir, &connectors);
        World {
            operator: service.client(&operator_token),
            admin: service.client(&admin_token),
            dir,
            service,
            operator_token,
            admin_token,
            tenant,
            connectors,
        }
    }

    /// Stops the service and starts it again on the same data directory.
    fn restart(&mut self) {
        self.restart_after(|_| {});
    }

    /// Stops the service, runs `meanwhile` on the data directory, and starts it again.
    fn restart_after(&mut self, meanwhile: impl FnOnce(&Path)) {
        let status = self.service.stop();
        assert!(status.success(), "{status}");
        meanwhile(&self.dir);
        self.service = serve(&self.dir, &self.connectors);
        self.operator = self.service.client(&self.operator_token);
        self.admin = self.service.client(&self.admin_token);
    }

    async fn publish(&self, path: &str) -> Exchange {
        let bytes = std::fs::read(path).unwrap();
        self.operator
            .send_raw(
                "POST",
                "/v1/catalog/versions",
                Some("application/wasm"),
                bytes,
            )
            .await
    }

    async fn switch(&self, how: &str, body: Value) -> Value {
        expect(
            &self
                .operator
                .post(&format!("/v1/catalog/versioned/{how}"), body)
                .await,
            200,
        )
    }

    /// A connection of `versioned` in acme, reaching `base_url`.
    async fn versioned_connection(&self, base_url: &str) -> String {
        let created = expect(
            &self
                .admin
                .post(
                    "/v1/connections",
                    json!({"connector": "versioned", "name": format!("v-{}", rand_suffix()),
                           "auth": "none", "fields": {"base_url": base_url}}),
                )
                .await,
            201,
        );
        created["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.service.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn rand_suffix() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

async fn invoke(client: &Client, connection: &str, action: &str, input: Value) -> Exchange {
    client
        .post(
            &format!("/v1/connections/{connection}/invocations"),
            json!({"action": action, "input": input}),
        )
        .await
}

/// The versions of `versioned` with their states, newest first.
fn states(view: &Value) -> Vec<(String, String)> {
    view["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A component with a custom section appended: the same connector and version, other
/// bytes (a rebuild that forgot to bump the version).
fn rebuilt(path: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"junction-test";
    let payload = b"another build";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_version_is_validated_stored_by_digest_and_never_overwritten_or_unpublished() {
    let w = World::start("catalog-publish", &[]).await;
    let v1 = std::fs::read(components::VERSIONED_1).unwrap();
    let digest = sha256_hex(&v1);

    let published = expect(&w.publish(components::VERSIONED_1).await, 201);
    assert_eq!(published["name"], "versioned");
    assert_eq!(published["version"], "1.0.0");
    assert_eq!(published["release"], "ga");
    assert_eq!(published["interface_version"], "0.1.0");
    assert_eq!(published["digest"], format!("sha256:{digest}"));
    assert_eq!(published["size_bytes"], v1.len());
    assert_eq!(published["state"], "available");
    let preview = expect(&w.publish(components::VERSIONED_3).await, 201);
    assert_eq!(preview["release"], "preview");

    // Stored content-addressed, and compiled once.
    let stored = w
        .dir
        .join("catalog/components")
        .join(format!("{digest}.wasm"));
    assert_eq!(std::fs::read(&stored).unwrap(), v1);
    let compiled: Vec<PathBuf> = walk(&w.dir.join("catalog/compiled"));
    assert!(
        compiled
            .iter()
            .any(|p| p.file_name().unwrap().to_string_lossy() == format!("{digest}.cwasm")),
        "{compiled:?}"
    );

    // The same component again: nothing changes.
    let again = expect(&w.publish(components::VERSIONED_1).await, 200);
    assert_eq!(again["already_published"], true);

    // Other bytes under a published version: refused, the published one unchanged.
    let other = w
        .operator
        .send_raw(
            "POST",
            "/v1/catalog/versions",
            Some("application/wasm"),
            rebuilt(components::VERSIONED_1),
        )
        .await;
    let error = api_error(&other, 409, "version_exists");
    assert!(
        error["message"].as_str().unwrap().contains("immutable"),
        "{error}"
    );
    assert_eq!(
        error["details"]["published_digest"],
        format!("sha256:{digest}")
    );
    assert_eq!(std::fs::read(&stored).unwrap(), v1);
    // Nothing of a refused component stays on disk.
    let refused_digest = sha256_hex(&rebuilt(components::VERSIONED_1));
    for file in walk(&w.dir.join("catalog")) {
        assert!(
            !file.to_string_lossy().contains(&refused_digest),
            "{}",
            file.display()
        );
    }

    // An interface version this host lacks: refused, naming the supported ones.
    let future = w.publish(components::FUTURE_INTERFACE).await;
    let error = api_error(&future, 400, "unsupported_interface");
    assert_eq!(error["details"]["supported"], json!(["0.1.0"]));
    assert!(
        error["message"].as_str().unwrap().contains("0.1.0"),
        "{error}"
    );
    // Not a component, or not sent as one.
    let junk = w
        .operator
        .send_raw(
            "POST",
            "/v1/catalog/versions",
            Some("application/wasm"),
            b"PK\x03\x04 not wasm".to_vec(),
        )
        .await;
    api_error(&junk, 400, "invalid_component");
    let json_body = w
        .operator
        .post("/v1/catalog/versions", json!({"component": "x"}))
        .await;
    api_error(&json_body, 415, "unsupported_media_type");

    // Never unpublished.
    for path in [
        "/v1/catalog/versioned/versions/1.0.0",
        "/v1/catalog/versioned",
    ] {
        let refused = w.operator.delete(path).await;
        let error = api_error(&refused, 405, "cannot_unpublish");
        assert!(
            error["message"].as_str().unwrap().contains("policy"),
            "{error}"
        );
    }
    let still = expect(
        &w.operator.get("/v1/catalog/versioned/versions/1.0.0").await,
        200,
    );
    assert_eq!(still["digest"], format!("sha256:{digest}"));

    // 405 says which method there is.
    let refused = w.operator.delete("/v1/catalog/versioned").await;
    assert!(
        refused.header("allow").as_deref() == Some("GET"),
        "{}",
        refused.headers
    );

    // Operator tokens rotate: another one works, and revoking stops them all at once.
    let second = blocking(|| operator_token(&w.dir, "create-operator-token", "ops"));
    let second = w.service.client(&second);
    expect(&second.get("/v1/catalog").await, 200);
    let revoked = blocking(|| admin(&w.dir, "revoke-operator-tokens", "ops"));
    assert_eq!(revoked, "revoked 2 token(s) of operator `ops`\n");
    for client in [&second, &w.operator] {
        api_error(&client.get("/v1/catalog").await, 401, "unauthenticated");
    }
    let operator = w.service.client(&blocking(|| {
        operator_token(&w.dir, "create-operator-token", "ops")
    }));

    // Operator endpoints refuse tenant tokens, and tenant endpoints operator tokens.
    api_error(&w.admin.get("/v1/catalog").await, 403, "operator_only");
    api_error(
        &w.admin
            .send_raw(
                "POST",
                "/v1/catalog/versions",
                Some("application/wasm"),
                v1.clone(),
            )
            .await,
        403,
        "operator_only",
    );
    api_error(
        &operator.get("/v1/connections").await,
        403,
        "tenant_token_required",
    );
    let anonymous = w.service.anonymous();
    api_error(&anonymous.get("/v1/catalog").await, 401, "unauthenticated");
    for path in ["/v1/catalog", "/v1/connections"] {
        api_error(
            &w.service.client("jo_forged").get(path).await,
            401,
            "unauthenticated",
        );
    }

    // Published, not installed: tenants do not see it yet.
    let listed = expect(&w.admin.get("/v1/connectors").await, 200);
    assert!(
        !listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "versioned"),
        "{listed}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_install_upgrade_skip_and_roll_back_and_invocations_follow() {
    let w = World::start("catalog-flows", &[]).await;
    for c in [
        components::VERSIONED_1,
        components::VERSIONED_2,
        components::VERSIONED_3,
    ] {
        expect(&w.publish(c).await, 201);
    }
    let view = expect(&w.operator.get("/v1/catalog/versioned").await, 200);
    assert_eq!(view["active_version"], Value::Null);
    assert_eq!(view["latest_version"], "3.0.0-beta.1");
    assert_eq!(
        states(&view),
        pairs(&[
            ("3.0.0-beta.1", "available"),
            ("2.0.0", "available"),
            ("1.0.0", "available"),
        ])
    );
    // Upgrade and rollback need an installed connector.
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/upgrade", json!({}))
            .await,
        409,
        "not_installed",
    );

    let view = w.switch("install", json!({"version": "1.0.0"})).await;
    assert_eq!(view["active_version"], "1.0.0");
    assert_eq!(view["upgrade_available"], "2.0.0");
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/install", json!({}))
            .await,
        409,
        "already_installed",
    );
    let connection = w.versioned_connection("http://127.0.0.1:9").await;
    let ran = expect(
        &invoke(&w.admin, &connection, "version", json!({})).await,
        200,
    );
    assert_eq!(ran["output"]["version"], "1.0.0");
    assert_eq!(ran["invocation"]["connector_version"], "1.0.0");

    // 2.0.0 is skipped: the default upgrade passes over it (and 3.0.0-beta.1 is a
    // preview, not offered to a GA install).
    let view = expect(
        &w.operator
            .post("/v1/catalog/versioned/versions/2.0.0/skip", json!({}))
            .await,
        200,
    );
    assert_eq!(view["upgrade_available"], Value::Null);
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/upgrade", json!({}))
            .await,
        409,
        "no_upgrade",
    );
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/upgrade", json!({"version": "2.0.0"}))
            .await,
        409,
        "version_skipped",
    );
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/versions/1.0.0/skip", json!({}))
            .await,
        409,
        "version_active",
    );
    let view = w
        .switch("upgrade", json!({"version": "3.0.0-beta.1"}))
        .await;
    assert_eq!(view["active_version"], "3.0.0-beta.1");
    let ran = expect(
        &invoke(&w.admin, &connection, "version", json!({})).await,
        200,
    );
    assert_eq!(ran["output"]["version"], "3.0.0-beta.1");
    api_error(
        &w.operator
            .post("/v1/catalog/versioned/upgrade", json!({"version": "1.0.0"}))
            .await,
        409,
        "not_newer",
    );

    // Rollback: to the version active before, by default; never to one never installed.
    api_error(
        &w.operator
            .post(
                "/v1/catalog/versioned/rollback",
                json!({"version": "2.0.0"}),
            )
            .await,
        409,
        "not_previously_installed",
    );
    let view = w.switch("rollback", json!({})).await;
    assert_eq!(view["active_version"], "1.0.0");
    assert_eq!(
        states(&view),
        pairs(&[
            ("3.0.0-beta.1", "previously_installed"),
            ("2.0.0", "skipped"),
            ("1.0.0", "active"),
        ])
    );
    let ran = expect(
        &invoke(&w.admin, &connection, "version", json!({})).await,
        200,
    );
    assert_eq!(ran["output"]["version"], "1.0.0");

    // Unskipped, 2.0.0 is the upgrade again.
    let view = expect(
        &w.operator
            .delete("/v1/catalog/versioned/versions/2.0.0/skip")
            .await,
        200,
    );
    assert_eq!(view["upgrade_available"], "2.0.0");
    let view = w.switch("upgrade", json!({})).await;
    assert_eq!(view["active_version"], "2.0.0");

    // The tenant's connector page shows the running version and the connection.
    let page = expect(&w.admin.get("/v1/connectors/versioned").await, 200);
    assert_eq!(page["version"], "2.0.0");
    assert_eq!(page["release"], "ga");
    assert_eq!(page["connections"][0]["id"], connection.as_str());
    assert!(page["actions"][0]["input_schema"].is_object(), "{page}");
    assert!(page["actions"][0]["output_schema"].is_object(), "{page}");
    assert!(
        page["triggers"].is_array() && page["docs"].is_string(),
        "{page}"
    );
    assert_eq!(page["auth_schemes"][0]["type"], "none", "{page}");

    // The choice survives a restart.
    let mut w = w;
    w.restart();
    let view = expect(&w.operator.get("/v1/catalog/versioned").await, 200);
    assert_eq!(view["active_version"], "2.0.0");
    let ran = expect(
        &invoke(&w.admin, &connection, "version", json!({})).await,
        200,
    );
    assert_eq!(ran["output"]["version"], "2.0.0");
}

/// A local server whose every request waits until the test opens the gate.
struct HeldApi {
    url: String,
    gate: Arc<tokio::sync::Semaphore>,
    arrived: Arc<tokio::sync::Notify>,
}

impl HeldApi {
    async fn start() -> HeldApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (g, a) = (gate.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (g, a) = (g.clone(), a.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    a.notify_one();
                    let permit = g.acquire().await.unwrap();
                    permit.forget();
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        HeldApi { url, gate, arrived }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invocation_in_flight_finishes_on_the_version_it_started_with() {
    let w = World::start("catalog-in-flight", &[]).await;
    expect(&w.publish(components::VERSIONED_1).await, 201);
    expect(&w.publish(components::VERSIONED_2).await, 201);
    w.switch("install", json!({"version": "1.0.0"})).await;
    let held = HeldApi::start().await;
    let connection = w.versioned_connection(&held.url).await;

    let admin = w.admin.clone();
    let c = connection.clone();
    let in_flight =
        tokio::spawn(async move { invoke(&admin, &c, "hold", json!({"path": "/held"})).await });
    // The invocation is inside the guest, waiting for its response.
    tokio::time::timeout(std::time::Duration::from_secs(30), held.arrived.notified())
        .await
        .expect("the held request arrives");
    let view = w.switch("upgrade", json!({})).await;
    assert_eq!(view["active_version"], "2.0.0");
    // New invocations run the new version at once.
    let ran = expect(
        &invoke(&w.admin, &connection, "version", json!({})).await,
        200,
    );
    assert_eq!(ran["output"]["version"], "2.0.0");
    // The held one finishes, on 1.0.0.
    held.gate.add_permits(1);
    let finished = in_flight.await.unwrap();
    let finished = expect(&finished, 200);
    assert_eq!(finished["output"]["version"], "1.0.0");
    assert_eq!(finished["output"]["status"], 200);
    assert_eq!(finished["invocation"]["connector_version"], "1.0.0");
}

/// The load test of the hot swap: workers invoke without pause while a version is
/// published and the active version is switched back and forth; no invocation fails, and each answer names the version that
/// produced it, which is also the version its invocation record names.
#[tokio::test(flavor = "multi_thread")]
async fn versions_switched_back_and_forth_under_load_fail_no_invocation() {
    const WORKERS: usize = 6;
    const SWITCHES: usize = 40;
    let w = World::start("catalog-hot-swap", &[]).await;
    expect(&w.publish(components::VERSIONED_1).await, 201);
    expect(&w.publish(components::VERSIONED_2).await, 201);
    w.switch("install", json!({"version": "1.0.0"})).await;
    let connection = w.versioned_connection("http://127.0.0.1:9").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (admin, c, stop) = (w.admin.clone(), connection.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                results.push(invoke(&admin, &c, "version", json!({})).await);
            }
            results
        }));
    }
    // Publishing compiles a component while the invocations run.
    expect(&w.publish(components::VERSIONED_3).await, 201);
    let mut seen_by_switch = Vec::new();
    for i in 0..SWITCHES {
        let (how, version) = if i % 2 == 0 {
            ("upgrade", "2.0.0")
        } else {
            ("rollback", "1.0.0")
        };
        let view = w.switch(how, json!({"version": version})).await;
        assert_eq!(view["active_version"], version);
        // Right after a switch, a new invocation runs the new version.
        let ran = expect(
            &invoke(&w.admin, &connection, "version", json!({})).await,
            200,
        );
        seen_by_switch.push(ran["output"]["version"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut per_version = std::collections::BTreeMap::<String, usize>::new();
    for worker in workers {
        for ex in worker.await.unwrap() {
            let body = expect(&ex, 200);
            let version = body["output"]["version"].as_str().unwrap().to_owned();
            assert_eq!(
                body["invocation"]["connector_version"], version,
                "the record names the version that ran"
            );
            *per_version.entry(version).or_default() += 1;
            total += 1;
        }
    }
    let expected: Vec<String> = (0..SWITCHES)
        .map(|i| if i % 2 == 0 { "2.0.0" } else { "1.0.0" }.to_owned())
        .collect();
    assert_eq!(seen_by_switch, expected);
    assert!(
        per_version.len() == 2 && total > SWITCHES * 2,
        "{total} invocations: {per_version:?}"
    );
    eprintln!(
        "hot swap: {total} invocations by {WORKERS} workers over {SWITCHES} switches, none failed: {per_version:?}"
    );
    // Every record names a version that was active.
    let records = expect(
        &w.admin
            .get(&format!(
                "/v1/invocations?connection_id={connection}&limit=200"
            ))
            .await,
        200,
    );
    for r in records["items"].as_array().unwrap() {
        assert_eq!(r["outcome"], "ok", "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_loads_precompiled_artifacts_instead_of_compiling() {
    let connectors = [
        components::HTTP,
        components::GITHUB,
        components::PROBE,
        components::VERSIONED_1,
    ];
    let mut w = World::start("catalog-restart", &connectors).await;
    let loads = |service: &Service| -> Vec<Value> { service.log_lines_with("connector loaded") };
    let ready_ms = |service: &Service| -> f64 {
        service.log_lines_with("catalog ready")[0]["load_ms"]
            .as_f64()
            .unwrap()
    };
    // The first start publishes: each component is compiled once, its artifact kept.
    let first = loads(&w.service);
    assert_eq!(first.len(), connectors.len(), "{first:?}");
    let published = w
        .service
        .log_lines_with("published from the connectors directory");
    assert_eq!(published.len(), connectors.len());
    let cold = ready_ms(&w.service);

    w.restart();
    let second = loads(&w.service);
    assert_eq!(second.len(), connectors.len(), "{second:?}");
    assert!(
        second.iter().all(|l| l["origin"] == "precompiled"),
        "{second:?}"
    );
    let warm = ready_ms(&w.service);
    eprintln!(
        "catalog of {} connectors ready in {cold:.1} ms publishing (compiling), {warm:.1} ms from precompiled artifacts",
        connectors.len()
    );
    // And the service works on them.
    let listed = expect(&w.admin.get("/v1/connectors").await, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), connectors.len());

    // An artifact that went bad is compiled again, not trusted.
    w.restart_after(|dir| {
        for artifact in walk(&dir.join("catalog/compiled")) {
            std::fs::write(&artifact, b"not an artifact").unwrap();
        }
    });
    let third = loads(&w.service);
    assert!(third.iter().all(|l| l["origin"] == "compiled"), "{third:?}");
    let listed = expect(&w.admin.get("/v1/connectors").await, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), connectors.len());
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_policy_governs_new_connections_and_leaves_existing_ones_working() {
    let w = World::start("catalog-policy", &[components::PROBE, components::HTTP]).await;
    let globex = blocking(|| service::create_tenant(bin(), &w.dir, "globex", "gus"));
    let globex = w.service.client(globex["token"]["token"].as_str().unwrap());
    let create = |client: &Client, name: &str, auth: &str, fields: Value| {
        let (client, body) = (
            client.clone(),
            json!({"connector": "probe", "name": name, "auth": auth, "fields": fields}),
        );
        async move { client.post("/v1/connections", body).await }
    };
    // Before any policy: a bearer connection of probe.
    let before = expect(
        &create(&w.admin, "before", "bearer", json!({"token": "t-1"})).await,
        201,
    );
    let before = before["id"].as_str().unwrap().to_owned();

    // The operator disables probe for acme.
    let policy = expect(
        &w.operator
            .put(
                &format!("/v1/tenants/{}/policy", w.tenant),
                json!({"disabled_connectors": ["probe"]}),
            )
            .await,
        200,
    );
    assert_eq!(policy["disabled_connectors"], json!(["probe"]));
    assert_eq!(
        names(&expect(&w.admin.get("/v1/connectors").await, 200)),
        ["http"]
    );
    assert_eq!(
        names(&expect(&globex.get("/v1/connectors").await, 200)),
        ["http", "probe"]
    );
    let error = api_error(
        &w.admin.get("/v1/connectors/probe").await,
        403,
        "connector_disabled",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("disabled by the policy of tenant `acme`"),
        "{error}"
    );
    api_error(
        &create(&w.admin, "after", "bearer", json!({"token": "t-2"})).await,
        403,
        "connector_disabled",
    );
    expect(
        &create(&globex, "theirs", "bearer", json!({"token": "t-3"})).await,
        201,
    );
    // The existing connection keeps working.
    let ran = expect(
        &invoke(&w.admin, &before, "echo", json!({"value": "works"})).await,
        200,
    );
    assert_eq!(ran["output"], "works", "{ran}");

    // Enabled again, but only with an API key.
    expect(
        &w.operator
            .put(
                &format!("/v1/tenants/{}/policy", w.tenant),
                json!({"allowed_auth_types": {"probe": ["api_key"]}}),
            )
            .await,
        200,
    );
    let page = expect(&w.admin.get("/v1/connectors/probe").await, 200);
    let schemes: Vec<&str> = page["auth_schemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(schemes, ["header-key", "query-key"]);
    assert_eq!(page["connections"][0]["id"], before.as_str());
    let error = api_error(
        &create(&w.admin, "bearer-2", "bearer", json!({"token": "t-4"})).await,
        403,
        "auth_type_not_allowed",
    );
    assert_eq!(error["details"]["allowed"], json!(["api_key"]));
    expect(
        &create(&w.admin, "keyed", "header-key", json!({"api_key": "k-1"})).await,
        201,
    );
    // Switching the existing connection to a scheme the policy refuses is refused too;
    // its other edits are not.
    api_error(
        &w.admin
            .patch(
                &format!("/v1/connections/{before}"),
                json!({"auth": "basic", "fields": {"username": "u", "password": "p"}}),
            )
            .await,
        403,
        "auth_type_not_allowed",
    );
    expect(
        &w.admin
            .patch(
                &format!("/v1/connections/{before}"),
                json!({"description": "kept"}),
            )
            .await,
        200,
    );
    expect(
        &invoke(&w.admin, &before, "echo", json!({"value": 1})).await,
        200,
    );

    // The tenant reads its own policy; members of other tenants see theirs (empty).
    let own = expect(&w.admin.get("/v1/tenant/policy").await, 200);
    assert_eq!(own["allowed_auth_types"]["probe"], json!(["api_key"]));
    let theirs = expect(&globex.get("/v1/tenant/policy").await, 200);
    assert_eq!(theirs["allowed_auth_types"], json!({}));
    // Only operators set policies; a malformed one is refused whole.
    api_error(
        &w.admin
            .put(&format!("/v1/tenants/{}/policy", w.tenant), json!({}))
            .await,
        403,
        "operator_only",
    );
    let bad = w
        .operator
        .put(
            &format!("/v1/tenants/{}/policy", w.tenant),
            json!({"allowed_auth_types": {"probe": ["pat"]}}),
        )
        .await;
    let error = api_error(&bad, 400, "invalid_policy");
    assert!(
        error["message"].as_str().unwrap().contains("`pat`"),
        "{error}"
    );
    api_error(
        &w.operator
            .put("/v1/tenants/ten_nope/policy", json!({}))
            .await,
        404,
        "not_found",
    );
    let tenants = expect(&w.operator.get("/v1/tenants").await, 200);
    assert_eq!(names(&tenants), ["acme", "globex"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_predefined_oauth_app_serves_its_users_without_showing_them_the_secret() {
    let oauth = blocking(junction_tests::oauth::OAuthServer::start);
    let w = World::start("catalog-tenant-app", &[components::PROBE]).await;
    let machine = oauth
        .register_client(json!({
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        }))
        .await;
    let app_path = format!("/v1/tenants/{}/oauth-apps/probe", w.tenant);
    // Endpoints built from a field the app does not fix: refused.
    let error = api_error(
        &w.operator
            .put(
                &app_path,
                json!({"client_id": machine.client_id, "client_secret": machine.client_secret}),
            )
            .await,
        400,
        "invalid_request",
    );
    assert!(
        error["message"].as_str().unwrap().contains("issuer"),
        "{error}"
    );
    let set = w
        .operator
        .put(
            &app_path,
            json!({
                "client_id": machine.client_id,
                "client_secret": machine.client_secret,
                "scopes": ["read"],
                // The client credentials grant's token is the app's own: the API it is
                // sent to (`base_url`) is fixed too.
                "endpoint_fields": {"issuer": oauth.issuer(), "base_url": "http://127.0.0.1:9",
                                    "second_url": "http://127.0.0.1:9"},
            }),
        )
        .await;
    let app = expect(&set, 200);
    assert_eq!(app["client_secret_set"], true);
    assert!(!set.text.contains(&machine.client_secret), "{}", set.text);
    let policy = w
        .operator
        .get(&format!("/v1/tenants/{}/policy", w.tenant))
        .await;
    assert_eq!(
        expect(&policy, 200)["oauth_apps"][0]["client_id"],
        machine.client_id.as_str()
    );
    assert!(!policy.text.contains(&machine.client_secret));
    let page = expect(&w.admin.get("/v1/connectors/probe").await, 200);
    let service_scheme = page["auth_schemes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "oauth-service")
        .unwrap()
        .clone();
    assert_eq!(service_scheme["oauth_app"], "tenant", "{service_scheme}");

    // A user creates a client-credentials connection naming no app: the tenant's is used.
    let created = w
        .admin
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "machine", "auth": "oauth-service"}),
        )
        .await;
    let body = expect(&created, 201);
    assert_eq!(body["health"]["status"], "healthy", "{body}");
    assert_eq!(body["secrets"]["client_secret"], true, "{body}");
    assert_eq!(body["fields"]["client_id"], machine.client_id.as_str());
    assert!(!created.text.contains(&machine.client_secret));
    assert_eq!(oauth.grants("client_credentials", &machine.client_id), 1);
    let id = body["id"].as_str().unwrap();
    let shown = w.admin.get(&format!("/v1/connections/{id}")).await;
    assert!(!shown.text.contains(&machine.client_secret));
    // The app's scopes are a ceiling.
    let wider = w
        .admin
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "wider", "auth": "oauth-service",
                   "fields": {"scopes": "read admin"}}),
        )
        .await;
    let error = api_error(&wider, 400, "invalid_request");
    assert!(
        error["message"].as_str().unwrap().contains("scope `admin`"),
        "{error}"
    );
    // The endpoint stays the operator's: an edit cannot move the secret elsewhere...
    let edited = w
        .admin
        .patch(
            &format!("/v1/connections/{id}"),
            json!({"fields": {"issuer": "http://127.0.0.1:9"}}),
        )
        .await;
    let error = api_error(&edited, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "fields.client_secret", "{error}");
    // ...and a new connection cannot name another one.
    let moved = w
        .admin
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "elsewhere", "auth": "oauth-service",
                   "fields": {"issuer": "http://127.0.0.1:9"}}),
        )
        .await;
    let error = api_error(&moved, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "fields.issuer", "{error}");

    // Removing the app affects new connections only.
    let removed = w.operator.delete(&app_path).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let without = w
        .admin
        .post(
            "/v1/connections",
            json!({"connector": "probe", "name": "machine-2", "auth": "oauth-service",
                   "fields": {"issuer": oauth.issuer()}}),
        )
        .await;
    assert_eq!(without.status, 400, "{}", without.text);
    let reconnected = w
        .admin
        .post(&format!("/v1/connections/{id}/reconnect"), json!({}))
        .await;
    assert_eq!(expect(&reconnected, 200)["health"]["status"], "healthy");
    assert_eq!(oauth.grants("client_credentials", &machine.client_id), 2);

    // The secret is nowhere on disk in clear.
    for (path, bytes) in service::files_under(&w.dir) {
        assert!(
            !service::contains(&bytes, &machine.client_secret),
            "{} holds the client secret in clear",
            path.display()
        );
    }
}
