//! OAuth 2.0 through the service: starting an authorization (on create and reconnect), the
//! start page its link opens, the provider's callback, and the redirect URI users register
//! in their own apps.
//!
//! A consent link must not be usable against the person who opens it: the link handed out
//! (`/v1/oauth/start/<token>`) opens a page of this service naming the connection, its
//! tenant and who started it, and only its form sends the browser on to the provider,
//! setting a cookie (HttpOnly, SameSite=Lax) that binds the consent to that browser. The
//! callback requires it: a provider URL passed to someone else, or a consent given in
//! another browser, connects nothing. The form itself carries a value that must match a
//! SameSite=Strict cookie set with the page, so a form submitted from another site (which
//! would skip the page) is refused.
//!
//! The callback is opened by the user's browser: it answers with a page saying what
//! happened and what to do, or with the JSON error envelope when asked for JSON.

use crate::access::Caller;
use crate::api::{ApiError, ApiResult, AppState};
use crate::auth::oauth::{Grant, hint};
use crate::connections::{self, START_PATH, random_token, sha256};
use crate::store::{
    ConnectionRecord, Health, HealthStatus, Permissions, StartLookup, StateLookup, Timestamp,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The cookie binding a consent to the browser that continued from its start page, per
/// flow (`junction_consent_<flow>`). SameSite=Lax: the provider's redirect back to the
/// callback is a top-level navigation, which carries it.
const BINDING_COOKIE: &str = "junction_consent_";
/// The cookie the start page's form must match (`junction_check_<flow>`). SameSite=Strict:
/// a form posted from another site never carries it.
const CHECK_COOKIE: &str = "junction_check_";

/// A flow's name in its cookies' names: from its start token's hash (not secret).
fn flow_id(start_hash: &[u8]) -> String {
    start_hash
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The values of the request's cookies whose names start with `prefix`, with their names.
fn cookies<'h>(headers: &'h HeaderMap, prefix: &str) -> Vec<(&'h str, &'h str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.starts_with(prefix))
        .collect()
}

/// The SHA-256 of every consent binding the browser presents.
fn presented_bindings(headers: &HeaderMap) -> Vec<Vec<u8>> {
    cookies(headers, BINDING_COOKIE)
        .into_iter()
        .map(|(_, value)| sha256(value))
        .collect()
}

/// A `Set-Cookie` value: HttpOnly, on `path`, for `max_age_s` seconds, `Secure` when the
/// service is reached over https.
fn set_cookie(
    service: &AppState,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age_s: i64,
) -> Option<HeaderValue> {
    let secure = if service.oauth.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={}{path}; Max-Age={max_age_s}; HttpOnly; SameSite={same_site}{secure}",
        public_path(service)
    ))
    .ok()
}

/// The path part of the public URL (empty, or `/junction` behind a reverse proxy).
fn public_path(service: &AppState) -> String {
    url::Url::parse(service.oauth.public_url())
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// A page saying, in one paragraph, why a consent link cannot go on.
fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", escape(message)))
}

/// What a start link leads to, or the page to answer instead.
struct Start {
    found: StartLookup,
    start_hash: Vec<u8>,
    connection: ConnectionRecord,
    tenant: String,
    principal: String,
}

/// The authorization of a start link that can still be continued, with the names the page
/// shows; otherwise the page saying why not.
async fn open_start(service: &AppState, token: &str) -> Result<Start, Response> {
    let internal = |e: ApiError| message_page(e.status, "This consent cannot be shown", &e.message);
    let unknown = || {
        message_page(
            StatusCode::NOT_FOUND,
            "Unknown consent link",
            "This consent link is unknown to this service: it was altered, or it was made by another service. Ask whoever sent it to reconnect the connection in Junction and send the new link.",
        )
    };
    let start_hash = sha256(token);
    let found = match service.store.authorization_start(&start_hash).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(unknown()),
        Err(e) => return Err(internal(e.into())),
    };
    if found.expires_at < Timestamp::now() {
        return Err(message_page(
            StatusCode::GONE,
            "This consent link expired",
            "A consent must be given within 10 minutes of starting it. Reconnect the connection in Junction for a new link.",
        ));
    }
    if found.used {
        return Err(message_page(
            StatusCode::GONE,
            "This consent link was used",
            "This consent was finished already. If the connection is not connected, reconnect it in Junction for a new link.",
        ));
    }
    let pending = &found.pending;
    let lookups = async {
        let connection = service
            .store
            .connection(&pending.tenant_id, &pending.connection_id)
            .await?;
        let tenant = service.store.tenant(&pending.tenant_id).await?;
        let principal = service
            .store
            .principal(&pending.tenant_id, &pending.principal_id)
            .await?;
        Ok::<_, crate::store::StoreError>((connection, tenant, principal))
    };
    match lookups.await {
        Ok((Some(connection), Some(tenant), Some(principal))) => Ok(Start {
            found,
            start_hash,
            connection,
            tenant: tenant.name,
            principal: principal.name,
        }),
        Ok(_) => Err(unknown()),
        Err(e) => Err(internal(e.into())),
    }
}

