//! The connectors this service has loaded.

use crate::access::Caller;
use crate::api::{ApiError, ApiResult, AppState};
use crate::catalog::LoadedConnector;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

fn summary(loaded: &LoadedConnector) -> Value {
    let m = loaded.connector.manifest();
    json!({
        "name": m.name,
        "version": m.version,
        "title": m.title,
        "description": m.description,
        "release": m.release,
        "interface_version": loaded.connector.interface_version(),
        "auth_schemes": m.auth_schemes.iter().map(|s| json!({
            "id": s.id,
            "title": s.title,
            "kind": s.kind.type_name(),
        })).collect::<Vec<_>>(),
        "actions": m.actions.iter().map(|a| json!({
            "name": a.name,
            "title": a.title,
            "description": a.description,
        })).collect::<Vec<_>>(),
    })
}

pub async fn list(State(service): State<AppState>, _caller: Caller) -> Json<Value> {
    let items: Vec<Value> = service.catalog.all().map(|c| summary(c)).collect();
    Json(json!({"items": items, "next_cursor": null}))
}

pub async fn show(
    State(service): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let loaded = service
        .catalog
        .get(&name)
        .ok_or_else(|| ApiError::not_found("connector", &name))?;
    let mut manifest = serde_json::to_value(loaded.connector.manifest()).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("cannot serialise the manifest: {e}"),
        )
    })?;
    if let Some(object) = manifest.as_object_mut() {
        object.insert(
            "interface_version".into(),
            loaded.connector.interface_version().into(),
        );
    }
    Ok(Json(manifest))
}
