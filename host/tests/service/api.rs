//! The HTTP API's behaviour, end to end: the real `junction serve` over HTTP.
//!
//! - who may do what, across folders and tenants (a permission matrix), and that nothing of
//!   one tenant shows in another;
//! - connections: validation against the connector's manifest, edits, deletion, filters
//!   and pagination;
//! - the shape of the API: malformed bodies, content types, the body limit, unknown routes
//!   and methods, missing or revoked tokens;
//! - invocations: typed errors over HTTP, and the record of every invocation;
//! - the OpenAPI document: served as it is in the source, the same routes as the code, and
//!   every response of these tests checked against it as it is received.
//!
//! Most tests share one service (started once for this test binary, stopped when the
//! binary exits) and each uses tenants of its own.

use crate::bin;
use junction_tests::api::Api;
use junction_tests::openapi::{self, Validator};
use junction_tests::service::{self, Client, Exchange, Service};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The request body limit of the shared service.
const MAX_BODY_BYTES: u64 = 2048;

// ------------------------------------------------------------------------------------------
// The shared service, its tenants and their users

/// The service most tests share: small request bodies, no background health checks (so a
/// connection's health is what the tests made it).
fn shared() -> &'static Service {
    static SHARED: OnceLock<Service> = OnceLock::new();
    SHARED.get_or_init(|| {
        start_service(
            "api",
            &[
                "--max-body-bytes",
                &MAX_BODY_BYTES.to_string(),
                "--health-check-interval",
                "0",
            ],
        )
    })
}

fn start_service(name: &str, flags: &[&str]) -> Service {
    let dir = service::data_dir(name);
    let service = Service::start(bin(), &dir, flags).unwrap_or_else(|e| {
        panic!(
            "junction serve {flags:?} did not start (exit status {:?}); its log:\n{}",
            e.status, e.log
        )
    });
    stop_when_tests_end(&service);
    service
}

/// A service kept in a `static` is never dropped: a watchdog `sh` waits for its stdin (a
/// pipe only this process holds) to close, which happens however this process ends, then
/// sends the service SIGTERM and, once it has exited (or after 10 s), removes its data
/// directory.
fn stop_when_tests_end(service: &Service) {
    static WATCHDOGS: Mutex<Vec<Child>> = Mutex::new(Vec::new());
    let pid = service.pid().expect("the service runs");
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(
            r#"read -r _ ; kill -TERM "$0" 2>/dev/null
            i=0
            while kill -0 "$0" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
            rm -rf "$1""#,
        )
        .arg(pid.to_string())
        .arg(&service.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the service's watchdog");
    // Kept with its stdin open until this process ends.
    WATCHDOGS.lock().unwrap().push(watchdog);
}

/// The API tests running now; the conformance sweep waits for them.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Held by every API test while it runs.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn running() -> Running {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    Running
}

/// A principal, with a client holding its token.
#[derive(Debug, Clone)]
struct User {
    /// Who this is, in failure messages.
    label: String,
    id: String,
    personal: String,
    tenant: String,
    url: String,
    token: String,
    client: Client,
}

impl User {
    /// Sends a request; the response must conform to the OpenAPI document.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Exchange {
        conforming(self.client.send(method, path, body.as_ref(), &[]).await)
    }

    async fn get(&self, path: &str) -> Exchange {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Exchange {
        self.send("POST", path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Exchange {
        self.send("PATCH", path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Exchange {
        self.send("PUT", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Exchange {
        self.send("DELETE", path, None).await
    }

    /// A request with raw bytes and a content type of the test's choosing.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Exchange {
        conforming(
            self.client
                .send_raw(method, path, content_type, body.into())
                .await,
        )
    }

    /// The same principal with another token, or none.
    fn with_token(&self, label: &str, token: Option<&str>) -> User {
        User {
            label: label.to_owned(),
            token: token.unwrap_or_default().to_owned(),
            client: Client::new(&self.url, token),
            ..self.clone()
        }
    }

    /// A principal of the same tenant: `role` is `member` or `admin`.
    async fn create_principal(&self, name: &str, role: &str) -> User {
        let created = expect(
            &self
                .post("/v1/principals", json!({"name": name, "role": role}))
                .await,
            201,
            &format!("{} creates principal {name}", self.label),
        );
        let token = text(&created["token"]["token"]);
        User {
            label: name.to_owned(),
            id: text(&created["principal"]["id"]),
            personal: text(&created["principal"]["personal_folder_id"]),
            tenant: self.tenant.clone(),
            url: self.url.clone(),
            client: Client::new(&self.url, Some(&token)),
            token,
        }
    }

    async fn create_folder(&self, name: &str) -> String {
        let folder = expect(
            &self.post("/v1/folders", json!({"name": name})).await,
            201,
            &format!("{} creates folder {name}", self.label),
        );
        text(&folder["id"])
    }

    async fn grant(&self, folder: &str, to: &User, permissions: &[&str]) {
        expect(
            &self
                .put(
                    &format!("/v1/folders/{folder}/grants/{}", to.id),
                    json!({ "permissions": permissions }),
                )
                .await,
            200,
            &format!("{} grants {permissions:?} to {}", self.label, to.label),
        );
    }

    /// Creates a connection; returns it.
    async fn create_connection(&self, body: Value) -> Value {
        let what = format!("{} creates connection {body}", self.label);
        expect(&self.post("/v1/connections", body).await, 201, &what)
    }

    /// Invokes an action that must succeed; returns `{invocation, output}`.
    async fn invoke(&self, connection: &str, action: &str, input: Value) -> Value {
        let ex = self
            .post(
                &format!("/v1/connections/{connection}/invocations"),
                json!({"action": action, "input": input}),
            )
            .await;
        expect(
            &ex,
            200,
            &format!("{} invokes {action} on {connection}", self.label),
        )
    }

    /// Every item of a list, following `next_cursor`.
    async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let separator = if path.contains('?') { '&' } else { '?' };
        for _ in 0..1000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}cursor={}", encoded(c)),
                None => path.to_owned(),
            };
            let page = expect(
                &self.get(&url).await,
                200,
                &format!("{} lists {url}", self.label),
            );
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
        panic!("{path}: more than 1000 pages");
    }

    /// The ids of every item of a list.
    async fn ids(&self, path: &str) -> BTreeSet<String> {
        self.list_all(path)
            .await
            .iter()
            .map(|i| text(&i["id"]))
            .collect()
    }
}

/// A new tenant of `service` and its administrator.
async fn new_tenant(service: &'static Service, label: &str) -> User {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{label}-{}", N.fetch_add(1, Ordering::Relaxed));
    let dir = service.data_dir.clone();
    let tenant_name = name.clone();
    let created = tokio::task::spawn_blocking(move || {
        service::create_tenant(bin(), &dir, &tenant_name, "admin")
    })
    .await
    .unwrap();
    let token = text(&created["token"]["token"]);
    User {
        label: format!("the admin of {name}"),
        id: text(&created["principal"]["id"]),
        personal: text(&created["principal"]["personal_folder_id"]),
        tenant: text(&created["tenant"]["id"]),
        url: service.url.clone(),
        client: service.client(&token),
        token,
    }
}

/// An operator of `service` (`junction admin create-operator`), as a [`User`] of no tenant.
async fn new_operator(service: &'static Service) -> User {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("ops-{}", N.fetch_add(1, Ordering::Relaxed));
    let dir = service.data_dir.clone();
    let created = tokio::task::spawn_blocking(move || service::create_operator(bin(), &dir, &name))
        .await
        .unwrap();
    let token = text(&created["token"]);
    User {
        label: format!("operator {}", text(&created["operator"]["name"])),
        id: text(&created["operator"]["id"]),
        personal: String::new(),
        tenant: String::new(),
        url: service.url.clone(),
        client: service.client(&token),
        token,
    }
}

/// Tenant A (an administrator, members m1, m2 and m3, and a shared folder F1 on which m1
/// may view and use, m2 view, create, edit and delete, m3 nothing) and tenant B (its
/// administrator).
#[derive(Debug)]
struct Org {
    admin: User,
    m1: User,
    m2: User,
    m3: User,
    f1: String,
    b_admin: User,
}

async fn org(label: &str) -> Org {
    let service = shared();
    let admin = new_tenant(service, &format!("{label}-a")).await;
    let m1 = admin.create_principal("m1", "member").await;
    let m2 = admin.create_principal("m2", "member").await;
    let m3 = admin.create_principal("m3", "member").await;
    let f1 = admin.create_folder("F1").await;
    admin.grant(&f1, &m1, &["view", "use"]).await;
    admin
        .grant(&f1, &m2, &["view", "create", "edit", "delete"])
        .await;
    let mut b_admin = new_tenant(service, &format!("{label}-b")).await;
    b_admin.label = "B's admin".into();
    Org {
        admin,
        m1,
        m2,
        m3,
        f1,
        b_admin,
    }
}

// ------------------------------------------------------------------------------------------
// Connections and checks

/// A probe connection without credentials, calling `base_url`.
fn probe(name: &str, folder: Option<&str>, base_url: &str) -> Value {
    let mut body = json!({
        "connector": "probe",
        "auth": "none",
        "name": name,
        "fields": {"base_url": base_url},
    });
    if let Some(folder) = folder {
        body["folder_id"] = json!(folder);
    }
    body
}

/// A GitHub connection with a personal access token, calling `base_url`.
fn github(name: &str, token: &str, base_url: &str) -> Value {
    json!({
        "connector": "github",
        "auth": "pat",
        "name": name,
        "fields": {"token": token, "base_url": base_url},
    })
}

/// An HTTP connection without credentials, calling `base_url`.
fn http(name: &str, base_url: &str) -> Value {
    json!({
        "connector": "http",
        "auth": "none",
        "name": name,
        "fields": {"base_url": base_url},
    })
}

/// `value` percent-encoded for a query string (cursors are opaque).
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v}"))
        .to_owned()
}

/// The JSON body of `ex`, which must have answered `status`.
#[track_caller]
fn expect(ex: &Exchange, status: u16, what: &str) -> Value {
    assert_eq!(
        ex.status.as_u16(),
        status,
        "{what}: {} {} answered {} instead of {status}: {}",
        ex.method,
        ex.path,
        ex.status,
        ex.text
    );
    ex.json()
}

/// The `error` object of `ex`, which must be an error envelope with `status` and `code`
/// and a message.
#[track_caller]
fn expect_error(ex: &Exchange, status: u16, code: &str, what: &str) -> Value {
    let body = expect(ex, status, what);
    assert_eq!(
        body["error"]["code"], code,
        "{what}: {} {} answered {status} with another error code: {}",
        ex.method, ex.path, ex.text
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "{what}: the error has no message: {}",
        ex.text
    );
    assert!(
        body["error"]["details"].is_object(),
        "{what}: the error's details are not an object: {}",
        ex.text
    );
    body["error"].clone()
}

/// Panics unless `message` contains every one of `parts`.
#[track_caller]
fn says(message: &Value, parts: &[&str], what: &str) {
    let message = message.as_str().unwrap_or_default();
    for part in parts {
        assert!(
            message.contains(part),
            "{what}: the message does not mention `{part}`: {message}"
        );
    }
}

fn names(items: &[Value], key: &str) -> BTreeSet<String> {
    items.iter().map(|i| text(&i[key])).collect()
}

/// The strings of a JSON array.
fn names_of(array: &Value) -> BTreeSet<String> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, found {array}"))
        .iter()
        .map(text)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

// ------------------------------------------------------------------------------------------
// Conformance to the OpenAPI document

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    let validator = Validator::service();
    if let Err(e) = validator.compile_all() {
        panic!("the OpenAPI document's schemas do not compile: {e}");
    }
    validator
});

/// What is wrong with an exchange according to the OpenAPI document (and the contract:
/// every response has a request id). Unknown routes (404 `no_route`) and unknown methods
/// (405) have no operation in the document: their body must still be the error envelope.
fn nonconformity(ex: &Exchange) -> Option<String> {
    let body = ex.json();
    let status = ex.status.as_u16();
    if ex.header("x-request-id").is_none_or(|id| id.is_empty()) {
        return Some(format!(
            "{} {} answered {status} without an x-request-id header",
            ex.method, ex.path
        ));
    }
    let code = body["error"]["code"].as_str();
    if matches!(
        (status, code),
        (404, Some("no_route")) | (405, Some("method_not_allowed"))
    ) {
        let envelope = body.as_object().is_some_and(|o| o.len() == 1)
            && body["error"].as_object().is_some_and(|o| o.len() == 3)
            && body["error"]["message"].is_string()
            && body["error"]["details"].is_object();
        return (!envelope).then(|| {
            format!(
                "{} {} answered {status} without the error envelope: {}",
                ex.method, ex.path, ex.text
            )
        });
    }
    VALIDATOR
        .validate_response(&ex.method, &ex.path, status, &body)
        .err()
        .map(|e| format!("{} {}: {e}", ex.method, ex.path))
}

/// `ex`, after checking it against the OpenAPI document.
#[track_caller]
fn conforming(ex: Exchange) -> Exchange {
    if let Some(problem) = nonconformity(&ex) {
        panic!("the response does not conform to the OpenAPI document: {problem}");
    }
    ex
}

