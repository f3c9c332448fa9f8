//! A resource API protected by the test OAuth server: the "upstream API" a connector calls
//! with an access token. It validates tokens the standard way, by introspecting each bearer
//! token at the provider (RFC 7662) as a client of its own, and answers like a resource
//! server of RFC 6750: 401 with `WWW-Authenticate: Bearer error="invalid_token"` for a
//! missing, unknown, expired or revoked token. It records every request and its answer.

use crate::oauth::{self, OAuthServer, RegisteredClient};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A request the resource API answered.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl ResourceRequest {
    /// The bearer token of the request, if it had one.
    pub fn bearer(&self) -> Option<&str> {
        bearer(self.authorization.as_deref())
    }
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

struct ResourceState {
    http: reqwest::Client,
    introspection_endpoint: String,
    client: RegisteredClient,
    seen: Mutex<Vec<ResourceRequest>>,
    /// Tokens this API stopped accepting on its own (see `reject_tokens_seen`).
    rejected: Mutex<Vec<String>>,
}

/// A running resource API; stops when dropped.
#[allow(missing_debug_implementations)]
pub struct Resource {
    pub base_url: String,
    pub addr: SocketAddr,
    /// The client the resource API introspects tokens as (`client_credentials` only).
    pub client: RegisteredClient,
    state: Arc<ResourceState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Resource {
    /// Registers a client of its own at `oauth` and starts the API on loopback.
    ///
    /// Routes: `GET /ping` → `pong` without authentication; `GET /whoami` → `{"sub",
    /// "client_id", "scope"}` of an active access token; `GET /require/{scope}` → the same
    /// when the token has `scope`, else 403 `insufficient_scope`; `GET /echo/authorization`
    /// → the request's `Authorization` header as text, without checking it (an API that
    /// echoes a credential back, for the tests of scrubbing).
    pub async fn start(oauth: &OAuthServer) -> Resource {
        let client = oauth
            .register_client(json!({
                "client_name": "resource API",
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
            }))
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ResourceState {
            http: oauth::http(),
            introspection_endpoint: oauth.introspection_endpoint(),
            client: client.clone(),
            seen: Mutex::new(Vec::new()),
            rejected: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route("/whoami", get(whoami))
            .route("/require/{scope}", get(require_scope))
            .route("/echo/authorization", get(echo_authorization))
            .layer(middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let stop = crate::serve_until_dropped(listener, app);
        Resource {
            base_url: format!("http://{addr}"),
            addr,
            client,
            state,
            _stop: stop,
        }
    }

    /// Every request answered so far, in order.
    pub fn seen(&self) -> Vec<ResourceRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many requests were answered 401.
    pub fn unauthorized_count(&self) -> usize {
        self.seen().iter().filter(|r| r.status == 401).count()
    }

    /// Stops accepting every token seen so far, although the provider still says they are
    /// active: an API that ends its sessions on its own (after a password change, say)
    /// answers 401 to a token its client believes valid.
    pub fn reject_tokens_seen(&self) {
        let seen = self.tokens_seen();
        self.state.rejected.lock().unwrap().extend(seen);
    }

    /// The bearer token of every request that had one, in order (repeats included).
    pub fn tokens_seen(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter_map(|r| r.bearer().map(str::to_owned))
            .collect()
    }
}

async fn record(State(state): State<Arc<ResourceState>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let response = next.run(request).await;
    state.seen.lock().unwrap().push(ResourceRequest {
        method,
        path,
        authorization,
        status: response.status().as_u16(),
    });
    response
}

fn bearer_error(
    status: StatusCode,
    error: &str,
    description: &str,
    scope: Option<&str>,
) -> Response {
    let mut challenge = format!(r#"Bearer error="{error}", error_description="{description}""#);
    if let Some(scope) = scope {
        challenge.push_str(&format!(r#", scope="{scope}""#));
    }
    let mut response = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    response
}

/// The introspection of the request's access token when it is active, else the response to
/// answer.
async fn authenticate(state: &ResourceState, headers: &HeaderMap) -> Result<Value, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = bearer(authorization) else {
        // RFC 6750 section 3: no error code when the request had no token.
        let mut response = (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token", "error_description": "no bearer token"})),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        return Err(response);
    };
    let introspection = oauth::introspect(
        &state.http,
        &state.introspection_endpoint,
        &state.client,
        token,
    )
    .await
    .map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            axum::Json(json!({"error": "introspection_failed", "error_description": e})),
        )
            .into_response()
    })?;
    if state.rejected.lock().unwrap().iter().any(|t| t == token) {
        return Err(bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "this API no longer accepts the access token",
            None,
        ));
    }
    // A refresh token introspects as active too, without a token_type: only access tokens
    // (`Bearer`) are accepted.
    if introspection["active"] != true || introspection["token_type"] != "Bearer" {
        return Err(bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is not active",
            None,
        ));
    }
    Ok(introspection)
}

fn identity(introspection: &Value) -> Value {
    json!({
        "sub": introspection["sub"],
        "client_id": introspection["client_id"],
        "scope": introspection["scope"],
    })
}

async fn whoami(State(state): State<Arc<ResourceState>>, headers: HeaderMap) -> Response {
    match authenticate(&state, &headers).await {
        Ok(introspection) => axum::Json(identity(&introspection)).into_response(),
        Err(response) => response,
    }
}

async fn echo_authorization(headers: HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

async fn require_scope(
    State(state): State<Arc<ResourceState>>,
    Path(scope): Path<String>,
    headers: HeaderMap,
) -> Response {
    let introspection = match authenticate(&state, &headers).await {
        Ok(i) => i,
        Err(response) => return response,
    };
    let granted = introspection["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == scope);
    if granted {
        axum::Json(identity(&introspection)).into_response()
    } else {
        bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token lacks the scope",
            Some(&scope),
        )
    }
}
