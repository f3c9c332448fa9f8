//! `GET /v1/audit`: the audit log. A tenant's administrators read their tenant's events
//! (operators' acts on its policy and OAuth apps included); operators read every event.

use crate::api::extract::{AnyCaller, Pagination, Query};
use crate::api::{ApiError, ApiResult, AppState};
use crate::store::{AuditEvent, AuditFilter, AuditOutcome, Page, Timestamp};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    action: Option<String>,
    actor_id: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    /// Operators: one tenant's events. A tenant's administrators may only name their own.
    tenant_id: Option<String>,
    #[serde(flatten)]
    page: Pagination,
}

pub async fn list(
    State(service): State<AppState>,
    caller: AnyCaller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    let page = query.page.request()?;
    let tenant_id = match &caller {
        AnyCaller::Operator => query.tenant_id.clone(),
        AnyCaller::Tenant(caller) => {
            caller.require_admin("read the tenant's audit log")?;
            // Another tenant's id finds nothing, exactly like an id that does not exist.
            if query
                .tenant_id
                .as_ref()
                .is_some_and(|id| *id != caller.tenant.id)
            {
                return Ok(Json(Page {
                    items: Vec::new(),
                    next_cursor: None,
                }));
            }
            Some(caller.tenant.id.clone())
        }
    };
    let outcome = match &query.outcome {
        None => None,
        Some(text) => Some(AuditOutcome::parse(text).ok_or_else(|| {
            ApiError::invalid_parameter("outcome", "`outcome` must be one of: ok, refused, failed")
        })?),
    };
    let since = match &query.since {
        None => None,
        Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
            ApiError::invalid_parameter(
                "since",
                "`since` must be an RFC 3339 time, such as 2026-11-22T10:00:00Z",
            )
        })?),
    };
    let filter = AuditFilter {
        tenant_id,
        action: query.action,
        actor_id: query.actor_id,
        outcome,
        since,
    };
    Ok(Json(service.store.audit_events(&filter, &page).await?))
}