// ------------------------------------------------------------------------------------------
// 1. Permissions across folders and tenants

/// Where a connection operation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Tenant A's shared folder F1.
    F1,
    /// The caller's own personal workspace.
    Own,
    /// The personal workspace of A's administrator.
    AdminsWorkspace,
    /// The personal workspace of member m1.
    M1sWorkspace,
}

/// An operation on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Show,
    Create,
    Edit,
    Delete,
    Test,
    Invoke,
}

impl Op {
    /// The folder permission the operation needs.
    fn permission(self) -> &'static str {
        match self {
            Op::List | Op::Show => "view",
            Op::Create => "create",
            Op::Edit => "edit",
            Op::Delete => "delete",
            Op::Test | Op::Invoke => "use",
        }
    }
}

/// An operation on the tenant, its folders and principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TenantOp {
    ListFolders,
    ShowF1,
    ShowM1sWorkspace,
    ListGrantsOnF1,
    GrantOnF1,
    GrantOnM1sWorkspace,
    ListPrincipals,
    CreatePrincipal,
    ShowM3,
    CreateTokenForM3,
    PatchTenant,
    CreateFolder,
    RevokeGrantOnF1,
}

/// Checks a 403: code `forbidden`, a message with the reason, and the details.
fn refusal_problem(ex: &Exchange, reason: &[&str], details: &[(&str, &str)]) -> Option<String> {
    let body = ex.json();
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    if error["code"] != "forbidden" {
        problems.push(format!("code {} instead of forbidden", error["code"]));
    }
    for part in reason {
        if !message.contains(part) {
            problems.push(format!("the message does not say `{part}`"));
        }
    }
    for (key, value) in details {
        if error["details"][key] != *value {
            problems.push(format!(
                "details.{key} is {} instead of {value}",
                error["details"][key]
            ));
        }
    }
    (!problems.is_empty()).then(|| format!("{}: {}", problems.join("; "), ex.text))
}

