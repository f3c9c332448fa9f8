//! Request extractors whose rejections are the API's error envelope: JSON bodies, the
//! authenticated caller, query strings and pagination.

use super::AppState;
use super::audit::note_actor;
use super::error::ApiError;
use crate::access::Caller;
use crate::store::{AuditActor, OPERATOR_TOKEN_PREFIX, Operator, Principal};
use crate::store::{PageRequest, decode_cursor};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A JSON object as the body. A missing content type, an oversized body, malformed JSON,
/// a body that is not an object (serde would read a struct from an array) and a wrong
/// shape each get a clear error, in that order.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| bytes_rejection(&r, state.max_body_bytes))?;
        json_object(&bytes, state.max_body_bytes).map(Self)
    }
}

/// An optional JSON object as the body: none (or only white space) is `T::default()`;
/// otherwise as [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| bytes_rejection(&r, state.max_body_bytes))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !is_json {
            return Err(unsupported_media_type());
        }
        json_object(&bytes, state.max_body_bytes).map(Self)
    }
}

/// For an optional property that may be left out but not be `null` (serde reads `null` as
/// absent into an `Option`): `#[serde(default, deserialize_with = "present")]`.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A whole number that fits a `u32`, also when JSON writes it as `60.0` (JSON Schema's
/// `integer` allows that); `null` is `None`.
pub(super) fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom("expected a whole number from 0 to 4294967295"))
}

/// Whether a request says its body is JSON (`application/json`, or a `+json` type).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with `content-type: application/json`",
    )
}

/// The error envelope of a body that could not be read (too large, cut short).
pub(super) fn bytes_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the {limit} bytes the service accepts"),
        )
        .detail("limit_bytes", limit)
    } else {
        ApiError::new(rejection.status(), "malformed_json", rejection.body_text())
    }
}

/// A body that must be a JSON object, read as `T`.
pub(super) fn json_object<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, ApiError> {
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    match axum::Json::<T>::from_bytes(bytes) {
        // Not JSON at all: the parser's message, with its line and column.
        Err(e @ JsonRejection::JsonSyntaxError(_)) => Err(json_rejection(e, limit)),
        // Valid JSON that is not an object: whatever serde made of it.
        _ if !is_object => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body does not have the expected shape: it must be a JSON object (`{…}`)",
        )),
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(json_rejection(rejection, limit)),
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `content-type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", source_message(&e)),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "the body does not have the expected shape: {}",
                crate::credentials::without_found_value(&source_message(&e))
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the {limit} bytes the service accepts"),
            )
            .detail("limit_bytes", limit)
        }
        other => ApiError::new(other.status(), "malformed_json", other.body_text()),
    }
}

/// The innermost message of an error (serde's text with its line and column).
fn source_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The query string, with a clear error naming what is wrong.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the query string is invalid: {}", source_message(&e)),
            )),
            Err(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                other.body_text(),
            )),
        }
    }
}

/// `?limit=` and `?cursor=`.
#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

impl Pagination {
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "limit",
                        format!("`limit` must be a whole number from 1 to {MAX_PAGE}"),
                    )
                })?,
        };
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "cursor",
                    "`cursor` is not a cursor this service returned; pass `next_cursor` from the previous page",
                )
            })?),
        };
        Ok(PageRequest { after, limit })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        if token.starts_with(OPERATOR_TOKEN_PREFIX) {
            let Some((operator, token_id)) = state.store.authenticate_operator(token).await? else {
                return Err(unauthenticated("the API token is unknown or revoked"));
            };
            note_actor(parts, operator_actor(&operator, token_id), None);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_token_required",
                "this is an operator token: it manages the catalog and the policies; this endpoint acts within a tenant and needs a tenant's API token (`jt_…`)",
            ));
        }
        let found = state.store.authenticate(token).await?;
        let (principal, tenant, token_id) =
            found.ok_or_else(|| unauthenticated("the API token is unknown or revoked"))?;
        tracing::Span::current().record("principal", principal.id.as_str());
        note_actor(
            parts,
            principal_actor(&principal, token_id),
            Some(&tenant.id),
        );
        Ok(Caller { principal, tenant })
    }
}

fn principal_actor(principal: &Principal, token_id: String) -> AuditActor {
    AuditActor {
        kind: "principal".into(),
        id: principal.id.clone(),
        name: principal.name.clone(),
        token_id: Some(token_id),
    }
}

fn operator_actor(operator: &Operator, token_id: String) -> AuditActor {
    AuditActor {
        kind: "operator".into(),
        id: operator.id.clone(),
        name: operator.name.clone(),
        token_id: Some(token_id),
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthenticated(
                "this endpoint needs an API token: send `Authorization: Bearer <token>`",
            )
        })?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))
}

/// The caller of an endpoint that tenants and operators both reach (the audit log), each
/// seeing its own share.
#[derive(Debug, Clone)]
pub enum AnyCaller {
    Tenant(Caller),
    /// An operator (authenticated): sees the whole service.
    Operator,
}

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if bearer_token(parts)?.starts_with(OPERATOR_TOKEN_PREFIX) {
            OperatorCaller::from_request_parts(parts, state).await?;
            Ok(Self::Operator)
        } else {
            Ok(Self::Tenant(
                Caller::from_request_parts(parts, state).await?,
            ))
        }
    }
}

/// The operator calling an operator endpoint (catalog changes, tenants' policies).
#[derive(Debug, Clone)]
pub struct OperatorCaller(pub Operator);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        if !token.starts_with(OPERATOR_TOKEN_PREFIX) {
            // A tenant's token, valid or not, never reaches operator endpoints; a valid
            // one learns why.
            if let Some((principal, tenant, token_id)) = state.store.authenticate(token).await? {
                note_actor(
                    parts,
                    principal_actor(&principal, token_id),
                    Some(&tenant.id),
                );
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "operator_only",
                    "only an operator of this service can do this; operator tokens (`jo_…`) are created with `junction admin create-operator`",
                ));
            }
            return Err(unauthenticated("the API token is unknown or revoked"));
        }
        let (operator, token_id) = state
            .store
            .authenticate_operator(token)
            .await?
            .ok_or_else(|| unauthenticated("the operator token is unknown or revoked"))?;
        tracing::Span::current().record("principal", operator.id.as_str());
        note_actor(parts, operator_actor(&operator, token_id), None);
        Ok(Self(operator))
    }
}
