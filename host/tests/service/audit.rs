//! The audit log: administrators' and operators' acts, and their attempts, recorded with
//! who (and with which token), what, on what, when and how they ended; read by a tenant's
//! administrators (their tenant's) and operators (everything), over the API and the CLI;
//! never a secret.

use crate::bin;
use junction_tests::components;
use junction_tests::service::{self, Client, Exchange, Service};
use serde_json::{Value, json};
use std::process::Command;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[track_caller]
fn expect(ex: &Exchange, status: u16) -> Value {
    assert_eq!(ex.status, status, "{} {}: {}", ex.method, ex.path, ex.text);
    ex.json()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Every event `client` may read, following the pages (`query` filters them).
async fn events(client: &Client, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit?limit=2&{query}&cursor={c}"),
            None => format!("/v1/audit?limit=2&{query}"),
        };
        let page = expect(&client.get(&path).await, 200);
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// The one event of `action` on `target` among `events`.
#[track_caller]
fn event<'e>(events: &'e [Value], action: &str, outcome: &str) -> &'e Value {
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == action && e["outcome"] == outcome)
        .collect();
    assert_eq!(found.len(), 1, "{action} {outcome} in {events:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acts_are_recorded_with_who_what_when_and_how_they_ended_and_never_a_secret() {
    let dir = service::data_dir("audit");
    let acme = blocking(|| service::create_tenant(bin(), &dir, "acme", "ada"));
    let bravo = blocking(|| service::create_tenant(bin(), &dir, "bravo", "bea"));
    let operator = blocking(|| service::create_operator(bin(), &dir, "ops"));
    let service = blocking(|| Service::start(bin(), &dir, &["--health-check-interval", "0"]))
        .unwrap_or_else(|e| panic!("{e}"));
    let ada = service.client(acme["token"]["token"].as_str().unwrap());
    let ada_token_id = text(&acme["token"]["id"]);
    let ada_id = text(&acme["principal"]["id"]);
    let acme_id = text(&acme["tenant"]["id"]);
    let bea = service.client(bravo["token"]["token"].as_str().unwrap());
    let ops = service.client(operator["token"].as_str().unwrap());

    // An administrator's acts.
    let created = expect(
        &ada.post("/v1/principals", json!({"name": "bob", "role": "member"}))
            .await,
        201,
    );
    let bob_id = text(&created["principal"]["id"]);
    let bob = service.client(created["token"]["token"].as_str().unwrap());
    let folder = text(&expect(&ada.post("/v1/folders", json!({"name": "ops"})).await, 201)["id"]);
    expect(
        &ada.put(
            &format!("/v1/folders/{folder}/grants/{bob_id}"),
            json!({"permissions": ["view", "use"]}),
        )
        .await,
        200,
    );
    expect(
        &ada.patch(
            "/v1/tenant",
            json!({"members_can_create_shared_connections": false}),
        )
        .await,
        200,
    );
    // A member's attempts: refused, and recorded as theirs.
    expect(
        &bob.post("/v1/principals", json!({"name": "eve", "role": "admin"}))
            .await,
        403,
    );
    expect(
        &bob.post(
            "/v1/connections",
            json!({"connector": "probe", "name": "sneaky", "auth": "header-key",
                   "fields": {"api_key": {"store": "corp", "path": "team/x", "key": "k"}}}),
        )
        .await,
        403,
    );
    // Not acts: reading, and a member's own plain connection.
    expect(&ada.get("/v1/principals").await, 200);
    expect(
        &bob.post(
            "/v1/connections",
            json!({"connector": "http", "name": "plain", "auth": "none",
                   "fields": {"base_url": "https://api.example.com"}}),
        )
        .await,
        201,
    );

    // An operator's acts on acme, and a secret that must appear nowhere.
    let secret = "tenant-app-S3cret-never-audited-5c1f";
    expect(
        &ops.put(
            &format!("/v1/tenants/{acme_id}/policy"),
            json!({"disabled_connectors": ["github"]}),
        )
        .await,
        200,
    );
    expect(
        &ops.put(
            &format!("/v1/tenants/{acme_id}/oauth-apps/github"),
            json!({"client_id": "Iv1.acme", "client_secret": secret, "scopes": ["repo"]}),
        )
        .await,
        200,
    );
    let wasm = std::fs::read(components::HTTP).unwrap();
    let published = ops
        .send_raw(
            "POST",
            "/v1/catalog/versions",
            Some("application/wasm"),
            wasm,
        )
        .await;
    let published = expect(&published, 200);
    // An administrator trying an operator's act: refused, recorded.
    expect(
        &ada.put(
            &format!("/v1/tenants/{acme_id}/policy"),
            json!({"disabled_connectors": []}),
        )
        .await,
        403,
    );

    // ada reads acme's log: her acts, bob's attempts, the operator's acts on acme, the
    // tenant's creation by `junction admin`; nothing of bravo's.
    let log = events(&ada, "").await;
    let principal = event(&log, "principal.create", "ok");
    assert_eq!(principal["actor"]["kind"], "principal");
    assert_eq!(principal["actor"]["id"], ada_id.as_str());
    assert_eq!(principal["actor"]["name"], "ada");
    assert_eq!(principal["actor"]["token_id"], ada_token_id.as_str());
    assert_eq!(principal["target"], bob_id.as_str());
    assert_eq!(principal["details"]["role"], "member");
    assert_eq!(principal["status"], 201);
    assert_eq!(principal["tenant_id"], acme_id.as_str());
    assert!(
        principal["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_"))
    );
    let grant = event(&log, "grant.set", "ok");
    assert_eq!(grant["target"], format!("{folder}/{bob_id}"));
    assert_eq!(grant["details"]["permissions"], json!(["view", "use"]));
    event(&log, "folder.create", "ok");
    event(&log, "tenant.update", "ok");
    let refused = event(&log, "principal.create", "refused");
    assert_eq!(refused["actor"]["id"], bob_id.as_str());
    assert_eq!(refused["error_code"], "forbidden");
    let reference = event(&log, "connection.reference_secret", "refused");
    assert_eq!(
        reference["details"]["references"]["api_key"],
        "corp:team/x#k"
    );
    let policy = event(&log, "policy.set", "ok");
    assert_eq!(policy["actor"]["kind"], "operator");
    assert_eq!(policy["details"]["disabled_connectors"], json!(["github"]));
    let app = event(&log, "tenant_oauth_app.set", "ok");
    assert_eq!(app["details"]["client_secret_set"], true);
    assert_eq!(app["target"], format!("{acme_id}/github"));
    let tried = event(&log, "policy.set", "refused");
    assert_eq!(tried["actor"]["id"], ada_id.as_str());
    assert_eq!(tried["error_code"], "operator_only");
    let created_locally = event(&log, "tenant.create", "ok");
    assert_eq!(created_locally["actor"]["kind"], "local");
    assert_eq!(created_locally["details"]["admin"], "ada");
    assert!(
        log.iter().all(|e| e["tenant_id"] == acme_id.as_str()),
        "{log:#?}"
    );
    // Those ten, and nothing else: reads and a member's own connection are not acts.
    assert_eq!(log.len(), 10, "{log:#?}");

    // Filters; another tenant's id lists nothing, like an unknown one.
    let refusals = events(&ada, "outcome=refused").await;
    assert_eq!(refusals.len(), 3, "{refusals:#?}");
    let bravo_id = text(&bravo["tenant"]["id"]);
    assert!(
        events(&ada, &format!("tenant_id={bravo_id}"))
            .await
            .is_empty()
    );
    assert!(
        events(&ada, "tenant_id=ten_00000000000000000000000000")
            .await
            .is_empty()
    );
    assert_eq!(events(&ada, &format!("actor_id={bob_id}")).await.len(), 2);
    assert!(events(&ada, "since=2999-01-01T00:00:00Z").await.is_empty());
    let bad = ada.get("/v1/audit?since=yesterday").await;
    assert_eq!(expect(&bad, 400)["error"]["details"]["parameter"], "since");
    // A member may not read it; bravo's administrator sees only bravo's.
    expect(&bob.get("/v1/audit").await, 403);
    let bravos = events(&bea, "").await;
    assert!(
        bravos.iter().all(|e| e["tenant_id"] == bravo_id.as_str()),
        "{bravos:#?}"
    );
    // The operator reads everything, the catalog's acts too.
    let all = events(&ops, "").await;
    let publish = event(&all, "catalog.publish", "ok");
    assert_eq!(publish["tenant_id"], Value::Null);
    assert_eq!(
        publish["target"],
        format!(
            "{}@{}",
            text(&published["name"]),
            text(&published["version"])
        )
    );
    assert_eq!(publish["details"]["already_published"], true);
    assert!(all.iter().any(|e| e["tenant_id"] == bravo_id.as_str()));
    assert!(all.iter().any(|e| e["action"] == "operator.create"));
    assert_eq!(
        events(&ops, &format!("tenant_id={bravo_id}")).await.len(),
        1
    );

    // The CLI reads the same log.
    let cli = blocking(|| {
        Command::new(bin())
            .args([
                "audit",
                "list",
                "--action",
                "grant.set",
                "--server",
                &service.url,
            ])
            .env("JUNCTION_TOKEN", acme["token"]["token"].as_str().unwrap())
            .output()
            .unwrap()
    });
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        out.lines().next().is_some_and(|h| h.starts_with("TIME")) && out.contains("grant.set"),
        "{out}"
    );
    assert!(out.contains(&format!("ada ({ada_id})")), "{out}");

    // Never the secret: not in the log's answers, not in the database in clear.
    let everything: String = [&log, &all, &bravos]
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(!everything.contains(secret));
    let mut service = service;
    assert!(service.stop().success());
    for (path, bytes) in service::files_under(&dir) {
        assert!(
            !service::contains(&bytes, secret),
            "{} holds the secret",
            path.display()
        );
    }
}
