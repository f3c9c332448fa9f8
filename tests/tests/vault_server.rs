//! The Vault harness against the real server (RustyVault), without Junction: set-up, the
//! KV version 1 and stand-in version 2 read shapes, AppRole logins, tokens, read counting,
//! outages and restarts, and the exact errors a client of the Vault API will meet.

#![allow(clippy::unwrap_used)]

use junction_tests::vault::VaultServer;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A client as Junction's would be: its own, never through a proxy.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `GET /v1/<path>` with `token` (none when empty): the status, the body as JSON (`null`
/// when empty) and the raw body.
async fn get(vault: &VaultServer, path: &str, token: &str) -> (u16, Value, String) {
    let mut request = client().get(format!("{}/v1/{path}", vault.address()));
    if !token.is_empty() {
        request = request.header("X-Vault-Token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body, text)
}

#[tokio::test]
async fn kv_version_1_and_the_version_2_read_shape() {
    let vault = VaultServer::start().await;
    let root = vault.root_token();

    vault
        .put_v1("db", json!({"username": "ada", "password": "s3cret"}))
        .await;
    let (status, body, _) = get(&vault, "kv/db", root).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"username": "ada", "password": "s3cret"})
    );
    assert_eq!(body["lease_duration"], 3600);

    assert_eq!(vault.put_v2("db", json!({"password": "v1"})).await, 1);
    assert_eq!(vault.put_v2("db", json!({"password": "v2"})).await, 2);
    let (status, body, _) = get(&vault, "kv2/data/db", root).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"], json!({"password": "v2"}));
    let metadata = &body["data"]["metadata"];
    assert_eq!(metadata["version"], 2, "{body}");
    assert_eq!(metadata["destroyed"], false);
    assert_eq!(metadata["deletion_time"], "");
    let created = metadata["created_time"].as_str().unwrap();
    assert!(
        created.len() == 30 && created.ends_with('Z') && &created[10..11] == "T",
        "{created}"
    );
    assert_eq!(
        body["data"].as_object().unwrap().len(),
        2,
        "only data and metadata: {body}"
    );

    // The v1 engine and the v2 stand-in are separate.
    let (status, _, _) = get(&vault, "kv/data/db", root).await;
    assert_eq!(status, 404);

    vault.delete("kv/db").await;
    vault.delete("kv2/data/db").await;
    assert_eq!(get(&vault, "kv/db", root).await.0, 404);
    assert_eq!(get(&vault, "kv2/data/db", root).await.0, 404);
}