#[tokio::test]
async fn each_principal_may_do_exactly_what_its_role_and_grants_allow_in_each_folder() {
    let _running = running();
    let org = org("matrix").await;
    let api = Api::start("unused").await;
    let Org {
        admin,
        m1,
        m2,
        m3,
        f1,
        b_admin,
    } = &org;
    let principals = [admin, m1, m2, m3, b_admin];

    // One connection kept in every folder, made by whoever may create there.
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut makers: BTreeMap<String, &User> = BTreeMap::new();
    makers.insert(f1.clone(), admin);
    for p in principals {
        makers.insert(p.personal.clone(), p);
    }
    for (folder, maker) in &makers {
        let c = maker
            .create_connection(probe("kept", Some(folder), &api.base_url))
            .await;
        kept.insert(folder.clone(), text(&c["id"]));
    }

    use Op::*;
    use Place::*;
    // Expected statuses for: A's admin, m1 (view+use on F1), m2 (view+create+edit+delete on
    // F1), m3 (no grant), and B's admin (another tenant).
    let connection_matrix: &[(Place, Op, [u16; 5])] = &[
        (F1, List, [200, 200, 200, 403, 404]),
        (F1, Show, [200, 200, 200, 403, 404]),
        (F1, Create, [201, 403, 201, 403, 404]),
        (F1, Edit, [200, 403, 200, 403, 404]),
        (F1, Delete, [204, 403, 204, 403, 404]),
        (F1, Test, [200, 200, 403, 403, 404]),
        (F1, Invoke, [200, 200, 403, 403, 404]),
        // A personal workspace is its owner's, whatever the owner's role.
        (Own, List, [200, 200, 200, 200, 200]),
        (Own, Show, [200, 200, 200, 200, 200]),
        (Own, Create, [201, 201, 201, 201, 201]),
        (Own, Edit, [200, 200, 200, 200, 200]),
        (Own, Delete, [204, 204, 204, 204, 204]),
        (Own, Test, [200, 200, 200, 200, 200]),
        (Own, Invoke, [200, 200, 200, 200, 200]),
        (AdminsWorkspace, List, [200, 403, 403, 403, 404]),
        (AdminsWorkspace, Show, [200, 403, 403, 403, 404]),
        (AdminsWorkspace, Create, [201, 403, 403, 403, 404]),
        (AdminsWorkspace, Edit, [200, 403, 403, 403, 404]),
        (AdminsWorkspace, Delete, [204, 403, 403, 403, 404]),
        (AdminsWorkspace, Test, [200, 403, 403, 403, 404]),
        (AdminsWorkspace, Invoke, [200, 403, 403, 403, 404]),
        // An administrator can neither see nor use a member's personal connections.
        (M1sWorkspace, List, [403, 200, 403, 403, 404]),
        (M1sWorkspace, Show, [403, 200, 403, 403, 404]),
        (M1sWorkspace, Create, [403, 201, 403, 403, 404]),
        (M1sWorkspace, Edit, [403, 200, 403, 403, 404]),
        (M1sWorkspace, Delete, [403, 204, 403, 403, 404]),
        (M1sWorkspace, Test, [403, 200, 403, 403, 404]),
        (M1sWorkspace, Invoke, [403, 200, 403, 403, 404]),
    ];
    let mut failures = Vec::new();
    for &(place, op, statuses) in connection_matrix {
        for (who, &expected) in principals.iter().zip(&statuses) {
            let folder = match place {
                F1 => f1.clone(),
                Own => who.personal.clone(),
                AdminsWorkspace => admin.personal.clone(),
                M1sWorkspace => m1.personal.clone(),
            };
            let connection = &kept[&folder];
            let ex = match op {
                List => {
                    who.get(&format!("/v1/connections?folder_id={folder}"))
                        .await
                }
                Show => who.get(&format!("/v1/connections/{connection}")).await,
                Create => {
                    let name = format!("made by {} in {place:?}", who.label);
                    who.post(
                        "/v1/connections",
                        probe(&name, Some(&folder), &api.base_url),
                    )
                    .await
                }
                Edit => {
                    let description = format!("edited by {}", who.label);
                    who.patch(
                        &format!("/v1/connections/{connection}"),
                        json!({ "description": description }),
                    )
                    .await
                }
                Delete => {
                    // A connection of its own for each attempt, so a refusal and a success
                    // are each checked on a connection that exists.
                    let name = format!("doomed by {} in {place:?}", who.label);
                    let doomed = makers[&folder]
                        .create_connection(probe(&name, Some(&folder), &api.base_url))
                        .await;
                    who.delete(&format!("/v1/connections/{}", text(&doomed["id"])))
                        .await
                }
                Test => {
                    who.send("POST", &format!("/v1/connections/{connection}/test"), None)
                        .await
                }
                Invoke => {
                    who.post(
                        &format!("/v1/connections/{connection}/invocations"),
                        json!({"action": "echo", "input": {"value": who.label}}),
                    )
                    .await
                }
            };
            let cell = format!("{} / {op:?} in {place:?}", who.label);
            let status = ex.status.as_u16();
            if status != expected {
                failures.push(format!(
                    "{cell}: {status} instead of {expected}: {}",
                    ex.text
                ));
                continue;
            }
            let body = ex.json();
            let problem = match status {
                403 => {
                    let permission = op.permission();
                    let reason = if place == F1 {
                        format!("`{permission}` permission")
                    } else {
                        "personal workspace".to_owned()
                    };
                    refusal_problem(
                        &ex,
                        &[&reason],
                        &[("permission", permission), ("folder_id", &folder)],
                    )
                }
                404 => (body["error"]["code"] != "not_found")
                    .then(|| format!("not the not_found error: {}", ex.text)),
                _ => match op {
                    List => body["items"]
                        .as_array()
                        .unwrap_or(&Vec::new())
                        .iter()
                        .any(|c| c["folder_id"] != folder.as_str())
                        .then(|| format!("lists connections of other folders: {}", ex.text)),
                    Show => (body["id"] != connection.as_str())
                        .then(|| format!("another connection: {}", ex.text)),
                    Create => (body["folder_id"] != folder.as_str())
                        .then(|| format!("created elsewhere: {}", ex.text)),
                    Test => (body["health"]["status"] != "healthy")
                        .then(|| format!("the test failed: {}", ex.text)),
                    Invoke => (body["output"] != json!(who.label))
                        .then(|| format!("unexpected output: {}", ex.text)),
                    Edit | Delete => None,
                },
            };
            if let Some(problem) = problem {
                failures.push(format!("{cell}: {problem}"));
            }
        }
    }

    // m4 has a grant on F1, for the administrator to revoke in the last row.
    let m4 = admin.create_principal("m4", "member").await;
    admin.grant(f1, &m4, &["view"]).await;
    expect(
        &m4.get(&format!("/v1/folders/{f1}")).await,
        200,
        "m4 sees F1",
    );

    use TenantOp::*;
    let tenant_matrix: &[(TenantOp, [u16; 5])] = &[
        (ListFolders, [200, 200, 200, 200, 200]),
        (ShowF1, [200, 200, 200, 403, 404]),
        (ShowM1sWorkspace, [403, 200, 403, 403, 404]),
        (ListGrantsOnF1, [200, 403, 403, 403, 404]),
        (GrantOnF1, [200, 403, 403, 403, 404]),
        // Nobody grants anything on a personal workspace, not even an administrator.
        (GrantOnM1sWorkspace, [403, 403, 403, 403, 404]),
        // B's administrator acts on tenant B: allowed there.
        (ListPrincipals, [200, 403, 403, 403, 200]),
        (CreatePrincipal, [201, 403, 403, 403, 201]),
        // A principal may see itself and make itself tokens; nobody else makes it one, an
        // administrator included (the token would let them act as m3).
        (ShowM3, [200, 403, 403, 200, 404]),
        (CreateTokenForM3, [403, 403, 403, 201, 404]),
        (PatchTenant, [200, 403, 403, 403, 200]),
        (CreateFolder, [201, 403, 403, 403, 201]),
        // Last: the admin's revocation of m4's grant on F1 succeeds.
        (RevokeGrantOnF1, [204, 403, 403, 403, 404]),
    ];
    for &(op, statuses) in tenant_matrix {
        for (who, &expected) in principals.iter().zip(&statuses) {
            let ex = match op {
                ListFolders => who.get("/v1/folders").await,
                ShowF1 => who.get(&format!("/v1/folders/{f1}")).await,
                ShowM1sWorkspace => who.get(&format!("/v1/folders/{}", m1.personal)).await,
                ListGrantsOnF1 => who.get(&format!("/v1/folders/{f1}/grants")).await,
                GrantOnF1 => {
                    who.put(
                        &format!("/v1/folders/{f1}/grants/{}", m1.id),
                        json!({"permissions": ["view", "use"]}),
                    )
                    .await
                }
                GrantOnM1sWorkspace => {
                    who.put(
                        &format!("/v1/folders/{}/grants/{}", m1.personal, m2.id),
                        json!({"permissions": ["view"]}),
                    )
                    .await
                }
                ListPrincipals => who.get("/v1/principals").await,
                CreatePrincipal => {
                    let name = format!("made by {}", who.label);
                    who.post("/v1/principals", json!({"name": name, "role": "member"}))
                        .await
                }
                ShowM3 => who.get(&format!("/v1/principals/{}", m3.id)).await,
                CreateTokenForM3 => {
                    who.post(
                        &format!("/v1/principals/{}/tokens", m3.id),
                        json!({"name": format!("made by {}", who.label)}),
                    )
                    .await
                }
                PatchTenant => {
                    who.patch(
                        "/v1/tenant",
                        json!({"members_can_create_shared_connections": true}),
                    )
                    .await
                }
                CreateFolder => {
                    let name = format!("folder of {}", who.label);
                    who.post("/v1/folders", json!({ "name": name })).await
                }
                RevokeGrantOnF1 => {
                    who.delete(&format!("/v1/folders/{f1}/grants/{}", m4.id))
                        .await
                }
            };
            let cell = format!("{} / {op:?}", who.label);
            let status = ex.status.as_u16();
            if status != expected {
                failures.push(format!(
                    "{cell}: {status} instead of {expected}: {}",
                    ex.text
                ));
                continue;
            }
            let problem = match (status, op) {
                (403, ShowF1) => refusal_problem(&ex, &["`view` permission"], &[("folder_id", f1)]),
                (403, ShowM1sWorkspace) => refusal_problem(
                    &ex,
                    &["personal workspace"],
                    &[("permission", "view"), ("folder_id", &m1.personal)],
                ),
                (403, GrantOnM1sWorkspace) if who.id == admin.id => {
                    refusal_problem(&ex, &["personal workspace"], &[("folder_id", &m1.personal)])
                }
                (403, CreateTokenForM3) => refusal_problem(&ex, &["its own tokens"], &[]),
                (403, _) => refusal_problem(&ex, &["only an administrator"], &[]),
                (404, _) => (ex.json()["error"]["code"] != "not_found")
                    .then(|| format!("not the not_found error: {}", ex.text)),
                _ => None,
            };
            if let Some(problem) = problem {
                failures.push(format!("{cell}: {problem}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells of the permission matrix differ:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );

    // The revoked grant no longer opens F1.
    let error = expect_error(
        &m4.get(&format!("/v1/folders/{f1}")).await,
        403,
        "forbidden",
        "m4 after its grant was revoked",
    );
    assert_eq!(error["details"]["permission"], "view", "{error}");
    let grants = expect(
        &admin.get(&format!("/v1/folders/{f1}/grants")).await,
        200,
        "F1's grants",
    );
    let granted: BTreeMap<String, BTreeSet<String>> = grants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (text(&g["principal_id"]), names_of(&g["permissions"])))
        .collect();
    assert_eq!(
        granted,
        BTreeMap::from([
            (m1.id.clone(), set(&["view", "use"])),
            (m2.id.clone(), set(&["view", "create", "edit", "delete"])),
        ]),
        "F1's grants after the matrix"
    );

    // Grants name known permissions, and any permission brings `view` with it.
    let error = expect_error(
        &admin
            .put(
                &format!("/v1/folders/{f1}/grants/{}", m4.id),
                json!({"permissions": ["view", "fly"]}),
            )
            .await,
        400,
        "invalid_request",
        "an unknown permission",
    );
    assert_eq!(error["details"]["field"], "permissions", "{error}");
    says(&error["message"], &["fly"], "an unknown permission");
    let grant = expect(
        &admin
            .put(
                &format!("/v1/folders/{f1}/grants/{}", m4.id),
                json!({"permissions": ["use"]}),
            )
            .await,
        200,
        "grant use alone",
    );
    assert_eq!(names_of(&grant["permissions"]), set(&["view", "use"]));
    let invoked = m4
        .invoke(&kept[f1.as_str()], "echo", json!({"value": "m4"}))
        .await;
    assert_eq!(invoked["output"], "m4");

    // The refused edits and deletions left the kept connections as they were.
    for (folder, connection) in &kept {
        let c = expect(
            &makers[folder]
                .get(&format!("/v1/connections/{connection}"))
                .await,
            200,
            "a kept connection is still there",
        );
        let description = c["description"].as_str().unwrap_or_default();
        let editors = if folder == f1 {
            vec![admin.label.as_str(), m2.label.as_str()]
        } else {
            vec![makers[folder].label.as_str()]
        };
        assert!(
            description.is_empty() || editors.iter().any(|e| description.ends_with(e)),
            "connection {connection} was edited by someone without the right: {description:?}"
        );
    }
}

#[tokio::test]
async fn administrators_can_stop_members_from_creating_shared_connections() {
    let _running = running();
    let org = org("no-shared").await;
    let api = Api::start("unused").await;
    let (admin, m2, f1) = (&org.admin, &org.m2, &org.f1);

    m2.create_connection(probe("allowed", Some(f1), &api.base_url))
        .await;
    let tenant = expect(
        &admin
            .patch(
                "/v1/tenant",
                json!({"members_can_create_shared_connections": false}),
            )
            .await,
        200,
        "the admin forbids members to create shared connections",
    );
    assert_eq!(tenant["members_can_create_shared_connections"], false);
    assert_eq!(
        expect(&admin.get("/v1/tenant").await, 200, "read the tenant")["members_can_create_shared_connections"],
        false,
        "the setting is kept"
    );

    let refused = m2
        .post("/v1/connections", probe("refused", Some(f1), &api.base_url))
        .await;
    let error = expect_error(&refused, 403, "forbidden", "m2 creates in F1");
    says(
        &error["message"],
        &["do not allow members to create shared connections"],
        "m2 creates in F1",
    );
    assert_eq!(error["details"]["permission"], "create", "{error}");
    assert_eq!(error["details"]["folder_id"], f1.as_str(), "{error}");

    // Administrators still can; members still create in their own workspace, and still
    // edit and delete in F1.
    let by_admin = admin
        .create_connection(probe("by the admin", Some(f1), &api.base_url))
        .await;
    let personal = m2
        .create_connection(probe("personal", None, &api.base_url))
        .await;
    assert_eq!(personal["folder_id"], m2.personal.as_str());
    let id = text(&by_admin["id"]);
    expect(
        &m2.patch(
            &format!("/v1/connections/{id}"),
            json!({"description": "m2 edits"}),
        )
        .await,
        200,
        "m2 still edits in F1",
    );
    expect(
        &m2.delete(&format!("/v1/connections/{id}")).await,
        204,
        "m2 still deletes in F1",
    );
    // A member cannot change the setting back.
    expect_error(
        &m2.patch(
            "/v1/tenant",
            json!({"members_can_create_shared_connections": true}),
        )
        .await,
        403,
        "forbidden",
        "a member changes the tenant's setting",
    );

    // When the administrators allow it again, members create shared connections again.
    expect(
        &admin
            .patch(
                "/v1/tenant",
                json!({"members_can_create_shared_connections": true}),
            )
            .await,
        200,
        "the admin allows it again",
    );
    m2.create_connection(probe("allowed again", Some(f1), &api.base_url))
        .await;
}

/// An id of the same shape as `id` that names nothing.
fn made_up(id: &str) -> String {
    let (head, tail) = id.split_at(id.len() - 8);
    let replacement = if tail == "ffffffff" {
        "00000000"
    } else {
        "ffffffff"
    };
    format!("{head}{replacement}")
}

#[tokio::test]
async fn another_tenants_records_answer_exactly_like_records_that_do_not_exist() {
    let _running = running();
    let org = org("leak").await;
    let api = Api::start("unused").await;
    let (a, b) = (&org.admin, &org.b_admin);
    let connection = text(
        &a.create_connection(probe("secret project", Some(&org.f1), &api.base_url))
            .await["id"],
    );
    let invocation =
        text(&a.invoke(&connection, "echo", json!({"value": 1})).await["invocation"]["id"]);
    let token = text(
        &expect(
            &org.m1
                .post(
                    &format!("/v1/principals/{}/tokens", org.m1.id),
                    json!({"name": "ci"}),
                )
                .await,
            201,
            "m1 makes itself a token",
        )["id"],
    );
    let b_folder = b.create_folder("B's shared").await;

    // Tenant A's administrator reaches them all.
    for path in [
        format!("/v1/connections/{connection}"),
        format!("/v1/folders/{}", org.f1),
        format!("/v1/invocations/{invocation}"),
        format!("/v1/principals/{}", org.m1.id),
    ] {
        expect(&a.get(&path).await, 200, "A's admin reads A's records");
    }

    // (method, path with `{id}`, A's id, body): for B, each answer must be the answer for
    // a made-up id of the same shape, but for the id itself.
    let f1 = org.f1.as_str();
    let m1 = org.m1.id.as_str();
    let cases: Vec<(&str, String, &str, Option<Value>)> = vec![
        ("GET", "/v1/connections/{id}".into(), &connection, None),
        (
            "PATCH",
            "/v1/connections/{id}".into(),
            &connection,
            Some(json!({"description": "mine now"})),
        ),
        ("DELETE", "/v1/connections/{id}".into(), &connection, None),
        (
            "POST",
            "/v1/connections/{id}/test".into(),
            &connection,
            None,
        ),
        (
            "POST",
            "/v1/connections/{id}/invocations".into(),
            &connection,
            Some(json!({"action": "echo", "input": {"value": 1}})),
        ),
        ("GET", "/v1/connections?folder_id={id}".into(), f1, None),
        (
            "POST",
            "/v1/connections".into(),
            f1,
            Some(probe("intruder", Some("{id}"), &api.base_url)),
        ),
        ("GET", "/v1/folders/{id}".into(), f1, None),
        ("GET", "/v1/folders/{id}/grants".into(), f1, None),
        (
            "PUT",
            format!("/v1/folders/{{id}}/grants/{}", b.id),
            f1,
            Some(json!({"permissions": ["view"]})),
        ),
        (
            "PUT",
            format!("/v1/folders/{b_folder}/grants/{{id}}"),
            m1,
            Some(json!({"permissions": ["view"]})),
        ),
        (
            "DELETE",
            format!("/v1/folders/{{id}}/grants/{m1}"),
            f1,
            None,
        ),
        (
            "DELETE",
            format!("/v1/folders/{b_folder}/grants/{{id}}"),
            m1,
            None,
        ),
        ("GET", "/v1/invocations/{id}".into(), &invocation, None),
        (
            "GET",
            "/v1/invocations?connection_id={id}".into(),
            &connection,
            None,
        ),
        ("GET", "/v1/principals/{id}".into(), m1, None),
        (
            "POST",
            "/v1/principals/{id}/tokens".into(),
            m1,
            Some(json!({"name": "stolen"})),
        ),
        (
            "DELETE",
            format!("/v1/principals/{m1}/tokens/{{id}}"),
            &token,
            None,
        ),
        (
            "DELETE",
            format!("/v1/principals/{}/tokens/{{id}}", b.id),
            &token,
            None,
        ),
    ];
    for (method, template, real, body) in cases {
        let fake = made_up(real);
        let mut answers = Vec::new();
        for id in [real, fake.as_str()] {
            let path = template.replace("{id}", id);
            let body = body
                .as_ref()
                .map(|b| serde_json::from_str(&b.to_string().replace("{id}", id)).unwrap());
            let ex = b.send(method, &path, body).await;
            answers.push((
                ex.status,
                ex.header("content-type").as_deref().map(str::to_owned),
                ex.text.replace(id, "<id>"),
            ));
        }
        let what = format!("B's admin: {method} {template} with A's {real}");
        assert_eq!(
            answers[0], answers[1],
            "{what}: the answer differs from the one for the made-up {fake}"
        );
        let (status, _, body) = &answers[0];
        // Filtering invocations on an unknown connection lists nothing; everything else is
        // a 404.
        if template.starts_with("/v1/invocations?") {
            assert_eq!(status.as_u16(), 200, "{what}: {body}");
            assert_eq!(
                serde_json::from_str::<Value>(body).unwrap()["items"],
                json!([]),
                "{what}"
            );
        } else {
            assert_eq!(status.as_u16(), 404, "{what}: {body}");
            assert!(body.contains("\"not_found\""), "{what}: {body}");
        }
    }

    // Nothing B tried changed A's records.
    let c = expect(
        &a.get(&format!("/v1/connections/{connection}")).await,
        200,
        "A's connection is still there",
    );
    assert_eq!(c["description"], "", "B edited A's connection: {c}");
    let grants = expect(
        &a.get(&format!("/v1/folders/{f1}/grants")).await,
        200,
        "F1's grants",
    );
    assert!(
        !grants.to_string().contains(&b.id),
        "B granted itself a permission in A: {grants}"
    );
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_view() {
    let _running = running();
    let org = org("lists").await;
    let api = Api::start("unused").await;
    let Org {
        admin,
        m1,
        m2,
        m3,
        f1,
        b_admin,
    } = &org;
    let id = |v: Value| text(&v["id"]);
    let c_f1 = id(admin
        .create_connection(probe("shared", Some(f1), &api.base_url))
        .await);
    let c_admin = id(admin
        .create_connection(probe("admin's", None, &api.base_url))
        .await);
    let c_m1 = id(m1
        .create_connection(probe("m1's", None, &api.base_url))
        .await);
    let c_m3 = id(m3
        .create_connection(probe("m3's", None, &api.base_url))
        .await);
    let c_b = id(b_admin
        .create_connection(probe("B's", None, &api.base_url))
        .await);
    let inv = |v: Value| text(&v["invocation"]["id"]);
    let echo = json!({"value": 1});
    let i_admin_f1 = inv(admin.invoke(&c_f1, "echo", echo.clone()).await);
    let i_m1_f1 = inv(m1.invoke(&c_f1, "echo", echo.clone()).await);
    let i_m1_own = inv(m1.invoke(&c_m1, "echo", echo.clone()).await);
    let i_m3_own = inv(m3.invoke(&c_m3, "echo", echo.clone()).await);
    let i_admin_own = inv(admin.invoke(&c_admin, "echo", echo.clone()).await);
    let i_b = inv(b_admin.invoke(&c_b, "echo", echo.clone()).await);

    // (who, the folders, connections and invocations it sees)
    type Ids<'a> = &'a [&'a str];
    let expectations: [(&User, Ids, Ids, Ids); 5] = [
        (
            admin,
            &[f1, &admin.personal],
            &[&c_f1, &c_admin],
            &[&i_admin_f1, &i_m1_f1, &i_admin_own],
        ),
        (
            m1,
            &[f1, &m1.personal],
            &[&c_f1, &c_m1],
            &[&i_admin_f1, &i_m1_f1, &i_m1_own],
        ),
        (m2, &[f1, &m2.personal], &[&c_f1], &[&i_admin_f1, &i_m1_f1]),
        (m3, &[&m3.personal], &[&c_m3], &[&i_m3_own]),
        (b_admin, &[&b_admin.personal], &[&c_b], &[&i_b]),
    ];
    for (who, folders, connections, invocations) in expectations {
        let listed = who.list_all("/v1/folders").await;
        assert_eq!(
            names(&listed, "id"),
            set(folders),
            "the folders {} sees",
            who.label
        );
        assert!(
            listed.iter().all(|f| f["tenant_id"] == who.tenant.as_str()),
            "{} sees folders of another tenant: {listed:?}",
            who.label
        );
        let listed = who.list_all("/v1/connections").await;
        assert_eq!(
            names(&listed, "id"),
            set(connections),
            "the connections {} sees",
            who.label
        );
        assert!(
            listed.iter().all(|c| c["tenant_id"] == who.tenant.as_str()),
            "{} sees connections of another tenant: {listed:?}",
            who.label
        );
        assert_eq!(
            who.ids("/v1/invocations").await,
            set(invocations),
            "the invocations {} sees",
            who.label
        );
    }

    // A folder shows the caller's own permissions on it.
    let permissions = |folders: Vec<Value>, folder: &str| -> BTreeSet<String> {
        let f = folders
            .into_iter()
            .find(|f| f["id"] == folder)
            .unwrap_or_else(|| panic!("folder {folder} is not listed"));
        f["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect()
    };
    assert_eq!(
        permissions(m1.list_all("/v1/folders").await, f1),
        set(&["view", "use"])
    );
    assert_eq!(
        permissions(admin.list_all("/v1/folders").await, f1),
        set(&["view", "create", "edit", "delete", "use"])
    );
    assert_eq!(
        permissions(m3.list_all("/v1/folders").await, &m3.personal),
        set(&["view", "create", "edit", "delete", "use"])
    );

    // Principals: each administrator lists the principals of its own tenant only.
    assert_eq!(
        admin.ids("/v1/principals").await,
        set(&[&admin.id, &m1.id, &m2.id, &m3.id]),
        "A's principals"
    );
    assert_eq!(
        b_admin.ids("/v1/principals").await,
        set(&[&b_admin.id]),
        "B's principals"
    );

    // Pages of one walk the same lists.
    for path in [
        "/v1/folders",
        "/v1/principals",
        "/v1/connections",
        "/v1/invocations",
    ] {
        let whole: Vec<Value> = admin.list_all(path).await;
        let walked = admin.list_all(&format!("{path}?limit=1")).await;
        assert_eq!(walked, whole, "{path} in pages of one");
    }

    // Filtering on a connection the caller cannot view lists nothing of it.
    assert_eq!(
        admin
            .ids(&format!("/v1/invocations?connection_id={c_m1}"))
            .await,
        BTreeSet::new(),
        "the admin filters on m1's personal connection"
    );

    // Reading one invocation follows the same rule.
    let error = expect_error(
        &admin.get(&format!("/v1/invocations/{i_m1_own}")).await,
        403,
        "forbidden",
        "the admin reads an invocation in m1's workspace",
    );
    says(
        &error["message"],
        &["personal workspace"],
        "the admin reads an invocation in m1's workspace",
    );
    let error = expect_error(
        &m3.get(&format!("/v1/invocations/{i_admin_f1}")).await,
        403,
        "forbidden",
        "m3 reads an invocation in F1",
    );
    assert_eq!(error["details"]["permission"], "view");
    assert_eq!(error["details"]["folder_id"], f1.as_str());
    expect(
        &m1.get(&format!("/v1/invocations/{i_admin_f1}")).await,
        200,
        "m1 reads the admin's invocation in F1",
    );
}

// ------------------------------------------------------------------------------------------
// 2. Connections

#[tokio::test]
async fn creating_a_connection_that_does_not_fit_its_connector_is_a_400_naming_the_field() {
    let _running = running();
    let admin = new_tenant(shared(), "validation").await;
    let gh = "https://api.github.com";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "a required field is missing",
            json!({"connector": "github", "auth": "pat", "name": "x", "fields": {}}),
            "fields.token",
            "token",
        ),
        (
            "an unknown field",
            json!({"connector": "github", "auth": "pat", "name": "x",
                   "fields": {"token": "t", "colour": "red"}}),
            "fields.colour",
            "colour",
        ),
        (
            "a field of another auth scheme",
            json!({"connector": "http", "auth": "bearer", "name": "x",
                   "fields": {"base_url": gh, "token": "t", "username": "ada"}}),
            "fields.username",
            "username",
        ),
        (
            "an unknown auth scheme",
            json!({"connector": "http", "auth": "kerberos", "name": "x",
                   "fields": {"base_url": gh}}),
            "auth",
            "kerberos",
        ),
        (
            "no auth scheme when the connector has several",
            json!({"connector": "github", "name": "x", "fields": {"token": "t"}}),
            "auth",
            "pat",
        ),
        (
            "an unknown connector",
            json!({"connector": "gitlab", "name": "x", "fields": {}}),
            "connector",
            "gitlab",
        ),
        (
            "an OAuth scheme without an OAuth app",
            json!({"connector": "github", "auth": "oauth", "name": "x", "fields": {}}),
            "fields.client_id",
            "oauth_apps.github",
        ),
        (
            "a poll interval below the minimum",
            json!({"connector": "github", "auth": "pat", "name": "x",
                   "fields": {"token": "t"}, "poll_interval_seconds": 59}),
            "poll_interval_seconds",
            "60",
        ),
        (
            "a poll interval above the maximum",
            json!({"connector": "github", "auth": "pat", "name": "x",
                   "fields": {"token": "t"}, "poll_interval_seconds": 86_401}),
            "poll_interval_seconds",
            "86400",
        ),
        (
            "a blank name",
            json!({"connector": "github", "auth": "pat", "name": "  ",
                   "fields": {"token": "t"}}),
            "name",
            "name",
        ),
    ];
    for (what, body, field, mentioned) in cases {
        let ex = admin.post("/v1/connections", body).await;
        let error = expect_error(&ex, 400, "invalid_request", what);
        assert_eq!(
            error["details"]["field"], field,
            "{what}: details.field: {}",
            ex.text
        );
        says(&error["message"], &[mentioned], what);
    }
    assert!(
        admin.list_all("/v1/connections").await.is_empty(),
        "a refused connection was created anyway"
    );

    // The same checks apply to edits.
    let c = admin.create_connection(github("gh", "t", gh)).await;
    let path = format!("/v1/connections/{}", text(&c["id"]));
    let edits: Vec<(&str, Value, &str)> = vec![
        (
            "clearing a required field",
            json!({"fields": {"token": null}}),
            "fields.token",
        ),
        (
            "an unknown field",
            json!({"fields": {"colour": "red"}}),
            "fields.colour",
        ),
        (
            "a poll interval out of range",
            json!({"poll_interval_seconds": 30}),
            "poll_interval_seconds",
        ),
        ("a blank name", json!({"name": ""}), "name"),
        (
            "an OAuth scheme without an OAuth app",
            json!({"auth": "oauth"}),
            "fields.client_id",
        ),
    ];
    for (what, body, field) in edits {
        let ex = admin.patch(&path, body).await;
        let error = expect_error(&ex, 400, "invalid_request", what);
        assert_eq!(
            error["details"]["field"], field,
            "{what}: details.field: {}",
            ex.text
        );
    }
    let unchanged = expect(
        &admin.get(&path).await,
        200,
        "the connection after refused edits",
    );
    assert_eq!(unchanged["secrets"]["token"], true, "{unchanged}");
    assert_eq!(unchanged["name"], "gh");
    assert_eq!(unchanged["poll_interval_seconds"], Value::Null);
}

#[tokio::test]
async fn editing_a_connection_changes_what_is_sent_and_new_credentials_reset_its_health() {
    let _running = running();
    let admin = new_tenant(shared(), "edit").await;
    let api = Api::start("good-token").await;
    let mut body = github("gh", "good-token", &api.base_url);
    body["description"] = json!("first");
    body["poll_interval_seconds"] = json!(300);
    let c = admin.create_connection(body).await;
    let path = format!("/v1/connections/{}", text(&c["id"]));
    assert_eq!(c["fields"], json!({"base_url": api.base_url}), "{c}");
    assert_eq!(c["secrets"], json!({"token": true}), "{c}");
    assert_eq!(c["health"]["status"], "unknown");
    assert_eq!(c["poll_interval_seconds"], 300);

    let test = |who: User, path: String| async move {
        let ex = who.send("POST", &format!("{path}/test"), None).await;
        expect(&ex, 200, "test the connection")["health"].clone()
    };
    let health = test(admin.clone(), path.clone()).await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert!(health["checked_at"].is_string(), "{health}");

    // Name, description and poll interval: the rest stays, health included.
    let edited = expect(
        &admin
            .patch(&path, json!({"name": "renamed", "description": "second"}))
            .await,
        200,
        "rename",
    );
    assert_eq!(edited["name"], "renamed");
    assert_eq!(edited["description"], "second");
    assert_eq!(edited["poll_interval_seconds"], 300, "left out: kept");
    assert_eq!(edited["health"], health, "a rename keeps the health");
    let edited = expect(
        &admin
            .patch(&path, json!({"poll_interval_seconds": 3600}))
            .await,
        200,
        "change the poll interval",
    );
    assert_eq!(edited["poll_interval_seconds"], 3600);
    assert_eq!(edited["name"], "renamed");
    let edited = expect(
        &admin
            .patch(&path, json!({"poll_interval_seconds": null}))
            .await,
        200,
        "clear the poll interval",
    );
    assert_eq!(edited["poll_interval_seconds"], Value::Null, "null clears");
    assert_eq!(
        expect(&admin.get(&path).await, 200, "read it back")["poll_interval_seconds"],
        Value::Null
    );

    // New credentials: the health is unknown again until the next test.
    let edited = expect(
        &admin
            .patch(&path, json!({"fields": {"token": "bad-token"}}))
            .await,
        200,
        "change the token",
    );
    assert_eq!(
        edited["health"],
        json!({"status": "unknown", "reason": null, "checked_at": null}),
        "new credentials reset the health"
    );
    assert!(!edited.to_string().contains("bad-token"), "{edited}");
    let health = test(admin.clone(), path.clone()).await;
    assert_eq!(
        health["status"], "needs_reauthentication",
        "the new token is the one used: {health}"
    );
    says(&health["reason"], &["github@0.1.0"], "the failed test");
    let edited = expect(
        &admin
            .patch(&path, json!({"fields": {"token": "good-token"}}))
            .await,
        200,
        "restore the token",
    );
    assert_eq!(edited["health"]["status"], "unknown");
    assert_eq!(test(admin.clone(), path.clone()).await["status"], "healthy");

    // A non-secret field: set, then cleared with null (back to the connector's default).
    // The base URL decides where the token goes, so the token is given with it.
    let edited = expect(
        &admin
            .patch(
                &path,
                json!({"fields": {"base_url": "https://ghe.example.com/api/v3", "token": "good-token"}}),
            )
            .await,
        200,
        "change the base URL",
    );
    assert_eq!(
        edited["fields"]["base_url"],
        "https://ghe.example.com/api/v3"
    );
    assert_eq!(edited["secrets"]["token"], true, "the token is kept");
    let edited = expect(
        &admin
            .patch(
                &path,
                json!({"fields": {"base_url": null, "token": "good-token"}}),
            )
            .await,
        200,
        "clear the base URL",
    );
    assert_eq!(
        edited["fields"]["base_url"], "https://api.github.com",
        "cleared: the connector's default shows"
    );

    // An optional secret of the probe: set, then cleared.
    let p = admin
        .create_connection(probe("probe", None, &api.base_url))
        .await;
    assert_eq!(
        p["secrets"],
        json!({"shown_key": false, "signing_key": false})
    );
    let probe_path = format!("/v1/connections/{}", text(&p["id"]));
    let edited = expect(
        &admin
            .patch(
                &probe_path,
                json!({"fields": {"signing_key": "whsec-1", "note": "hello"}}),
            )
            .await,
        200,
        "set an optional secret and a note",
    );
    assert_eq!(edited["secrets"]["signing_key"], true);
    assert_eq!(edited["fields"]["note"], "hello");
    let edited = expect(
        &admin
            .patch(
                &probe_path,
                json!({"fields": {"signing_key": null, "note": null}}),
            )
            .await,
        200,
        "clear them",
    );
    assert_eq!(edited["secrets"]["signing_key"], false, "{edited}");
    assert!(edited["fields"].get("note").is_none(), "{edited}");
}

#[tokio::test]
async fn a_stored_secret_never_follows_a_change_of_where_credentials_go() {
    let _running = running();
    let admin = new_tenant(shared(), "switch").await;
    let api = Api::start("unused").await;
    let mut body = http("web", &api.base_url);
    body["auth"] = json!("api-key-header");
    body["fields"]["api_key"] = json!("key-1");
    let c = admin.create_connection(body).await;
    assert_eq!(c["secrets"], json!({"api_key": true}), "{c}");
    let id = text(&c["id"]);
    let path = format!("/v1/connections/{id}");
    let request = |path: &'static str| json!({"path": path});

    // Pointing the connection elsewhere without the key: refused, nothing changed. An
    // editor who does not know the key cannot send it to a host of their choosing.
    let error = expect_error(
        &admin
            .patch(
                &path,
                json!({"fields": {"base_url": "https://elsewhere.test"}}),
            )
            .await,
        400,
        "invalid_request",
        "move the base URL without the key",
    );
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");
    assert!(
        text(&error["message"]).contains("fields.base_url"),
        "{error}"
    );
    let unchanged = expect(&admin.get(&path).await, 200, "read it");
    assert_eq!(unchanged["fields"]["base_url"], api.base_url, "{unchanged}");
    // Other edits keep the key.
    expect(
        &admin.patch(&path, json!({"name": "web 2"})).await,
        200,
        "rename",
    );

    // Moving the key from a header to the query changes where it travels: it must be
    // given again too.
    let error = expect_error(
        &admin.patch(&path, json!({"auth": "api-key-query"})).await,
        400,
        "invalid_request",
        "move the key to the query without it",
    );
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");
    let edited = expect(
        &admin
            .patch(
                &path,
                json!({"auth": "api-key-query", "fields": {"api_key": "key-1"}}),
            )
            .await,
        200,
        "move the key to the query",
    );
    assert_eq!(edited["auth"], "api-key-query", "{edited}");
    assert_eq!(edited["secrets"], json!({"api_key": true}), "{edited}");
    assert_eq!(
        edited["fields"],
        json!({"base_url": api.base_url}),
        "{edited}"
    );
    assert_eq!(edited["health"]["status"], "unknown");
    admin.invoke(&id, "request", request("/ping")).await;
    let seen = api.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "/ping");
    assert_eq!(
        last.query.as_deref(),
        Some("api_key=key-1"),
        "the key goes in the query now"
    );
    assert!(
        !last.headers.contains_key("x-api-key"),
        "{:?}",
        last.headers
    );

    // To a bearer token: the key does not belong to it, the token is required.
    let error = expect_error(
        &admin.patch(&path, json!({"auth": "bearer"})).await,
        400,
        "invalid_request",
        "switch to bearer without a token",
    );
    assert_eq!(error["details"]["field"], "fields.token", "{error}");
    let edited = expect(
        &admin
            .patch(
                &path,
                json!({"auth": "bearer", "fields": {"token": "token-1"}}),
            )
            .await,
        200,
        "switch to bearer",
    );
    assert_eq!(edited["secrets"], json!({"token": true}), "{edited}");
    admin.invoke(&id, "request", request("/ping")).await;
    let seen = api.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.query, None);
    assert_eq!(
        last.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer token-1")
    );
    // And back: the key was dropped with the old scheme, so it must be given again.
    let error = expect_error(
        &admin.patch(&path, json!({"auth": "api-key-header"})).await,
        400,
        "invalid_request",
        "back to the key without one",
    );
    assert_eq!(error["details"]["field"], "fields.api_key", "{error}");
}

#[tokio::test]
async fn a_deleted_connection_is_gone() {
    let _running = running();
    let admin = new_tenant(shared(), "delete").await;
    let api = Api::start("unused").await;
    let c = admin
        .create_connection(probe("short-lived", None, &api.base_url))
        .await;
    let id = text(&c["id"]);
    let path = format!("/v1/connections/{id}");
    let invocation = admin.invoke(&id, "echo", json!({"value": 1})).await["invocation"].clone();
    let ex = admin.delete(&path).await;
    expect(&ex, 204, "delete");
    assert!(ex.text.is_empty(), "a 204 has no body: {}", ex.text);
    expect_error(&admin.get(&path).await, 404, "not_found", "read it");
    expect_error(&admin.delete(&path).await, 404, "not_found", "delete again");
    expect_error(
        &admin.patch(&path, json!({"name": "back"})).await,
        404,
        "not_found",
        "edit it",
    );
    expect_error(
        &admin.send("POST", &format!("{path}/test"), None).await,
        404,
        "not_found",
        "test it",
    );
    expect_error(
        &admin
            .post(
                &format!("{path}/invocations"),
                json!({"action": "echo", "input": {"value": 1}}),
            )
            .await,
        404,
        "not_found",
        "invoke it",
    );
    assert!(
        !admin.ids("/v1/connections").await.contains(&id),
        "a deleted connection is listed"
    );
    // Its invocations stay on record.
    assert_eq!(
        admin
            .list_all(&format!("/v1/invocations?connection_id={id}"))
            .await,
        std::slice::from_ref(&invocation),
        "the invocations of a deleted connection"
    );
    assert_eq!(
        expect(
            &admin
                .get(&format!("/v1/invocations/{}", text(&invocation["id"])))
                .await,
            200,
            "read an invocation of a deleted connection"
        ),
        invocation
    );
    // A new connection may take the deleted one's name.
    admin
        .create_connection(probe("short-lived", None, &api.base_url))
        .await;
}

#[tokio::test]
async fn connection_lists_filter_and_paginate() {
    let _running = running();
    let admin = new_tenant(shared(), "filters").await;
    let api = Api::start("gh-token").await;
    let f1 = admin.create_folder("F1").await;
    let id = |v: Value| text(&v["id"]);
    let gh_ok = id(admin
        .create_connection(github("gh ok", "gh-token", &api.base_url))
        .await);
    let gh_bad = id(admin
        .create_connection(github("gh bad", "wrong", &api.base_url))
        .await);
    let mut bearer = http("http bearer", &api.base_url);
    bearer["auth"] = json!("bearer");
    bearer["fields"]["token"] = json!("t");
    let http_bearer = id(admin.create_connection(bearer).await);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let failing = id(admin
        .create_connection(probe("unreachable", None, &closed))
        .await);
    let shared_probe = id(admin
        .create_connection(probe("shared", Some(&f1), &api.base_url))
        .await);
    for (c, expected) in [
        (&gh_ok, "healthy"),
        (&gh_bad, "needs_reauthentication"),
        (&failing, "failing"),
    ] {
        let ex = admin
            .send("POST", &format!("/v1/connections/{c}/test"), None)
            .await;
        let tested = expect(&ex, 200, "test");
        assert_eq!(tested["connection_id"], c.as_str(), "{}", ex.text);
        let health = &tested["health"];
        assert_eq!(health["status"], expected, "{}", ex.text);
        assert!(health["checked_at"].is_string(), "{}", ex.text);
        // Healthy needs no reason; the others say why.
        assert_eq!(
            health["reason"].is_string(),
            expected != "healthy",
            "{}",
            ex.text
        );
        let shown = expect(
            &admin.get(&format!("/v1/connections/{c}")).await,
            200,
            "the connection after its test",
        );
        assert_eq!(&shown["health"], health, "the health is recorded");
    }

    let everything = set(&[&gh_ok, &gh_bad, &http_bearer, &failing, &shared_probe]);
    let filters: Vec<(String, BTreeSet<String>)> = vec![
        (String::new(), everything.clone()),
        ("connector=github".into(), set(&[&gh_ok, &gh_bad])),
        ("connector=probe".into(), set(&[&failing, &shared_probe])),
        ("connector=gitlab".into(), set(&[])),
        ("auth=bearer".into(), set(&[&http_bearer])),
        ("auth=pat".into(), set(&[&gh_ok, &gh_bad])),
        ("health=healthy".into(), set(&[&gh_ok])),
        ("health=needs_reauthentication".into(), set(&[&gh_bad])),
        ("health=failing".into(), set(&[&failing])),
        ("health=unknown".into(), set(&[&http_bearer, &shared_probe])),
        (format!("folder_id={f1}"), set(&[&shared_probe])),
        (
            format!("folder_id={}", admin.personal),
            set(&[&gh_ok, &gh_bad, &http_bearer, &failing]),
        ),
        ("connector=github&health=healthy".into(), set(&[&gh_ok])),
        (
            format!("connector=probe&folder_id={f1}"),
            set(&[&shared_probe]),
        ),
    ];
    for (query, expected) in filters {
        assert_eq!(
            admin.ids(&format!("/v1/connections?{query}")).await,
            expected,
            "GET /v1/connections?{query}"
        );
    }

    // Pages of one: each page one item, the last without a cursor, together the whole
    // list in the same order.
    let whole: Vec<String> =
        expect(&admin.get("/v1/connections").await, 200, "the whole list")["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| text(&c["id"]))
            .collect();
    for limit in [1, 2] {
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/connections?limit={limit}&cursor={}", encoded(c)),
                None => format!("/v1/connections?limit={limit}"),
            };
            let page = expect(&admin.get(&path).await, 200, &path);
            let items = page["items"].as_array().unwrap();
            assert!(
                items.len() <= limit && (!items.is_empty() || walked.is_empty()),
                "{path}: {} items",
                items.len()
            );
            walked.extend(items.iter().map(|c| text(&c["id"])));
            assert!(
                walked.len() <= whole.len(),
                "the walk does not end: {walked:?}"
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(walked, whole, "pages of {limit} make the whole list");
    }
    // Filters hold across pages.
    let mut cursor: Option<String> = None;
    let mut walked = BTreeSet::new();
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/v1/connections?connector=github&limit=1&cursor={}",
                encoded(c)
            ),
            None => "/v1/connections?connector=github&limit=1".into(),
        };
        let page = expect(&admin.get(&path).await, 200, &path);
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| text(&c["id"])),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, set(&[&gh_ok, &gh_bad]));

    // Bad parameters name themselves, on every list.
    for list in [
        "/v1/connections",
        "/v1/invocations",
        "/v1/folders",
        "/v1/principals",
    ] {
        for (query, parameter) in [
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("cursor=not-a-cursor", "cursor"),
        ] {
            let path = format!("{list}?{query}");
            let error = expect_error(&admin.get(&path).await, 400, "invalid_request", &path);
            assert_eq!(error["details"]["parameter"], parameter, "{path}: {error}");
        }
    }
    let error = expect_error(
        &admin.get("/v1/connections?health=sick").await,
        400,
        "invalid_request",
        "an unknown health",
    );
    assert_eq!(error["details"]["parameter"], "health");
    // The largest page is accepted.
    expect(
        &admin.get("/v1/connections?limit=200").await,
        200,
        "limit=200",
    );
}

