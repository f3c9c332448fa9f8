//! What can go wrong with an operation on connections, in the service's own terms. The API
//! maps each to its status and error code (`api::error`); the health check and the
//! trigger scheduler match on the variants.

use crate::access::Refusal;
use crate::auth::oauth::{GrantError, Provider, SetupError, hint};
use crate::catalog::{InputProblem, PolicyRefusal};
use crate::credentials::CredentialFailure;
use crate::runtime::InvokeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such record in the caller's tenant (another tenant's ids are answered the same).
    #[error("no {what} `{id}`")]
    NotFound {
        what: &'static str,
        id: String,
        /// The field of the operation's input that named it, if one did.
        field: Option<&'static str>,
    },
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// A value given for an operation is wrong; `field` names it (`auth`, `fields.<name>`,
    /// `folder_id`, `action`…).
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// An action's input does not match its schema.
    #[error("the input does not match the schema of action `{action}`: {summary}")]
    InvalidInput {
        action: String,
        summary: String,
        problems: Vec<InputProblem>,
    },
    /// The connection's connector is not running in this service.
    #[error(
        "connector `{connector}` is not running in this service: it is not installed, or its installed version could not be loaded (see the service log); an operator can install it (`junction connector install`)"
    )]
    ConnectorNotRunning { connector: String },
    /// A credential store a secret field references cannot be read now.
    #[error("field `{field}`: {message}")]
    CredentialStoreUnavailable {
        field: String,
        store: String,
        message: String,
    },
    /// The connection's credentials cannot be had for running its grant.
    #[error("{0}")]
    Credentials(CredentialFailure),
    /// OAuth settings that cannot work (no app, an endpoint that cannot be built).
    #[error("{0}")]
    Setup(#[from] SetupError),
    /// The provider refused a grant (or could not be reached); `hint` says what to do.
    #[error("{error}. {hint}")]
    Grant { error: GrantError, hint: String },
    /// An invocation ran (or was refused before it reached the connector) and failed; its
    /// record is written. `message` is what may be shown (scrubbed and bounded).
    #[error("{message}")]
    Invocation {
        error: Box<InvokeError>,
        invocation_id: String,
        message: String,
    },
    /// Every instance was busy for the queue's whole bound.
    #[error("{0}")]
    Busy(String),
    /// A resource the service needs is missing for a moment (randomness, a stopping store).
    #[error("{0}")]
    Unavailable(String),
    /// The same idempotency key was used with another request.
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub(crate) fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: &str) -> Self {
        Self::NotFound {
            what,
            id: id.to_owned(),
            field: None,
        }
    }

    /// A grant the provider refused (or that could not reach it), with what to do about it.
    pub fn grant(error: GrantError, provider: &Provider) -> Self {
        let hint = hint(error.code().unwrap_or("unreachable"), Some(provider));
        Self::Grant { error, hint }
    }

    /// The field of the operation's input the error is about, if one.
    pub fn field(&self) -> Option<String> {
        match self {
            Self::InvalidField { field, .. } => Some(field.clone()),
            Self::NotFound { field, .. } => field.map(str::to_owned),
            Self::CredentialStoreUnavailable { field, .. } => Some(field.clone()),
            Self::Setup(e) => Some(setup_field(e)),
            _ => None,
        }
    }
}

/// The field an OAuth setup problem is about.
fn setup_field(e: &SetupError) -> String {
    match e {
        SetupError::Required { field } => format!("fields.{field}"),
        SetupError::MissingField { field, .. } => format!("fields.{field}"),
        SetupError::NoApp { .. } => "fields.client_id".into(),
        _ => "auth".into(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