/// The host of the provider's authorization URL, for the page.
fn provider_host(found: &StartLookup) -> String {
    url::Url::parse(found.pending.authorize_url.expose())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the provider".into())
}

/// `GET /v1/oauth/start/{token}`: the page a consent link opens. It says who asks for
/// which connection, and its form continues to the provider.
pub async fn start_page(State(service): State<AppState>, Path(token): Path<String>) -> Response {
    let start = match open_start(&service, &token).await {
        Ok(start) => start,
        Err(page) => return page,
    };
    let check = match random_token() {
        Ok(c) => c,
        Err(e) => {
            let e = ApiError::from(e);
            return message_page(e.status, "This consent cannot be shown", &e.message);
        }
    };
    let flow = flow_id(&start.start_hash);
    let host = provider_host(&start.found);
    let remaining_s = ((start.found.expires_at.0 - Timestamp::now().0) / 1000).max(1);
    let body = format!(
        r#"<p>You are connecting <strong>your account at {host}</strong> to the connection <strong>{connection}</strong> ({connector}) of <strong>{principal}</strong> in <strong>{tenant}</strong>.</p>
<p class="warning">Continue only if you asked for this. Whoever uses this connection will act with your account at {host}.</p>
<form method="post" action="{action}">
<input type="hidden" name="step" value="junction-consent">
<input type="hidden" name="check" value="{check}">
<button type="submit">Continue to {host}</button>
</form>
<p class="code">If you did not expect this, close this page: nothing happens. This link works once, for {minutes} more minutes.</p>"#,
        host = escape(&host),
        connection = escape(&start.connection.name),
        connector = escape(&start.connection.connector),
        principal = escape(&start.principal),
        tenant = escape(&start.tenant),
        action = escape(&format!(
            "{}{START_PATH}{token}",
            service.oauth.public_url()
        )),
        check = check,
        minutes = (remaining_s + 59) / 60,
    );
    let mut response = page(StatusCode::OK, "Connect your account", &body);
    let start_path = START_PATH.trim_end_matches('/');
    if let Some(cookie) = set_cookie(
        &service,
        &format!("{CHECK_COOKIE}{flow}"),
        &check,
        start_path,
        "Strict",
        remaining_s,
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /v1/oauth/start/{token}`: the start page's form. Binds the consent to this
/// browser (a cookie the callback requires) and sends it to the provider.
pub async fn continue_start(
    State(service): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Continue from the consent page",
            "<p>This address takes the consent page's form. Open the consent link in a browser and continue from its page.</p>",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return page(
                rejection.status(),
                "Continue from the consent page",
                "<p>This request is not the consent page's form (its body is too large or cannot be read). Open the consent link in a browser and continue from its page.</p>",
            );
        }
    };
    let start = match open_start(&service, &token).await {
        Ok(start) => start,
        Err(page) => return page,
    };
    let flow = flow_id(&start.start_hash);
    // The form must come from the start page: its value matches the Strict cookie set
    // with the page, which a form posted from another site does not carry.
    let given = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "check")
        .map(|(_, v)| v.into_owned());
    let expected = cookies(&headers, &format!("{CHECK_COOKIE}{flow}"))
        .into_iter()
        .find(|(name, _)| *name == format!("{CHECK_COOKIE}{flow}"))
        .map(|(_, value)| value.to_owned());
    let matches = match (&given, &expected) {
        (Some(g), Some(e)) => {
            use subtle::ConstantTimeEq as _;
            bool::from(g.as_bytes().ct_eq(e.as_bytes()))
        }
        _ => false,
    };
    if !matches {
        return message_page(
            StatusCode::FORBIDDEN,
            "Continue from the consent page",
            "This consent can only be continued from its own page. Open the consent link again in this browser and read who is asking before you continue.",
        );
    }
    let binding = match random_token() {
        Ok(b) => b,
        Err(e) => {
            let e = ApiError::from(e);
            return message_page(e.status, "This consent cannot be continued", &e.message);
        }
    };
    match service
        .store
        .bind_authorization(
            &start.start_hash,
            &sha256(&binding),
            &presented_bindings(&headers),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return message_page(
                StatusCode::CONFLICT,
                "This consent continues in another browser",
                "This consent was continued from another browser, and only that browser can finish it. If that was not you, ask whoever sent the link to reconnect the connection in Junction.",
            );
        }
        Err(e) => {
            let e: ApiError = e.into();
            return message_page(e.status, "This consent cannot be continued", &e.message);
        }
    }
    let remaining_s = ((start.found.expires_at.0 - Timestamp::now().0) / 1000).max(1);
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response();
    match HeaderValue::from_str(start.found.pending.authorize_url.expose()) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Err(_) => {
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This consent cannot be continued",
                "The provider's address cannot be used; reconnect the connection in Junction.",
            );
        }
    }
    let oauth_path = "/v1/oauth";
    for cookie in [
        set_cookie(
            &service,
            &format!("{BINDING_COOKIE}{flow}"),
            &binding,
            oauth_path,
            "Lax",
            remaining_s,
        ),
        set_cookie(
            &service,
            &format!("{CHECK_COOKIE}{flow}"),
            "",
            START_PATH.trim_end_matches('/'),
            "Strict",
            0,
        ),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    tracing::info!(connection = %start.connection.id, "consent continued to the provider");
    response
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
    let outcome = finish(&service, query, &presented_bindings(&headers)).await;
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
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Never in a frame (a consent page under someone else's page is a click away from
    // being pressed blindly), no script, no referrer carrying the link's token.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn state_error(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

async fn finish(
    service: &AppState,
    query: CallbackQuery,
    presented: &[Vec<u8>],
) -> ApiResult<Connected> {
    let Some(state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(state_error(
            "oauth_state_missing",
            "The provider's answer carries no `state`, so it cannot be matched to a connection. Start again: reconnect the connection from Junction.",
        ));
    };
    // Looked at, not used up yet: the exchange is prepared first (a vault read may fail
    // for a moment, and the link must then still work).
    let pending = match service
        .store
        .peek_authorization(&sha256(state), presented)
        .await?
    {
        StateLookup::Pending(p) => p,
        StateLookup::NotThisBrowser => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "oauth_browser_mismatch",
                "This consent was not started in this browser, so it connects nothing. Open the consent link Junction gave (…/v1/oauth/start/…) in this browser, read who is asking, and continue from its page.",
            ));
        }
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
    let loaded = service.connections.loaded(&record)?;
    let manifest = loaded.connector.manifest();
    // Stored secrets and those a credential store holds (a client secret in a vault). The
    // person consenting may not belong to the tenant: they are not told about its vault;
    // the connection's health says why, for its users.
    let secrets = match service.connections.grant_secrets(&record).await {
        Ok(secrets) => secrets,
        Err(e) => {
            let e = ApiError::from(e);
            tracing::warn!(connection = %record.id, error = %e.message, "the code exchange cannot read the client secret");
            record_failure(service, &record, &e.message).await;
            return Err(ApiError::new(
                e.status,
                &e.code,
                "The connection's OAuth app cannot be used right now: its client secret could not be read. Whoever manages the connection in Junction can see why; this consent link still works once that is fixed.",
            ));
        }
    };
    let provider = service
        .connections
        .provider_for(manifest, &record, &secrets)?;
    // Everything the exchange needs is at hand: the state is used up now, once.
    if !matches!(
        service
            .store
            .take_authorization(&sha256(state), presented)
            .await?,
        StateLookup::Pending(_)
    ) {
        return Err(state_error(
            "oauth_state_used",
            "This authorization was already used (the page was reloaded, or the link was replayed). If the connection is not connected, reconnect it from Junction.",
        ));
    }
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
            let error = ApiError::from(connections::Error::grant(e, &provider))
                .detail("connection_id", record.id.clone());
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
