//! The connectors a tenant may use: the installed ones its policy enables, each with the
//! auth schemes the policy allows, and the connector page a console shows.

use super::folders::visible_folders;
use crate::access::Caller;
use crate::api::{ApiError, ApiResult, AppState};
use crate::catalog::{LoadedConnector, Policy, release_name};
use crate::runtime::Manifest;
use crate::runtime::manifest::{AuthKind, AuthScheme, CLIENT_ID_FIELD};
use crate::store::{ConnectionFilter, PageRequest, PolicyRecord, TenantOAuthApp};
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

/// Where an OAuth scheme's app comes from for the caller's tenant, as creating a
/// connection without an app of one's own would find it: `tenant` (predefined for the
/// tenant, and usable with this scheme), `service` (the operator's configuration; never for
/// client credentials, where the client is the credential), or none (bring one).
fn oauth_app(
    service: &AppState,
    manifest: &Manifest,
    scheme: &AuthScheme,
    tenant_apps: &[TenantOAuthApp],
) -> Value {
    if scheme.kind.urls().is_empty() {
        return Value::Null;
    }
    let takes_app = manifest
        .field(CLIENT_ID_FIELD)
        .is_some_and(|f| f.applies_to(&scheme.id));
    if let Some(app) = tenant_apps.iter().find(|a| a.connector == manifest.name)
        && takes_app
    {
        // The tenant's app is the one used; when it cannot serve this scheme, creating a
        // connection without an app of one's own is refused (it never falls back).
        return match crate::connections::tenant_app_usable(manifest, scheme, &app.endpoint_fields) {
            Ok(()) => "tenant".into(),
            Err(_) => Value::Null,
        };
    }
    if service.oauth.has_app(&manifest.name)
        && !matches!(scheme.kind, AuthKind::Oauth2ClientCredentials { .. })
    {
        "service".into()
    } else {
        Value::Null
    }
}

fn schemes_json(
    service: &AppState,
    loaded: &LoadedConnector,
    policy: &Policy<'_>,
    tenant_apps: &[TenantOAuthApp],
) -> Vec<Value> {
    let m = loaded.connector.manifest();
    policy
        .allowed_schemes(&m.name, &m.auth_schemes)
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "title": s.title,
                "kind": s.kind.type_name(),
                "oauth_app": oauth_app(service, m, s, tenant_apps),
            })
        })
        .collect()
}

fn summary(
    service: &AppState,
    loaded: &LoadedConnector,
    policy: &Policy<'_>,
    tenant_apps: &[TenantOAuthApp],
) -> Value {
    let m = loaded.connector.manifest();
    json!({
        "name": m.name,
        "version": m.version,
        "title": m.title,
        "description": m.description,
        "release": release_name(m.release),
        "interface_version": loaded.connector.interface_version(),
        "auth_schemes": schemes_json(service, loaded, policy, tenant_apps),
        "actions": m.actions.iter().map(|a| json!({
            "name": a.name,
            "title": a.title,
            "description": a.description,
        })).collect::<Vec<_>>(),
    })
}

async fn tenant_policy(
    service: &AppState,
    caller: &Caller,
) -> ApiResult<(PolicyRecord, Vec<TenantOAuthApp>)> {
    let record = service.store.policy(&caller.tenant.id).await?;
    let apps = service.store.tenant_oauth_apps(&caller.tenant.id).await?;
    Ok((record, apps))
}

pub async fn list(State(service): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let (record, apps) = tenant_policy(&service, &caller).await?;
    let policy = Policy {
        tenant_name: &caller.tenant.name,
        record: &record,
    };
    let items: Vec<Value> = service
        .catalog
        .running()
        .iter()
        .filter(|c| policy.connector_enabled(&c.connector.manifest().name))
        .map(|c| summary(&service, c, &policy, &apps))
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

/// The connector page: the manifest (actions and triggers with their schemas, docs,
/// release), the auth schemes the tenant may use, and the caller's connections of it.
pub async fn show(
    State(service): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let loaded = service
        .catalog
        .get(&name)
        .ok_or_else(|| ApiError::not_found("installed connector", &name))?;
    let (record, apps) = tenant_policy(&service, &caller).await?;
    let policy = Policy {
        tenant_name: &caller.tenant.name,
        record: &record,
    };
    policy.require_enabled(&name)?;
    let mut page = serde_json::to_value(loaded.connector.manifest()).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("cannot serialise the manifest: {e}"),
        )
    })?;
    let folders: Vec<String> = visible_folders(&service, &caller)
        .await?
        .into_iter()
        .map(|(f, _)| f.id)
        .collect();
    let filter = ConnectionFilter {
        folders,
        connector: Some(name.clone()),
        auth: None,
        health: None,
    };
    let connections = service
        .store
        .connections(
            &caller.tenant.id,
            &filter,
            &PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await?;
    if let Some(object) = page.as_object_mut() {
        object.insert(
            "interface_version".into(),
            loaded.connector.interface_version().into(),
        );
        // The manifest's schemes, limited to the ones the policy allows, each with where
        // its OAuth app comes from.
        let manifest = loaded.connector.manifest();
        let allowed = policy.allowed_schemes(&name, &manifest.auth_schemes);
        if let Some(Value::Array(schemes)) = object.get_mut("auth_schemes") {
            schemes.retain(|s| {
                allowed
                    .iter()
                    .any(|a| s.get("id").and_then(Value::as_str) == Some(a.id.as_str()))
            });
            for (json, scheme) in schemes.iter_mut().zip(&allowed) {
                if let Some(o) = json.as_object_mut() {
                    o.insert("type".into(), scheme.kind.type_name().into());
                    o.insert(
                        "oauth_app".into(),
                        oauth_app(&service, manifest, scheme, &apps),
                    );
                }
            }
        }
        object.insert(
            "connections".into(),
            connections
                .items
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "name": c.name,
                        "folder_id": c.folder_id,
                        "auth": c.auth,
                        "health": c.health.status.as_str(),
                    })
                })
                .collect::<Vec<_>>()
                .into(),
        );
        object.insert(
            "more_connections".into(),
            connections.next_cursor.is_some().into(),
        );
    }
    Ok(Json(page))
}
