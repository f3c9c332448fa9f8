//! Connections: create, read, edit, delete, list, test, and invoke actions through them.

use super::folders::{folder_of_tenant, visible_folders};
use crate::access::Caller;
use crate::api::audit::{AuditNote, REFERENCE_SECRET};
use crate::api::extract::{Body, Pagination, Query, present, whole_u32};
use crate::api::{ApiError, ApiResult, AppState};
use crate::connections::{Authorization, Changed, FieldInput, NewConnectionInput, Update};
use crate::store::{
    ConnectionFilter, ConnectionRecord, Health, HealthStatus, Page, Permissions, Timestamp,
};
use crate::vault::CredentialRef;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A connection as the API shows it: non-secret values, and only whether each secret is set.
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    id: String,
    tenant_id: String,
    folder_id: String,
    created_by: String,
    connector: String,
    connector_version: Option<String>,
    auth: String,
    name: String,
    description: String,
    fields: BTreeMap<String, String>,
    secrets: BTreeMap<String, bool>,
    /// Secret fields whose value lives in a credential store: where (never the value).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    secret_refs: BTreeMap<String, CredentialRef>,
    poll_interval_seconds: Option<u32>,
    health: Health,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// After creating or reconnecting an OAuth connection with the authorization code
    /// grant: the consent to finish in a browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<Authorization>,
}

fn view(service: &AppState, record: ConnectionRecord) -> ConnectionView {
    let loaded = service.catalog.get(&record.connector);
    let mut fields = record.fields.clone();
    let mut secrets: BTreeMap<String, bool> = record
        .secrets_set
        .iter()
        .chain(record.secret_refs.keys())
        .map(|n| (n.clone(), true))
        .collect();
    if let Some(loaded) = &loaded {
        for f in loaded
            .connector
            .manifest()
            .fields
            .iter()
            .filter(|f| f.applies_to(&record.auth))
        {
            if f.secret {
                secrets.entry(f.name.clone()).or_insert(false);
            } else if let Some(default) = &f.default_value {
                fields
                    .entry(f.name.clone())
                    .or_insert_with(|| default.clone());
            }
        }
    }
    ConnectionView {
        connector_version: loaded.map(|l| l.connector.id().version.clone()),
        id: record.id,
        tenant_id: record.tenant_id,
        folder_id: record.folder_id,
        created_by: record.created_by,
        connector: record.connector,
        auth: record.auth,
        name: record.name,
        description: record.description,
        fields,
        secrets,
        secret_refs: record.secret_refs,
        poll_interval_seconds: record.poll_interval_seconds,
        health: record.health,
        created_at: record.created_at,
        updated_at: record.updated_at,
        authorization: None,
    }
}

/// A connection as the API shows it after a change, with the consent to finish if the
/// change started one.
fn shown(service: &AppState, changed: Changed) -> ConnectionView {
    let mut shown = view(service, changed.record);
    shown.authorization = changed.authorization;
    shown
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    folder_id: Option<String>,
    connector: Option<String>,
    auth: Option<String>,
    health: Option<String>,
    #[serde(flatten)]
    page: Pagination,
}

