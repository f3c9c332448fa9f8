//! Connections: create, read, edit, delete, list, test, and invoke actions through them.

use super::folders::{folder_of_tenant, visible_folders};
use super::tenancy::check_name;
use crate::access::Caller;
use crate::api::audit::{AuditNote, REFERENCE_SECRET};
use crate::api::extract::{Body, Pagination, Query, present, whole_u32};
use crate::api::{ApiError, ApiResult, AppState};
use crate::auth::oauth::Grant;
use crate::catalog::Policy;
use crate::connections::{self, FieldInput};
use crate::credentials::Secret;
use crate::runtime::manifest::{AuthKind, CLIENT_ID_FIELD, CLIENT_SECRET_FIELD};
use crate::store::{
    ConnectionFilter, ConnectionRecord, Health, HealthStatus, NewConnection, Page, Permissions,
    TenantAppBinding, Timestamp,
};
use crate::vault::CredentialRef;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Polling intervals a connection may ask for, in seconds.
const POLL_INTERVAL: std::ops::RangeInclusive<u32> = 60..=86_400;

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
    authorization: Option<super::oauth::Authorization>,
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

/// A connection as the API shows it after a change, read back from the store, with the
/// consent to finish if the change started one.
async fn reload(
    service: &AppState,
    caller: &Caller,
    id: &str,
    authorization: Option<super::oauth::Authorization>,
) -> ApiResult<ConnectionView> {
    let record = service
        .store
        .connection(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection", id))?;
    let mut shown = view(service, record);
    shown.authorization = authorization;
    Ok(shown)
}

/// A connection of the caller's tenant that the caller holds `needed` on.
async fn authorized(
    service: &AppState,
    caller: &Caller,
    id: &str,
    needed: Permissions,
) -> ApiResult<ConnectionRecord> {
    let record = service
        .store
        .connection(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection", id))?;
    let (folder, granted) = folder_of_tenant(service, caller, &record.folder_id).await?;
    caller.require(&folder, granted, needed)?;
    Ok(record)
}

fn check_poll_interval(value: Option<u32>) -> ApiResult<()> {
    match value {
        Some(v) if !POLL_INTERVAL.contains(&v) => Err(ApiError::invalid_field(
            "poll_interval_seconds",
            format!(
                "`poll_interval_seconds` must be from {} to {} seconds",
                POLL_INTERVAL.start(),
                POLL_INTERVAL.end()
            ),
        )),
        _ => Ok(()),
    }
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
    check_name("name", &request.name)?;
    check_poll_interval(request.poll_interval_seconds)?;
    let folder_id = request
        .folder_id
        .clone()
        .unwrap_or_else(|| caller.principal.personal_folder_id.clone());
    let (folder, granted) = folder_of_tenant(&service, &caller, &folder_id)
        .await
        .map_err(|e| e.detail("field", "folder_id"))?;
    caller.require(&folder, granted, Permissions::CREATE)?;
    // The tenant's policy applies to connections created from now on.
    let policy = service.store.policy(&caller.tenant.id).await?;
    let policy = Policy {
        tenant_name: &caller.tenant.name,
        record: &policy,
    };
    let loaded = service.catalog.get(&request.connector).ok_or_else(|| {
        // Only the connectors this tenant may use: the others are absent for it.
        let known: Vec<String> = service
            .catalog
            .running()
            .iter()
            .map(|c| c.connector.manifest().name.clone())
            .filter(|name| policy.connector_enabled(name))
            .collect();
        ApiError::invalid_field(
            "connector",
            format!(
                "no connector `{}` is installed; available: {}",
                request.connector,
                known.join(", ")
            ),
        )
    })?;
    let manifest = loaded.connector.manifest();
    policy.require_enabled(&request.connector)?;
    let (mut values, refs) = connections::split_inputs(request.fields);
    note_references(&audit, &refs);
    let auth = request.auth.as_deref();
    // The scheme is checked against the policy before anything is read from a vault or
    // asked of a provider (an unknown scheme is reported by the field checks below).
    let scheme = match auth {
        Some(id) => manifest.scheme(id),
        None if manifest.auth_schemes.len() == 1 => manifest.auth_schemes.first(),
        None => None,
    };
    let mut tenant_app = None;
    if let Some(scheme) = scheme {
        policy.require_new_connection(&request.connector, scheme)?;
        tenant_app = connections::apply_tenant_app(
            &service,
            &caller,
            manifest,
            &scheme.id,
            &mut values,
            &refs,
        )
        .await?;
    }
    if !refs.is_empty() {
        // The fields first: a reference on a field that cannot take one reads no store.
        connections::check(manifest, auth, &values, &refs, &BTreeMap::new())?;
    }
    // References are resolved now: one that points nowhere creates nothing.
    let mut refs = refs;
    let resolved = connections::resolve_given(&service, &caller, &mut refs).await?;
    let checked = connections::check(manifest, auth, &values, &refs, &resolved)?;
    // OAuth: the password and client credentials grants run now (a refusal creates
    // nothing); the authorization code grant starts a consent.
    let provider = oauth_provider(&service, manifest, &checked, tenant_app.as_ref())?;
    let (health, tokens) = match &provider {
        None => (HealthStatus::Unknown, None),
        Some(p) if matches!(p.grant, Grant::Code { .. }) => {
            (HealthStatus::PendingAuthorization, None)
        }
        Some(p) => (
            HealthStatus::Healthy,
            Some(super::oauth::request_tokens(&service, p).await?),
        ),
    };
    let id = service
        .store
        .create_connection(NewConnection {
            tenant_id: caller.tenant.id.clone(),
            folder_id: folder.id.clone(),
            created_by: caller.principal.id.clone(),
            connector: request.connector.clone(),
            auth: checked.auth,
            name: request.name.trim().to_owned(),
            description: request.description,
            fields: checked.fields,
            secrets: checked.secrets,
            secret_refs: checked.refs,
            poll_interval_seconds: request.poll_interval_seconds,
            health,
            tokens,
            tenant_app,
        })
        .await?;
    tracing::info!(connection = %id, connector = %request.connector, folder = %folder.id, "connection created");
    audit.target(&id);
    let authorization = match &provider {
        Some(p) if matches!(p.grant, Grant::Code { .. }) => {
            Some(super::oauth::start(&service, &caller, &id, p).await?)
        }
        _ => None,
    };
    let shown = reload(&service, &caller, &id, authorization).await?;
    Ok((StatusCode::CREATED, Json(shown)))
}

pub async fn show(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let record = authorized(&service, &caller, &id, Permissions::VIEW).await?;
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
    let requested: BTreeMap<String, CredentialRef> = request
        .fields
        .iter()
        .flatten()
        .filter_map(|(name, input)| match input {
            Some(FieldInput::Reference(r)) => Some((name.clone(), r.clone())),
            _ => None,
        })
        .collect();
    note_references(&audit, &requested);
    let record = authorized(&service, &caller, &id, Permissions::EDIT).await?;
    if let Some(name) = &request.name {
        check_name("name", name)?;
    }
    if let Some(poll) = request.poll_interval_seconds {
        check_poll_interval(poll)?;
    }
    let loaded = connections::loaded(&service, &record)?;
    let credentials_changed = request.fields.is_some() || request.auth.is_some();
    let mut values: BTreeMap<String, Secret> = record
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.as_str())))
        .collect();
    let auth = request.auth.clone().unwrap_or_else(|| record.auth.clone());
    let stored_secrets = service.store.connection_secrets(&record.id).await?;
    let kept_secrets: Vec<String> = stored_secrets
        .keys()
        .chain(record.secret_refs.keys())
        .cloned()
        .collect();
    values.extend(stored_secrets);
    let mut refs = record.secret_refs.clone();
    // What the request sets: values, references, and `null`s.
    let mut given_refs = BTreeMap::new();
    let mut given: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for (name, input) in request.fields.clone().unwrap_or_default() {
        match input {
            Some(FieldInput::Reference(r)) => {
                given_refs.insert(name.clone(), r);
                given.insert(name, Some(Secret::new("")));
            }
            Some(FieldInput::Value(v)) => {
                given.insert(name, Some(v));
            }
            None => {
                given.insert(name, None);
            }
        }
    }
    let given_fields = request.fields.is_some().then_some(&given);
    let manifest = loaded.connector.manifest();
    if let Some(changed) = destination_change(manifest, &record, &auth, given_fields) {
        // Where the credentials go changes: a stored secret (or a reference to one) must
        // not follow silently (an editor who does not know it could otherwise send it to
        // a host of their choice).
        let supplied = given_fields;
        if let Some(missing) = kept_secrets.iter().find(|name| {
            manifest.field(name).is_some_and(|f| f.applies_to(&auth))
                && !supplied.is_some_and(|f| f.get(*name).is_some_and(Option::is_some))
        }) {
            return Err(ApiError::invalid_field(
                &format!("fields.{missing}"),
                format!(
                    "changing `{changed}` changes where this connection's credentials are sent; give `{missing}` again in the same request"
                ),
            ));
        }
    }
    if auth != record.auth
        && let Some(scheme) = manifest.scheme(&auth)
    {
        // Another scheme is a new way in: the tenant's policy must allow it (edits that
        // keep the scheme are not checked, so existing connections keep working).
        let policy = service.store.policy(&caller.tenant.id).await?;
        Policy {
            tenant_name: &caller.tenant.name,
            record: &policy,
        }
        .require_new_connection(&record.connector, scheme)?;
    }
    if auth != record.auth {
        // A new scheme starts from the values it shares with the old one (secret ones
        // included: `api_key` moving from a header to the query stays the same key): drop
        // the fields that do not belong to it.
        values.retain(|name, _| manifest.field(name).is_some_and(|f| f.applies_to(&auth)));
        refs.retain(|name, _| manifest.field(name).is_some_and(|f| f.applies_to(&auth)));
    }
    for (name, value) in &given {
        refs.remove(name);
        values.remove(name);
        if let Some(r) = given_refs.get(name) {
            refs.insert(name.clone(), r.clone());
        } else if let Some(v) = value {
            values.insert(name.clone(), v.clone());
        }
    }
    // New references are read now, so one that points nowhere is refused; those kept are
    // not (an edit of the name works while a store is down).
    if !given_refs.is_empty() {
        connections::check(manifest, Some(&auth), &values, &refs, &BTreeMap::new())?;
    }
    let resolved = connections::resolve_given(&service, &caller, &mut given_refs).await?;
    refs.extend(given_refs.clone());
    let checked = connections::check(
        loaded.connector.manifest(),
        Some(&auth),
        &values,
        &refs,
        &resolved,
    )?;
    // OAuth tokens belong to the client, endpoints and scopes they were granted for: an
    // edit of any of those drops them, and the connection is authorized again.
    let oauth_now = connections::is_oauth(manifest, &checked.auth);
    let drop_tokens = (connections::is_oauth(manifest, &record.auth) || oauth_now)
        && (checked.auth != record.auth
            || oauth_inputs(manifest, &checked.auth).iter().any(|name| {
                given.get(name).is_some_and(|v| {
                    v.as_ref().map(Secret::expose) != record.fields.get(name).map(String::as_str)
                        || manifest.field(name).is_some_and(|f| f.secret)
                })
            }));
    // Bringing an app of one's own ends the use of the tenant's.
    let tenant_app = record.tenant_app.clone().filter(|_| {
        ![CLIENT_ID_FIELD, CLIENT_SECRET_FIELD]
            .iter()
            .any(|f| given.contains_key(*f))
    });
    if drop_tokens {
        // The new settings must be usable (an OAuth app, valid endpoints) before the
        // current grant is given up.
        oauth_provider(&service, manifest, &checked, tenant_app.as_ref())?;
    }
    let health = match manifest.scheme(&checked.auth).map(|s| &s.kind) {
        Some(AuthKind::Oauth2Code { .. }) if drop_tokens => HealthStatus::PendingAuthorization,
        Some(AuthKind::Oauth2Code { .. }) => record.health.status,
        _ => HealthStatus::Unknown,
    };
    let new = NewConnection {
        tenant_id: record.tenant_id.clone(),
        folder_id: record.folder_id.clone(),
        created_by: record.created_by.clone(),
        connector: record.connector.clone(),
        auth: checked.auth,
        name: request
            .name
            .map(|n| n.trim().to_owned())
            .unwrap_or(record.name),
        description: request.description.unwrap_or(record.description),
        fields: checked.fields,
        secrets: checked.secrets,
        secret_refs: checked.refs,
        poll_interval_seconds: request
            .poll_interval_seconds
            .unwrap_or(record.poll_interval_seconds),
        health,
        tokens: None,
        tenant_app,
    };
    service
        .store
        .update_connection(&id, &new, credentials_changed || drop_tokens, drop_tokens)
        .await?;
    if drop_tokens {
        service.oauth.forget(&id);
    }
    tracing::info!(connection = %id, credentials_changed, "connection edited");
    Ok(Json(reload(&service, &caller, &id, None).await?))
}

