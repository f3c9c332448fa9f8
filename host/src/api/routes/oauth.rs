//! OAuth 2.0 through the service: starting an authorization (on create and reconnect), the
//! provider's callback, and the redirect URI users register in their own apps.
//!
//! The callback is opened by the user's browser: it answers with a page saying what
//! happened and what to do, or with the JSON error envelope when asked for JSON.

use crate::access::Caller;
use crate::api::{ApiError, ApiResult, AppState};
use crate::auth::oauth::{Grant, GrantError, Provider, SetupError, hint};
use crate::connections;
use crate::credentials::Secret;
use crate::store::{
    ConnectionRecord, Health, HealthStatus, PendingAuthorization, Permissions, StateLookup,
    Timestamp, Tokens,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How long a user has to finish the consent.
const AUTHORIZATION_TTL_MS: i64 = 10 * 60 * 1000;

/// The consent window: [`AUTHORIZATION_TTL_MS`], or in a debug build what
/// `JUNCTION_TEST_AUTHORIZATION_TTL_MS` says (the tests of an expired state). Release
/// builds have no such switch.
fn authorization_ttl_ms() -> i64 {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("JUNCTION_TEST_AUTHORIZATION_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return ms;
    }
    AUTHORIZATION_TTL_MS
}

/// An authorization to finish in the browser.
#[derive(Debug, Clone, Serialize)]
pub struct Authorization {
    /// Open this URL in a browser to consent at the provider.
    pub url: String,
    /// Where the provider sends the browser back; it must be registered in the OAuth app.
    pub redirect_uri: String,
    pub expires_at: Timestamp,
}

/// A 400 for OAuth settings that cannot work.
pub fn setup_error(e: &SetupError) -> ApiError {
    let field = match e {
        SetupError::Required { field } => format!("fields.{field}"),
        SetupError::MissingField { field, .. } => format!("fields.{field}"),
        SetupError::NoApp { .. } => "fields.client_id".into(),
        _ => "auth".into(),
    };
    ApiError::invalid_field(&field, e.to_string())
}

/// A 400 for a grant the provider refused, with what to do about it.
pub fn grant_error(e: &GrantError, provider: &Provider) -> ApiError {
    let code = e.code().unwrap_or("unreachable");
    let mut error = ApiError::new(
        if e.code().is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        },
        if code == "missing_scopes" {
            "missing_scopes"
        } else {
            "authorization_failed"
        },
        format!("{e}. {}", hint(code, Some(provider))),
    )
    .detail("provider_error", code);
    if let GrantError::MissingScopes { missing } = e {
        error = error.detail("missing_scopes", missing.clone());
    }
    error
}

fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Starts an authorization by `caller` for connection `connection_id`: a fresh `state`
/// (kept as its hash), and the PKCE verifier kept sealed server-side.
pub async fn start(
    service: &AppState,
    caller: &Caller,
    connection_id: &str,
    provider: &Provider,
) -> ApiResult<Authorization> {
    let random = crate::credentials::at_rest::random_bytes::<32>()
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let (url, verifier) = provider
        .authorization_url(&state)
        .map_err(|e| setup_error(&e))?;
    let now = Timestamp::now();
    let expires_at = Timestamp(now.0 + authorization_ttl_ms());
    service
        .store
        .start_authorization(
            &sha256(&state),
            &PendingAuthorization {
                connection_id: connection_id.to_owned(),
                tenant_id: caller.tenant.id.clone(),
                principal_id: caller.principal.id.clone(),
                pkce_verifier: verifier.unwrap_or_else(|| Secret::new("")),
                created_at: now,
            },
            expires_at,
        )
        .await?;
    tracing::info!(connection = connection_id, principal = %caller.principal.id, own_app = provider.own_app, "authorization started");
    Ok(Authorization {
        url: url.to_string(),
        redirect_uri: provider.redirect_uri.clone(),
        expires_at,
    })
}

/// For the password and client credentials grants: tokens now, or the provider's refusal.
pub async fn request_tokens(service: &AppState, provider: &Provider) -> ApiResult<Tokens> {
    service
        .oauth
        .request_tokens(provider)
        .await
        .map_err(|e| grant_error(&e, provider))
}

/// `GET /v1/oauth/redirect-uri`: the URI to register in an OAuth app.
pub async fn redirect_uri(State(service): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({"redirect_uri": service.oauth.redirect_uri()}))
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What the callback did.
#[derive(Debug, Serialize)]
struct Connected {
    connection_id: String,
    connection_name: String,
    connector: String,
    health: HealthStatus,
    scopes: Vec<String>,
    expires_at: Option<Timestamp>,
    refresh_token: bool,
    warnings: Vec<String>,
}

