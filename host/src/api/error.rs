//! The API's errors: one envelope, `{"error": {"code", "message", "details"}}`, with the
//! HTTP status that fits the code.

use crate::access::Refusal;
use crate::runtime::{ConnectorError, InvokeError};
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// What a busy service suggests to wait before retrying an invocation.
const BUSY_RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Map<String, Value>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} `{id}`"),
        )
    }

    /// A field of a request body is invalid; `field` names it.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).detail("field", field)
    }

    /// A query parameter is invalid.
    pub fn invalid_parameter(parameter: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            .detail("parameter", parameter)
    }

    /// Every instance was busy for the queue's whole bound: 429, retry in a few seconds.
    pub fn busy(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", message)
            .detail("retry_after_seconds", BUSY_RETRY_AFTER_SECONDS);
        error.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
        error
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A failed invocation: the status depends on what failed; `message` is the error as
    /// it may be shown (scrubbed, bounded).
    pub fn invocation(error: &InvokeError, invocation_id: &str, message: String) -> Self {
        let code = error.code();
        let (status, connector) = match error {
            InvokeError::Connector { connector, error } => (
                match error {
                    ConnectorError::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                    ConnectorError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                    ConnectorError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                },
                connector,
            ),
            InvokeError::LimitExceeded { connector, limit } => (
                match limit {
                    crate::runtime::LimitExceeded::WallTime(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                },
                connector,
            ),
            InvokeError::Trap { connector, .. } | InvokeError::Connection { connector, .. } => {
                (StatusCode::BAD_GATEWAY, connector)
            }
            InvokeError::Host { connector, .. } => (StatusCode::INTERNAL_SERVER_ERROR, connector),
            InvokeError::Busy { connector, .. } => (StatusCode::TOO_MANY_REQUESTS, connector),
            InvokeError::Credentials { connector, failure } => (
                match failure {
                    crate::credentials::CredentialFailure::NeedsReauthentication { .. }
                    | crate::credentials::CredentialFailure::VaultCredentialInvalid { .. } => {
                        StatusCode::CONFLICT
                    }
                    crate::credentials::CredentialFailure::Unavailable { .. } => {
                        StatusCode::BAD_GATEWAY
                    }
                },
                connector,
            ),
        };
        let source = if matches!(error, InvokeError::Credentials { .. }) {
            "connection"
        } else {
            "connector"
        };
        let mut api = Self::new(status, &code, message)
            .detail("source", source)
            .detail("connector", connector.to_string())
            .detail("invocation_id", invocation_id);
        if let InvokeError::Connector {
            error:
                ConnectorError::RateLimited {
                    retry_after_seconds,
                    ..
                },
            ..
        } = error
        {
            api.retry_after = *retry_after_seconds;
            if let Some(s) = retry_after_seconds {
                api = api.detail("retry_after_seconds", *s);
            }
        }
        if matches!(error, InvokeError::Busy { .. }) {
            // The tenant's queue was full for the whole bound: a few seconds let it drain.
            api.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
            api = api.detail("retry_after_seconds", BUSY_RETRY_AFTER_SECONDS);
        }
        if let InvokeError::Connector {
            error: ConnectorError::Upstream { status, .. },
            ..
        } = error
        {
            api = api.detail("upstream_status", *status);
        }
        api
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "forbidden", r.message);
        if let Some(p) = r.permission {
            e = e.detail("permission", p);
        }
        if let Some(f) = r.folder_id {
            e = e.detail("folder_id", f);
        }
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Closing
            | StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => {
                tracing::warn!(error = %e, "store unavailable");
                Self::unavailable("the store is busy or the service is stopping; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the service could not read or write its store; see the service log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": Value::Object(self.details),
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(super::audit::ErrorCode(self.code.clone()));
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        use crate::catalog::CatalogError as C;
        use crate::runtime::LoadError;
        let message = e.to_string();
        match e {
            C::Load(LoadError::UnsupportedInterface {
                found, supported, ..
            }) => Self::new(StatusCode::BAD_REQUEST, "unsupported_interface", message)
                .detail("found", found)
                .detail(
                    "supported",
                    supported
                        .split(", ")
                        .map(|s| Value::from(s.to_owned()))
                        .collect::<Vec<_>>(),
                ),
            C::Load(LoadError::Read { .. }) | C::Io { .. } | C::ReadDir { .. } => {
                tracing::error!(error = %message, "catalog file error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the service could not read or write its catalog files; see the service log",
                )
            }
            C::Load(_) | C::Schema { .. } | C::BuildMetadata { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_component", message)
            }
            C::VersionExists {
                name,
                version,
                published_digest,
                given_digest,
            } => Self::new(StatusCode::CONFLICT, "version_exists", message)
                .detail("name", name)
                .detail("version", version)
                .detail("published_digest", format!("sha256:{published_digest}"))
                .detail("given_digest", format!("sha256:{given_digest}")),
            C::TooLarge { limit, .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                    .detail("limit_bytes", limit)
            }
            C::NotFound(message) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            C::Plan(refusal) => {
                let status = if refusal.code == "not_found" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::CONFLICT
                };
                Self::new(status, refusal.code, refusal.message)
            }
            C::Store(e) => e.into(),
        }
    }
}

impl From<crate::catalog::PolicyRefusal> for ApiError {
    fn from(r: crate::catalog::PolicyRefusal) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, r.code, r.message);
        if let Some(allowed) = r.allowed {
            e = e.detail("allowed", allowed);
        }
        e
    }
}

