//! The service built in the benchmark's own process, exactly as `junction serve` builds
//! it (store on disk, token authentication, group-committed invocation records, a fresh
//! instance per invocation), listening on loopback.

use junction::api::{Metrics, Parts, Service, router};
use junction::auth::OAuth;
use junction::capabilities::http::HttpClient;
use junction::catalog::{Catalog, DEFAULT_MAX_COMPONENT_BYTES};
use junction::runtime::{EngineOptions, Limits, Runtime};
use junction::store::{InvocationLog, KeySource, Store, StoreConfig};
use junction::vault::{CredentialStores, StoreSettings, SystemClock};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A running in-process service.
#[allow(missing_debug_implementations)]
pub struct InProcess {
    pub addr: SocketAddr,
    /// An administrator's API token.
    pub token: String,
    pub service: Arc<Service>,
    dir: PathBuf,
}

impl InProcess {
    /// Starts a service with `components` loaded, on a fresh data directory named after
    /// `name`, with a tenant whose administrator's token is returned.
    pub async fn start(name: &str, components: &[&str]) -> InProcess {
        Self::start_with_stores(name, components, Vec::new()).await
    }

    /// [`InProcess::start`] with credential stores configured.
    pub async fn start_with_stores(
        name: &str,
        components: &[&str],
        stores: Vec<StoreSettings>,
    ) -> InProcess {
        let dir =
            std::env::temp_dir().join(format!("junction-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = StoreConfig {
            data_dir: dir.clone(),
            key: KeySource::File(dir.join("junction.key")),
        };
        let (store, _) = Store::open(&config, None).await.unwrap();
        let egress = crate::loopback_egress();
        let runtime =
            Runtime::new(EngineOptions::default(), Limits::default(), egress.clone()).unwrap();
        let paths: Vec<PathBuf> = components.iter().map(PathBuf::from).collect();
        let catalog = Catalog::open(&runtime, &store, &dir, DEFAULT_MAX_COMPONENT_BYTES)
            .await
            .unwrap();
        catalog.publish_and_install(&paths).await.unwrap();
        let (_, _, token) = store.create_tenant("bench", "ada").await.unwrap();
        let token = token.token.expose().to_owned();
        let (invocations, _writer) = InvocationLog::start(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        egress.add_own_listener(addr);
        let oauth = OAuth::new(
            store.clone(),
            HttpClient::new(Limits::default().connect_timeout, egress.clone()),
            Default::default(),
            &format!("http://{addr}"),
        );
        let metrics = Metrics::new();
        let vaults = CredentialStores::new(
            stores,
            Arc::new(SystemClock::default()),
            metrics.credential_store_reads(),
        )
        .unwrap();
        let service = Arc::new(Service::new(Parts {
            store,
            runtime,
            oauth,
            vaults,
            catalog,
            metrics,
            invocations,
            max_body_bytes: 1 << 20,
            metrics_elsewhere: false,
        }));
        let app = router(service.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        InProcess {
            addr,
            token,
            service,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