#[tokio::test]
async fn a_duplicate_name_is_a_409_conflict() {
    let _running = running();
    let service = shared();
    let admin = new_tenant(service, "names").await;
    let other = new_tenant(service, "names-other").await;
    let api = Api::start("unused").await;
    let f1 = admin.create_folder("F1").await;

    let first = admin
        .create_connection(probe("twin", None, &api.base_url))
        .await;
    let error = expect_error(
        &admin
            .post("/v1/connections", probe("twin", None, &api.base_url))
            .await,
        409,
        "conflict",
        "a second connection of the same name in the same folder",
    );
    says(&error["message"], &["twin"], "a duplicate connection name");
    // Another folder, or another tenant, may have one of that name.
    admin
        .create_connection(probe("twin", Some(&f1), &api.base_url))
        .await;
    other
        .create_connection(probe("twin", None, &api.base_url))
        .await;
    // Renaming onto a taken name is refused too, and changes nothing.
    let second = admin
        .create_connection(probe("single", None, &api.base_url))
        .await;
    let path = format!("/v1/connections/{}", text(&second["id"]));
    expect_error(
        &admin.patch(&path, json!({"name": "twin"})).await,
        409,
        "conflict",
        "a rename onto a taken name",
    );
    assert_eq!(
        expect(&admin.get(&path).await, 200, "read it")["name"],
        "single"
    );
    assert_eq!(
        expect(
            &admin
                .get(&format!("/v1/connections/{}", text(&first["id"])))
                .await,
            200,
            "the first twin"
        )["name"],
        "twin"
    );

    expect_error(
        &admin.post("/v1/folders", json!({"name": "F1"})).await,
        409,
        "conflict",
        "a second shared folder of the same name",
    );
    other.create_folder("F1").await;
    admin.create_principal("ada", "member").await;
    expect_error(
        &admin
            .post("/v1/principals", json!({"name": "ada", "role": "admin"}))
            .await,
        409,
        "conflict",
        "a second principal of the same name",
    );
    let other_name = text(&expect(&other.get("/v1/tenant").await, 200, "B's tenant")["name"]);
    expect_error(
        &admin.patch("/v1/tenant", json!({"name": other_name})).await,
        409,
        "conflict",
        "renaming a tenant onto another's name",
    );
}

