//! Credential assets end to end: secret fields whose value lives in a vault. The real
//! `junction serve` configured with `[credential_stores.<name>]`, a real server of the
//! HashiCorp Vault HTTP API (RustyVault, started per test on loopback), and a local API that
//! accepts one key at a time (`/key`, [`Api::set_token`]).
//!
//! Each test has its own vault, API, data directory and service: they run in parallel. The
//! vault counts the reads it received ([`VaultServer::reads`]), which is how the cache is
//! observed from outside.

use crate::bin;
use hmac::{Hmac, Mac as _};
use junction_tests::api::Api;
use junction_tests::browser::Browser;
use junction_tests::components;
use junction_tests::oauth::OAuthServer;
use junction_tests::openapi::Validator;
use junction_tests::proxy::ForwardProxy;
use junction_tests::resource::Resource;
use junction_tests::service::{self, Client, Exchange, Service};
use junction_tests::vault::VaultServer;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variable the services read their vault token from (`token_env`).
const TOKEN_VAR: &str = "JUNCTION_TEST_VAULT_TOKEN";
/// The variable the services read their AppRole secret id from (`secret_id_env`).
const SECRET_ID_VAR: &str = "JUNCTION_TEST_VAULT_SECRET_ID";

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A value no other test uses, to search for afterwards.
fn unique(tag: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{n}-{nanos:09}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// Conformance to the OpenAPI document
// ---------------------------------------------------------------------------------------

static VALIDATOR: LazyLock<Validator> = LazyLock::new(Validator::service);

/// What the OpenAPI document says is wrong with a JSON answer of the API, if anything.
fn nonconformity(ex: &Exchange) -> Option<String> {
    if !ex.path.starts_with("/v1/") {
        return None;
    }
    let path = ex.path.split('?').next().unwrap_or_default();
    VALIDATOR
        .validate_response(&ex.method, path, ex.status.as_u16(), &ex.json())
        .err()
        .map(|e| format!("{} {} answered {}: {e}", ex.method, ex.path, ex.status))
}

/// The error envelope of a response, after checking its status and code.
#[track_caller]
fn api_error(ex: &Exchange, status: u16, code: &str) -> Value {
    assert_eq!(ex.status, status, "{} {}: {}", ex.method, ex.path, ex.text);
    let error = ex.json()["error"].clone();
    assert_eq!(error["code"], code, "{error}");
    error
}

#[track_caller]
fn expect(ex: &Exchange, status: u16) -> Value {
    assert_eq!(ex.status, status, "{} {}: {}", ex.method, ex.path, ex.text);
    ex.json()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// A test's world: a vault, an API, a service configured with credential stores
// ---------------------------------------------------------------------------------------

/// A store reading `kv/` (KV version 1) with the vault's root token, open to every tenant.
fn token_store(name: &str, vault: &VaultServer) -> String {
    token_store_for(name, vault, "\"*\"")
}

/// [`token_store`] open to `tenants` (the TOML value: `"*"`, `["ten_…"]`).
fn token_store_for(name: &str, vault: &VaultServer, tenants: &str) -> String {
    format!(
        "[credential_stores.{name}]\naddress = \"{}\"\nauth = \"token\"\n\
         token_env = \"{TOKEN_VAR}\"\nmount = \"kv\"\nkv_version = 1\ntimeout = 5\n\
         tenants = {tenants}\n",
        vault.address()
    )
}

/// Files and directories a test made, removed when it passes (kept for a look when it
/// fails).
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            for path in &self.0 {
                let _ = std::fs::remove_dir_all(path);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A principal of a world's service other than its first administrator. It holds a token,
/// not a client: the service's address changes when the world restarts it.
struct Principal {
    id: String,
    /// Its tenant's id.
    tenant: String,
    token: String,
}

struct World {
    vault: VaultServer,
    api: Api,
    service: Service,
    /// The tenant administrator's client.
    admin: Client,
    /// The administrator's API token.
    token: String,
    /// The administrator's principal id.
    admin_id: String,
    /// The administrator's tenant (`acme`): its id.
    tenant: String,
    /// Every answer of the API to this test, for [`World::assert_conforming`] (a test of
    /// the document of its own, so that the tests of the behaviour do not stop at it).
    answers: std::sync::Mutex<Vec<Exchange>>,
    config: PathBuf,
    env: Vec<(String, String)>,
    /// Declared last: removed once the service is gone.
    scratch: Scratch,
}

/// `junction serve` on `dir` with the configuration file `config`, the probe only (each
/// connector loaded is compiled at start), no background health check, and `env`.
fn serve(dir: &Path, config: &Path, env: &[(String, String)]) -> Service {
    let mut command = Command::new(bin());
    command
        .arg("--log-json")
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir)
        .arg("--connectors")
        .arg(components::PROBE)
        .args(["--health-check-interval", "0"])
        .args(service::LOOPBACK_EGRESS)
        .env("RUST_LOG", "info,junction=debug,sqlx=warn");
    for (k, v) in env {
        command.env(k, v);
    }
    blocking(|| Service::start_command(command, dir)).unwrap_or_else(|e| panic!("{e}"))
}

/// A world with a vault of its own, whose service has the stores `stores` gives (TOML)
/// and the vault's root token in [`TOKEN_VAR`].
async fn world(name: &str, stores: impl FnOnce(&VaultServer) -> String) -> World {
    let vault = VaultServer::start().await;
    let config = stores(&vault);
    world_on(name, vault, &config, &[]).await
}

/// A world on `vault`, whose service has the configuration `config`, the vault's root
/// token in [`TOKEN_VAR`], and `env`.
async fn world_on(name: &str, vault: VaultServer, config: &str, env: &[(&str, &str)]) -> World {
    let api = Api::start("no key accepted yet").await;
    let dir = service::data_dir(name);
    let config_file = dir.with_extension("toml");
    std::fs::write(&config_file, config).unwrap();
    let created = blocking(|| service::create_tenant(bin(), &dir, "acme", "ada"));
    let token = text(&created["token"]["token"]);
    let tenant = text(&created["tenant"]["id"]);
    let admin_id = text(&created["principal"]["id"]);
    let mut all = vec![(TOKEN_VAR.to_owned(), vault.root_token().to_owned())];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let service = serve(&dir, &config_file, &all);
    let admin = service.client(&token);
    World {
        vault,
        api,
        service,
        admin,
        token,
        admin_id,
        tenant,
        answers: std::sync::Mutex::new(Vec::new()),
        config: config_file.clone(),
        env: all,
        scratch: Scratch(vec![dir, config_file]),
    }
}

impl World {
    /// Stops the service (SIGTERM) if it runs, and starts another on the same data
    /// directory and configuration: its cache starts empty.
    fn restart(&mut self) {
        if self.service.pid().is_some() {
            let status = self.service.stop();
            assert!(status.success(), "{status}: {}", self.service.logs());
        }
        let dir = self.service.data_dir.clone();
        let logs = self.service.logs();
        self.service = serve(&dir, &self.config, &self.env);
        self.admin = self.service.client(&self.token);
        // Keep what the previous process logged, for the checks of the whole test.
        PREVIOUS_LOGS.lock().unwrap().push(logs);
    }

    /// Writes `config` as the service's configuration and restarts the service on it.
    fn reconfigure(&mut self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
        self.restart();
    }

    /// The administrator, as a [`Principal`].
    fn administrator(&self) -> Principal {
        Principal {
            id: self.admin_id.clone(),
            tenant: self.tenant.clone(),
            token: self.token.clone(),
        }
    }

    /// A principal of the administrator's tenant: `role` is `member` or `admin`.
    async fn principal(&self, name: &str, role: &str) -> Principal {
        let created = expect(
            &self
                .post("/v1/principals", json!({"name": name, "role": role}))
                .await,
            201,
        );
        Principal {
            id: text(&created["principal"]["id"]),
            tenant: self.tenant.clone(),
            token: text(&created["token"]["token"]),
        }
    }

    /// Another tenant of the same service (`junction admin create-tenant` on its data
    /// directory): its administrator.
    fn other_tenant(&self, name: &str) -> Principal {
        let dir = self.service.data_dir.clone();
        let created = blocking(|| service::create_tenant(bin(), &dir, name, "admin"));
        Principal {
            id: text(&created["principal"]["id"]),
            tenant: text(&created["tenant"]["id"]),
            token: text(&created["token"]["token"]),
        }
    }

    /// A shared folder of the administrator's tenant on which `who` has `permissions`.
    async fn shared_folder(&self, name: &str, who: &Principal, permissions: &[&str]) -> String {
        let folder =
            text(&expect(&self.post("/v1/folders", json!({"name": name})).await, 201)["id"]);
        expect(
            &self
                .admin
                .put(
                    &format!("/v1/folders/{folder}/grants/{}", who.id),
                    json!({"permissions": permissions}),
                )
                .await,
            200,
        );
        folder
    }

    /// A request of `who` (kept for [`World::assert_conforming`]).
    async fn send_as(
        &self,
        who: &Principal,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Exchange {
        let client = self.service.client(&who.token);
        self.answered(client.send(method, path, body.as_ref(), &[]).await)
    }

    /// Everything every service process of the test binary logged so far (of this world
    /// included).
    fn all_logs(&self) -> String {
        let mut all = PREVIOUS_LOGS.lock().unwrap().join("\n");
        all.push_str(&self.service.logs());
        all
    }

    /// Keeps `ex` for [`World::assert_conforming`].
    fn answered(&self, ex: Exchange) -> Exchange {
        self.answers.lock().unwrap().push(ex.clone());
        ex
    }

    async fn post(&self, path: &str, body: Value) -> Exchange {
        self.answered(self.admin.post(path, body).await)
    }

    async fn patch(&self, path: &str, body: Value) -> Exchange {
        self.answered(self.admin.patch(path, body).await)
    }

    async fn get(&self, path: &str) -> Exchange {
        self.answered(self.admin.get(path).await)
    }

    /// Every answer of the API to this test conforms to the OpenAPI document.
    fn assert_conforming(&self) {
        let answers = self.answers.lock().unwrap();
        let problems: Vec<String> = answers.iter().filter_map(nonconformity).collect();
        assert!(
            problems.is_empty(),
            "{} of {} answers do not conform to the OpenAPI document:\n  {}",
            problems.len(),
            answers.len(),
            problems.join("\n  ")
        );
    }

    /// The body that creates a probe connection with `auth` and `fields` (the API's base
    /// URL added).
    fn connection_body(&self, name: &str, auth: &str, fields: Value) -> Value {
        let mut all = json!({"base_url": self.api.base_url});
        all.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!({"connector": "probe", "name": name, "auth": auth, "fields": all})
    }

    /// Creates a probe connection with `auth` and `fields` (the API's base URL added).
    async fn create(&self, name: &str, auth: &str, fields: Value) -> Exchange {
        self.post("/v1/connections", self.connection_body(name, auth, fields))
            .await
    }

    /// `who` creates a probe connection sending `api_key` (a value or a reference) as
    /// `X-API-Key`, in `folder` (`None`: its own workspace).
    async fn create_keyed_as(
        &self,
        who: &Principal,
        name: &str,
        folder: Option<&str>,
        api_key: Value,
    ) -> Exchange {
        let mut body = self.connection_body(name, "header-key", json!({"api_key": api_key}));
        if let Some(folder) = folder {
            body["folder_id"] = json!(folder);
        }
        self.send_as(who, "POST", "/v1/connections", Some(body))
            .await
    }

    /// Creates a probe connection sending `api_key` (a value or a reference) as
    /// `X-API-Key`; returns its id.
    async fn create_keyed(&self, name: &str, api_key: Value) -> String {
        let created = self
            .create(name, "header-key", json!({"api_key": api_key}))
            .await;
        text(&expect(&created, 201)["id"])
    }

    /// `fetch` of `url` on the API through the connection.
    async fn fetch(&self, id: &str, url: &str) -> Exchange {
        self.post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "fetch", "input": {"url": url}}),
        )
        .await
    }

    /// `n` `fetch` invocations of `url` sent at once.
    async fn at_once(&self, id: &str, url: &str, n: usize) -> Vec<Exchange> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..n {
            let admin = self.admin.clone();
            let path = format!("/v1/connections/{id}/invocations");
            let input = json!({"action": "fetch", "input": {"url": url}});
            calls.spawn(async move { admin.post(&path, input).await });
        }
        let answers = calls.join_all().await;
        for ex in &answers {
            self.answered(ex.clone());
        }
        answers
    }

    /// `fetch /key`, which must succeed with the key accepted; returns the key the API saw.
    async fn call_with_accepted_key(&self, id: &str) -> String {
        let ex = self.fetch(id, "/key").await;
        let body = expect(&ex, 200);
        assert_eq!(body["invocation"]["outcome"], "ok", "{body}");
        assert_eq!(body["output"]["status"], 200, "{body}");
        assert_eq!(body["output"]["body"], "key accepted", "{body}");
        self.last_key_seen()
    }

    /// The `X-API-Key` of every request the API received on `/key`, in order.
    fn keys_seen(&self) -> Vec<String> {
        self.api
            .seen()
            .iter()
            .filter(|s| s.path == "/key")
            .map(|s| {
                s.headers
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    fn last_key_seen(&self) -> String {
        self.keys_seen().pop().expect("the API received a request")
    }

    async fn connection(&self, id: &str) -> Value {
        expect(&self.get(&format!("/v1/connections/{id}")).await, 200)
    }

    async fn connection_count(&self) -> usize {
        expect(&self.get("/v1/connections").await, 200)["items"]
            .as_array()
            .unwrap()
            .len()
    }

    /// The value of a metric without labels.
    async fn metric(&self, name: &str) -> f64 {
        let ex = self.admin.get("/metrics").await;
        assert_eq!(ex.status, 200, "{}", ex.text);
        ex.text
            .lines()
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series == name).then(|| value.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in\n{}", ex.text))
    }

    /// The recorded invocation an error names.
    async fn recorded(&self, error: &Value) -> Value {
        let id = text(&error["details"]["invocation_id"]);
        expect(&self.get(&format!("/v1/invocations/{id}")).await, 200)
    }

    /// `secret` appears in no log of the service, no response of the API (of any test of
    /// this binary), and no file under the data directory.
    fn assert_nowhere(&self, secret: &str, what: &str) {
        let logs = self.all_logs();
        assert!(
            !logs.contains(secret),
            "the {what} is in the service's logs"
        );
        for e in service::exchanges() {
            assert!(
                !e.text.contains(secret) && !e.headers.contains(secret),
                "the {what} is in the response to {} {}: {}",
                e.method,
                e.path,
                e.text
            );
        }
        let files = service::files_under(&self.service.data_dir);
        assert!(
            files.iter().any(|(p, _)| p.ends_with("junction.db")),
            "no database under {}",
            self.service.data_dir.display()
        );
        for (path, bytes) in &files {
            assert!(
                !service::contains(bytes, secret),
                "the {what} is in {}",
                path.display()
            );
        }
    }
}

/// The logs of service processes the tests restarted.
static PREVIOUS_LOGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn reference(store: &str, path: &str, key: &str) -> Value {
    json!({"store": store, "path": path, "key": key})
}

// ---------------------------------------------------------------------------------------
// 1. Resolution
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_field_referencing_a_kv1_secret_sends_the_vaults_value_which_is_kept_nowhere() {
    let mut w = world("vault-resolve", |v| token_store("corp", v)).await;
    let key = unique("vault-api-key");
    let shown = unique("vault-shown-key");
    w.vault
        .put_v1(
            "team/probe",
            json!({"api_key": key, "shown": shown, "other": "not used"}),
        )
        .await;
    w.api.set_token(&key);

    let created = w
        .create(
            "keyed",
            "header-key",
            json!({
                "api_key": reference("corp", "team/probe", "api_key"),
                "shown_key": reference("corp", "team/probe", "shown"),
                "note": "visible",
            }),
        )
        .await;
    let body = expect(&created, 201);
    let id = text(&body["id"]);
    assert_eq!(body["secrets"]["api_key"], true, "{body}");
    assert_eq!(body["secrets"]["shown_key"], true, "{body}");
    assert_eq!(
        body["secret_refs"],
        json!({
            "api_key": reference("corp", "team/probe", "api_key"),
            "shown_key": reference("corp", "team/probe", "shown"),
        }),
        "{body}"
    );
    assert!(body["fields"].get("api_key").is_none(), "{body}");
    assert_eq!(body["fields"]["note"], "visible", "{body}");

    // The API received exactly the vault's value, as the scheme says.
    assert_eq!(w.call_with_accepted_key(&id).await, key);
    assert_eq!(w.keys_seen(), vec![key.clone()]);

    // Reading it back shows where the values live, not the values.
    let shown_back = w.connection(&id).await;
    assert_eq!(shown_back["secrets"], body["secrets"], "{shown_back}");
    assert_eq!(
        shown_back["secret_refs"], body["secret_refs"],
        "{shown_back}"
    );
    let listed = expect(&w.get("/v1/connections").await, 200);
    assert_eq!(
        listed["items"][0]["secret_refs"], body["secret_refs"],
        "{listed}"
    );

    // A field the connector may reveal comes back scrubbed from the invocation's output.
    let revealed = w
        .post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "reveal", "input": {"name": "shown_key"}}),
        )
        .await;
    let revealed = expect(&revealed, 200);
    assert_eq!(revealed["output"]["note"], "[redacted]", "{revealed}");
    expect(&w.get("/v1/invocations").await, 200);
    let tested = expect(
        &w.post(&format!("/v1/connections/{id}/test"), json!({}))
            .await,
        200,
    );
    assert_eq!(tested["health"]["status"], "healthy", "{tested}");

    let status = w.service.stop();
    assert!(status.success(), "{status}");
    w.assert_nowhere(&key, "vault's API key");
    w.assert_nowhere(&shown, "vault's revealable key");
    w.assert_nowhere(w.vault.root_token(), "store's vault token");
    assert_eq!(w.vault.reads("kv/team/probe"), 1);
    // Nothing but the reference was stored: a restart reads the vault again.
    w.restart();
    assert_eq!(w.call_with_accepted_key(&id).await, key);
    assert_eq!(w.vault.reads("kv/team/probe"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approle_store_on_a_kv2_mount_resolves_references_and_logs_in_again_after_its_token_expired()
 {
    let vault = VaultServer::start().await;
    let (role_id, secret_id) = vault.approle().await;
    // A second store whose login tokens the vault revokes after a second, its secret id in
    // a file.
    let (brief_role, brief_secret) = vault.approle_with_token_ttl(Duration::from_secs(1)).await;
    let secret_file = service::data_dir("vault-approle-secret-id");
    std::fs::write(&secret_file, format!("{brief_secret}\n")).unwrap();
    let config = format!(
        "[credential_stores.v2]\naddress = \"{address}\"\nauth = \"approle\"\n\
         role_id = \"{role_id}\"\nsecret_id_env = \"{SECRET_ID_VAR}\"\n\
         mount = \"kv2\"\nkv_version = 2\ntenants = \"*\"\n\n\
         [credential_stores.brief]\naddress = \"{address}\"\nauth = \"approle\"\n\
         role_id = \"{brief_role}\"\nsecret_id_file = \"{}\"\nmount = \"kv\"\nkv_version = 1\n\
         tenants = \"*\"\n",
        secret_file.display(),
        address = vault.address(),
    );
    let mut w = world_on(
        "vault-approle",
        vault,
        &config,
        &[(SECRET_ID_VAR, &secret_id)],
    )
    .await;
    w.scratch.0.push(secret_file);

    let key = unique("kv2-api-key");
    let version = w.vault.put_v2("apps/probe", json!({"api_key": key})).await;
    assert_eq!(version, 1);
    w.api.set_token(&key);
    let id = w
        .create_keyed("kv2", reference("v2", "apps/probe", "api_key"))
        .await;
    assert_eq!(
        w.connection(&id).await["secret_refs"]["api_key"],
        reference("v2", "apps/probe", "api_key")
    );
    assert_eq!(w.call_with_accepted_key(&id).await, key);
    assert_eq!(w.vault.reads("kv2/data/apps/probe"), 1);
    assert!(
        w.vault.requests("POST", "auth/approle/login") >= 1,
        "the service did not log in with AppRole:\n{}",
        w.vault.output()
    );

    // The store whose tokens expire: a read after the expiry logs in again and succeeds.
    w.vault.put_v1("brief/a", json!({"api_key": key})).await;
    w.vault.put_v1("brief/b", json!({"api_key": key})).await;
    let logins = w.vault.requests("POST", "auth/approle/login");
    w.create_keyed("brief-a", reference("brief", "brief/a", "api_key"))
        .await;
    assert_eq!(w.vault.requests("POST", "auth/approle/login"), logins + 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = w
        .create_keyed("brief-b", reference("brief", "brief/b", "api_key"))
        .await;
    assert_eq!(
        w.vault.requests("POST", "auth/approle/login"),
        logins + 2,
        "{}",
        w.vault.output()
    );
    assert_eq!(w.call_with_accepted_key(&id).await, key);

    let status = w.service.stop();
    assert!(status.success(), "{status}");
    w.assert_nowhere(&key, "vault's API key");
    w.assert_nowhere(&secret_id, "AppRole secret id");
    w.assert_nowhere(&brief_secret, "AppRole secret id");
}

// ---------------------------------------------------------------------------------------
// 3. The cache
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn twenty_invocations_read_the_vault_once() {
    let mut w = world("vault-cache", |v| token_store("corp", v)).await;
    let key = unique("cached-key");
    w.vault.put_v1("team/cached", json!({"api_key": key})).await;
    w.api.set_token(&key);
    let id = w
        .create_keyed("cached", reference("corp", "team/cached", "api_key"))
        .await;
    // Ten one after the other, ten at once.
    for _ in 0..10 {
        assert_eq!(w.call_with_accepted_key(&id).await, key);
    }
    for ex in w.at_once(&id, "/key", 10).await {
        let body = expect(&ex, 200);
        assert_eq!(body["output"]["status"], 200, "{body}");
    }
    assert_eq!(w.keys_seen().len(), 20);
    assert!(w.keys_seen().iter().all(|k| *k == key));
    assert_eq!(w.vault.reads("kv/team/cached"), 1, "{}", w.vault.output());
    assert_eq!(w.metric("junction_credential_store_reads_total").await, 1.0);
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        0.0
    );

    // A new process starts with an empty cache: ten invocations at once share one read.
    w.restart();
    let answers = w.at_once(&id, "/key", 10).await;
    for ex in answers {
        let body = expect(&ex, 200);
        assert_eq!(body["output"]["status"], 200, "{body}");
    }
    assert_eq!(w.vault.reads("kv/team/cached"), 2, "{}", w.vault.output());
    assert_eq!(w.metric("junction_credential_store_reads_total").await, 1.0);
}

// ---------------------------------------------------------------------------------------
// 4. Rotation
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_in_the_vault_is_read_again_and_the_invocation_retried_once() {
    // Every refusal reads the vault again here (no pause), so rotations can follow one
    // another within seconds; the pause has its own test.
    let w = world("vault-rotation", |v| {
        format!("credential_reread_pause = 0\n{}", token_store("corp", v))
    })
    .await;
    let first = unique("rotation-first");
    w.vault
        .put_v1("team/rotating", json!({"api_key": first}))
        .await;
    w.api.set_token(&first);
    let id = w
        .create_keyed("rotating", reference("corp", "team/rotating", "api_key"))
        .await;
    assert_eq!(w.call_with_accepted_key(&id).await, first);

    // The key is rotated: in the vault and at the API.
    let second = unique("rotation-second");
    w.vault
        .put_v1("team/rotating", json!({"api_key": second}))
        .await;
    w.api.set_token(&second);
    assert_eq!(w.call_with_accepted_key(&id).await, second);
    // The cached key was refused once, then the new one read and accepted.
    assert_eq!(
        w.keys_seen(),
        vec![first.clone(), first.clone(), second.clone()]
    );
    assert_eq!(w.vault.reads("kv/team/rotating"), 2);
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        1.0
    );
    assert_eq!(w.metric("junction_credential_store_reads_total").await, 2.0);
    // One invocation, recorded once, as a success.
    let invocations = expect(
        &w.get(&format!("/v1/invocations?connection_id={id}")).await,
        200,
    );
    let items = invocations["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{invocations}");
    assert!(items.iter().all(|i| i["outcome"] == "ok"), "{invocations}");
    // The next invocation uses the new key from the cache.
    assert_eq!(w.call_with_accepted_key(&id).await, second);
    assert_eq!(w.vault.reads("kv/team/rotating"), 2);

    // A 403 is not a rotation: the vault is read again, holds the same key, and the
    // API's answer goes to the connector as it is.
    let forbidden = expect(&w.fetch(&id, "/status/403").await, 200);
    assert_eq!(forbidden["output"]["status"], 403, "{forbidden}");
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        1.0
    );
    let reads = w.vault.reads("kv/team/rotating");

    // The vault gets a wrong key while the API wants another: read again, tried once
    // more, refused again.
    let wrong = unique("rotation-wrong");
    let wanted = unique("rotation-wanted");
    w.vault
        .put_v1("team/rotating", json!({"api_key": wrong}))
        .await;
    w.api.set_token(&wanted);
    let failed = w.fetch(&id, "/key").await;
    let error = api_error(&failed, 409, "vault_credential_invalid");
    let message = text(&error["message"]);
    assert!(message.contains("vault credential is invalid"), "{message}");
    assert!(message.contains("team/rotating"), "{message}");
    for value in [&first, &second, &wrong, &wanted] {
        assert!(!failed.text.contains(value.as_str()), "{}", failed.text);
    }
    assert_eq!(w.keys_seen()[4..], [second.clone(), wrong.clone()]);
    assert_eq!(w.vault.reads("kv/team/rotating"), reads + 1);
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        2.0
    );
    assert_eq!(
        w.recorded(&error).await["outcome"],
        "vault_credential_invalid"
    );

    // Refused again while the vault still holds the same key: read once more, not retried.
    let refused = w.fetch(&id, "/key").await;
    let error = api_error(&refused, 409, "vault_credential_invalid");
    let message = text(&error["message"]);
    assert!(message.contains("no newer value"), "{message}");
    assert!(!refused.text.contains(&wrong), "{}", refused.text);
    assert_eq!(w.vault.reads("kv/team/rotating"), reads + 2);
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        2.0
    );
    assert_eq!(w.keys_seen().len(), 7);

    // A rotation under load: ten invocations refused at once share one read of the new key.
    let third = unique("rotation-third");
    w.vault
        .put_v1("team/rotating", json!({"api_key": third}))
        .await;
    w.api.set_token(&third);
    let reads = w.vault.reads("kv/team/rotating");
    // The key in the cache is `wrong` again (refused, read again, the same).
    for ex in w.at_once(&id, "/key", 10).await {
        let body = expect(&ex, 200);
        assert_eq!(body["output"]["status"], 200, "{body}");
    }
    assert_eq!(
        w.vault.reads("kv/team/rotating"),
        reads + 1,
        "{}",
        w.vault.output()
    );
    let retries = w.metric("junction_vault_credential_retries_total").await;
    assert!((3.0..=12.0).contains(&retries), "{retries}");
    assert!(
        w.keys_seen()[7..]
            .iter()
            .all(|k| *k == wrong || *k == third)
    );

    for value in [&first, &second, &wrong, &third] {
        w.assert_nowhere(value, "vault's key");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_api_keeps_refusing_is_read_again_once_per_pause_not_per_invocation() {
    let w = world("vault-pause", |v| token_store("corp", v)).await;
    let key = unique("pause-key");
    w.vault.put_v1("team/paused", json!({"api_key": key})).await;
    w.api.set_token(&unique("pause-wanted"));
    let id = w
        .create_keyed("paused", reference("corp", "team/paused", "api_key"))
        .await;
    assert_eq!(w.vault.reads("kv/team/paused"), 1);
    // The first refusal reads the vault again and finds the same key; the next ones,
    // within the pause (30 s by default), read nothing and fail the same way.
    for _ in 0..5 {
        let error = api_error(&w.fetch(&id, "/key").await, 409, "vault_credential_invalid");
        assert!(
            text(&error["message"]).contains("no newer value"),
            "{error}"
        );
    }
    assert_eq!(w.vault.reads("kv/team/paused"), 2, "{}", w.vault.output());
    assert_eq!(
        w.metric("junction_vault_credential_retries_total").await,
        0.0
    );
}

// ---------------------------------------------------------------------------------------
// 5. The vault down
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn with_the_vault_down_cached_values_serve_and_uncached_ones_fail_502_naming_the_store() {
    let mut w = world("vault-down", |v| token_store("corp", v)).await;
    let key = unique("down-key");
    w.vault.put_v1("team/down", json!({"api_key": key})).await;
    w.vault.put_v1("team/other", json!({"api_key": key})).await;
    w.api.set_token(&key);
    let id = w
        .create_keyed("down", reference("corp", "team/down", "api_key"))
        .await;
    assert_eq!(w.call_with_accepted_key(&id).await, key);

    blocking(|| w.vault.stop());
    for _ in 0..3 {
        assert_eq!(w.call_with_accepted_key(&id).await, key);
    }

    // A new reference cannot be checked: nothing is created.
    let refused = w
        .create(
            "uncached",
            "header-key",
            json!({"api_key": reference("corp", "team/other", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 502, "credential_store_unavailable");
    assert_eq!(error["details"]["store"], "corp", "{error}");
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");
    assert!(
        text(&error["message"]).contains("credential store `corp` is unavailable"),
        "{error}"
    );
    assert_eq!(w.connection_count().await, 1);
    // An edit that gives no new reference works; one that does is refused the same way.
    let path = format!("/v1/connections/{id}");
    let edited = w.patch(&path, json!({"description": "vault down"})).await;
    let body = expect(&edited, 200);
    assert_eq!(
        body["secret_refs"]["api_key"],
        reference("corp", "team/down", "api_key")
    );
    let refused = w
        .patch(
            &path,
            json!({"fields": {"signing_key": reference("corp", "team/other", "api_key")}}),
        )
        .await;
    let error = api_error(&refused, 502, "credential_store_unavailable");
    assert_eq!(error["details"]["field"], "fields.signing_key", "{error}");
    assert!(
        w.connection(&id)
            .await
            .get("secret_refs")
            .unwrap()
            .get("signing_key")
            .is_none()
    );

    // Another process on the same data directory starts with an empty cache.
    w.restart();
    let failed = w.fetch(&id, "/key").await;
    let error = api_error(&failed, 502, "credentials_unavailable");
    let message = text(&error["message"]);
    assert!(
        message.contains("credential store `corp` is unavailable: "),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert_eq!(
        w.recorded(&error).await["outcome"],
        "credentials_unavailable"
    );
    assert_eq!(w.keys_seen().len(), 4, "a request went out without its key");

    // A failed read is not kept: once the vault is back, the next invocation reads it.
    w.vault.restart().await;
    assert_eq!(w.call_with_accepted_key(&id).await, key);
    assert_eq!(w.vault.reads("kv/team/down"), 2);

    // A sealed vault answers, but gives nothing: said as such.
    w.vault.seal().await;
    let refused = w
        .create(
            "sealed",
            "header-key",
            json!({"api_key": reference("corp", "team/other", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 502, "credential_store_unavailable");
    assert!(text(&error["message"]).contains("sealed"), "{error}");
    assert_eq!(w.call_with_accepted_key(&id).await, key);
}

// ---------------------------------------------------------------------------------------
// 6. References that point nowhere
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn references_that_point_nowhere_create_nothing_and_a_secret_deleted_later_fails_409() {
    let mut w = world("vault-nowhere", |v| token_store("corp", v)).await;
    let key = unique("nowhere-key");
    w.vault
        .put_v1(
            "team/present",
            json!({"api_key": key, "count": 5, "deploy_passphrase": "not used"}),
        )
        .await;
    let cases: [(&str, Value, &str, &[&str]); 6] = [
        (
            "api_key",
            reference("corp", "team/absent", "api_key"),
            "fields.api_key",
            &["corp", "team/absent"],
        ),
        (
            "api_key",
            reference("corp", "team/present", "token"),
            "fields.api_key",
            &["no key `token`", "team/present", "corp"],
        ),
        (
            "api_key",
            reference("elsewhere", "team/present", "api_key"),
            "fields.api_key",
            &["elsewhere", "corp"],
        ),
        (
            "api_key",
            reference("corp", "team/present", "count"),
            "fields.api_key",
            &["not a string"],
        ),
        (
            "api_key",
            reference("corp", "../sys/mounts", "x"),
            "fields.api_key",
            &["path"],
        ),
        (
            "note",
            reference("corp", "team/present", "api_key"),
            "fields.note",
            &["not secret"],
        ),
    ];
    for (field, r, named, says) in cases {
        let mut fields = json!({"api_key": reference("corp", "team/present", "api_key")});
        fields[field] = r.clone();
        let refused = w.create("nowhere", "header-key", fields).await;
        let error = api_error(&refused, 400, "invalid_request");
        assert_eq!(error["details"]["field"], named, "{r}: {error}");
        let message = text(&error["message"]);
        for part in says {
            assert!(message.contains(part), "{r}: `{part}` not in {message}");
        }
        assert!(!refused.text.contains(&key), "{}", refused.text);
        // Whoever points at a key learns whether that key exists, not which others do.
        for other in ["deploy_passphrase", "not used"] {
            assert!(!refused.text.contains(other), "{r}: {}", refused.text);
        }
    }
    // The whole message of a missing key: the field, the key, the secret and the store.
    let refused = w
        .create(
            "nowhere",
            "header-key",
            json!({"api_key": reference("corp", "team/present", "token")}),
        )
        .await;
    assert_eq!(
        api_error(&refused, 400, "invalid_request")["message"],
        "field `api_key`: the secret at `team/present` in credential store `corp` has no key `token`"
    );
    assert_eq!(
        w.connection_count().await,
        0,
        "a refused reference created a connection"
    );

    // A secret deleted after the creation: a service with an empty cache finds nothing.
    w.vault.put_v1("team/gone", json!({"api_key": key})).await;
    w.api.set_token(&key);
    let id = w
        .create_keyed("gone", reference("corp", "team/gone", "api_key"))
        .await;
    w.vault.delete("kv/team/gone").await;
    // A key renamed after the creation: the same, and the error names the key it lacks,
    // not the ones the secret has now.
    w.vault
        .put_v1("team/renamed", json!({"api_key": key, "region": "eu-west"}))
        .await;
    let renamed = w
        .create_keyed("renamed", reference("corp", "team/renamed", "api_key"))
        .await;
    w.vault
        .put_v1(
            "team/renamed",
            json!({"api_key_2025": key, "region": "eu-west"}),
        )
        .await;
    w.restart();
    let failed = w.fetch(&id, "/key").await;
    let error = api_error(&failed, 409, "vault_credential_invalid");
    let message = text(&error["message"]);
    assert!(message.contains("team/gone"), "{message}");
    assert!(message.contains("corp"), "{message}");
    assert_eq!(
        w.recorded(&error).await["outcome"],
        "vault_credential_invalid"
    );
    let failed = w.fetch(&renamed, "/key").await;
    let error = api_error(&failed, 409, "vault_credential_invalid");
    let message = text(&error["message"]);
    assert!(
        message.contains(
            "the secret at `team/renamed` in credential store `corp` has no key `api_key`"
        ),
        "{message}"
    );
    for other in ["api_key_2025", "region", "eu-west"] {
        assert!(!failed.text.contains(other), "{}", failed.text);
    }
    assert_eq!(
        w.recorded(&error).await["outcome"],
        "vault_credential_invalid"
    );
    assert!(
        w.keys_seen().is_empty(),
        "a request went out without its key"
    );
    w.assert_nowhere(&key, "vault's key");
}

// ---------------------------------------------------------------------------------------
// 7. A user's own OAuth app
// ---------------------------------------------------------------------------------------

/// The identity the resource API saw, from a `fetch /whoami` invocation.
fn identity(exchange: &Exchange) -> Value {
    let body = expect(exchange, 200);
    assert_eq!(body["output"]["status"], 200, "{body}");
    serde_json::from_str(body["output"]["body"].as_str().unwrap()).unwrap()
}

/// A probe connection with OAuth scheme `auth` at `oauth`'s provider, calling `resource`,
/// whose app is `client_id` with its client secret at `path` in the vault (`corp`).
fn oauth_app_body(
    name: &str,
    auth: &str,
    oauth: &OAuthServer,
    resource: &Resource,
    client_id: &str,
    path: &str,
) -> Value {
    json!({
        "connector": "probe",
        "name": name,
        "auth": auth,
        "fields": {
            "issuer": oauth.issuer(),
            "base_url": resource.base_url,
            "client_id": client_id,
            "client_secret": reference("corp", path, "client_secret"),
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_secret_of_a_users_own_oauth_app_comes_from_the_vault_for_the_client_credentials_grant()
 {
    let oauth = blocking(OAuthServer::start);
    let resource = Resource::start(&oauth).await;
    let mut w = world("vault-oauth", |v| token_store("corp", v)).await;
    let machine = oauth
        .register_client(json!({
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        }))
        .await;
    w.vault
        .put_v1(
            "apps/crm",
            json!({"client_secret": machine.client_secret, "client_id": machine.client_id}),
        )
        .await;

    let created = w
        .post(
            "/v1/connections",
            oauth_app_body(
                "machine",
                "oauth-service",
                &oauth,
                &resource,
                &machine.client_id,
                "apps/crm",
            ),
        )
        .await;
    let body = expect(&created, 201);
    assert_eq!(body["health"]["status"], "healthy", "{body}");
    assert_eq!(body["secrets"]["client_secret"], true, "{body}");
    assert_eq!(
        body["secret_refs"]["client_secret"],
        reference("corp", "apps/crm", "client_secret"),
        "{body}"
    );
    let id = text(&body["id"]);
    assert_eq!(oauth.grants("client_credentials", &machine.client_id), 1);

    let whoami = w
        .post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "fetch", "input": {"url": "/whoami"}}),
        )
        .await;
    let who = identity(&whoami);
    assert_eq!(who["client_id"], machine.client_id.as_str(), "{who}");
    // Reconnecting runs the grant again with the secret from the vault.
    let reconnected = w
        .post(&format!("/v1/connections/{id}/reconnect"), json!({}))
        .await;
    assert_eq!(expect(&reconnected, 200)["health"]["status"], "healthy");
    assert_eq!(oauth.grants("client_credentials", &machine.client_id), 2);

    // A reference to a wrong secret: the provider refuses, nothing is created.
    w.vault
        .put_v1(
            "apps/wrong",
            json!({"client_secret": "not-the-secret-from-vault"}),
        )
        .await;
    let refused = w
        .post(
            "/v1/connections",
            oauth_app_body(
                "machine-wrong",
                "oauth-service",
                &oauth,
                &resource,
                &machine.client_id,
                "apps/wrong",
            ),
        )
        .await;
    let error = api_error(&refused, 400, "authorization_failed");
    assert_eq!(
        error["details"]["provider_error"], "invalid_client",
        "{error}"
    );
    assert!(!refused.text.contains("not-the-secret-from-vault"));
    assert_eq!(w.connection_count().await, 1);

    let status = w.service.stop();
    assert!(status.success(), "{status}");
    w.assert_nowhere(&machine.client_secret, "client secret");
    w.assert_nowhere("not-the-secret-from-vault", "wrong client secret");
    // A restart keeps the connection usable: the token was stored, the secret was not.
    w.restart();
    let who = identity(
        &w.post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "fetch", "input": {"url": "/whoami"}}),
        )
        .await,
    );
    assert_eq!(who["client_id"], machine.client_id.as_str(), "{who}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_flow_exchanges_its_code_with_a_client_secret_from_the_vault() {
    let oauth = blocking(OAuthServer::start);
    let resource = Resource::start(&oauth).await;
    let w = world("vault-oauth-code", |v| token_store("corp", v)).await;
    let app = oauth
        .register_client(json!({
            "redirect_uris": [format!("{}/v1/oauth/callback", w.service.url)],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }))
        .await;
    w.vault
        .put_v1("apps/crm-code", json!({"client_secret": app.client_secret}))
        .await;
    let created = w
        .post(
            "/v1/connections",
            oauth_app_body(
                "crm",
                "oauth",
                &oauth,
                &resource,
                &app.client_id,
                "apps/crm-code",
            ),
        )
        .await;
    let body = expect(&created, 201);
    assert_eq!(body["health"]["status"], "pending_authorization", "{body}");
    let id = text(&body["id"]);
    // The callback exchanges the code with the secret the vault holds (it used to send
    // none: the provider answered invalid_client).
    let page = Browser::new()
        .consent(&text(&body["authorization"]["url"]), "ann")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("is connected"), "{}", page.body);
    assert_eq!(oauth.grants("authorization_code", &app.client_id), 1);
    let who = identity(
        &w.post(
            &format!("/v1/connections/{id}/invocations"),
            json!({"action": "fetch", "input": {"url": "/whoami"}}),
        )
        .await,
    );
    assert_eq!(who["sub"], "ann", "{who}");
    assert_eq!(who["client_id"], app.client_id.as_str(), "{who}");
    assert!(!page.body.contains(&app.client_secret));
    let mut w = w;
    let status = w.service.stop();
    assert!(status.success(), "{status}");
    w.assert_nowhere(&app.client_secret, "client secret");
}

// ---------------------------------------------------------------------------------------
// 8. Edits
// ---------------------------------------------------------------------------------------

fn hmac_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_swaps_a_stored_value_for_a_reference_and_back_and_null_clears_a_reference() {
    let w = world("vault-patch", |v| token_store("corp", v)).await;
    let stored = unique("stored-key");
    let from_vault = unique("vault-key");
    let signing = unique("vault-signing-key");
    w.vault
        .put_v1(
            "team/patch",
            json!({"api_key": from_vault, "signing": signing}),
        )
        .await;
    w.api.set_token(&stored);
    let id = w.create_keyed("patched", json!(stored)).await;
    let path = format!("/v1/connections/{id}");
    let body = w.connection(&id).await;
    assert!(body.get("secret_refs").is_none(), "{body}");
    assert_eq!(w.call_with_accepted_key(&id).await, stored);

    // A stored value replaced by a reference.
    let edited = w
        .patch(
            &path,
            json!({"fields": {"api_key": reference("corp", "team/patch", "api_key")}}),
        )
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["secrets"]["api_key"], true, "{body}");
    assert_eq!(
        body["secret_refs"],
        json!({"api_key": reference("corp", "team/patch", "api_key")}),
        "{body}"
    );
    w.api.set_token(&from_vault);
    assert_eq!(w.call_with_accepted_key(&id).await, from_vault);

    // An edit of the description keeps the reference (the vault is not read for it).
    let reads = w.vault.reads("kv/team/patch");
    let edited = w
        .patch(&path, json!({"description": "from the vault"}))
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["description"], "from the vault", "{body}");
    assert_eq!(
        body["secret_refs"]["api_key"],
        reference("corp", "team/patch", "api_key"),
        "{body}"
    );
    assert_eq!(w.vault.reads("kv/team/patch"), reads);
    assert_eq!(w.call_with_accepted_key(&id).await, from_vault);
    // Sending the key elsewhere needs it (or its reference) given again.
    let elsewhere = w
        .patch(&path, json!({"fields": {"base_url": "http://127.0.0.1:9"}}))
        .await;
    let error = api_error(&elsewhere, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");

    // A reference that points nowhere is refused, and the connection stays as it was.
    let refused = w
        .patch(
            &path,
            json!({"fields": {"api_key": reference("corp", "team/none", "api_key")}}),
        )
        .await;
    let error = api_error(&refused, 400, "invalid_request");
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");
    assert_eq!(
        w.connection(&id).await["secret_refs"]["api_key"],
        reference("corp", "team/patch", "api_key")
    );

    // And back to a stored value.
    let again = unique("stored-again");
    let edited = w.patch(&path, json!({"fields": {"api_key": again}})).await;
    let body = expect(&edited, 200);
    assert_eq!(body["secrets"]["api_key"], true, "{body}");
    assert!(body.get("secret_refs").is_none(), "{body}");
    w.api.set_token(&again);
    assert_eq!(w.call_with_accepted_key(&id).await, again);

    // An optional secret from the vault: the connector signs with it inside the host.
    let edited = w
        .patch(
            &path,
            json!({"fields": {"signing_key": reference("corp", "team/patch", "signing")}}),
        )
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["secrets"]["signing_key"], true, "{body}");
    assert_eq!(
        body["secret_refs"],
        json!({"signing_key": reference("corp", "team/patch", "signing")}),
        "{body}"
    );
    let signed = expect(
        &w.post(
            &format!("{path}/invocations"),
            json!({"action": "hmac", "input": {"field": "signing_key", "message": "payload"}}),
        )
        .await,
        200,
    );
    assert_eq!(
        signed["output"]["hex"],
        hmac_hex(&signing, "payload"),
        "{signed}"
    );

    // `null` clears it: no value, no reference.
    let edited = w
        .patch(&path, json!({"fields": {"signing_key": null}}))
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["secrets"]["signing_key"], false, "{body}");
    assert!(body.get("secret_refs").is_none(), "{body}");
    let unsigned = w
        .post(
            &format!("{path}/invocations"),
            json!({"action": "hmac", "input": {"field": "signing_key", "message": "payload"}}),
        )
        .await;
    assert_ne!(unsigned.status, 200, "{}", unsigned.text);
    // The key still works.
    assert_eq!(w.call_with_accepted_key(&id).await, again);

    w.assert_nowhere(&from_vault, "vault's key");
    w.assert_nowhere(&signing, "vault's signing key");
}

// ---------------------------------------------------------------------------------------
// 9. A proxy per store
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_store_with_a_proxy_of_its_own_reads_the_vault_through_it() {
    let proxy = blocking(ForwardProxy::start);
    let proxy_url = proxy.url();
    let w = world("vault-proxy", |v| {
        format!("{}proxy = \"{proxy_url}\"\n", token_store("corp", v))
    })
    .await;
    let key = unique("proxied-key");
    w.vault
        .put_v1("team/proxied", json!({"api_key": key}))
        .await;
    w.api.set_token(&key);
    let id = w
        .create_keyed("proxied", reference("corp", "team/proxied", "api_key"))
        .await;
    assert_eq!(w.call_with_accepted_key(&id).await, key);

    let vault = format!("127.0.0.1:{}", w.vault.port());
    assert!(
        proxy.forwarded_to(&vault),
        "the proxy did not forward to the vault ({vault}); it received {:?}; its log:\n{}",
        proxy.attempts(),
        proxy.log()
    );
    assert_eq!(w.vault.reads("kv/team/proxied"), 1);
    // The store's proxy is the store's: the connector's requests go direct.
    let api = w.api.addr.to_string();
    assert!(!proxy.forwarded_to(&api), "{:?}", proxy.requests());

    // The proxy down: the store cannot be read, and says so.
    drop(proxy);
    w.vault.put_v1("team/behind", json!({"api_key": key})).await;
    let refused = w
        .create(
            "behind",
            "header-key",
            json!({"api_key": reference("corp", "team/behind", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 502, "credential_store_unavailable");
    assert_eq!(error["details"]["store"], "corp", "{error}");
}

// ---------------------------------------------------------------------------------------
// 10. Only an administrator points a field at a store
// ---------------------------------------------------------------------------------------

/// The refusal a member meets when a request gives a reference (tenant `acme`).
const ADMINS_ONLY: &str =
    "only an administrator of tenant `acme` can point a secret field at a credential store";

#[tokio::test(flavor = "multi_thread")]
async fn only_an_administrator_points_a_secret_field_at_a_store_and_members_use_what_it_made() {
    let w = world("vault-member", |v| token_store("corp", v)).await;
    let key = unique("member-key");
    w.vault
        .put_v1("team/shared", json!({"api_key": key, "signing": key}))
        .await;
    w.api.set_token(&key);
    let member = w.principal("mo", "member").await;
    let folder = w
        .shared_folder("shared", &member, &["view", "use", "create", "edit"])
        .await;

    // A member gives a reference: refused, in its own workspace and in a folder where it
    // may create, whatever the reference points at (a member learns nothing of the vault),
    // and the vault is not read.
    for folder in [None, Some(folder.as_str())] {
        for r in [
            reference("corp", "team/shared", "api_key"),
            reference("corp", "team/absent", "api_key"),
            reference("corp", "team/shared", "no-such-key"),
            reference("elsewhere", "team/shared", "api_key"),
        ] {
            let refused = w.create_keyed_as(&member, "mine", folder, r.clone()).await;
            let error = api_error(&refused, 403, "forbidden");
            assert_eq!(error["message"], ADMINS_ONLY, "{r}: {error}");
        }
    }
    assert_eq!(w.vault.reads("kv/team/shared"), 0, "{}", w.vault.output());
    assert_eq!(w.vault.reads("kv/team/absent"), 0, "{}", w.vault.output());
    assert_eq!(w.metric("junction_credential_store_reads_total").await, 0.0);
    assert_eq!(w.connection_count().await, 0);
    // The same connection with the value itself is the member's to make.
    let own = unique("members-own-key");
    let created = w.create_keyed_as(&member, "mine", None, json!(own)).await;
    assert!(expect(&created, 201).get("secret_refs").is_none());

    // The administrator makes one in the shared folder; the member uses it.
    let created = w
        .create_keyed_as(
            &w.administrator(),
            "shared",
            Some(&folder),
            reference("corp", "team/shared", "api_key"),
        )
        .await;
    let id = text(&expect(&created, 201)["id"]);
    let path = format!("/v1/connections/{id}");
    let invocations = format!("{path}/invocations");
    let fetch_key = json!({"action": "fetch", "input": {"url": "/key"}});
    let used = w
        .send_as(&member, "POST", &invocations, Some(fetch_key.clone()))
        .await;
    let body = expect(&used, 200);
    assert_eq!(body["invocation"]["outcome"], "ok", "{body}");
    assert_eq!(body["output"]["body"], "key accepted", "{body}");
    assert_eq!(w.last_key_seen(), key);
    let seen = expect(&w.send_as(&member, "GET", &path, None).await, 200);
    assert_eq!(
        seen["secret_refs"]["api_key"],
        reference("corp", "team/shared", "api_key"),
        "{seen}"
    );
    assert_eq!(w.vault.reads("kv/team/shared"), 1);

    // The member edits what does not move the key: the reference stays.
    let edited = w
        .send_as(
            &member,
            "PATCH",
            &path,
            Some(
                json!({"description": "edited by a member", "fields": {"note": "a member's note"}}),
            ),
        )
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["fields"]["note"], "a member's note", "{body}");
    assert_eq!(
        body["secret_refs"],
        json!({"api_key": reference("corp", "team/shared", "api_key")}),
        "{body}"
    );

    // Sending the key elsewhere: the key must be given again, and a member may not give it
    // as the reference, not even the same one (the attack: the same reference, a host of
    // the member's choosing).
    let attacker = Api::start("no key accepted").await;
    let refusals = [
        (
            json!({"fields": {"base_url": attacker.base_url}}),
            400,
            "invalid_request",
        ),
        (
            json!({"fields": {
                "base_url": attacker.base_url,
                "api_key": reference("corp", "team/shared", "api_key"),
            }}),
            403,
            "forbidden",
        ),
        (
            json!({"fields": {"api_key": reference("corp", "team/shared", "api_key")}}),
            403,
            "forbidden",
        ),
        (
            json!({"fields": {"signing_key": reference("corp", "team/shared", "signing")}}),
            403,
            "forbidden",
        ),
        (
            json!({"auth": "query-key", "fields": {
                "api_key": reference("corp", "team/shared", "api_key"),
            }}),
            403,
            "forbidden",
        ),
    ];
    for (edit, status, code) in refusals {
        let refused = w.send_as(&member, "PATCH", &path, Some(edit.clone())).await;
        let error = api_error(&refused, status, code);
        if status == 403 {
            assert_eq!(error["message"], ADMINS_ONLY, "{edit}: {error}");
        } else {
            assert_eq!(
                error["details"]["field"], "fields.api_key",
                "{edit}: {error}"
            );
        }
        let now = w.connection(&id).await;
        assert_eq!(now["fields"]["base_url"], w.api.base_url, "{edit}: {now}");
        assert_eq!(now["auth"], "header-key", "{edit}: {now}");
        assert_eq!(
            now["secret_refs"],
            json!({"api_key": reference("corp", "team/shared", "api_key")}),
            "{edit}: {now}"
        );
    }
    assert_eq!(w.vault.reads("kv/team/shared"), 1, "{}", w.vault.output());
    // The connection still sends the key to the API, and only there.
    let used = w
        .send_as(&member, "POST", &invocations, Some(fetch_key.clone()))
        .await;
    assert_eq!(expect(&used, 200)["output"]["body"], "key accepted");
    assert!(attacker.seen().is_empty(), "{:?}", attacker.seen());

    // An administrator may do what the member may not.
    attacker.set_token(&key);
    let edited = w
        .patch(
            &path,
            json!({"fields": {
                "base_url": attacker.base_url,
                "api_key": reference("corp", "team/shared", "api_key"),
            }}),
        )
        .await;
    let body = expect(&edited, 200);
    assert_eq!(body["fields"]["base_url"], attacker.base_url, "{body}");
    let used = w
        .send_as(&member, "POST", &invocations, Some(fetch_key.clone()))
        .await;
    assert_eq!(expect(&used, 200)["output"]["body"], "key accepted");
    let at_attacker: Vec<_> = attacker
        .seen()
        .into_iter()
        .filter(|s| s.path == "/key")
        .collect();
    assert_eq!(at_attacker.len(), 1, "{at_attacker:?}");

    // A member who knows a key may give it as a value, and the reference is gone.
    let edited = w
        .send_as(
            &member,
            "PATCH",
            &path,
            Some(json!({"fields": {"base_url": w.api.base_url, "api_key": own}})),
        )
        .await;
    let body = expect(&edited, 200);
    assert!(body.get("secret_refs").is_none(), "{body}");
    w.api.set_token(&own);
    let used = w
        .send_as(&member, "POST", &invocations, Some(fetch_key))
        .await;
    assert_eq!(expect(&used, 200)["output"]["body"], "key accepted");
    assert_eq!(w.last_key_seen(), own);
    w.assert_nowhere(&key, "vault's key");
}

// ---------------------------------------------------------------------------------------
// 11. Stores open to some tenants only
// ---------------------------------------------------------------------------------------

/// A store reading `kv2/` (KV version 2) with the vault's root token, open to every tenant.
fn kv2_store(name: &str, vault: &VaultServer) -> String {
    format!(
        "[credential_stores.{name}]\naddress = \"{}\"\nauth = \"token\"\n\
         token_env = \"{TOKEN_VAR}\"\nmount = \"kv2\"\nkv_version = 2\ntimeout = 5\n\
         tenants = \"*\"\n",
        vault.address()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_open_to_some_tenants_is_unknown_to_the_others_and_fails_409_for_a_tenant_taken_off_its_list()
 {
    let mut w = world("vault-tenants", |v| token_store("corp", v)).await;
    let bravo = w.other_tenant("bravo");
    // `corp` is acme's only; `open`, every tenant's.
    let config = |tenants: &str, vault: &VaultServer| {
        format!(
            "{}\n{}",
            token_store_for("corp", vault, &format!("[{tenants}]")),
            kv2_store("open", vault)
        )
    };
    w.reconfigure(&config(&format!("\"{}\"", w.tenant), &w.vault));
    let key = unique("tenant-key");
    w.vault.put_v1("team/acme", json!({"api_key": key})).await;
    w.vault.put_v2("bravo/probe", json!({"api_key": key})).await;
    w.api.set_token(&key);

    // acme uses its store.
    let id = w
        .create_keyed("acme's", reference("corp", "team/acme", "api_key"))
        .await;
    assert_eq!(w.call_with_accepted_key(&id).await, key);
    assert_eq!(w.vault.reads("kv/team/acme"), 1);

    // bravo meets `corp` as a store that does not exist: the same answer, word for word,
    // whatever the reference points at; the vault is not read, and no answer names `corp`
    // unless bravo did.
    let unknown = |store: &str| {
        format!(
            "field `api_key`: no credential store `{store}` is configured; configured stores: open"
        )
    };
    for (r, says) in [
        (reference("corp", "team/acme", "api_key"), unknown("corp")),
        (reference("corp", "team/absent", "api_key"), unknown("corp")),
        (reference("corp", "../sys/mounts", "x"), unknown("corp")),
        (
            reference("elsewhere", "team/acme", "api_key"),
            unknown("elsewhere"),
        ),
    ] {
        let refused = w.create_keyed_as(&bravo, "bravo's", None, r.clone()).await;
        let error = api_error(&refused, 400, "invalid_request");
        assert_eq!(error["details"]["field"], "fields.api_key", "{r}: {error}");
        assert_eq!(error["message"], says.as_str(), "{r}: {error}");
        assert_eq!(
            error["details"].as_object().unwrap().len(),
            1,
            "{r}: {error}"
        );
        if r.get("store").unwrap() != "corp" {
            assert!(!refused.text.contains("corp"), "{}", refused.text);
        }
    }
    assert_eq!(w.vault.reads("kv/team/acme"), 1, "{}", w.vault.output());
    assert_eq!(w.vault.reads("kv/team/absent"), 0, "{}", w.vault.output());
    // A store open to bravo serves bravo.
    let created = w
        .create_keyed_as(
            &bravo,
            "bravo's",
            None,
            reference("open", "bravo/probe", "api_key"),
        )
        .await;
    let bravos = text(&expect(&created, 201)["id"]);
    let used = w
        .send_as(
            &bravo,
            "POST",
            &format!("/v1/connections/{bravos}/invocations"),
            Some(json!({"action": "fetch", "input": {"url": "/key"}})),
        )
        .await;
    assert_eq!(expect(&used, 200)["output"]["body"], "key accepted");

    // The operator gives `corp` to bravo alone: acme's connection stays, and fails to find
    // its store; nothing goes out without the key.
    let sent = w.keys_seen().len();
    w.reconfigure(&config(&format!("\"{}\"", bravo.tenant), &w.vault));
    let failed = w.fetch(&id, "/key").await;
    let error = api_error(&failed, 409, "vault_credential_invalid");
    let message = text(&error["message"]);
    assert!(
        message.contains("no credential store `corp` is configured; configured stores: open"),
        "{message}"
    );
    assert_eq!(
        w.recorded(&error).await["outcome"],
        "vault_credential_invalid"
    );
    assert_eq!(
        w.keys_seen().len(),
        sent,
        "a request went out without its key"
    );
    assert_eq!(w.vault.reads("kv/team/acme"), 1, "{}", w.vault.output());
    assert_eq!(
        w.connection(&id).await["secret_refs"]["api_key"],
        reference("corp", "team/acme", "api_key")
    );
    // acme can no longer point a field at it either; bravo now can.
    let refused = w
        .create(
            "acme's again",
            "header-key",
            json!({"api_key": reference("corp", "team/acme", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 400, "invalid_request");
    assert_eq!(error["message"], unknown("corp").as_str(), "{error}");
    let created = w
        .create_keyed_as(
            &bravo,
            "bravo's corp",
            None,
            reference("corp", "team/acme", "api_key"),
        )
        .await;
    expect(&created, 201);

    // No store open to acme: the message says how one is added.
    w.reconfigure(&token_store_for("corp", &w.vault, "[]"));
    let refused = w
        .create(
            "acme's none",
            "header-key",
            json!({"api_key": reference("corp", "team/acme", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 400, "invalid_request");
    assert_eq!(
        error["message"],
        "field `api_key`: no credential store `corp` is configured; configured stores: none \
         (an operator adds them under [credential_stores.<name>] in the configuration file)",
        "{error}"
    );
    w.assert_nowhere(&key, "vault's key");
}

// ---------------------------------------------------------------------------------------
// The API's document
// ---------------------------------------------------------------------------------------

/// Every answer that involves a credential reference, each error included, as the OpenAPI
/// document describes it (the other tests check behaviour; this one the document).
#[tokio::test(flavor = "multi_thread")]
async fn answers_about_credential_references_conform_to_the_openapi_document() {
    let mut w = world("vault-openapi", |v| {
        format!("credential_reread_pause = 0\n{}", token_store("corp", v))
    })
    .await;
    let key = unique("openapi-key");
    w.vault.put_v1("team/doc", json!({"api_key": key})).await;
    w.api.set_token(&key);
    let id = w
        .create_keyed("documented", reference("corp", "team/doc", "api_key"))
        .await;
    let path = format!("/v1/connections/{id}");
    w.get(&path).await;
    w.get("/v1/connections").await;
    expect(
        &w.patch(&path, json!({"description": "documented"})).await,
        200,
    );
    api_error(
        &w.create(
            "nowhere",
            "header-key",
            json!({"api_key": reference("corp", "team/none", "api_key")}),
        )
        .await,
        400,
        "invalid_request",
    );
    w.call_with_accepted_key(&id).await;
    w.get(&format!("/v1/invocations?connection_id={id}")).await;
    // 403: a member gives a reference, at creation and at an edit.
    let member = w.principal("documented-member", "member").await;
    let folder = w
        .shared_folder("documented", &member, &["view", "use", "create", "edit"])
        .await;
    let shared = w
        .create_keyed_as(
            &w.administrator(),
            "shared",
            Some(&folder),
            reference("corp", "team/doc", "api_key"),
        )
        .await;
    let shared = text(&expect(&shared, 201)["id"]);
    api_error(
        &w.create_keyed_as(
            &member,
            "members",
            Some(&folder),
            reference("corp", "team/doc", "api_key"),
        )
        .await,
        403,
        "forbidden",
    );
    api_error(
        &w.send_as(
            &member,
            "PATCH",
            &format!("/v1/connections/{shared}"),
            Some(json!({"fields": {
                "base_url": "http://127.0.0.1:9",
                "api_key": reference("corp", "team/doc", "api_key"),
            }})),
        )
        .await,
        403,
        "forbidden",
    );
    expect(
        &w.send_as(&member, "GET", &format!("/v1/connections/{shared}"), None)
            .await,
        200,
    );

    // 409: the API refuses the key, and the vault holds no other.
    w.api.set_token(&unique("openapi-other"));
    let error = api_error(&w.fetch(&id, "/key").await, 409, "vault_credential_invalid");
    w.recorded(&error).await;

    // 502: the API refuses the key, and the vault cannot be read again.
    blocking(|| w.vault.stop());
    let error = api_error(&w.fetch(&id, "/key").await, 502, "credentials_unavailable");
    assert!(
        text(&error["message"]).contains("credential store `corp` is unavailable"),
        "{error}"
    );
    w.recorded(&error).await;
    // 502 at creation and at an edit.
    api_error(
        &w.create(
            "unchecked",
            "header-key",
            json!({"api_key": reference("corp", "team/other", "api_key")}),
        )
        .await,
        502,
        "credential_store_unavailable",
    );
    api_error(
        &w.patch(
            &path,
            json!({"fields": {"api_key": reference("corp", "team/other", "api_key")}}),
        )
        .await,
        502,
        "credential_store_unavailable",
    );
    w.assert_conforming();
}

// ---------------------------------------------------------------------------------------
// 12. A store shared by tenants, each below its own prefix; stores that say nothing
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_administrator_cannot_resolve_another_tenants_secret_through_a_shared_store() {
    let vault = VaultServer::start().await;
    let mut w = world_on("vault-prefix", vault, "", &[]).await;
    let bravo = w.other_tenant("bravo");
    w.reconfigure(&format!(
        "{}path_prefix = \"tenants/{{tenant_id}}/\"\n",
        token_store("shared", &w.vault)
    ));
    let acme_key = unique("acme-key");
    let bravo_key = unique("bravo-key");
    w.vault
        .put_v1(
            &format!("tenants/{}/probe", w.tenant),
            json!({"api_key": acme_key}),
        )
        .await;
    w.vault
        .put_v1(
            &format!("tenants/{}/probe", bravo.tenant),
            json!({"api_key": bravo_key}),
        )
        .await;

    // acme reads its own secret, given in any spelling of the same path.
    w.api.set_token(&acme_key);
    let own = format!("tenants/{}//./probe", w.tenant);
    let created = w
        .create_keyed_as(
            &w.administrator(),
            "acme's",
            None,
            reference("shared", &own, "api_key"),
        )
        .await;
    let body = expect(&created, 201);
    assert_eq!(
        body["secret_refs"]["api_key"]["path"],
        format!("tenants/{}/probe", w.tenant),
        "the canonical path is what is stored: {body}"
    );
    assert_eq!(w.call_with_accepted_key(&text(&body["id"])).await, acme_key);

    // bravo's path, however it is written, answers exactly like a path with nothing there.
    let absent = format!("tenants/{}/nothing-here", w.tenant);
    let missing = api_error(
        &w.create_keyed_as(
            &w.administrator(),
            "absent",
            None,
            reference("shared", &absent, "api_key"),
        )
        .await,
        400,
        "invalid_request",
    );
    let said = |path: &str| {
        format!("field `api_key`: credential store `shared` has no secret at `{path}`")
    };
    assert_eq!(missing["message"], said(&absent).as_str());
    for path in [
        format!("tenants/{}/probe", bravo.tenant),
        format!("tenants/{}/../{}/probe", w.tenant, bravo.tenant),
        format!("tenants%2F{}%2Fprobe", bravo.tenant),
        format!("tenants/{}%2F..%2F{}/probe", w.tenant, bravo.tenant),
        "tenants".to_owned(),
    ] {
        let refused = w
            .create_keyed_as(
                &w.administrator(),
                "stolen",
                None,
                reference("shared", &path, "api_key"),
            )
            .await;
        let error = api_error(&refused, 400, "invalid_request");
        assert_eq!(error["message"], said(&path).as_str(), "{path}");
        assert_eq!(error["details"], missing["details"], "{path}");
        assert!(!refused.text.contains(&bravo_key));
    }
    assert_eq!(
        w.vault.reads(&format!("kv/tenants/{}/probe", bravo.tenant)),
        0,
        "bravo's secret was never read for acme"
    );
    // bravo, through the same store, reads its own.
    let mine = w
        .create_keyed_as(
            &bravo,
            "bravo's",
            None,
            reference(
                "shared",
                &format!("tenants/{}/probe", bravo.tenant),
                "api_key",
            ),
        )
        .await;
    expect(&mine, 201);
    let status = w.service.stop();
    assert!(status.success(), "{status}");
    w.assert_nowhere(&bravo_key, "bravo's key");
    w.assert_nowhere(&acme_key, "acme's key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_names_no_tenants_is_closed_and_stops_a_start_when_connections_use_it() {
    let mut w = world("vault-no-tenants", |v| token_store("corp", v)).await;
    let key = unique("kept-key");
    w.vault.put_v1("team/kept", json!({"api_key": key})).await;
    w.create_keyed("kept", reference("corp", "team/kept", "api_key"))
        .await;
    w.create_keyed("kept-too", reference("corp", "team/kept", "api_key"))
        .await;

    // The same store without `tenants`, as configured before the setting existed: the start
    // stops and says what to write, rather than closing the store under two connections.
    let legacy = format!(
        "[credential_stores.corp]\naddress = \"{}\"\nauth = \"token\"\n\
         token_env = \"{TOKEN_VAR}\"\nmount = \"kv\"\nkv_version = 1\n",
        w.vault.address()
    );
    std::fs::write(&w.config, &legacy).unwrap();
    let status = w.service.stop();
    assert!(status.success(), "{status}");
    let dir = w.service.data_dir.clone();
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&w.config)
        .arg("--data-dir")
        .arg(&dir)
        .env(TOKEN_VAR, w.vault.root_token())
        .env_remove("JUNCTION_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "credential store `corp` does not say which tenants may use it, and 2 connection(s) reference it"
        ) && stderr.contains("tenants = \"*\""),
        "{stderr}"
    );

    // With no connection using it, it starts, closed to every tenant.
    let other = world_on("vault-no-tenants-new", VaultServer::start().await, "", &[]).await;
    let mut other = other;
    let legacy = format!(
        "[credential_stores.corp]\naddress = \"{}\"\nauth = \"token\"\n\
         token_env = \"{TOKEN_VAR}\"\nmount = \"kv\"\nkv_version = 1\n",
        other.vault.address()
    );
    other.reconfigure(&legacy);
    other
        .vault
        .put_v1("team/kept", json!({"api_key": key}))
        .await;
    let refused = other
        .create(
            "closed",
            "header-key",
            json!({"api_key": reference("corp", "team/kept", "api_key")}),
        )
        .await;
    let error = api_error(&refused, 400, "invalid_request");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no credential store `corp` is configured"),
        "{error}"
    );
    assert!(
        !other
            .service
            .log_lines_with("credential store: no `tenants` setting, so no tenant may use it; list tenant ids, or write tenants = \"*\"")
            .is_empty(),
        "{}",
        other.service.logs()
    );
}
