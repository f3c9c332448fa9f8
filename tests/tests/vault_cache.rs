//! The credential cache of `junction::vault` against a real Vault API server (RustyVault,
//! see `junction_tests::vault`), in this process, on a [`ManualClock`]: one read per secret
//! per hour however often and however concurrently it is resolved, cached values served
//! while the vault is down (for the hour at most), a value read again when the API refuses
//! it (once, whoever asks), and the KV version 2 layout, AppRole logins and the errors a
//! reference can meet.

#![allow(clippy::unwrap_used)]

use junction::api::Metrics;
use junction::capabilities::http::ClientOptions;
use junction::capabilities::proxy::ProxySetting;
use junction::credentials::Secret;
use junction::vault::cache::TTL;
use junction::vault::{
    CredentialRef, CredentialStores, KvVersion, ManualClock, ResolveError, StoreAuth, StoreSettings,
};
use junction_tests::vault::{KV_V1_MOUNT, KV_V2_MOUNT, VaultServer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const STORE: &str = "corp";

/// A store named [`STORE`] on `vault`, never through a proxy (whatever the developer's
/// environment says).
fn settings(
    vault: &VaultServer,
    mount: &str,
    kv_version: KvVersion,
    auth: StoreAuth,
) -> StoreSettings {
    StoreSettings {
        name: STORE.to_owned(),
        address: vault.address().parse().unwrap(),
        auth,
        mount: mount.to_owned(),
        kv_version,
        namespace: None,
        timeout: Duration::from_secs(5),
        client: ClientOptions {
            proxy: ProxySetting::Direct,
            ..ClientOptions::new(Duration::from_secs(2), junction_tests::loopback_egress())
        },
        tenants: junction::vault::StoreTenants::All,
        path_prefix: None,
    }
}

/// The KV version 1 store with the root token.
fn v1_store(vault: &VaultServer) -> StoreSettings {
    settings(
        vault,
        KV_V1_MOUNT,
        KvVersion::V1,
        StoreAuth::Token(Secret::new(vault.root_token())),
    )
}

/// The stores of `settings` on a clock of their own, with a read counter of their own.
fn stores(settings: StoreSettings) -> (Arc<CredentialStores>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let stores = CredentialStores::new(
        vec![settings],
        clock.clone(),
        Metrics::new().credential_store_reads(),
    )
    .unwrap();
    (Arc::new(stores), clock)
}

fn reference(path: &str, key: &str) -> CredentialRef {
    CredentialRef {
        store: STORE.to_owned(),
        path: path.to_owned(),
        key: key.to_owned(),
    }
}

async fn value(stores: &CredentialStores, r: &CredentialRef) -> String {
    stores
        .resolve(r)
        .await
        .unwrap_or_else(|e| panic!("{r}: {e}"))
        .value
        .expose()
        .to_owned()
}

#[tokio::test]
async fn a_secret_is_read_once_an_hour() {
    let vault = VaultServer::start().await;
    vault.put_v1("team/api", json!({"key": "first"})).await;
    let (stores, clock) = stores(v1_store(&vault));
    let r = reference("team/api", "key");

    assert_eq!(value(&stores, &r).await, "first");
    assert_eq!(vault.reads("kv/team/api"), 1);
    assert_eq!(stores.reads(), 1);

    for _ in 0..100 {
        assert_eq!(value(&stores, &r).await, "first");
    }
    assert_eq!(
        vault.reads("kv/team/api"),
        1,
        "100 more resolves are cache hits"
    );
    assert_eq!(stores.reads(), 1);

    // Rotated in the vault: the cache keeps the value it read for the rest of its hour.
    vault.put_v1("team/api", json!({"key": "second"})).await;
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(value(&stores, &r).await, "first");
    assert_eq!(vault.reads("kv/team/api"), 1, "at 59 min 59 s still cached");
    assert_eq!(stores.reads(), 1);

    clock.advance(Duration::from_secs(1));
    assert_eq!(value(&stores, &r).await, "second", "read again at the hour");
    assert_eq!(vault.reads("kv/team/api"), 2);
    assert_eq!(stores.reads(), 2);

    // The new value starts a new hour.
    for _ in 0..10 {
        assert_eq!(value(&stores, &r).await, "second");
    }
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(value(&stores, &r).await, "second");
    assert_eq!(vault.reads("kv/team/api"), 2);
    assert_eq!(stores.reads(), 2);
}

/// `n` resolves of `r` started at once on several threads; the values and generations.
async fn burst(stores: &Arc<CredentialStores>, r: &CredentialRef, n: usize) -> Vec<(String, u64)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (stores, r, barrier) = (stores.clone(), r.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let resolved = stores.resolve(&r).await.unwrap_or_else(|e| panic!("{e}"));
                (resolved.value.expose().to_owned(), resolved.generation)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.push(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_resolves_of_an_uncached_secret_share_one_read() {
    let vault = VaultServer::start().await;
    vault.put_v1("team/db", json!({"password": "p1"})).await;
    let (stores, clock) = stores(v1_store(&vault));
    let r = reference("team/db", "password");

    let all = burst(&stores, &r, 200).await;
    assert!(all.iter().all(|v| *v == all[0]), "{all:?}");
    assert_eq!(all[0].0, "p1");
    assert_eq!(
        vault.reads("kv/team/db"),
        1,
        "200 concurrent resolves, one read"
    );
    assert_eq!(stores.reads(), 1);

    // The same when the hour is over and every caller finds the entry expired at once.
    vault.put_v1("team/db", json!({"password": "p2"})).await;
    clock.advance(TTL);
    let all = burst(&stores, &r, 200).await;
    assert!(all.iter().all(|v| *v == all[0]), "{all:?}");
    assert_eq!(all[0].0, "p2");
    assert_eq!(
        vault.reads("kv/team/db"),
        2,
        "one read for the expired entry"
    );
    assert_eq!(stores.reads(), 2);
}

#[tokio::test]
async fn a_cached_value_outlives_an_outage_for_the_rest_of_its_hour_only() {
    let mut vault = VaultServer::start().await;
    vault.put_v1("team/cached", json!({"token": "t1"})).await;
    vault.put_v1("team/uncached", json!({"token": "u1"})).await;
    let (stores, clock) = stores(v1_store(&vault));
    let cached = reference("team/cached", "token");
    let uncached = reference("team/uncached", "token");
    assert_eq!(value(&stores, &cached).await, "t1");

    vault.stop();
    clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(value(&stores, &cached).await, "t1", "served from the cache");

    let e = stores.resolve(&uncached).await.unwrap_err();
    let message = e.to_string();
    println!("vault down, uncached: {message}");
    let ResolveError::Unavailable { store, cause } = &e else {
        panic!("expected Unavailable, got {e:?}");
    };
    assert_eq!(store, STORE);
    assert!(
        message.contains(&format!("`{STORE}`")) && message.contains(cause.as_str()),
        "{message}"
    );
    assert!(
        cause.contains("cannot reach") && cause.contains(&vault.port().to_string()),
        "the cause says the vault cannot be reached, and where: {message}"
    );

    // The hour of the cached value ends while the vault is still down: no stale value.
    clock.advance(Duration::from_secs(30 * 60));
    let e = stores.resolve(&cached).await.unwrap_err();
    assert!(
        matches!(&e, ResolveError::Unavailable { store, .. } if store == STORE),
        "{e:?}"
    );
    assert_eq!(stores.reads(), 3, "the first read and two failed ones");

    // Back up: read again, and cached again.
    vault.restart().await;
    assert_eq!(value(&stores, &cached).await, "t1");
    assert_eq!(value(&stores, &cached).await, "t1");
    assert_eq!(value(&stores, &uncached).await, "u1");
    assert_eq!(vault.reads("kv/team/cached"), 2);
    assert_eq!(vault.reads("kv/team/uncached"), 1);
    assert_eq!(stores.reads(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_refused_value_is_read_again_once_whoever_reports_it() {
    let vault = VaultServer::start().await;
    vault.put_v1("team/svc", json!({"key": "old"})).await;
    let (stores, clock) = stores(v1_store(&vault));
    let r = reference("team/svc", "key");

    let first = stores.resolve(&r).await.unwrap();
    assert_eq!(first.value.expose(), "old");
    assert_eq!(vault.reads("kv/team/svc"), 1);

    vault.put_v1("team/svc", json!({"key": "new"})).await;
    let renewed = stores
        .reresolve(&r, first.generation, &first.value)
        .await
        .unwrap();
    assert_eq!(renewed.value.expose(), "new");
    assert_ne!(renewed.generation, first.generation);
    assert_eq!(vault.reads("kv/team/svc"), 2, "one extra read");
    assert_eq!(stores.reads(), 2);

    // Another caller that was refused the old value: the new one is kept, not read again.
    let again = stores
        .reresolve(&r, first.generation, &first.value)
        .await
        .unwrap();
    assert_eq!(again.value.expose(), "new");
    assert_eq!(again.generation, renewed.generation);
    assert_eq!(
        vault.reads("kv/team/svc"),
        2,
        "the old generation reads nothing"
    );
    assert_eq!(stores.reads(), 2);

    // 100 callers refused the same value at once: one read between them.
    vault.put_v1("team/svc", json!({"key": "newer"})).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (stores, r, barrier) = (stores.clone(), r.clone(), barrier.clone());
            let (generation, refused) = (renewed.generation, renewed.value.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let resolved = stores.reresolve(&r, generation, &refused).await.unwrap();
                (resolved.value.expose().to_owned(), resolved.generation)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    assert!(all.iter().all(|v| *v == all[0]), "{all:?}");
    assert_eq!(all[0].0, "newer");
    assert_eq!(
        vault.reads("kv/team/svc"),
        3,
        "100 concurrent reresolves, one read"
    );
    assert_eq!(stores.reads(), 3);

    // The API keeps refusing a value the vault still holds: one read finds it unchanged,
    // then refusals read nothing until the pause is over.
    let held = stores
        .reresolve(&r, all[0].1, &Secret::new("newer"))
        .await
        .unwrap();
    assert_eq!(held.value.expose(), "newer");
    assert_eq!(vault.reads("kv/team/svc"), 4, "the refusal reads once");
    for _ in 0..20 {
        let again = stores
            .reresolve(&r, held.generation, &held.value)
            .await
            .unwrap();
        assert_eq!(again.generation, held.generation);
    }
    assert_eq!(vault.reads("kv/team/svc"), 4, "held: no read per refusal");
    clock.advance(junction::vault::cache::REREAD_PAUSE);
    stores
        .reresolve(&r, held.generation, &held.value)
        .await
        .unwrap();
    assert_eq!(vault.reads("kv/team/svc"), 5, "after the pause, one read");
}

#[tokio::test]
async fn kv_version_2_with_approle_and_the_errors_of_a_reference() {
    let vault = VaultServer::start().await;
    vault
        .put_v2(
            "team/db",
            json!({"password": "p1", "port": 5432, "user": "ada"}),
        )
        .await;
    let (role_id, secret_id) = vault.approle().await;
    let auth = StoreAuth::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: Secret::new(secret_id),
    };
    let (stores, clock) = stores(settings(&vault, KV_V2_MOUNT, KvVersion::V2, auth));

    assert_eq!(
        value(&stores, &reference("team/db", "password")).await,
        "p1"
    );
    assert_eq!(value(&stores, &reference("team/db", "user")).await, "ada");
    assert_eq!(vault.reads("kv2/data/team/db"), 1);
    assert_eq!(vault.requests("POST", "auth/approle/login"), 1);

    // A key the secret lacks, and a value that is not a string: from the cached secret.
    // The missing key's error names the key, not the secret's other keys (they are not
    // the caller's to see).
    let e = stores
        .resolve(&reference("team/db", "passwd"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ResolveError::MissingKey {
            store: STORE.into(),
            path: "team/db".into(),
            key: "passwd".into(),
        }
    );
    let message = e.to_string();
    assert!(
        message.contains("`passwd`") && message.contains(&format!("`{STORE}`")),
        "{message}"
    );
    assert!(
        !message.contains("password") && !message.contains("user"),
        "{message}"
    );
    let e = stores
        .resolve(&reference("team/db", "port"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ResolveError::NotACredential {
            store: STORE.into(),
            path: "team/db".into(),
            key: "port".into(),
        }
    );
    assert_eq!(vault.reads("kv2/data/team/db"), 1);

    // A path with no secret.
    let e = stores
        .resolve(&reference("team/nothing", "password"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ResolveError::NotFound {
            store: STORE.into(),
            path: "team/nothing".into(),
        }
    );
    assert!(e.is_reference_problem());

    // A new version after the hour; the AppRole token is reused.
    vault.put_v2("team/db", json!({"password": "p2"})).await;
    clock.advance(TTL);
    assert_eq!(
        value(&stores, &reference("team/db", "password")).await,
        "p2"
    );
    assert_eq!(vault.reads("kv2/data/team/db"), 2);
    assert_eq!(vault.requests("POST", "auth/approle/login"), 1);
    assert_eq!(
        stores.reads(),
        3,
        "two reads of team/db, one of team/nothing"
    );
}