#[tokio::test]
async fn approle_login_then_read() {
    let vault = VaultServer::start().await;
    vault.put_v1("api", json!({"token": "t0k3n"})).await;

    let (role_id, secret_id) = vault.approle().await;
    let (_, other_secret_id) = vault.approle().await;
    assert_ne!(secret_id, other_secret_id, "a fresh secret id each call");

    let response = client()
        .post(format!("{}/v1/auth/approle/login", vault.address()))
        .json(&json!({"role_id": role_id, "secret_id": secret_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let login: Value = response.json().await.unwrap();
    let auth = &login["auth"];
    let token = auth["client_token"].as_str().unwrap();
    assert_ne!(token, vault.root_token());
    assert_eq!(auth["lease_duration"], 30 * 24 * 3600, "{login}");
    assert_eq!(auth["renewable"], true, "{login}");
    assert_eq!(auth["metadata"]["role_name"], "junction", "{login}");

    let (status, body, _) = get(&vault, "kv/api", token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["token"], "t0k3n");

    // Both secret ids log in, more than once.
    for secret_id in [&secret_id, &other_secret_id, &secret_id] {
        let token = vault.login(&role_id, secret_id).await;
        assert_eq!(get(&vault, "kv/api", &token).await.0, 200);
    }
    assert_eq!(vault.requests("POST", "auth/approle/login"), 4);

    // A wrong secret id, a wrong role id: 400 with the reason.
    for (body, error) in [
        (
            json!({"role_id": role_id, "secret_id": "wrong"}),
            "invalid secret id",
        ),
        (
            json!({"role_id": "wrong", "secret_id": secret_id}),
            "invalid role_id",
        ),
    ] {
        let response = client()
            .post(format!("{}/v1/auth/approle/login", vault.address()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": error})
        );
    }
}

#[tokio::test]
async fn tokens_child_revoked_and_expiring() {
    let vault = VaultServer::start().await;
    vault.put_v1("db", json!({"password": "p"})).await;

    let child = vault.token_with_read_access().await;
    assert_ne!(child, vault.root_token());
    assert_eq!(get(&vault, "kv/db", &child).await.0, 200);

    // The Authorization header works as well as X-Vault-Token.
    let response = client()
        .get(format!("{}/v1/kv/db", vault.address()))
        .bearer_auth(&child)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    vault.revoke(&child).await;
    let (status, body, _) = get(&vault, "kv/db", &child).await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "Permission denied."}))
    );

    // Tokens with a TTL (a child token, an AppRole login) are refused once it runs out.
    let short = vault.token_with_ttl(Duration::from_secs(1)).await;
    let (role_id, secret_id) = vault.approle_with_token_ttl(Duration::from_secs(1)).await;
    let login = vault.login(&role_id, &secret_id).await;
    assert_eq!(get(&vault, "kv/db", &short).await.0, 200);
    assert_eq!(get(&vault, "kv/db", &login).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    for token in [&short, &login] {
        loop {
            let (status, body, _) = get(&vault, "kv/db", token).await;
            if status == 403 {
                assert_eq!(body, json!({"error": "Permission denied."}));
                break;
            }
            assert!(Instant::now() < deadline, "still {status} after its TTL");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn reads_are_counted_per_path() {
    let vault = VaultServer::start().await;
    let root = vault.root_token();
    vault.put_v1("counted", json!({"a": 1})).await;
    vault.put_v2("counted", json!({"a": 2})).await;
    assert_eq!(vault.reads("kv/counted"), 0, "writes are not reads");
    // The harness's own set-up reads are not counted.
    assert_eq!(vault.reads("kv/harness/probe"), 0);

    get(&vault, "kv/counted", root).await;
    get(&vault, "kv/counted", root).await;
    assert_eq!(vault.reads("kv/counted"), 2);
    assert_eq!(
        vault.reads("/v1/kv/counted"),
        2,
        "the /v1/ prefix is optional"
    );
    assert_eq!(vault.reads("kv2/data/counted"), 0);

    // Every read counts, whatever its answer; the query is not part of the path.
    get(&vault, "kv2/data/counted?version=1", root).await;
    get(&vault, "kv2/data/counted", "not-a-token").await;
    get(&vault, "kv/missing", root).await;
    assert_eq!(vault.reads("kv2/data/counted"), 2);
    assert_eq!(vault.reads("kv/missing"), 1);
    assert_eq!(vault.reads("kv/counted"), 2);
    assert_eq!(vault.requests("PUT", "kv/counted"), 1);

    // Many reads at once, each counted once.
    let reads = (0..20).map(|_| get(&vault, "kv/counted", root));
    futures_util::future::join_all(reads).await;
    assert_eq!(vault.reads("kv/counted"), 22);
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_serves_again() {
    let mut vault = VaultServer::start().await;
    vault.put_v1("db", json!({"password": "before"})).await;
    vault.put_v2("db", json!({"password": "before"})).await;
    let (role_id, secret_id) = vault.approle().await;
    let token = vault.login(&role_id, &secret_id).await;
    let address = vault.address();
    let pid = vault.pid().unwrap();

    vault.stop();
    assert_eq!(vault.pid(), None);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
    let error = client()
        .get(format!("{address}/v1/kv/db"))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let refused = std::net::TcpStream::connect(("127.0.0.1", vault.port())).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    vault.restart().await;
    assert_eq!(vault.address(), address, "the same port");
    assert_ne!(vault.pid(), Some(pid));
    // The secrets, the tokens and the AppRole credentials survived.
    let (status, body, _) = get(&vault, "kv/db", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["password"], "before");
    let (status, body, _) = get(&vault, "kv2/data/db", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["metadata"]["version"], 1);
    let token = vault.login(&role_id, &secret_id).await;
    assert_eq!(get(&vault, "kv/db", &token).await.0, 200);
    // Reads before and after the restart count.
    assert_eq!(vault.reads("kv/db"), 2);

    // Twice in a row works too, and a restart of a stopped server.
    vault.restart().await;
    vault.stop();
    vault.restart().await;
    assert_eq!(get(&vault, "kv/db", vault.root_token()).await.0, 200);
}

#[tokio::test]
async fn the_errors_a_client_meets() {
    let vault = VaultServer::start().await;
    let root = vault.root_token();
    vault.put_v1("db", json!({"password": "p"})).await;

    // A missing secret: 404 with an empty body (v1 and the v2 stand-in alike).
    for path in ["kv/missing", "kv2/data/missing"] {
        let (status, _, text) = get(&vault, path, root).await;
        assert_eq!((status, text.as_str()), (404, ""), "{path}");
    }
    // A path under no mount: 404 with a reason.
    let (status, body, _) = get(&vault, "nowhere/db", root).await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "Router mount not found."}))
    );
    // A wrong token: 403; no token: 400.
    let (status, body, _) = get(&vault, "kv/db", "not-a-token").await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "Permission denied."}))
    );
    let (status, body, _) = get(&vault, "kv/db", "").await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Request client token is missing."}))
    );
    // Sealed: 503 until unsealed.
    vault.seal().await;
    let (status, body, _) = get(&vault, "kv/db", root).await;
    assert_eq!(
        (status, body),
        (503, json!({"error": "RustyVault is sealed."}))
    );
    vault.unseal().await;
    assert_eq!(get(&vault, "kv/db", root).await.0, 200);
    // No policy endpoints.
    assert_eq!(get(&vault, "sys/policy/default", root).await.0, 404);
}

#[tokio::test]
async fn servers_start_in_parallel() {
    let started = Instant::now();
    let servers = futures_util::future::join_all((0..4).map(|_| VaultServer::start())).await;
    let elapsed = started.elapsed();
    let mut ports: Vec<u16> = servers.iter().map(VaultServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "distinct ports");
    for vault in &servers {
        vault.put_v1("db", json!({"port": vault.port()})).await;
        let (status, body, _) = get(vault, "kv/db", vault.root_token()).await;
        assert_eq!((status, &body["data"]["port"]), (200, &json!(vault.port())));
    }
    eprintln!("4 servers started in {elapsed:?}");
}
