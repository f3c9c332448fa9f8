//! Tenants' governance policies (set by operators, read by the tenant) and their predefined
//! OAuth apps, whose secrets are written and never read back.

use crate::access::Caller;
use crate::api::audit::AuditNote;
use crate::api::extract::{Body, OperatorCaller};
use crate::api::{ApiError, ApiResult, AppState};
use crate::catalog::PolicyInput;
use crate::credentials::Secret;
use crate::store::{PolicyRecord, Tenant};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn tenant(service: &AppState, id: &str) -> ApiResult<Tenant> {
    service
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", id))
}

async fn policy_json(
    service: &AppState,
    tenant_id: &str,
    record: &PolicyRecord,
) -> ApiResult<Value> {
    let apps = service.store.tenant_oauth_apps(tenant_id).await?;
    Ok(json!({
        "tenant_id": tenant_id,
        "enabled_connectors": record.enabled_connectors,
        "disabled_connectors": record.disabled_connectors,
        "allowed_auth_types": record.allowed_auth_types,
        "oauth_apps": apps,
        "updated_at": record.updated_at,
    }))
}

/// `GET /v1/tenants`
pub async fn tenants(
    State(service): State<AppState>,
    _operator: OperatorCaller,
) -> ApiResult<Json<Value>> {
    let items = service.store.tenants().await?;
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

/// `GET /v1/tenants/{id}/policy`
pub async fn show(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant(&service, &id).await?;
    let record = service.store.policy(&tenant.id).await?;
    Ok(Json(policy_json(&service, &tenant.id, &record).await?))
}

/// `PUT /v1/tenants/{id}/policy`: replaces the policy. It applies to connections created
/// from now on; existing ones keep working.
pub async fn set(
    State(service): State<AppState>,
    OperatorCaller(operator): OperatorCaller,
    audit: AuditNote,
    Path(id): Path<String>,
    Body(input): Body<PolicyInput>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant(&service, &id).await?;
    let record = input
        .validate()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", e.to_string()))?;
    let record = service.store.set_policy(&tenant.id, &record).await?;
    tracing::info!(tenant = %tenant.id, operator = %operator.id, "tenant policy set");
    let shown = policy_json(&service, &tenant.id, &record).await?;
    for key in [
        "enabled_connectors",
        "disabled_connectors",
        "allowed_auth_types",
    ] {
        audit.detail(key, shown.get(key).cloned().unwrap_or(Value::Null));
    }
    Ok(Json(shown))
}

/// `GET /v1/tenant/policy`: the caller's own tenant's policy.
pub async fn own(State(service): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let record = service.store.policy(&caller.tenant.id).await?;
    Ok(Json(
        policy_json(&service, &caller.tenant.id, &record).await?,
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthAppRequest {
    client_id: String,
    client_secret: Secret,
    #[serde(default)]
    scopes: Vec<String>,
    /// Values of the fields the connector builds its OAuth endpoints from (such as a
    /// self-hosted provider's address), fixed for every connection using the app.
    #[serde(default)]
    endpoint_fields: BTreeMap<String, String>,
}

/// `PUT /v1/tenants/{id}/oauth-apps/{connector}`
pub async fn set_oauth_app(
    State(service): State<AppState>,
    OperatorCaller(operator): OperatorCaller,
    audit: AuditNote,
    Path((id, connector)): Path<(String, String)>,
    Body(request): Body<OAuthAppRequest>,
) -> ApiResult<Json<Value>> {
    // What was set, never the secret itself.
    audit.detail("client_id", request.client_id.as_str());
    audit.detail("client_secret_set", !request.client_secret.is_empty());
    audit.detail("scopes", request.scopes.clone());
    audit.detail("endpoint_fields", json!(request.endpoint_fields));
    let tenant = tenant(&service, &id).await?;
    if request.client_id.trim().is_empty() {
        return Err(ApiError::invalid_field("client_id", "`client_id` is empty"));
    }
    if request.client_secret.expose().is_empty() {
        return Err(ApiError::invalid_field(
            "client_secret",
            "`client_secret` is empty",
        ));
    }
    if let Some(loaded) = service.catalog.get(&connector) {
        crate::connections::check_tenant_app_fits(
            loaded.connector.manifest(),
            &request.endpoint_fields,
        )
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message))?;
    }
    let app = service
        .store
        .set_tenant_oauth_app(
            &tenant.id,
            &connector,
            request.client_id.trim(),
            &request.client_secret,
            &request.scopes,
            &request.endpoint_fields,
        )
        .await?;
    tracing::info!(tenant = %tenant.id, connector = %connector, operator = %operator.id, "tenant OAuth app set");
    Ok(Json(json!(app)))
}

/// `DELETE /v1/tenants/{id}/oauth-apps/{connector}`
pub async fn delete_oauth_app(
    State(service): State<AppState>,
    _operator: OperatorCaller,
    Path((id, connector)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = tenant(&service, &id).await?;
    if service
        .store
        .delete_tenant_oauth_app(&tenant.id, &connector)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("OAuth app for connector", &connector))
    }
}
