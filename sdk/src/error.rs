//! The error a connector returns, mapped one to one onto the WIT `connector-error` variant.

use crate::__bindings::junction::connector::types as wit;
use std::fmt;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input does not fit the action.
    InvalidInput(String),
    /// The upstream API rejected the credentials (401).
    Unauthorized(String),
    /// The credentials lack a permission (403).
    Forbidden(String),
    /// The upstream resource does not exist (404).
    NotFound(String),
    /// The upstream API throttled the call.
    RateLimited {
        message: String,
        retry_after_seconds: Option<u32>,
    },
    /// The upstream API answered with another error status.
    Upstream { status: u16, body: String },
    /// The upstream API did not answer in time.
    Timeout(String),
    /// The host refused the request (destination outside the allowed hosts, say).
    Denied(String),
    /// Anything else.
    Internal(String),
}

impl Error {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Self::Forbidden(m) => write!(f, "forbidden: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::RateLimited {
                message,
                retry_after_seconds: Some(s),
            } => write!(f, "rate limited (retry after {s} s): {message}"),
            Self::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            Self::Upstream { status, body } => write!(f, "upstream answered {status}: {body}"),
            Self::Timeout(m) => write!(f, "timeout: {m}"),
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for wit::ConnectorError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(m) => Self::InvalidInput(m),
            Error::Unauthorized(m) => Self::Unauthorized(m),
            Error::Forbidden(m) => Self::Forbidden(m),
            Error::NotFound(m) => Self::NotFound(m),
            Error::RateLimited {
                message,
                retry_after_seconds,
            } => Self::RateLimited(wit::RateLimit {
                message,
                retry_after_seconds,
            }),
            Error::Upstream { status, body } => Self::Upstream(wit::UpstreamError { status, body }),
            Error::Timeout(m) => Self::Timeout(m),
            Error::Denied(m) => Self::Denied(m),
            Error::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<wit::ConnectorError> for Error {
    fn from(e: wit::ConnectorError) -> Self {
        match e {
            wit::ConnectorError::InvalidInput(m) => Self::InvalidInput(m),
            wit::ConnectorError::Unauthorized(m) => Self::Unauthorized(m),
            wit::ConnectorError::Forbidden(m) => Self::Forbidden(m),
            wit::ConnectorError::NotFound(m) => Self::NotFound(m),
            wit::ConnectorError::RateLimited(r) => Self::RateLimited {
                message: r.message,
                retry_after_seconds: r.retry_after_seconds,
            },
            wit::ConnectorError::Upstream(u) => Self::Upstream {
                status: u.status,
                body: u.body,
            },
            wit::ConnectorError::Timeout(m) => Self::Timeout(m),
            wit::ConnectorError::Denied(m) => Self::Denied(m),
            wit::ConnectorError::Internal(m) => Self::Internal(m),
        }
    }
}