#[tokio::test]
async fn every_principal_can_read_the_loaded_connectors() {
    let _running = running();
    let admin = new_tenant(shared(), "connectors").await;
    let member = admin.create_principal("reader", "member").await;
    let list = expect(
        &member.get("/v1/connectors").await,
        200,
        "list the connectors",
    );
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        names(items, "name"),
        set(&["github", "http", "probe"]),
        "{list}"
    );
    let github = items.iter().find(|c| c["name"] == "github").unwrap();
    assert_eq!(github["version"], "0.1.0", "{github}");
    let schemes: Vec<(String, String)> = github["auth_schemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (text(&s["id"]), text(&s["kind"])))
        .collect();
    assert_eq!(
        schemes,
        [
            ("pat".to_owned(), "bearer".to_owned()),
            ("oauth".to_owned(), "oauth2_code".to_owned())
        ],
        "{github}"
    );
    assert!(
        names(github["actions"].as_array().unwrap(), "name").contains("get-repository"),
        "{github}"
    );

    let manifest = expect(
        &member.get("/v1/connectors/github").await,
        200,
        "the github manifest",
    );
    assert_eq!(manifest["name"], "github");
    assert!(manifest["interface_version"].is_string(), "{manifest}");
    let fields = manifest["fields"].as_array().unwrap();
    // The OAuth scheme adds the fields of a user's own OAuth app.
    assert_eq!(
        names(fields, "name"),
        set(&["base_url", "token", "client_id", "client_secret", "scopes"])
    );
    let action = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "get-repository")
        .unwrap();
    assert_eq!(
        action["input_schema"]["required"],
        json!(["owner", "repo"]),
        "{action}"
    );
    let error = expect_error(
        &member.get("/v1/connectors/gitlab").await,
        404,
        "not_found",
        "an unknown connector",
    );
    says(&error["message"], &["gitlab"], "an unknown connector");
}

