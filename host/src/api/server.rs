//! `junction serve`: open the store, load the connectors, serve the API until a signal,
//! then let requests in flight finish and close the store.

use super::{Metrics, Service, router};
use crate::catalog::{Catalog, CatalogError};
use crate::config::ServeConfig;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{DataDirLock, InvocationLog, Store, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    CredentialStore(#[from] crate::vault::StoreSetupError),
    #[error(
        "credential store `{store}` does not say which tenants may use it, and {connections} connection(s) reference it. A store is now closed to every tenant until the operator lists them: add `tenants = [\"ten_…\", …]` (the tenants that may use it) or `tenants = \"*\"` (every tenant) to [credential_stores.{store}]"
    )]
    CredentialStoreTenants { store: String, connections: i64 },
}

/// How long cut requests and the invocation log get to wind down after the grace period.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Listens for SIGTERM and Ctrl-C from the moment it is called, and resolves when one
/// arrives. The handlers are installed at once, not when the future is first polled:
/// a signal sent right after the `listening` line must stop the service gracefully, not
/// kill it with the default action.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
        signal(kind)
            .map_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
            .ok()
    }
    async fn arrival(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let term = listen(SignalKind::terminate(), "SIGTERM");
    let interrupt = listen(SignalKind::interrupt(), "Ctrl-C");
    async move {
        tokio::select! {
            () = arrival(term) => {}
            () = arrival(interrupt) => {}
        }
    }
}

#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

/// Logs the credential stores, and stops the start when connections reference a store that
/// says nothing of its tenants: such a store is closed to every tenant, and an
/// installation from before `tenants` existed must not lose its connections silently.
async fn check_credential_store_tenants(
    store: &Store,
    vaults: &crate::vault::CredentialStores,
) -> Result<(), ServeError> {
    use crate::vault::StoreTenants;
    let usage = store.credential_store_usage().await?;
    for s in vaults.stores() {
        tracing::info!(store = %s.name, address = %s.address, auth = s.auth.method(), mount = %s.mount, path_prefix = s.path_prefix.as_deref().unwrap_or(""), "credential store configured");
        let used: Vec<&(String, String, i64)> = usage
            .iter()
            .filter(|(name, _, _)| *name == s.name)
            .collect();
        match &s.tenants {
            StoreTenants::Unset => {
                let connections: i64 = used.iter().map(|(_, _, n)| n).sum();
                if connections > 0 {
                    return Err(ServeError::CredentialStoreTenants {
                        store: s.name.clone(),
                        connections,
                    });
                }
                tracing::warn!(store = %s.name, "credential store: no `tenants` setting, so no tenant may use it; list tenant ids, or write tenants = \"*\"");
            }
            StoreTenants::All => {}
            StoreTenants::Only(ids) => {
                // A typo (or a tenant's name for its id) would close the store silently.
                for id in ids {
                    if store.tenant(id).await?.is_none() {
                        tracing::warn!(store = %s.name, tenant = %id, "credential store: `tenants` names no tenant of this service (give tenant ids, `ten_…`)");
                    }
                }
            }
        }
        for (_, tenant, connections) in used {
            if !s.open_to(tenant) {
                tracing::warn!(store = %s.name, tenant = %tenant, connections, "credential store: connections of a tenant it is not open to reference it; they fail until the operator opens it or they are edited");
            }
        }
    }
    Ok(())
}

