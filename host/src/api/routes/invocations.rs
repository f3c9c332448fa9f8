//! Invocation records.

use super::folders::visible_folders;
use crate::access::Caller;
use crate::api::extract::{Pagination, Query};
use crate::api::{ApiError, ApiResult, AppState};
use crate::store::{InvocationFilter, InvocationRecord, Page, Permissions};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    connection_id: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    #[serde(flatten)]
    page: Pagination,
}

pub async fn list(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<InvocationRecord>>> {
    let page = query.page.request()?;
    let folders = visible_folders(&service, &caller)
        .await?
        .into_iter()
        .map(|(f, _)| f.id)
        .collect();
    let filter = InvocationFilter {
        folders,
        connection_id: query.connection_id,
        action: query.action,
        outcome: query.outcome,
    };
    Ok(Json(
        service
            .store
            .invocations(&caller.tenant.id, &filter, &page)
            .await?,
    ))
}

pub async fn show(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InvocationRecord>> {
    let record = service
        .store
        .invocation(&caller.tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("invocation", &id))?;
    let (folder, granted) =
        super::folders::folder_of_tenant(&service, &caller, &record.folder_id).await?;
    caller.require(&folder, granted, Permissions::VIEW)?;
    Ok(Json(record))
}
