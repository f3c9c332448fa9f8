//! Folders and the permissions granted on them.

use super::tenancy::check_name;
use crate::access::Caller;
use crate::api::audit::AuditNote;
use crate::api::extract::{Body, Pagination, Query};
use crate::api::{ApiError, ApiResult, AppState};
use crate::store::{Folder, Grant, Page, Permissions};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// A folder with the caller's effective permissions on it.
#[derive(Debug, Serialize)]
pub struct FolderView {
    #[serde(flatten)]
    folder: Folder,
    permissions: Permissions,
}

/// The folders the caller can view, with its permissions on each.
pub(crate) async fn visible_folders(
    service: &AppState,
    caller: &Caller,
) -> ApiResult<Vec<(Folder, Permissions)>> {
    let all = service
        .store
        .folders_with_grants(&caller.tenant.id, &caller.principal.id)
        .await?;
    Ok(all
        .into_iter()
        .map(|(f, granted)| {
            let p = caller.permissions(&f, granted);
            (f, p)
        })
        .filter(|(_, p)| p.contains(Permissions::VIEW))
        .collect())
}

/// A folder of the caller's tenant, with what was granted to the caller on it.
pub(crate) async fn folder_of_tenant(
    service: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(Folder, Permissions)> {
    Ok(service.connections.folder(caller, id).await?)
}

pub async fn list(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<Pagination>,
) -> ApiResult<Json<Page<FolderView>>> {
    let request = page.request()?;
    let mut items: Vec<FolderView> = visible_folders(&service, &caller)
        .await?
        .into_iter()
        .filter(|(f, _)| request.after.as_ref().is_none_or(|a| f.id > *a))
        .map(|(folder, permissions)| FolderView {
            folder,
            permissions,
        })
        .collect();
    let limit = request.limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|f| crate::store::encode_cursor(&f.folder.id))
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFolder {
    name: String,
}

pub async fn create(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Body(new): Body<NewFolder>,
) -> ApiResult<(StatusCode, Json<FolderView>)> {
    audit.detail("name", new.name.as_str());
    caller.require_admin("create shared folders")?;
    check_name("name", &new.name)?;
    let folder = service
        .store
        .create_folder(&caller.tenant.id, new.name.trim())
        .await?;
    tracing::info!(folder = %folder.id, "folder created");
    audit.target(&folder.id);
    let permissions = caller.permissions(&folder, Permissions::NONE);
    Ok((
        StatusCode::CREATED,
        Json(FolderView {
            folder,
            permissions,
        }),
    ))
}

pub async fn show(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<FolderView>> {
    let (folder, granted) = folder_of_tenant(&service, &caller, &id).await?;
    caller.require(&folder, granted, Permissions::VIEW)?;
    let permissions = caller.permissions(&folder, granted);
    Ok(Json(FolderView {
        folder,
        permissions,
    }))
}

/// Grants are managed on shared folders only: a personal folder is its owner's alone.
async fn shared_folder_for_admin(
    service: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Folder> {
    let (folder, _) = folder_of_tenant(service, caller, id).await?;
    caller.require_admin("manage folder permissions")?;
    if folder.kind == crate::store::FolderKind::Personal {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a personal workspace belongs to its owner alone; permissions cannot be granted on it",
        )
        .detail("folder_id", folder.id));
    }
    Ok(folder)
}

pub async fn grants(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<Grant>>> {
    let folder = shared_folder_for_admin(&service, &caller, &id).await?;
    Ok(Json(Page {
        items: service.store.grants(&folder.id).await?,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    permissions: Vec<String>,
}

pub async fn set_grant(
    State(service): State<AppState>,
    caller: Caller,
    audit: AuditNote,
    Path((id, principal_id)): Path<(String, String)>,
    Body(request): Body<GrantRequest>,
) -> ApiResult<Json<Grant>> {
    audit.detail("permissions", request.permissions.clone());
    let folder = shared_folder_for_admin(&service, &caller, &id).await?;
    let principal = service
        .store
        .principal(&caller.tenant.id, &principal_id)
        .await?
        .ok_or_else(|| ApiError::not_found("principal", &principal_id))?;
    let mut permissions = Permissions::NONE;
    for (i, name) in request.permissions.iter().enumerate() {
        if request.permissions[..i].contains(name) {
            return Err(ApiError::invalid_field(
                "permissions",
                format!("permission `{name}` is given twice; give each once"),
            ));
        }
        let p = Permissions::parse(name).ok_or_else(|| {
            ApiError::invalid_field(
                "permissions",
                format!(
                    "unknown permission `{name}`; permissions are: view, create, edit, delete, use"
                ),
            )
        })?;
        permissions = permissions.union(p);
    }
    if permissions != Permissions::NONE && !permissions.contains(Permissions::VIEW) {
        // Every other permission acts on connections one must be able to see.
        permissions = permissions.union(Permissions::VIEW);
    }
    let grant = Grant {
        folder_id: folder.id,
        principal_id: principal.id,
        permissions,
    };
    service.store.set_grant(&grant).await?;
    tracing::info!(folder = %grant.folder_id, principal = %grant.principal_id, permissions = ?grant.permissions.names(), "grant set");
    Ok(Json(grant))
}

pub async fn delete_grant(
    State(service): State<AppState>,
    caller: Caller,
    Path((id, principal_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let folder = shared_folder_for_admin(&service, &caller, &id).await?;
    if !service
        .store
        .delete_grant(&folder.id, &principal_id)
        .await?
    {
        return Err(ApiError::not_found("grant for principal", &principal_id));
    }
    Ok(StatusCode::NO_CONTENT)
}