/// How often the audit log's old events are removed.
const AUDIT_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Removes audit events older than `keep`, now and every [`AUDIT_PRUNE_EVERY`], until
/// `stop` turns true.
async fn prune_audit_log(
    store: Store,
    keep: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let before =
            crate::store::Timestamp(crate::store::Timestamp::now().0.saturating_sub(keep_ms));
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "audit log: removed events past the retention"),
            Err(e) => tracing::warn!(error = %e, "audit log: cannot remove old events"),
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_PRUNE_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Runs the service until it is asked to stop.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let lock = DataDirLock::acquire(&config.store.data_dir)?;
    let (store, report) = Store::open(&config.store, Some(&lock)).await?;
    if let Some(path) = &report.created_key_file {
        tracing::warn!(
            key_file = %path.display(),
            "created a new encryption key for this data directory; back it up apart from the database: without it the stored secrets cannot be read"
        );
    }
    if report.completed_rotation {
        tracing::warn!("completed a key rotation that had been interrupted");
    }
    tracing::info!(database = %store.database_path().display(), key = store.key_id(), "store open");

    let egress = Arc::new(config.egress.policy());
    if !config.egress.allow.is_empty() {
        let opened: Vec<String> = config
            .egress
            .allow
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(allow = %opened.join(", "), "egress: address ranges opened besides the public internet");
    }
    if config.egress.proxy_enforces {
        tracing::warn!(
            "egress: names reached through a forward proxy are not checked here; the proxy must enforce the egress policy"
        );
    }
    let runtime = Runtime::new(config.engine.clone(), config.limits.clone(), egress.clone())?;
    let started = std::time::Instant::now();
    let catalog = Catalog::open(
        &runtime,
        &store,
        &config.store.data_dir,
        config.max_component_bytes,
    )
    .await?;
    catalog.publish_and_install(&config.connectors).await?;
    tracing::info!(
        connectors = catalog.running().len(),
        load_ms = started.elapsed().as_secs_f64() * 1e3,
        "catalog ready"
    );
    if catalog.is_empty() {
        tracing::warn!(
            "no connectors installed; pass component files or directories with --connectors, or publish and install with `junction connector`"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ServeError::Serve)?;
    // Whatever the allow-list opens, a tenant never reaches the service itself.
    egress.add_own_listener(address);
    let metrics_listener = match config.metrics_listen {
        Some(at) => {
            let listener =
                tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|source| ServeError::Listen {
                        address: at,
                        source,
                    })?;
            let bound = listener.local_addr().map_err(ServeError::Serve)?;
            egress.add_own_listener(bound);
            tracing::info!(address = %bound, "metrics listening");
            Some(listener)
        }
        None => None,
    };
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let oauth = crate::auth::OAuth::new(
        store.clone(),
        crate::capabilities::http::HttpClient::new(config.limits.connect_timeout, egress.clone()),
        config.oauth_apps.clone(),
        &public_url,
    );
    let metrics = Metrics::new();
    let vaults = crate::vault::CredentialStores::new(
        config.credential_stores.clone(),
        Arc::new(crate::vault::SystemClock::default()),
        metrics.credential_store_reads(),
    )?
    .with_reread_pause(config.credential_reread_pause);
    check_credential_store_tenants(&store, &vaults).await?;
    let (invocations, invocation_writer) = InvocationLog::start(store.clone());
    let service = Arc::new(Service::new(super::Parts {
        store: store.clone(),
        invocations,
        runtime,
        oauth,
        vaults,
        catalog,
        metrics,
        max_body_bytes: config.max_body_bytes,
        metrics_elsewhere: config.metrics_listen.is_some(),
    }));

    let stop_requested = stop_signal();
    tracing::info!(address = %address, url = %format!("http://{address}"), redirect_uri = service.oauth.redirect_uri(), "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = config.health_check_interval.map(|interval| {
        tokio::spawn(crate::connections::health_loop(
            service.connections.clone(),
            interval,
            stop_rx.clone(),
        ))
    });

    let metrics = metrics_listener.map(|listener| {
        let mut stop_seen = stop_rx.clone();
        let app = super::metrics_router(service.clone());
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_seen.wait_for(|stop| *stop).await;
                })
                .into_future(),
        )
    });

    let retention = config
        .audit_retention
        .map(|keep| tokio::spawn(prune_audit_log(store.clone(), keep, stop_rx.clone())));

    let mut stop_seen = stop_rx.clone();
    let server = axum::serve(listener, router(service.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_seen.wait_for(|stop| *stop).await;
        })
        .into_future();
    let mut server = tokio::spawn(server);
    let outcome = tokio::select! {
        result = &mut server => Some(result),
        () = stop_requested => None,
    };
    let result = match outcome {
        Some(result) => result,
        None => {
            tracing::info!(
                grace_seconds = config.shutdown_grace.as_secs(),
                "stopping: no new connections; requests in flight may finish"
            );
            let _ = stop_tx.send(true);
            match tokio::time::timeout(config.shutdown_grace, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "requests still running after the grace period; cutting them (503)"
                    );
                    let _ = service.cut.send(true);
                    match tokio::time::timeout(CUT_WAIT, &mut server).await {
                        Ok(result) => result,
                        Err(_) => {
                            server.abort();
                            Ok(Ok(()))
                        }
                    }
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    if let Some(metrics) = metrics
        && tokio::time::timeout(CUT_WAIT, metrics).await.is_err()
    {
        tracing::warn!("the metrics listener did not stop in time");
    }
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(health) = health
        && tokio::time::timeout(CUT_WAIT, health).await.is_err()
    {
        tracing::warn!("the health check did not stop in time");
    }
    // The last handle of the invocation log goes with the service; its writer then drains
    // what is queued and ends.
    drop(service);
    if tokio::time::timeout(CUT_WAIT, invocation_writer)
        .await
        .is_err()
    {
        tracing::warn!("the invocation log did not drain in time");
    }
    store.close().await;
    tracing::info!("stopped; the store is closed");
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Serve(e)),
        Err(e) => Err(ServeError::Serve(std::io::Error::other(e.to_string()))),
    }
}
