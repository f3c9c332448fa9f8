//! The HTTP server: the management API under `/v1`, health and metrics endpoints, and the
//! OpenAPI document describing them (`/v1/openapi.json`).

pub mod audit;
mod error;
mod extract;
mod routes;
pub mod server;

pub use crate::metrics::Metrics;
pub use error::{ApiError, ApiResult};

use crate::catalog::Catalog;
use crate::connections::Connections;
use crate::runtime::Runtime;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post, put};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Everything a request handler reaches.
#[derive(Debug)]
pub struct Service {
    pub store: Store,
    pub runtime: Runtime,
    /// OAuth apps, grants and the renewal of tokens.
    pub oauth: Arc<crate::auth::OAuth>,
    /// The credential stores secret fields may reference, and the cache of their values.
    pub vaults: Arc<crate::vault::CredentialStores>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Operations on connections: create, edit, test, invoke.
    pub connections: Arc<Connections>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// `/metrics` is served on a listener of its own (`--metrics-listen`), not the API's.
    pub metrics_elsewhere: bool,
    /// Set when the shutdown grace period is over: requests still running are answered
    /// 503 and their work (an invocation included) is dropped.
    pub cut: tokio::sync::watch::Sender<bool>,
}

/// What a [`Service`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub store: Store,
    pub runtime: Runtime,
    pub oauth: crate::auth::OAuth,
    pub vaults: crate::vault::CredentialStores,
    pub catalog: Catalog,
    pub metrics: Metrics,
    /// Where invocation records are written (group commit).
    pub invocations: crate::store::InvocationLog,
    pub max_body_bytes: usize,
    pub metrics_elsewhere: bool,
}

impl Service {
    pub fn new(parts: Parts) -> Self {
        let oauth = Arc::new(parts.oauth);
        let vaults = Arc::new(parts.vaults);
        let catalog = Arc::new(parts.catalog);
        let metrics = Arc::new(parts.metrics);
        let connections = Arc::new(Connections::new(
            parts.store.clone(),
            parts.runtime.clone(),
            catalog.clone(),
            oauth.clone(),
            vaults.clone(),
            parts.invocations,
            metrics.clone(),
        ));
        Self {
            store: parts.store,
            runtime: parts.runtime,
            oauth,
            vaults,
            catalog,
            metrics,
            connections,
            max_body_bytes: parts.max_body_bytes,
            metrics_elsewhere: parts.metrics_elsewhere,
            cut: tokio::sync::watch::channel(false).0,
        }
    }
}

pub type AppState = Arc<Service>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The API's routes.
pub fn router(service: AppState) -> Router {
    let max_body_bytes = service.max_body_bytes;
    use routes::{
        audit, catalog, connections, connectors, folders, invocations, oauth, policies, system,
        tenancy,
    };
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/me", get(tenancy::me))
        .route(
            "/v1/tenant",
            get(tenancy::tenant).patch(tenancy::update_tenant),
        )
        .route(
            "/v1/principals",
            get(tenancy::principals).post(tenancy::create_principal),
        )
        .route("/v1/principals/{id}", get(tenancy::principal))
        .route("/v1/principals/{id}/tokens", post(tenancy::create_token))
        .route(
            "/v1/principals/{id}/tokens/{token_id}",
            axum::routing::delete(tenancy::revoke_token),
        )
        .route("/v1/folders", get(folders::list).post(folders::create))
        .route("/v1/folders/{id}", get(folders::show))
        .route("/v1/folders/{id}/grants", get(folders::grants))
        .route(
            "/v1/folders/{id}/grants/{principal_id}",
            put(folders::set_grant).delete(folders::delete_grant),
        )
        .route("/v1/tenant/policy", get(policies::own))
        .route("/v1/tenants", get(policies::tenants))
        .route(
            "/v1/tenants/{id}/policy",
            get(policies::show).put(policies::set),
        )
        .route(
            "/v1/tenants/{id}/oauth-apps/{connector}",
            put(policies::set_oauth_app).delete(policies::delete_oauth_app),
        )
        .route(
            "/v1/catalog/versions",
            post(catalog::publish)
                .layer(DefaultBodyLimit::max(service.catalog.max_component_bytes())),
        )
        .route("/v1/catalog", get(catalog::list))
        .route(
            "/v1/catalog/{name}",
            get(catalog::show).delete(catalog::unpublish),
        )
        .route(
            "/v1/catalog/{name}/versions/{version}",
            get(catalog::version).delete(catalog::unpublish),
        )
        .route(
            "/v1/catalog/{name}/versions/{version}/skip",
            post(catalog::skip).delete(catalog::unskip),
        )
        .route("/v1/catalog/{name}/install", post(catalog::install))
        .route("/v1/catalog/{name}/upgrade", post(catalog::upgrade))
        .route("/v1/catalog/{name}/rollback", post(catalog::rollback))
        .route("/v1/connectors", get(connectors::list))
        .route("/v1/connectors/{name}", get(connectors::show))
        .route(
            "/v1/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/v1/connections/{id}",
            get(connections::show)
                .patch(connections::update)
                .delete(connections::delete),
        )
        .route("/v1/connections/{id}/test", post(connections::test))
        .route(
            "/v1/connections/{id}/reconnect",
            post(connections::reconnect),
        )
        .route("/v1/oauth/callback", get(oauth::callback))
        .route(
            "/v1/oauth/start/{token}",
            get(oauth::start_page).post(oauth::continue_start),
        )
        .route("/v1/oauth/redirect-uri", get(oauth::redirect_uri))
        .route(
            "/v1/connections/{id}/invocations",
            post(connections::invoke),
        )
        .route("/v1/invocations", get(invocations::list))
        .route("/v1/invocations/{id}", get(invocations::show))
        .route("/v1/audit", get(audit::list))
        .fallback(system::no_route)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            self::audit::record,
        ))
        .layer(middleware::from_fn_with_state(service.clone(), observe))
        .with_state(service)
}

/// The private metrics listener's app (`--metrics-listen`): `GET /metrics` only.
pub fn metrics_router(service: AppState) -> Router {
    Router::new()
        .fallback(routes::system::metrics_listener)
        .with_state(service)
}

/// A request id the client may choose: 1 to 128 characters of `[A-Za-z0-9._-]`.
fn client_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    .then(|| text.to_owned())
}

/// Request ids, the access log line and the request metrics.
async fn observe(State(service): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(client_request_id)
        .or_else(|| crate::store::new_id("req").ok())
        .unwrap_or_else(|| "req_unknown".into());
    // Only standard methods become label values: a client must not grow the metrics.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        principal = tracing::field::Empty,
    );
    request
        .extensions_mut()
        .insert(audit::RequestId(request_id.clone()));
    let mut cut = service.cut.subscribe();
    let mut response = tokio::select! {
        response = next.run(request).instrument(span.clone()) => response,
        _ = cut.wait_for(|cut| *cut) => ApiError::unavailable(
            "the service stopped before this request finished; retry it",
        )
        .into_response(),
    };
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request served"
        );
    });
    service.metrics.request(&method, &route, status);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