/// `GET /v1/oauth/callback`: the provider sends the user back here.
pub async fn callback(
    State(service): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    let outcome = finish(&service, query).await;
    match (outcome, wants_json) {
        (Ok(done), true) => (StatusCode::OK, Json(done)).into_response(),
        (Ok(done), false) => {
            let mut body = format!(
                "<p>The connection <strong>{}</strong> ({}) is connected. You can close this window.</p>",
                escape(&done.connection_name),
                escape(&done.connector)
            );
            for w in &done.warnings {
                body.push_str(&format!("<p class=\"warning\">Note: {}</p>", escape(w)));
            }
            page(StatusCode::OK, "Connected", &body)
        }
        (Err(e), true) => e.into_response(),
        (Err(e), false) => {
            let body = format!(
                "<p>{}</p><p class=\"code\">Error code: {}</p>",
                escape(&e.message),
                escape(&e.code)
            );
            page(e.status, "The connection was not authorized", &body)
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Junction</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}\
         .warning{{color:#8a5a00}}.code{{color:#666;font-size:.9em}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn state_error(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

async fn finish(service: &AppState, query: CallbackQuery) -> ApiResult<Connected> {
    let Some(state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(state_error(
            "oauth_state_missing",
            "The provider's answer carries no `state`, so it cannot be matched to a connection. Start again: reconnect the connection from Junction.",
        ));
    };
    let pending = match service.store.take_authorization(&sha256(state)).await? {
        StateLookup::Pending(p) => p,
        StateLookup::Unknown => {
            return Err(state_error(
                "oauth_state_invalid",
                "This authorization is unknown to this service: the link was altered, or it was started on another service. Start again: reconnect the connection from Junction.",
            ));
        }
        StateLookup::Used => {
            return Err(state_error(
                "oauth_state_used",
                "This authorization was already used (the page was reloaded, or the link was replayed). If the connection is not connected, reconnect it from Junction.",
            ));
        }
        StateLookup::Expired => {
            return Err(state_error(
                "oauth_state_expired",
                "This authorization expired: the consent must be given within 10 minutes of starting it. Start again: reconnect the connection from Junction.",
            ));
        }
    };
    let record = service
        .store
        .connection(&pending.tenant_id, &pending.connection_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "The connection this authorization was for has been deleted.",
            )
        })?;
    // The grant is the principal's who started the authorization: they must still be
    // allowed to edit the connection.
    let starter = match (
        service.store.tenant(&pending.tenant_id).await?,
        service
            .store
            .principal(&pending.tenant_id, &pending.principal_id)
            .await?,
    ) {
        (Some(tenant), Some(principal)) => Caller { principal, tenant },
        _ => {
            return Err(state_error(
                "oauth_state_invalid",
                "The principal who started this authorization no longer exists. Start again: reconnect the connection from Junction.",
            ));
        }
    };
    let (folder, granted) =
        super::folders::folder_of_tenant(service, &starter, &record.folder_id).await?;
    starter.require(&folder, granted, Permissions::EDIT)?;
    let loaded = connections::loaded(service, &record)?;
    let manifest = loaded.connector.manifest();
    let secrets = service.store.connection_secrets(&record.id).await?;
    let provider = connections::provider_of(
        service,
        manifest,
        &record.auth,
        &record.fields,
        &secrets,
        record.tenant_app.as_ref(),
    )
    .map_err(|e| setup_error(&e))?;
    if let Some(error) = query.error.as_deref() {
        let description = query
            .error_description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let message = format!(
            "The provider answered `{error}`{description}. {}",
            hint(error, Some(&provider))
        );
        record_failure(service, &record, &message).await;
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "authorization_failed", message)
                .detail("provider_error", error)
                .detail("connection_id", record.id.clone()),
        );
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err(state_error(
            "authorization_failed",
            "The provider's answer carries neither a `code` nor an `error`. Start again: reconnect the connection from Junction.",
        ));
    };
    let verifier = (!pending.pkce_verifier.is_empty()).then_some(&pending.pkce_verifier);
    let tokens = match service.oauth.exchange_code(&provider, code, verifier).await {
        Ok(t) => t,
        Err(e) => {
            let error = grant_error(&e, &provider).detail("connection_id", record.id.clone());
            record_failure(service, &record, &error.message).await;
            return Err(error);
        }
    };
    let mut warnings = Vec::new();
    if tokens.refresh_token.is_none() {
        let lifetime = tokens
            .expires_at
            .map(|e| format!(" for {} s", (e.0 - tokens.issued_at.0) / 1000))
            .unwrap_or_default();
        if matches!(provider.grant, Grant::Code { .. }) && tokens.expires_at.is_some() {
            warnings.push(format!(
                "the provider issued an access token valid{lifetime} and no refresh token, so the connection will need to be reconnected when it expires. To avoid that, request offline access (often the scope `offline_access`) in the OAuth app and the connection's scopes."
            ));
        }
    }
    service
        .store
        .authorize_connection(&record.id, &tokens)
        .await?;
    service.oauth.forget(&record.id);
    tracing::info!(connection = %record.id, principal = %pending.principal_id, "connection authorized");
    Ok(Connected {
        connection_id: record.id.clone(),
        connection_name: record.name.clone(),
        connector: record.connector.clone(),
        health: HealthStatus::Healthy,
        scopes: tokens.scopes.clone(),
        expires_at: tokens.expires_at,
        refresh_token: tokens.refresh_token.is_some(),
        warnings,
    })
}

/// Notes a failed authorization on a connection that is not in use yet (a healthy one
/// keeps working with its current tokens).
async fn record_failure(service: &AppState, record: &ConnectionRecord, message: &str) {
    if !matches!(
        record.health.status,
        HealthStatus::PendingAuthorization | HealthStatus::NeedsReauthentication
    ) {
        return;
    }
    let health = Health {
        status: record.health.status,
        reason: Some(message.to_owned()),
        checked_at: Some(Timestamp::now()),
    };
    if let Err(e) = service.store.set_health(&record.id, &health).await {
        tracing::warn!(connection = %record.id, error = %e, "cannot record the failed authorization");
    }
}
