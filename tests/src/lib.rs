//! Shared pieces of the end-to-end tests: the built components, one engine per test
//! binary, a local HTTP API to call, a capture of everything logged, and for OAuth 2.0 a
//! real authorization server, a browser that consents, and a resource API it protects; for
//! credential assets a real server of the HashiCorp Vault API (RustyVault).

#![allow(clippy::unwrap_used)]

pub mod api;
pub mod browser;
pub mod inprocess;
pub mod logs;
pub mod oauth;
pub mod openapi;
pub mod proxy;
pub mod resource;
pub mod service;
pub mod vault;

use junction::egress::EgressPolicy;
use junction::runtime::{
    ConnectionSpec, Connector, EngineOptions, Limits, PreparedConnection, Runtime,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Paths of the components built by the artifacts step.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// The egress policy of the suite's in-process runtimes and services: the default (the
/// public internet) with loopback opened, as an operator would open it, for the servers
/// the tests start there.
pub fn loopback_egress() -> Arc<EgressPolicy> {
    Arc::new(EgressPolicy::new(EgressPolicy::loopback().to_vec()))
}

/// The engine shared by every test of a binary (its connectors may reach loopback).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        logs::install();
        Runtime::new(
            EngineOptions::default(),
            Limits::default(),
            loopback_egress(),
        )
        .unwrap()
    })
}

/// A runtime on the shared engine with `limits`, and an HTTP client of its own (so pooled
/// connections do not outlive the test's async runtime).
pub fn runtime_with(limits: Limits) -> Runtime {
    runtime().with_limits(limits).unwrap()
}

/// Loads a component once per test binary.
pub async fn connector(path: &str) -> Connector {
    static CACHE: OnceLock<Mutex<HashMap<String, Connector>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(path) {
        return c.clone();
    }
    let loaded = runtime()
        .load_file(std::path::Path::new(path))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cache
        .lock()
        .unwrap()
        .insert(path.to_owned(), loaded.clone());
    loaded
}

/// A connection from `{"auth": …, "fields": {…}}`.
pub fn connection(connector: &Connector, spec: serde_json::Value) -> Arc<PreparedConnection> {
    let spec: ConnectionSpec = serde_json::from_value(spec).unwrap();
    connector.prepare(&spec).unwrap_or_else(|e| panic!("{e}"))
}

/// A benchmark's numeric flag (`--name N`), or `default`.
pub fn bench_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves `app` on `listener` in the background until the returned sender is dropped
/// (then it stops gracefully): keep it in the value that owns the server.
pub fn serve_until_dropped(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    stop
}
