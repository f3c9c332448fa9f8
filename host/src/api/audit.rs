//! The audit log of administrators' and operators' acts: which requests are acts, the note
//! the authentication extractors and the handlers fill in, and the record written once the
//! answer is known (who, with which token, what, on what, when, how it ended). Refused and
//! failed attempts are recorded too; a request without a valid token is no one's act.
//!
//! A note holds names, ids and settings, never a secret: handlers add what they know of
//! the act (the id of what they created, the permissions granted), never a request body.

use super::AppState;
use crate::store::{AuditActor, AuditOutcome, NewAuditEvent};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// The requests that are acts: `(method, route, action)`.
pub const ACTS: &[(&str, &str, &str)] = &[
    ("PATCH", "/v1/tenant", "tenant.update"),
    ("POST", "/v1/principals", "principal.create"),
    ("POST", "/v1/principals/{id}/tokens", "token.create"),
    (
        "DELETE",
        "/v1/principals/{id}/tokens/{token_id}",
        "token.revoke",
    ),
    ("POST", "/v1/folders", "folder.create"),
    ("PUT", "/v1/folders/{id}/grants/{principal_id}", "grant.set"),
    (
        "DELETE",
        "/v1/folders/{id}/grants/{principal_id}",
        "grant.delete",
    ),
    ("PUT", "/v1/tenants/{id}/policy", "policy.set"),
    (
        "PUT",
        "/v1/tenants/{id}/oauth-apps/{connector}",
        "tenant_oauth_app.set",
    ),
    (
        "DELETE",
        "/v1/tenants/{id}/oauth-apps/{connector}",
        "tenant_oauth_app.delete",
    ),
    ("POST", "/v1/catalog/versions", "catalog.publish"),
    ("DELETE", "/v1/catalog/{name}", "catalog.unpublish"),
    (
        "DELETE",
        "/v1/catalog/{name}/versions/{version}",
        "catalog.unpublish",
    ),
    (
        "POST",
        "/v1/catalog/{name}/versions/{version}/skip",
        "catalog.skip",
    ),
    (
        "DELETE",
        "/v1/catalog/{name}/versions/{version}/skip",
        "catalog.unskip",
    ),
    ("POST", "/v1/catalog/{name}/install", "catalog.install"),
    ("POST", "/v1/catalog/{name}/upgrade", "catalog.upgrade"),
    ("POST", "/v1/catalog/{name}/rollback", "catalog.rollback"),
];

/// Requests that are acts only when their handler says so: giving a secret field a
/// credential store reference (an administrator's act) on a connection.
const MAYBE: &[(&str, &str)] = &[
    ("POST", "/v1/connections"),
    ("PATCH", "/v1/connections/{id}"),
];

/// The action giving secret fields credential store references.
pub const REFERENCE_SECRET: &str = "connection.reference_secret";

#[derive(Debug, Default)]
struct Note {
    actor: Option<AuditActor>,
    tenant_id: Option<String>,
    action: Option<String>,
    target: Option<String>,
    details: Map<String, Value>,
}

/// What an audited request's extractors and handler know of the act. Inert on requests
/// that are not acts.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Option<Arc<Mutex<Note>>>);

impl AuditNote {
    fn with(&self, f: impl FnOnce(&mut Note)) {
        if let Some(note) = &self.0
            && let Ok(mut note) = note.lock()
        {
            f(&mut note);
        }
    }

    /// Who acts, and within which tenant (`None`: an operator, service-wide).
    pub fn actor(&self, actor: AuditActor, tenant_id: Option<&str>) {
        self.with(|n| {
            n.actor = Some(actor);
            if tenant_id.is_some() {
                n.tenant_id = tenant_id.map(str::to_owned);
            }
        });
    }

    /// The act, on a request that is one only when the handler says so.
    pub fn act(&self, action: &str) {
        self.with(|n| n.action = Some(action.to_owned()));
    }

    /// What the act was done to (the id of what it created, a `name@version`).
    pub fn target(&self, target: impl Into<String>) {
        let target = target.into();
        self.with(|n| n.target = Some(target));
    }

