//! The operator's catalog: publish component versions, list them with their states,
//! install, upgrade, roll back, skip. Published versions cannot be unpublished.

use crate::api::audit::AuditNote;
use crate::api::extract::{OperatorCaller, OptionalBody, bytes_rejection};
use crate::api::{ApiError, ApiResult, AppState};
use crate::catalog::{ConnectorView, Switch, VersionView};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

/// `POST /v1/catalog/versions`: the body is the component.
pub async fn publish(
    State(service): State<AppState>,
    OperatorCaller(operator): OperatorCaller,
    audit: AuditNote,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let essence = content_type(&headers);
    if !essence.eq_ignore_ascii_case("application/wasm")
        && !essence.eq_ignore_ascii_case("application/octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component's bytes as the body with `content-type: application/wasm`",
        ));
    }
    let bytes = body.map_err(|r| bytes_rejection(&r, service.catalog.max_component_bytes()))?;
    let published = service.catalog.publish(&bytes, &operator.id).await?;
    let mut body = version_json(&published.version);
    for key in ["digest", "size_bytes", "release"] {
        if let Some(value) = body.get(key) {
            audit.detail(key, value.clone());
        }
    }
    if let (Some(name), Some(version)) = (
        body.get("name").and_then(Value::as_str),
        body.get("version").and_then(Value::as_str),
    ) {
        audit.target(format!("{name}@{version}"));
    }
    audit.detail("already_published", !published.created);
    let status = if published.created {
        StatusCode::CREATED
    } else {
        if let Some(object) = body.as_object_mut() {
            object.insert("already_published".into(), true.into());
        }
        StatusCode::OK
    };
    Ok((status, Json(body)))
}

fn content_type(headers: &HeaderMap) -> &str {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    value.split(';').next().unwrap_or("").trim()
}

fn version_json(v: &VersionView) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn connector_json(v: &ConnectorView) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub async fn list(
    State(service): State<AppState>,
    _operator: OperatorCaller,
) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = service
        .catalog
        .views()
        .await?
        .iter()
        .map(connector_json)
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

pub async fn show(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(connector_json(&service.catalog.view(&name).await?)))
}

pub async fn version(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(version_json(
        &service.catalog.version_view(&name, &version).await?,
    )))
}

/// The body of install, upgrade and rollback (none is `{}`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    #[serde(default)]
    version: Option<String>,
}

async fn switch(
    service: &AppState,
    audit: &AuditNote,
    name: &str,
    how: Switch,
    request: SwitchRequest,
) -> ApiResult<Json<Value>> {
    if let Some(version) = &request.version {
        audit.detail("requested_version", version.as_str());
    }
    let before = service
        .catalog
        .get(name)
        .map(|l| l.connector.id().version.clone());
    let view = service
        .catalog
        .switch(name, how, request.version.as_deref())
        .await?;
    audit.detail("from", before);
    if let Some(active) = &view.active_version {
        audit.target(format!("{name}@{active}"));
    }
    Ok(Json(connector_json(&view)))
}

pub async fn install(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    audit: AuditNote,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    switch(&service, &audit, &name, Switch::Install, request).await
}

pub async fn upgrade(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    audit: AuditNote,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    switch(&service, &audit, &name, Switch::Upgrade, request).await
}

pub async fn rollback(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    audit: AuditNote,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    switch(&service, &audit, &name, Switch::Rollback, request).await
}

pub async fn skip(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let view = service.catalog.set_skipped(&name, &version, true).await?;
    Ok(Json(connector_json(&view)))
}

pub async fn unskip(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let view = service.catalog.set_skipped(&name, &version, false).await?;
    Ok(Json(connector_json(&view)))
}

/// `DELETE` of a connector or of one of its versions: never.
pub async fn unpublish(_operator: OperatorCaller) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "cannot_unpublish",
        "published connector versions are immutable and cannot be unpublished: connections and automations may depend on them. Hide a connector from tenants with a policy (`disabled_connectors`), or skip a version so that it is not offered as an upgrade",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, axum::http::HeaderValue::from_static("GET"));
    response
}