/// The setting an edit changes that decides where credentials are sent: the auth scheme, or
/// a field an allowed-host pattern is built from.
fn destination_change(
    manifest: &crate::runtime::Manifest,
    record: &ConnectionRecord,
    auth: &str,
    fields: Option<&BTreeMap<String, Option<Secret>>>,
) -> Option<String> {
    if auth != record.auth {
        return Some("auth".into());
    }
    // The OAuth endpoints too: a client secret goes to the token endpoint.
    let oauth_urls = manifest
        .scheme(auth)
        .map(|s| s.kind.urls())
        .unwrap_or_default();
    let host_fields: Vec<&str> = manifest
        .allowed_hosts
        .iter()
        .map(String::as_str)
        .chain(oauth_urls)
        .flat_map(crate::capabilities::allowed_hosts::placeholders)
        .collect();
    fields?
        .iter()
        .find(|(name, value)| {
            host_fields.contains(&name.as_str())
                && value.as_ref().map(Secret::expose)
                    != record.fields.get(*name).map(String::as_str)
        })
        .map(|(name, _)| format!("fields.{name}"))
}

pub async fn delete(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorized(&service, &caller, &id, Permissions::DELETE).await?;
    service
        .store
        .delete_connection(&caller.tenant.id, &id)
        .await?;
    service.oauth.forget(&id);
    tracing::info!(connection = %id, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The provider settings of a checked connection whose scheme is OAuth 2.0 (`None` for
/// other schemes); a 400 when they cannot work (no OAuth app, a bad endpoint).
fn oauth_provider(
    service: &AppState,
    manifest: &crate::runtime::Manifest,
    checked: &connections::Checked,
    tenant_app: Option<&TenantAppBinding>,
) -> ApiResult<Option<crate::auth::oauth::Provider>> {
    if !connections::is_oauth(manifest, &checked.auth) {
        return Ok(None);
    }
    connections::provider_of(
        service,
        manifest,
        &checked.auth,
        &checked.fields,
        &checked.all_secrets(),
        tenant_app,
    )
    .map(Some)
    .map_err(|e| super::oauth::setup_error(&e))
}

/// The fields an OAuth scheme's grant depends on: the app, the scopes, the user's
/// password, and those its endpoints are built from.
fn oauth_inputs(manifest: &crate::runtime::Manifest, auth: &str) -> Vec<String> {
    use crate::runtime::manifest::{CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD};
    let mut names: Vec<String> = [CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD]
        .map(str::to_owned)
        .to_vec();
    let kind = manifest.scheme(auth).map(|s| &s.kind);
    if let Some(AuthKind::Oauth2Password {
        username_field,
        password_field,
        ..
    }) = kind
    {
        names.push(username_field.clone());
        names.push(password_field.clone());
    }
    let urls = kind.map(AuthKind::urls).unwrap_or_default();
    for url in urls {
        names.extend(
            crate::capabilities::allowed_hosts::placeholders(url)
                .into_iter()
                .map(str::to_owned),
        );
    }
    names
}

/// `POST /v1/connections/{id}/reconnect`: authorizes an OAuth connection again, keeping
/// its id (automations that use it keep working). The authorization code grant answers
/// with the consent to finish; the others run their grant at once.
pub async fn reconnect(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let record = authorized(&service, &caller, &id, Permissions::EDIT).await?;
    let loaded = connections::loaded(&service, &record)?;
    let manifest = loaded.connector.manifest();
    if !connections::is_oauth(manifest, &record.auth) {
        return Err(ApiError::invalid_field(
            "auth",
            format!(
                "connection `{id}` uses auth scheme `{}`, not OAuth 2.0: give new credentials with PATCH /v1/connections/{id}",
                record.auth
            ),
        ));
    }
    let secrets = connections::grant_secrets(&service, &record).await?;
    let provider = connections::provider_of(
        &service,
        manifest,
        &record.auth,
        &record.fields,
        &secrets,
        record.tenant_app.as_ref(),
    )
    .map_err(|e| super::oauth::setup_error(&e))?;
    let authorization = if matches!(provider.grant, Grant::Code { .. }) {
        Some(super::oauth::start(&service, &caller, &id, &provider).await?)
    } else {
        let tokens = super::oauth::request_tokens(&service, &provider).await?;
        service.store.authorize_connection(&id, &tokens).await?;
        service.oauth.forget(&id);
        tracing::info!(connection = %id, "connection reconnected");
        None
    };
    Ok(Json(reload(&service, &caller, &id, authorization).await?))
}

pub async fn test(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = authorized(&service, &caller, &id, Permissions::USE).await?;
    let health = connections::test(&service, &record).await?;
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
    let record = authorized(&service, &caller, &id, Permissions::USE).await?;
    let (invocation, output) =
        connections::invoke(&service, &caller, &record, &request.action, &request.input).await?;
    Ok(Json(json!({"invocation": invocation, "output": output})))
}