    /// A detail of the act: a name, an id, a setting; never a secret.
    pub fn detail(&self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        self.with(|n| {
            n.details.insert(key.to_owned(), value);
        });
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditNote {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

/// Notes the authenticated caller on an audited request (the extractors call it).
pub(super) fn note_actor(parts: &Parts, actor: AuditActor, tenant_id: Option<&str>) {
    if let Some(note) = parts.extensions.get::<AuditNote>() {
        note.actor(actor, tenant_id);
    }
}

/// The API error code of an answer, for the record (set by the error envelope).
#[derive(Debug, Clone)]
pub(super) struct ErrorCode(pub String);

/// The request's id, for the record (set by the request middleware).
#[derive(Debug, Clone)]
pub(super) struct RequestId(pub String);

/// The values of a route's `{parameters}` in a path, in order.
fn parameters(template: &str, path: &str) -> Vec<(String, String)> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            let value = percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned();
            Some((name.to_owned(), value))
        })
        .collect()
}

/// Records the acts among the requests it sees, once they are answered.
pub async fn record(State(service): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let Some(template) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let fixed = ACTS
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, action)| (*action).to_owned());
    let maybe = MAYBE.iter().any(|(m, t)| *m == method && *t == template);
    if fixed.is_none() && !maybe {
        return next.run(request).await;
    }
    let note = Arc::new(Mutex::new(Note::default()));
    request
        .extensions_mut()
        .insert(AuditNote(Some(note.clone())));
    let params = parameters(&template, request.uri().path());
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    // The act and its record run on a task of their own: a client that hangs up (hyper then
    // drops the request's future) stops neither the act's record nor, once it started, the
    // act.
    let done = tokio::spawn(act_and_record(
        service, next, request, note, template, fixed, params, request_id,
    ));
    match done.await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "an audited request failed");
            super::ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the request failed inside the service; it is in the service's log",
            )
            .into_response()
        }
    }
}

/// Runs an audited request, then records the act.
#[allow(clippy::too_many_arguments)]
async fn act_and_record(
    service: AppState,
    next: Next,
    request: Request,
    note: Arc<Mutex<Note>>,
    template: String,
    fixed: Option<String>,
    params: Vec<(String, String)>,
    request_id: Option<String>,
) -> Response {
    let response = next.run(request).await;
    let note = match note.lock() {
        Ok(mut note) => std::mem::take(&mut *note),
        Err(_) => return response,
    };
    // No valid token: nobody's act (the request log has it).
    let (Some(actor), Some(action)) = (note.actor, fixed.or(note.action)) else {
        return response;
    };
    let status = response.status().as_u16();
    let tenant_id = note.tenant_id.or_else(|| {
        template
            .starts_with("/v1/tenants/{id}")
            .then(|| params.first().map(|(_, v)| v.clone()))
            .flatten()
    });
    let target = note.target.or_else(|| {
        (!params.is_empty()).then(|| {
            params
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        })
    });
    let event = NewAuditEvent {
        tenant_id,
        actor,
        action,
        target,
        outcome: AuditOutcome::of_status(status),
        status: Some(status),
        error_code: response
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.0.clone()),
        request_id,
        details: note.details,
    };
    if let Err(e) = service.store.record_audit(&event).await {
        // The act happened; its record is lost: the operator must know.
        tracing::error!(action = %event.action, actor = %event.actor.id, status, error = %e, "the audit record of an act could not be written");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_from_the_path_by_the_route() {
        assert_eq!(
            parameters(
                "/v1/folders/{id}/grants/{principal_id}",
                "/v1/folders/fld_1/grants/prn%5F2"
            ),
            [
                ("id".to_owned(), "fld_1".to_owned()),
                ("principal_id".to_owned(), "prn_2".to_owned())
            ]
        );
        assert!(parameters("/v1/principals", "/v1/principals").is_empty());
    }

    #[test]
    fn every_act_is_a_mutation() {
        for (method, route, action) in ACTS {
            assert!(
                matches!(*method, "POST" | "PUT" | "PATCH" | "DELETE"),
                "{method} {route}"
            );
            assert!(action.contains('.'), "{action}");
        }
    }
}
