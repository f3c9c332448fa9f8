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

pub async fn metrics(State(service): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics.render(service.runtime.active_instances()),
    )
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
