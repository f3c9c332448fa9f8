//! Health, readiness, metrics, the OpenAPI document, and the answers for unknown routes.

use crate::api::{ApiError, AppState, OPENAPI};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// Liveness: the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers.
pub async fn readyz(State(service): State<AppState>) -> Result<Json<Value>, ApiError> {
    service.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: the store does not answer");
        ApiError::unavailable("the store does not answer")
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// The Prometheus metrics, unless they are served on a listener of their own
/// (`--metrics-listen`): then the API's listener knows no such route.
pub async fn metrics(
    State(service): State<AppState>,
    method: Method,
    uri: Uri,
) -> axum::response::Response {
    if service.metrics_elsewhere {
        return no_route(method, uri).await.into_response();
    }
    render_metrics(&service).into_response()
}

fn render_metrics(service: &AppState) -> impl IntoResponse + use<> {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics.render(
            service.runtime.active_instances(),
            service.runtime.queued_invocations(),
        ),
    )
}

/// Everything the private metrics listener answers: `GET /metrics`, and 404 otherwise.
pub async fn metrics_listener(
    State(service): State<AppState>,
    method: Method,
    uri: Uri,
) -> axum::response::Response {
    if method == Method::GET && uri.path() == "/metrics" {
        render_metrics(&service).into_response()
    } else {
        (StatusCode::NOT_FOUND, "only GET /metrics is served here\n").into_response()
    }
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {method} {}; the API is described at /v1/openapi.json",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {method}; the API is described at /v1/openapi.json",
            uri.path()
        ),
    )
}