// ------------------------------------------------------------------------------------------
// 3. The shape of the API

/// Sends `body` as a POST with `Transfer-Encoding: chunked` (no `Content-Length`) over a
/// raw connection; returns the status and the JSON body of the answer.
async fn chunked_request(user: &User, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let token = &user.token;
    let address = user.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(500) {
        request.push_str(&format!("{:x}\r\n", chunk.len()));
        request.push_str(std::str::from_utf8(chunk).unwrap());
        request.push_str("\r\n");
    }
    request.push_str("0\r\n\r\n");
    // The service may answer and close before reading everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .find("\r\n\r\n")
        .and_then(|i| answer[i..].find('{').map(|j| &answer[i + j..]))
        .and_then(|b| b.rfind('}').map(|end| &b[..=end]))
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() {
    let _running = running();
    let admin = new_tenant(shared(), "shape").await;
    let json_type = Some("application/json");

    let error = expect_error(
        &admin
            .raw(
                "POST",
                "/v1/connections",
                json_type,
                r#"{"connector": "probe", "name": "#,
            )
            .await,
        400,
        "malformed_json",
        "truncated JSON",
    );
    says(
        &error["message"],
        &["not valid JSON", "line 1 column"],
        "truncated JSON",
    );
    let error = expect_error(
        &admin.raw("POST", "/v1/folders", json_type, "name=F1").await,
        400,
        "malformed_json",
        "not JSON at all",
    );
    says(&error["message"], &["line 1 column"], "not JSON at all");

    // Well-formed JSON of the wrong shape: the message names where.
    let shapes: Vec<(&str, &str, &str, &str)> = vec![
        (
            "a number for a string",
            "/v1/connections",
            r#"{"connector": 5, "name": "x"}"#,
            "connector",
        ),
        (
            "an unknown property",
            "/v1/connections",
            r#"{"connector": "probe", "name": "x", "colour": "red"}"#,
            "colour",
        ),
        ("a missing property", "/v1/folders", r#"{}"#, "name"),
        (
            "an array for an object",
            "/v1/folders",
            "[1, 2]",
            "JSON object",
        ),
        (
            "an unknown role",
            "/v1/principals",
            r#"{"name": "x", "role": "owner"}"#,
            "owner",
        ),
    ];
    for (what, path, body, mentioned) in shapes {
        let error = expect_error(
            &admin.raw("POST", path, json_type, body).await,
            400,
            "malformed_json",
            what,
        );
        says(&error["message"], &["expected shape", mentioned], what);
    }

    // The content type must be JSON.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let ex = admin
            .raw("POST", "/v1/folders", content_type, r#"{"name": "F1"}"#)
            .await;
        let error = expect_error(
            &ex,
            415,
            "unsupported_media_type",
            &format!("content type {content_type:?}"),
        );
        says(
            &error["message"],
            &["application/json"],
            "a missing content type",
        );
    }
    expect(
        &admin
            .raw(
                "POST",
                "/v1/folders",
                Some("application/json; charset=utf-8"),
                r#"{"name": "with charset"}"#,
            )
            .await,
        201,
        "JSON with a charset",
    );

    // A body over the limit.
    let big = "x".repeat(MAX_BODY_BYTES as usize + 1);
    let cases = [
        ("POST", "/v1/folders".to_owned()),
        ("POST", "/v1/connections".to_owned()),
        ("PATCH", "/v1/tenant".to_owned()),
    ];
    for (method, path) in cases {
        let body = json!({ "name": big }).to_string();
        let error = expect_error(
            &admin.raw(method, &path, json_type, body).await,
            413,
            "payload_too_large",
            &format!("{method} {path} with a large body"),
        );
        assert_eq!(error["details"]["limit_bytes"], MAX_BODY_BYTES, "{error}");
        says(
            &error["message"],
            &[&MAX_BODY_BYTES.to_string()],
            "a large body",
        );
    }
    // A chunked body, whose size no header announces, is cut at the limit too.
    let (status, body) = chunked_request(
        &admin,
        "/v1/folders",
        &json!({ "name": "z".repeat(MAX_BODY_BYTES as usize * 4) }).to_string(),
    )
    .await;
    assert_eq!(status, 413, "a large chunked body: {body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let (status, body) = chunked_request(&admin, "/v1/folders", r#"{"name": "chunked"}"#).await;
    assert_eq!(status, 201, "a small chunked body: {body}");

    // Just under the limit is fine (then the name is too long: a 400, not a 413).
    let padded = json!({"name": "y".repeat(MAX_BODY_BYTES as usize - 20)}).to_string();
    assert!(padded.len() as u64 <= MAX_BODY_BYTES);
    let error = expect_error(
        &admin.raw("POST", "/v1/folders", json_type, padded).await,
        400,
        "invalid_request",
        "a body under the limit",
    );
    assert_eq!(error["details"]["field"], "name");

    // Well-shaped bodies with invalid values name the field.
    let tokens = format!("/v1/principals/{}/tokens", admin.id);
    for (method, path, body, field) in [
        ("POST", "/v1/folders", json!({"name": " "}), "name"),
        ("PATCH", "/v1/tenant", json!({"name": ""}), "name"),
        (
            "POST",
            "/v1/principals",
            json!({"name": "", "role": "member"}),
            "name",
        ),
        ("POST", tokens.as_str(), json!({"name": "   "}), "name"),
        (
            "POST",
            "/v1/folders",
            json!({"name": "n".repeat(201)}),
            "name",
        ),
    ] {
        let what = format!("{method} {path} with {body}");
        let error = expect_error(
            &admin.send(method, path, Some(body)).await,
            400,
            "invalid_request",
            &what,
        );
        assert_eq!(error["details"]["field"], field, "{what}: {error}");
    }

    // Unknown routes and methods.
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/connections/con_x/everything"),
        ("GET", "/v2/connections"),
        ("POST", "/"),
    ] {
        let ex = admin.send(method, path, Some(json!({}))).await;
        let error = expect_error(&ex, 404, "no_route", &format!("{method} {path}"));
        says(
            &error["message"],
            &[&format!("{method} {path}")],
            "an unknown route",
        );
    }
    for (method, path, allowed) in [
        ("PUT", "/v1/connections", &["GET", "POST"][..]),
        ("DELETE", "/v1/tenant", &["GET", "PATCH"][..]),
        ("POST", "/v1/invocations/inv_x", &["GET"][..]),
        ("PATCH", "/v1/openapi.json", &["GET"][..]),
    ] {
        let ex = admin.send(method, path, Some(json!({}))).await;
        let error = expect_error(&ex, 405, "method_not_allowed", &format!("{method} {path}"));
        says(&error["message"], &[method, path], "a wrong method");
        let allow = ex.header("allow").as_deref().unwrap_or_default().to_owned();
        for m in allowed {
            assert!(
                allow.contains(m),
                "{method} {path}: the Allow header {allow:?} does not list {m}"
            );
        }
    }

    // Request ids: a sane one is echoed, otherwise one is made.
    let ex = conforming(
        admin
            .client
            .send("GET", "/v1/me", None, &[("x-request-id", "test-42.a_b")])
            .await,
    );
    assert_eq!(ex.header("x-request-id").as_deref(), Some("test-42.a_b"));
    let ex = conforming(
        admin
            .client
            .send("GET", "/v1/me", None, &[("x-request-id", "no spaces")])
            .await,
    );
    let made = ex
        .header("x-request-id")
        .as_deref()
        .unwrap_or_default()
        .to_owned();
    assert!(made.starts_with("req_"), "a request id was made: {made:?}");
    let error = admin.get("/v1/nothing").await;
    assert!(
        error.header("x-request-id").is_some(),
        "errors carry a request id too"
    );
}

/// The places where schemathesis found the document and the service disagreeing, each
/// pinned here (schemathesis, run by `make test`, explores around them; these do not
/// depend on what it happens to generate).
#[tokio::test]
async fn the_service_accepts_what_the_document_allows_and_refuses_what_it_forbids() {
    let _running = running();
    let admin = new_tenant(shared(), "agree").await;
    let what = "schema agreement";
    // A body must be an object: serde would read a struct from an array.
    let error = expect_error(
        &admin.post("/v1/folders", json!(["x"])).await,
        400,
        "malformed_json",
        what,
    );
    says(&error["message"], &["JSON object"], what);
    // `null` is not "left out" where the document does not allow it.
    expect_error(
        &admin.patch("/v1/tenant", json!({"name": null})).await,
        400,
        "malformed_json",
        what,
    );
    expect_error(
        &admin
            .post(
                "/v1/connections",
                json!({"connector": "http", "name": "n", "auth": null,
                       "fields": {"base_url": "https://api.example.com"}}),
            )
            .await,
        400,
        "malformed_json",
        what,
    );
    // Names: blank ones refused, any other accepted (the document's pattern).
    for blank in ["\u{b}", " \u{3000}\t"] {
        expect_error(
            &admin
                .post("/v1/principals", json!({"name": blank, "role": "member"}))
                .await,
            400,
            "invalid_request",
            what,
        );
    }
    let odd = expect(
        &admin
            .post(
                "/v1/principals",
                json!({"name": "\u{1c}", "role": "member"}),
            )
            .await,
        201,
        what,
    );
    let member = text(&odd["principal"]["id"]);
    // Each permission once.
    let folder = admin.create_folder("agreement").await;
    let error = expect_error(
        &admin
            .put(
                &format!("/v1/folders/{folder}/grants/{member}"),
                json!({"permissions": ["use", "use"]}),
            )
            .await,
        400,
        "invalid_request",
        what,
    );
    assert_eq!(error["details"]["field"], "permissions");
    // A whole number written as a float is a whole number.
    let mut body = http("floats", "https://api.example.com");
    body["poll_interval_seconds"] = json!(120.0);
    let created = expect(&admin.post("/v1/connections", body).await, 201, what);
    assert_eq!(created["poll_interval_seconds"], 120);
    // Any cursor of the documented shape starts a page; another shape is refused.
    expect(&admin.get("/v1/folders?cursor=__main__").await, 200, what);
    expect_error(
        &admin.get("/v1/folders?cursor=a%21b").await,
        400,
        "invalid_request",
        what,
    );
    // A filter that is not an id of its kind is refused, not answered with nothing.
    let error = expect_error(
        &admin.get("/v1/invocations?connection_id=").await,
        400,
        "invalid_request",
        what,
    );
    assert_eq!(error["details"]["parameter"], "connection_id");
    // The token request's body is optional, as documented.
    expect(
        &admin
            .raw(
                "POST",
                &format!("/v1/principals/{}/tokens", admin.id),
                None,
                "",
            )
            .await,
        201,
        what,
    );
    // RFC 3339 times with an offset.
    expect(
        &admin
            .get("/v1/audit?since=2026-01-01T00:00:00%2B02:00")
            .await,
        200,
        what,
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let _running = running();
    let service = shared();
    let admin = new_tenant(service, "tokens").await;
    let member = admin.create_principal("member", "member").await;
    let anonymous = admin.with_token("anonymous", None);

    let error = expect_error(
        &anonymous.get("/v1/me").await,
        401,
        "unauthenticated",
        "no token",
    );
    says(&error["message"], &["Authorization: Bearer"], "no token");
    // The token is checked before the body.
    expect_error(
        &anonymous.raw("POST", "/v1/folders", None, "garbage").await,
        401,
        "unauthenticated",
        "no token and a bad body",
    );
    for (what, header) in [
        ("another scheme", "Basic YWRhOnNlY3JldA=="),
        ("an empty bearer token", "Bearer "),
        (
            "an unknown token",
            "Bearer jt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        ("not a token at all", "Bearer ünïcödé"),
    ] {
        let ex = conforming(
            anonymous
                .client
                .send("GET", "/v1/connections", None, &[("authorization", header)])
                .await,
        );
        expect_error(&ex, 401, "unauthenticated", what);
    }
    // Unauthenticated endpoints need none.
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        expect(&anonymous.get(path).await, 200, path);
    }

    // A token made, used, then revoked by its principal.
    let made = expect(
        &member
            .post(
                &format!("/v1/principals/{}/tokens", member.id),
                json!({"name": "ci"}),
            )
            .await,
        201,
        "a member makes itself a token",
    );
    assert_eq!(made["name"], "ci");
    let second = member.with_token("the member's second token", Some(&text(&made["token"])));
    let me = expect(&second.get("/v1/me").await, 200, "the new token works");
    assert_eq!(me["principal"]["id"], member.id.as_str());
    let revoke = format!("/v1/principals/{}/tokens/{}", member.id, text(&made["id"]));
    let ex = member.delete(&revoke).await;
    expect(&ex, 204, "revoke it");
    let error = expect_error(
        &second.get("/v1/me").await,
        401,
        "unauthenticated",
        "a revoked token",
    );
    says(&error["message"], &["revoked"], "a revoked token");
    expect_error(
        &member.delete(&revoke).await,
        404,
        "not_found",
        "revoke again",
    );
    expect(
        &member.get("/v1/me").await,
        200,
        "the member's other token still works",
    );

    // An administrator cannot make a member a token (it would let them act as the
    // member), but revokes the member's; the member cannot revoke the admin's.
    let error = expect_error(
        &admin
            .post(&format!("/v1/principals/{}/tokens", member.id), json!({}))
            .await,
        403,
        "forbidden",
        "the admin makes the member a token",
    );
    says(
        &error["message"],
        &["its own tokens"],
        "a token for another",
    );
    let made = expect(
        &member
            .post(&format!("/v1/principals/{}/tokens", member.id), json!({}))
            .await,
        201,
        "the member makes itself another token",
    );
    assert_eq!(made["name"], Value::Null);
    let third = member.with_token("the member's third token", Some(&text(&made["token"])));
    expect(&third.get("/v1/me").await, 200, "the token works");
    expect(
        &admin
            .delete(&format!(
                "/v1/principals/{}/tokens/{}",
                member.id,
                text(&made["id"])
            ))
            .await,
        204,
        "the admin revokes it",
    );
    expect_error(
        &third.get("/v1/me").await,
        401,
        "unauthenticated",
        "revoked by the admin",
    );
    let admins_token = expect(
        &admin
            .post(&format!("/v1/principals/{}/tokens", admin.id), json!({}))
            .await,
        201,
        "the admin makes itself a token",
    );
    expect_error(
        &member
            .delete(&format!(
                "/v1/principals/{}/tokens/{}",
                admin.id,
                text(&admins_token["id"])
            ))
            .await,
        403,
        "forbidden",
        "a member revokes the admin's token",
    );
    // Nor through its own path: a token is revoked only under its own principal.
    expect_error(
        &member
            .delete(&format!(
                "/v1/principals/{}/tokens/{}",
                member.id,
                text(&admins_token["id"])
            ))
            .await,
        404,
        "not_found",
        "a member revokes the admin's token under its own id",
    );
    let admins = admin.with_token(
        "the admin's second token",
        Some(&text(&admins_token["token"])),
    );
    expect(
        &admins.get("/v1/me").await,
        200,
        "the admin's token still works",
    );
}

/// Every operation of the OpenAPI document: (method, path template, whether it needs a
/// token, whether it takes a body).
fn documented_operations() -> Vec<(String, String, bool, bool)> {
    let document = VALIDATOR.document();
    let default_security = document["security"].clone();
    let mut operations = Vec::new();
    for (method, template) in openapi::routes_in_document(document) {
        let operation = &document["paths"][&template][method.to_lowercase()];
        let security = operation.get("security").unwrap_or(&default_security);
        let needs_token = security.as_array().is_some_and(|s| !s.is_empty());
        let takes_body = operation.get("requestBody").is_some();
        operations.push((method, template, needs_token, takes_body));
    }
    operations
}

/// A concrete path for a template: every `{parameter}` made up, of the shape of an id.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "xyz_0123456789abcdefghijklmnop"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_operation_the_document_secures_needs_a_token_and_no_other_does() {
    let _running = running();
    let service = shared();
    let admin = new_tenant(service, "secured").await;
    let anonymous = admin.with_token("anonymous", None);
    let operations = documented_operations();
    assert!(operations.len() > 20, "{operations:?}");
    for (method, template, needs_token, takes_body) in operations {
        let path = concrete(&template);
        let body = takes_body.then(|| json!({}));
        let ex = anonymous.send(&method, &path, body).await;
        let what = format!("{method} {template} without a token");
        if needs_token {
            let error = expect_error(&ex, 401, "unauthenticated", &what);
            says(&error["message"], &["Bearer"], &what);
        } else if template == "/v1/oauth/callback" {
            // The provider's redirect: no token, and without a `state` a clear refusal.
            assert_eq!(ex.status, 400, "{what}: {}", ex.text);
            assert!(
                ex.text.contains("oauth_state_missing"),
                "{what}: {}",
                ex.text
            );
        } else if template == "/v1/oauth/start/{token}" {
            // A consent link's page: no token; a made-up link is unknown (a JSON body is
            // not its form).
            let expected = if method == "GET" { 404 } else { 415 };
            assert_eq!(ex.status, expected, "{what}: {}", ex.text);
            assert!(
                ex.text.starts_with("<!doctype html>"),
                "{what}: {}",
                ex.text
            );
        } else {
            expect(&ex, 200, &what);
        }
    }
}

#[tokio::test]
async fn every_request_body_is_checked_for_its_size_and_content_type_first() {
    let _running = running();
    let admin = new_tenant(shared(), "bodies").await;
    let too_big = json!({ "name": "x".repeat(MAX_BODY_BYTES as usize) }).to_string();
    let with_body: Vec<_> = documented_operations()
        .into_iter()
        .filter(|(_, _, _, takes_body)| *takes_body)
        .collect();
    assert!(with_body.len() >= 8, "{with_body:?}");
    let operator = new_operator(shared()).await;
    for (method, template, _, _) in with_body {
        // Made-up ids: the body is refused before anything is looked up. Operator
        // endpoints are checked with an operator's token (a tenant's is refused first).
        let path = concrete(&template);
        let caller = if template.starts_with("/v1/catalog") || template.starts_with("/v1/tenants/")
        {
            &operator
        } else {
            &admin
        };
        if template == "/v1/oauth/start/{token}" {
            // A browser's form, answered with pages: its own type first, then its size.
            let form = "check=".to_owned() + &"x".repeat(MAX_BODY_BYTES as usize);
            let page = caller
                .raw(
                    &method,
                    &path,
                    Some("application/x-www-form-urlencoded"),
                    form,
                )
                .await;
            assert_eq!(page.status, 413, "{}", page.text);
            let page = caller.raw(&method, &path, None, "check=x").await;
            assert_eq!(page.status, 415, "{}", page.text);
            assert!(page.text.starts_with("<!doctype html>"), "{}", page.text);
            continue;
        }
        let large = caller
            .raw(&method, &path, Some("application/json"), too_big.clone())
            .await;
        if template == "/v1/catalog/versions" {
            // A component, not JSON: its own size limit, and its content type first.
            expect_error(
                &large,
                415,
                "unsupported_media_type",
                &format!("{method} {template} with JSON"),
            );
        } else {
            let error = expect_error(
                &large,
                413,
                "payload_too_large",
                &format!("{method} {template} with a large body"),
            );
            assert_eq!(error["details"]["limit_bytes"], MAX_BODY_BYTES, "{error}");
        }
        expect_error(
            &caller.raw(&method, &path, None, "{}").await,
            415,
            "unsupported_media_type",
            &format!("{method} {template} without a content type"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// 4. Invocations

/// Checks the answer to an invocation that failed: its status and code, the connector named
/// in the message and the details, and the invocation recorded with that outcome. Returns
/// the error object.
async fn check_failure(
    who: &User,
    ex: &Exchange,
    connection: &str,
    action: &str,
    status: u16,
    code: &str,
    connector: &str,
) -> Value {
    let what = format!("{action} on {connector}");
    let error = expect_error(ex, status, code, &what);
    says(&error["message"], &[connector], &what);
    assert_eq!(error["details"]["source"], "connector", "{what}: {error}");
    assert_eq!(error["details"]["connector"], connector, "{what}: {error}");
    let invocation = error["details"]["invocation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no details.invocation_id: {error}"));
    let recorded = expect(
        &who.get(&format!("/v1/invocations/{invocation}")).await,
        200,
        &format!("{what}: the invocation is recorded"),
    );
    assert_eq!(recorded["outcome"], code, "{what}: {recorded}");
    assert_eq!(recorded["error"]["code"], code, "{what}: {recorded}");
    assert_eq!(recorded["action"], action, "{what}: {recorded}");
    assert_eq!(recorded["connection_id"], connection, "{what}: {recorded}");
    assert_eq!(
        recorded["principal_id"],
        who.id.as_str(),
        "{what}: {recorded}"
    );
    error
}

/// Invokes an action that must fail as described; see [`check_failure`].
async fn failed_invocation(
    who: &User,
    connection: &str,
    action: &str,
    input: Value,
    status: u16,
    code: &str,
    connector: &str,
) -> (Exchange, Value) {
    let ex = who
        .post(
            &format!("/v1/connections/{connection}/invocations"),
            json!({"action": action, "input": input}),
        )
        .await;
    let error = check_failure(who, &ex, connection, action, status, code, connector).await;
    (ex, error)
}

#[tokio::test]
async fn failed_invocations_are_typed_http_errors() {
    let _running = running();
    let admin = new_tenant(shared(), "invoke-errors").await;
    let api = Api::start("gh-token").await;
    let id = |v: Value| text(&v["id"]);
    let gh = id(admin
        .create_connection(github("gh", "gh-token", &api.base_url))
        .await);
    let gh_bad = id(admin
        .create_connection(github("gh bad", "wrong-token", &api.base_url))
        .await);
    let web = id(admin.create_connection(http("web", &api.base_url)).await);
    let probe_id = id(admin
        .create_connection(probe("probe", None, &api.base_url))
        .await);
    let invocations = |c: &str| format!("/v1/connections/{c}/invocations");

    // Input that does not match the action's schema never reaches the connector.
    let seen = api.seen().len();
    for (input, path) in [
        (json!({}), ""),
        (json!({"owner": 1, "repo": "x"}), "/owner"),
        (
            json!({"owner": "octocat", "repo": "x", "colour": "red"}),
            "",
        ),
        (json!("octocat/x"), ""),
    ] {
        let what = format!("get-repository with {input}");
        let ex = admin
            .post(
                &invocations(&gh),
                json!({"action": "get-repository", "input": input}),
            )
            .await;
        let error = expect_error(&ex, 422, "invalid_input", &what);
        let errors = error["details"]["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no details.errors: {error}"));
        assert!(!errors.is_empty(), "{what}: {error}");
        assert!(
            errors
                .iter()
                .all(|e| e["path"].is_string() && e["message"].is_string()),
            "{what}: {error}"
        );
        assert!(
            errors.iter().any(|e| e["path"] == path),
            "{what}: no error at {path:?}: {error}"
        );
        says(&error["message"], &["get-repository"], &what);
    }
    assert_eq!(
        api.seen().len(),
        seen,
        "an invalid input reached the upstream API"
    );

    // An unknown action, and no action.
    let error = expect_error(
        &admin
            .post(&invocations(&gh), json!({"action": "delete-everything"}))
            .await,
        400,
        "invalid_request",
        "an unknown action",
    );
    assert_eq!(error["details"]["field"], "action");
    says(
        &error["message"],
        &["delete-everything", "get-repository", "github@0.1.0"],
        "an unknown action",
    );
    expect_error(
        &admin.post(&invocations(&gh), json!({"input": {}})).await,
        400,
        "malformed_json",
        "no action",
    );

    // A success, for contrast; without `input`, the input is `{}`.
    let ex = admin
        .post(
            &invocations(&gh),
            json!({"action": "get-authenticated-user"}),
        )
        .await;
    let ok = expect(&ex, 200, "get-authenticated-user without input");
    assert_eq!(ok["output"]["login"], "octocat", "{ok}");
    assert_eq!(ok["invocation"]["outcome"], "ok");
    assert_eq!(ok["invocation"]["error"], Value::Null);

    // The upstream API refuses the token.
    let (_, error) = failed_invocation(
        &admin,
        &gh_bad,
        "get-authenticated-user",
        json!({}),
        502,
        "unauthorized",
        "github@0.1.0",
    )
    .await;
    assert!(!error.to_string().contains("wrong-token"), "{error}");

    // Rate limits: a 429 with the wait, as a header and in the details.
    let limited = [
        (
            &gh,
            "get-repository",
            json!({"owner": "octocat", "repo": "rate-limited"}),
            42,
            "github@0.1.0",
        ),
        (
            &web,
            "request",
            json!({"path": "/status/429", "query": {"retry_after": "7"}}),
            7,
            "http@0.1.0",
        ),
    ];
    for (connection, action, input, wait, connector) in limited {
        let (ex, error) = failed_invocation(
            &admin,
            connection,
            action,
            input,
            429,
            "rate_limited",
            connector,
        )
        .await;
        assert_eq!(
            ex.header("retry-after").as_deref(),
            Some(wait.to_string().as_str()),
            "{connector}: the Retry-After header"
        );
        assert_eq!(error["details"]["retry_after_seconds"], wait, "{error}");
    }
    // A rate limit without a known wait: no Retry-After.
    let (ex, error) = failed_invocation(
        &admin,
        &web,
        "request",
        json!({"path": "/status/429"}),
        429,
        "rate_limited",
        "http@0.1.0",
    )
    .await;
    assert_eq!(ex.header("retry-after").as_deref(), None);
    assert!(
        error["details"].get("retry_after_seconds").is_none(),
        "{error}"
    );

    // Other upstream failures.
    let (_, error) = failed_invocation(
        &admin,
        &web,
        "request",
        json!({"path": "/status/503"}),
        502,
        "upstream",
        "http@0.1.0",
    )
    .await;
    assert_eq!(error["details"]["upstream_status"], 503, "{error}");
    failed_invocation(
        &admin,
        &gh,
        "get-repository",
        json!({"owner": "octocat", "repo": "no-such-repo"}),
        502,
        "not_found",
        "github@0.1.0",
    )
    .await;

    // The connector crashes, and runs again afterwards.
    let (_, error) = failed_invocation(
        &admin,
        &probe_id,
        "panic",
        json!({}),
        502,
        "trap",
        "probe@0.1.0",
    )
    .await;
    says(&error["message"], &["panicked on purpose"], "a panic");
    let echoed = admin
        .invoke(&probe_id, "echo", json!({"value": "still here"}))
        .await;
    assert_eq!(echoed["output"], "still here");
}

#[tokio::test]
async fn a_connection_that_no_longer_fits_its_connector_fails_as_a_recorded_invocation() {
    let _running = running();
    let service = shared();
    let admin = new_tenant(service, "unfit").await;
    let api = Api::start("gh-token").await;
    let c = admin
        .create_connection(github("gh", "gh-token", &api.base_url))
        .await;
    let id = text(&c["id"]);
    // What a new version of the connector requiring another field would do: the stored
    // values no longer satisfy the manifest. The API never stores such a connection, so
    // take its token away in the database (the service keeps running).
    let database = service.data_dir.join(junction::store::DATABASE_FILE);
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&database)
        .busy_timeout(Duration::from_secs(10));
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", database.display()));
    let removed = sqlx::query("DELETE FROM connection_secrets WHERE connection_id = ?")
        .bind(&id)
        .execute(&mut db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(removed, 1, "the token's row");
    sqlx::Connection::close(db).await.unwrap();

    let shown = expect(
        &admin.get(&format!("/v1/connections/{id}")).await,
        200,
        "read it",
    );
    assert_eq!(shown["secrets"]["token"], false, "{shown}");
    let seen = api.seen().len();
    let (_, error) = failed_invocation(
        &admin,
        &id,
        "get-authenticated-user",
        json!({}),
        502,
        "connection",
        "github@0.1.0",
    )
    .await;
    says(&error["message"], &["token"], "an unfit connection");
    assert_eq!(api.seen().len(), seen, "the connector called upstream");
    // Its test says so too, and editing it back in shape repairs it.
    let ex = admin
        .send("POST", &format!("/v1/connections/{id}/test"), None)
        .await;
    let health = expect(&ex, 200, "test it")["health"].clone();
    assert_eq!(health["status"], "failing", "{health}");
    says(&health["reason"], &["token"], "the failed test");
    expect(
        &admin
            .patch(
                &format!("/v1/connections/{id}"),
                json!({"fields": {"token": "gh-token"}}),
            )
            .await,
        200,
        "give the token back",
    );
    admin.invoke(&id, "get-authenticated-user", json!({})).await;
}

/// The (status, code) pairs that may answer.
type Answers<'a> = &'a [(u16, &'a str)];

#[tokio::test]
async fn invocations_stopped_by_a_limit_fail_with_the_limit_code() {
    let _running = running();
    // A service of its own, with small limits; stopped when this test ends.
    let service: &'static Service = Box::leak(Box::new(start_service(
        "api-limits",
        &[
            "--timeout",
            "1",
            "--cpu-time",
            "1",
            "--memory-mib",
            "16",
            "--health-check-interval",
            "0",
        ],
    )));
    let admin = new_tenant(service, "limits").await;
    let api = Api::start("unused").await;
    let probe_id = text(
        &admin
            .create_connection(probe("probe", None, &api.base_url))
            .await["id"],
    );
    let web = text(&admin.create_connection(http("web", &api.base_url)).await["id"]);

    // (connection, action, input, connector, the (status, code) pairs that may answer):
    // whether the CPU-time or the wall-clock limit stops a busy loop first depends on how
    // loaded the machine is.
    let cases: [(&str, &str, Value, &str, Answers); 3] = [
        (
            &probe_id,
            "spin",
            json!({}),
            "probe@0.1.0",
            &[(502, "limit_cpu_time"), (504, "limit_wall_time")],
        ),
        (
            &web,
            "request",
            json!({"path": "/slow/30000"}),
            "http@0.1.0",
            &[(504, "limit_wall_time"), (504, "timeout")],
        ),
        (
            &probe_id,
            "allocate",
            json!({}),
            "probe@0.1.0",
            &[(502, "limit_memory")],
        ),
    ];
    for (connection, action, input, connector, answers) in cases {
        let ex = admin
            .post(
                &format!("/v1/connections/{connection}/invocations"),
                json!({"action": action, "input": input}),
            )
            .await;
        let code = ex.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let status = ex.status.as_u16();
        assert!(
            answers.contains(&(status, code.as_str())),
            "{action} on {connector}: {status} {}; expected one of {answers:?}",
            ex.text
        );
        check_failure(&admin, &ex, connection, action, status, &code, connector).await;
    }
    // The service still serves invocations.
    let echoed = admin
        .invoke(&probe_id, "echo", json!({"value": "after the limits"}))
        .await;
    assert_eq!(echoed["output"], "after the limits");
}

#[tokio::test]
async fn every_invocation_is_recorded_with_who_what_how_long_and_how_it_ended() {
    let _running = running();
    let service = shared();
    let admin = new_tenant(service, "records").await;
    let m1 = admin.create_principal("m1", "member").await;
    let f1 = admin.create_folder("F1").await;
    admin.grant(&f1, &m1, &["view", "use"]).await;
    let api = Api::start("gh-token").await;
    let mut body = github("gh", "gh-token", &api.base_url);
    body["folder_id"] = json!(f1);
    let gh = text(&admin.create_connection(body).await["id"]);
    let shared_probe = text(
        &admin
            .create_connection(probe("shared probe", Some(&f1), &api.base_url))
            .await["id"],
    );
    let own_probe = text(
        &m1.create_connection(probe("m1's probe", None, &api.base_url))
            .await["id"],
    );

    // (who, connection, action, input, outcome)
    let runs: Vec<(&User, &str, &str, Value, &str)> = vec![
        (&admin, &gh, "get-authenticated-user", json!({}), "ok"),
        (&admin, &shared_probe, "panic", json!({}), "trap"),
        (&m1, &shared_probe, "echo", json!({"value": 1}), "ok"),
        (&m1, &own_probe, "echo", json!({"value": 2}), "ok"),
        (
            &m1,
            &gh,
            "get-repository",
            json!({"owner": "octocat", "repo": "rate-limited"}),
            "rate_limited",
        ),
    ];
    let mut recorded: Vec<Value> = Vec::new();
    for (who, connection, action, input, outcome) in &runs {
        let ex = who
            .post(
                &format!("/v1/connections/{connection}/invocations"),
                json!({"action": action, "input": input}),
            )
            .await;
        let body = ex.json();
        let id = if *outcome == "ok" {
            expect(&ex, 200, action);
            body["invocation"]["id"].clone()
        } else {
            assert_eq!(body["error"]["code"], *outcome, "{action}: {}", ex.text);
            body["error"]["details"]["invocation_id"].clone()
        };
        let one = expect(
            &who.get(&format!("/v1/invocations/{}", text(&id))).await,
            200,
            "read the invocation",
        );
        if *outcome == "ok" {
            assert_eq!(
                one, body["invocation"],
                "the record is what the call returned"
            );
        }
        let what = format!("{action} by {}", who.label);
        assert_eq!(one["principal_id"], who.id.as_str(), "{what}: {one}");
        assert_eq!(one["connection_id"], *connection, "{what}: {one}");
        assert_eq!(one["action"], *action, "{what}: {one}");
        assert_eq!(one["outcome"], *outcome, "{what}: {one}");
        assert_eq!(one["connector_version"], "0.1.0", "{what}: {one}");
        assert!(
            one["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{what}: duration_ms: {one}"
        );
        if *outcome == "ok" {
            assert_eq!(one["error"], Value::Null, "{what}: {one}");
        } else {
            assert_eq!(one["error"]["code"], *outcome, "{what}: {one}");
            assert!(one["error"]["message"].is_string(), "{what}: {one}");
        }
        recorded.push(one);
    }
    let ids: Vec<String> = recorded.iter().map(|r| text(&r["id"])).collect();
    let [i_user, i_panic, i_echo_f1, i_echo_own, i_limited] =
        [0, 1, 2, 3, 4].map(|k| ids[k].as_str());

    // The list: newest first, what the caller may view, never a secret.
    let listed = m1.list_all("/v1/invocations").await;
    assert_eq!(
        names(&listed, "id"),
        set(&ids.iter().map(String::as_str).collect::<Vec<_>>()),
        "m1 sees every invocation"
    );
    let started: Vec<String> = listed.iter().map(|i| text(&i["started_at"])).collect();
    assert!(
        started.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {started:?}"
    );
    for item in &listed {
        let one = recorded.iter().find(|r| r["id"] == item["id"]).unwrap();
        assert_eq!(item, one, "a listed invocation is the invocation");
    }
    assert!(
        !serde_json::to_string(&listed).unwrap().contains("gh-token"),
        "a secret in the invocation records"
    );
    assert_eq!(
        admin.ids("/v1/invocations").await,
        set(&[i_user, i_panic, i_echo_f1, i_limited]),
        "the admin does not see m1's personal invocations"
    );

    // Filters, and pages of one.
    let filters: Vec<(String, BTreeSet<String>)> = vec![
        (format!("connection_id={gh}"), set(&[i_user, i_limited])),
        (
            format!("connection_id={shared_probe}"),
            set(&[i_panic, i_echo_f1]),
        ),
        ("outcome=ok".into(), set(&[i_user, i_echo_f1, i_echo_own])),
        ("outcome=trap".into(), set(&[i_panic])),
        ("outcome=rate_limited".into(), set(&[i_limited])),
        ("outcome=timeout".into(), set(&[])),
        ("action=echo".into(), set(&[i_echo_f1, i_echo_own])),
        (
            format!("connection_id={shared_probe}&outcome=ok"),
            set(&[i_echo_f1]),
        ),
        (
            format!("connection_id={gh}&limit=1"),
            set(&[i_user, i_limited]),
        ),
    ];
    for (query, expected) in filters {
        assert_eq!(
            m1.ids(&format!("/v1/invocations?{query}")).await,
            expected,
            "GET /v1/invocations?{query}"
        );
    }
    let walked: Vec<String> = m1
        .list_all("/v1/invocations?limit=1")
        .await
        .iter()
        .map(|i| text(&i["id"]))
        .collect();
    let whole: Vec<String> = listed.iter().map(|i| text(&i["id"])).collect();
    assert_eq!(walked, whole, "pages of one make the whole list");

    // An unknown invocation.
    expect_error(
        &m1.get(&format!("/v1/invocations/{}", made_up(i_user)))
            .await,
        404,
        "not_found",
        "an unknown invocation",
    );
}

// ------------------------------------------------------------------------------------------
// 5. The OpenAPI document

#[tokio::test]
async fn the_service_serves_the_openapi_document_of_its_source() {
    let _running = running();
    let ex = conforming(shared().anonymous().get("/v1/openapi.json").await);
    let served = expect(&ex, 200, "GET /v1/openapi.json");
    assert!(
        ex.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "content type {:?}",
        ex.header("content-type")
    );
    let source = openapi::load_document(&openapi::document_path());
    assert!(
        served == source,
        "the served document differs from host/src/api/openapi.json (is the binary stale?)"
    );
}

#[test]
fn the_routes_of_the_code_are_the_routes_of_the_document_both_ways() {
    let in_code = openapi::routes_in_source(&openapi::api_source_dir());
    let document = openapi::load_document(&openapi::document_path());
    openapi::assert_same_routes(&in_code, &openapi::routes_in_document(&document));
    let problems = openapi::document_problems(&document);
    assert!(
        problems.is_empty(),
        "host/src/api/openapi.json has problems:\n  {}",
        problems.join("\n  ")
    );
}

/// Every test above checks each response as it receives it; this sweep checks, once they
/// are done, every exchange this test binary recorded (the other modules' too). It is named
/// to run after the other API tests: libtest starts tests in name order, and this one
/// waits for those still running.
#[tokio::test]
async fn zz_every_response_recorded_in_this_test_binary_conforms_to_the_openapi_document() {
    let deadline = Instant::now() + Duration::from_secs(900);
    while RUNNING.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the other API tests are still running after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At least one exchange, when this test runs alone.
    shared().anonymous().get("/v1/openapi.json").await;
    let exchanges = service::exchanges();
    let problems: Vec<String> = exchanges.iter().filter_map(nonconformity).collect();
    assert!(
        problems.is_empty(),
        "{} of {} responses do not conform to the OpenAPI document:\n  {}",
        problems.len(),
        exchanges.len(),
        problems.join("\n  ")
    );
}