impl From<crate::connections::Error> for ApiError {
    fn from(e: crate::connections::Error) -> Self {
        use crate::connections::Error as E;
        use crate::credentials::CredentialFailure;
        let field = e.field();
        let message = e.to_string();
        let with_field = |error: Self| match &field {
            Some(f) => error.detail("field", f.as_str()),
            None => error,
        };
        match e {
            E::NotFound { .. } => {
                with_field(Self::new(StatusCode::NOT_FOUND, "not_found", message))
            }
            E::Forbidden(refusal) => refusal.into(),
            E::Policy(refusal) => refusal.into(),
            E::InvalidField { .. } | E::Setup(_) => with_field(Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                message,
            )),
            E::InvalidInput { problems, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).detail(
                    "errors",
                    serde_json::to_value(&problems).unwrap_or_default(),
                )
            }
            E::ConnectorNotRunning { .. } => Self::unavailable(message),
            E::CredentialStoreUnavailable { store, .. } => with_field(Self::new(
                StatusCode::BAD_GATEWAY,
                "credential_store_unavailable",
                message,
            ))
            .detail("store", store),
            E::Credentials(failure) => match failure {
                CredentialFailure::Unavailable { .. } => Self::new(
                    StatusCode::BAD_GATEWAY,
                    "credential_store_unavailable",
                    message,
                ),
                other => Self::new(StatusCode::CONFLICT, other.code(), message),
            },
            E::Grant { error, .. } => {
                let code = error.code();
                let mut api = Self::new(
                    if code.is_some() {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::BAD_GATEWAY
                    },
                    if code == Some("missing_scopes") {
                        "missing_scopes"
                    } else {
                        "authorization_failed"
                    },
                    message,
                )
                .detail("provider_error", code.unwrap_or("unreachable"));
                if let crate::auth::oauth::GrantError::MissingScopes { missing } = error {
                    api = api.detail("missing_scopes", missing);
                }
                api
            }
            E::Invocation {
                error,
                invocation_id,
                message,
            } => Self::invocation(&error, &invocation_id, message),
            E::Busy(message) => Self::busy(message),
            E::Unavailable(message) => Self::unavailable(message),
            E::IdempotencyConflict(message) => {
                Self::new(StatusCode::CONFLICT, "idempotency_key_reused", message)
            }
            E::Store(e) => e.into(),
        }
    }
}
