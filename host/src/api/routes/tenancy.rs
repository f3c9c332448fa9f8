//! The caller, its tenant, and the tenant's principals and their tokens.

use crate::access::Caller;
use crate::api::audit::AuditNote;
use crate::api::extract::{Body, OptionalBody, Pagination, Query, present};
use crate::api::{ApiError, ApiResult, AppState};
use crate::store::{NewToken, Page, Principal, Role, Tenant};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn me(caller: Caller) -> Json<Value> {
    Json(json!({"principal": caller.principal, "tenant": caller.tenant}))
}

pub async fn tenant(caller: Caller) -> Json<Tenant> {
    Json(caller.tenant)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    members_can_create_shared_connections: Option<bool>,
}

/// A display name: 1 to 200 characters, not blank.
pub(crate) fn check_name(field: &str, name: &str) -> ApiResult<()> {
    if !crate::store::is_display_name(name) {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` must be 1 to 200 characters and not blank"),
        ));
    }
    Ok(())
}

pub async fn update_tenant(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Body(update): Body<TenantUpdate>,
) -> ApiResult<Json<Tenant>> {
    audit.target(&caller.tenant.id);
    if let Some(name) = &update.name {
        audit.detail("name", name.as_str());
    }
    if let Some(members) = update.members_can_create_shared_connections {
        audit.detail("members_can_create_shared_connections", members);
    }
    caller.require_admin("change the tenant's settings")?;
    if let Some(name) = &update.name {
        check_name("name", name)?;
    }
    let tenant = service
        .store
        .update_tenant(
            &caller.tenant.id,
            update.name.as_deref(),
            update.members_can_create_shared_connections,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &caller.tenant.id))?;
    Ok(Json(tenant))
}

pub async fn principals(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<Pagination>,
) -> ApiResult<Json<Page<Principal>>> {
    caller.require_admin("list the tenant's principals")?;
    Ok(Json(
        service
            .store
            .principals(&caller.tenant.id, &page.request()?)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    name: String,
    role: Role,
}

pub async fn create_principal(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Body(new): Body<NewPrincipal>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    audit.detail("name", new.name.as_str());
    audit.detail("role", json!(new.role));
    caller.require_admin("create principals")?;
    check_name("name", &new.name)?;
    let (principal, token) = service
        .store
        .create_principal(&caller.tenant.id, &new.name, new.role)
        .await?;
    audit.target(&principal.id);
    audit.detail("token_id", token.id.as_str());
    tracing::info!(principal = %principal.id, role = ?new.role, "principal created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"principal": principal, "token": token})),
    ))
}

async fn principal_of_tenant(
    service: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Principal> {
    service
        .store
        .principal(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("principal", id))
}

pub async fn principal(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Principal>> {
    let principal = principal_of_tenant(&service, &caller, &id).await?;
    caller.require_self_or_admin(&id, "see other principals")?;
    Ok(Json(principal))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
}

pub async fn create_token(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let principal = principal_of_tenant(&service, &caller, &id).await?;
    // Only for oneself: a token minted for someone else would let its holder act as them,
    // in their personal workspace too. An administrator can revoke others' tokens.
    if caller.principal.id != id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a principal creates its own tokens; an administrator can revoke another principal's tokens, not create them",
        ));
    }
    if let Some(name) = &request.name {
        check_name("name", name)?;
    }
    let token = service
        .store
        .create_token(&principal.id, request.name.as_deref())
        .await?;
    audit.detail("token_id", token.id.as_str());
    tracing::info!(principal = %principal.id, token = %token.id, "token created");
    Ok((StatusCode::CREATED, Json(token)))
}

pub async fn revoke_token(
    State(service): State<AppState>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let principal = principal_of_tenant(&service, &caller, &id).await?;
    caller.require_self_or_admin(&id, "revoke other principals' tokens")?;
    if !service.store.revoke_token(&principal.id, &token_id).await? {
        return Err(ApiError::not_found("active token", &token_id));
    }
    tracing::info!(principal = %principal.id, token = %token_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
