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
    if let Some(id) = &query.connection_id
        && !is_id(id, "con")
    {
        return Err(ApiError::invalid_parameter(
            "connection_id",
            "`connection_id` is a connection's id: `con_` and 26 lowercase letters and digits",
        ));
    }
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

/// Whether `text` has the shape of an id of `prefix` (`con_` and 26 of `[0-9a-z]`).
fn is_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            rest.len() == 26
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
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