pub async fn list(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<ConnectionView>>> {
    let page = query.page.request()?;
    let health = match &query.health {
        None => None,
        Some(h) => Some(HealthStatus::parse(h).ok_or_else(|| {
            ApiError::invalid_parameter(
                "health",
                "`health` must be one of: unknown, healthy, failing, needs_reauthentication",
            )
        })?),
    };
    let mut folders: Vec<String> = visible_folders(&service, &caller)
        .await?
        .into_iter()
        .map(|(f, _)| f.id)
        .collect();
    if let Some(only) = &query.folder_id {
        if !folders.contains(only) {
            // Either not a folder of the tenant (404) or one the caller cannot view (403).
            let (folder, granted) = folder_of_tenant(&service, &caller, only).await?;
            caller.require(&folder, granted, Permissions::VIEW)?;
        }
        folders = vec![only.clone()];
    }
    let filter = ConnectionFilter {
        folders,
        connector: query.connector,
        auth: query.auth,
        health,
    };
    let found = service
        .store
        .connections(&caller.tenant.id, &filter, &page)
        .await?;
    Ok(Json(Page {
        items: found.items.into_iter().map(|r| view(&service, r)).collect(),
        next_cursor: found.next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    connector: String,
    name: String,
    #[serde(default, deserialize_with = "present")]
    folder_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    auth: Option<String>,
    #[serde(default)]
    description: String,
    /// Values, or for secret fields a credential store reference.
    #[serde(default)]
    fields: BTreeMap<String, FieldInput>,
    #[serde(default, deserialize_with = "whole_u32")]
    poll_interval_seconds: Option<u32>,
}

/// Notes, on the audit log, the credential store references a request gives: pointing a
/// secret field at a vault is an administrator's act.
fn note_references(audit: &AuditNote, refs: &BTreeMap<String, CredentialRef>) {
    if refs.is_empty() {
        return;
    }
    audit.act(REFERENCE_SECRET);
    let given: serde_json::Map<String, Value> = refs
        .iter()
        .map(|(field, r)| (field.clone(), Value::String(r.to_string())))
        .collect();
    audit.detail("references", given);
}

pub async fn create(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Body(request): Body<CreateRequest>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    note_references(
        &audit,
        &crate::connections::references(request.fields.iter().map(|(k, v)| (k, Some(v)))),
    );
    let changed = service
        .connections
        .create(
            &caller,
            NewConnectionInput {
                connector: request.connector,
                name: request.name,
                folder_id: request.folder_id,
                auth: request.auth,
                description: request.description,
                fields: request.fields,
                poll_interval_seconds: request.poll_interval_seconds,
            },
        )
        .await?;
    audit.target(&changed.record.id);
    Ok((StatusCode::CREATED, Json(shown(&service, changed))))
}

pub async fn show(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let record = service
        .connections
        .authorized(&caller, &id, Permissions::VIEW)
        .await?;
    Ok(Json(view(&service, record)))
}

/// `"poll_interval_seconds": null` clears it (`Some(None)`); leaving it out keeps it.
fn clear_or_whole_u32<'de, D>(d: D) -> Result<Option<Option<u32>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    whole_u32(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    auth: Option<String>,
    /// A value (or, for a secret field, a credential store reference) sets a field;
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    fields: Option<BTreeMap<String, Option<FieldInput>>>,
    /// `null` clears it; leaving it out keeps it.
    #[serde(default, deserialize_with = "clear_or_whole_u32")]
    poll_interval_seconds: Option<Option<u32>>,
}

pub async fn update(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Path(id): Path<String>,
    Body(request): Body<UpdateRequest>,
) -> ApiResult<Json<ConnectionView>> {
    note_references(
        &audit,
        &crate::connections::references(
            request
                .fields
                .iter()
                .flatten()
                .map(|(k, v)| (k, v.as_ref())),
        ),
    );
    let changed = service
        .connections
        .update(
            &caller,
            &id,
            Update {
                name: request.name,
                description: request.description,
                auth: request.auth,
                fields: request.fields,
                poll_interval_seconds: request.poll_interval_seconds,
            },
        )
        .await?;
    Ok(Json(shown(&service, changed)))
}

pub async fn delete(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service.connections.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/connections/{id}/reconnect`: authorizes an OAuth connection again, keeping
/// its id (automations that use it keep working). The authorization code grant answers
/// with the consent to finish; the others run their grant at once.
pub async fn reconnect(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let changed = service.connections.reconnect(&caller, &id).await?;
    Ok(Json(shown(&service, changed)))
}

pub async fn test(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let health = service.connections.test(&caller, &id).await?;
    Ok(Json(json!({"connection_id": id, "health": health})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    action: String,
    #[serde(default = "empty_object")]
    input: Value,
}

fn empty_object() -> Value {
    json!({})
}

pub async fn invoke(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(request): Body<InvokeRequest>,
) -> ApiResult<Json<Value>> {
    let invoked = service
        .connections
        .invoke(&caller, &id, &request.action, &request.input)
        .await?;
    Ok(Json(
        json!({"invocation": invoked.record, "output": invoked.output}),
    ))
}
