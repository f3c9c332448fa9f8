//! Errors of loading a component and of invoking it.

use super::limits::{ConnectorId, LimitExceeded};
use super::manifest::ManifestError;
use serde::Serialize;

/// Why a component cannot be loaded. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{source_name} is not a WebAssembly file (it does not start with `\\0asm`); pass the `.wasm` component built with `cargo build --target wasm32-wasip2`"
    )]
    NotWasm { source_name: String },
    #[error(
        "{source_name} is a core WebAssembly module, not a component; build the connector with `--target wasm32-wasip2` (which produces a component) and the junction-sdk"
    )]
    NotAComponent { source_name: String },
    #[error("{source_name} is truncated or corrupt: {detail}")]
    Corrupt { source_name: String, detail: String },
    #[error(
        "{source_name} is not a Junction connector: it does not export `junction:connector/guest`; implement `junction_sdk::Connector` and call `export_connector!`"
    )]
    WrongWorld { source_name: String },
    #[error(
        "{source_name} was built for interface junction:connector@{found}, which this host does not support (supported: {supported}); rebuild it with a junction-sdk for one of those"
    )]
    UnsupportedInterface {
        source_name: String,
        found: String,
        supported: String,
    },
    #[error("{source_name} does not implement the connector interface: {detail}")]
    MissingExport { source_name: String, detail: String },
    #[error(
        "{source_name} imports something the sandbox does not provide: {detail}. Connectors may only import junction:connector capabilities and WASI without filesystem, network or environment"
    )]
    UnsupportedImport { source_name: String, detail: String },
    #[error("{source_name}: {error}")]
    Manifest {
        source_name: String,
        error: ManifestError,
    },
    #[error("{source_name}: calling `manifest` failed: {detail}")]
    ManifestCall { source_name: String, detail: String },
    #[error(
        "{source_name}: `{digest}` is not a SHA-256 digest; give the 64 lowercase hexadecimal characters of the component's SHA-256"
    )]
    InvalidDigest { source_name: String, digest: String },
    #[error(
        "{source_name}: the stored component's SHA-256 is {found}, not the {expected} it was published with; the file was changed or damaged, so it is not run"
    )]
    DigestMismatch {
        source_name: String,
        expected: String,
        found: String,
    },
}

/// A typed error returned by the connector itself (the WIT `connector-error` variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectorError {
    #[error("invalid input: {message}")]
    InvalidInput { message: String },
    #[error("unauthorized by the upstream API: {message}")]
    Unauthorized { message: String },
    #[error("forbidden by the upstream API: {message}")]
    Forbidden { message: String },
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("rate limited{}: {message}", retry_after_seconds.map(|s| format!(" (retry after {s} s)")).unwrap_or_default())]
    RateLimited {
        message: String,
        retry_after_seconds: Option<u32>,
    },
    #[error("the upstream API answered {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("the upstream API timed out: {message}")]
    Timeout { message: String },
    #[error("denied by the host: {message}")]
    Denied { message: String },
    #[error("{message}")]
    Internal { message: String },
}

impl ConnectorError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "invalid_input",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Upstream { .. } => "upstream",
            Self::Timeout { .. } => "timeout",
            Self::Denied { .. } => "denied",
            Self::Internal { .. } => "internal",
        }
    }
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The connector returned an error.
    #[error("{connector}: {error}")]
    Connector {
        connector: ConnectorId,
        error: ConnectorError,
    },
    /// The invocation hit a limit and was stopped.
    #[error("{connector} was stopped: it exceeded the {limit}")]
    LimitExceeded {
        connector: ConnectorId,
        limit: LimitExceeded,
    },
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("{connector} crashed: {message}")]
    Trap {
        connector: ConnectorId,
        message: String,
    },
    /// The invocation could not start or the host failed.
    #[error("{connector}: host error: {message}")]
    Host {
        connector: ConnectorId,
        message: String,
    },
    /// The connection has no usable credential (an OAuth grant revoked, a provider down).
    #[error("{failure}")]
    Credentials {
        connector: ConnectorId,
        failure: crate::credentials::CredentialFailure,
    },
    /// The connection does not fit the connector.
    #[error("{connector}: {error}")]
    Connection {
        connector: ConnectorId,
        error: super::connection::ConnectionError,
    },
    /// No instance slot was free within the queue's bound.
    #[error("{connector}: {error}")]
    Busy {
        connector: ConnectorId,
        error: super::slots::SlotError,
    },
}

impl InvokeError {
    /// A stable code: the connector error kind, `limit_<which>`, `trap`, `host`,
    /// `connection`, `busy`, `needs_reauthentication`, `credentials_unavailable` or
    /// `vault_credential_invalid`.
    pub fn code(&self) -> String {
        match self {
            Self::Connector { error, .. } => error.kind().to_owned(),
            Self::LimitExceeded { limit, .. } => format!("limit_{}", limit.code()),
            Self::Trap { .. } => "trap".into(),
            Self::Host { .. } => "host".into(),
            Self::Connection { .. } => "connection".into(),
            Self::Busy { .. } => "busy".into(),
            Self::Credentials { failure, .. } => failure.code().into(),
        }
    }
}
