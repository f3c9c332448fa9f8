//! Tokens the host obtains while an invocation runs (OAuth 2.0 access tokens): the
//! connector never sees them; the HTTP capability asks a [`TokenSource`] for the current
//! one before each allowed request, and for a new one when the API rejects it.

use super::Secret;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a connection has no usable credential. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialFailure {
    /// Only the user can fix it: the consent was revoked, a refresh token was refused
    /// (`invalid_grant`), the connection was never authorized.
    #[error("the connection needs re-authentication: {reason}")]
    NeedsReauthentication { reason: String },
    /// The provider or the store failed; a later attempt may work.
    #[error("the connection's credentials are unavailable: {reason}")]
    Unavailable { reason: String },
    /// A secret field's reference to a credential store points at nothing usable, or the
    /// API refused the value the store holds (read again after the first refusal): the
    /// secret in the vault, or the reference, must be fixed.
    #[error("the vault credential is invalid: {reason}")]
    VaultCredentialInvalid { reason: String },
}

impl CredentialFailure {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NeedsReauthentication { .. } => "needs_reauthentication",
            Self::Unavailable { .. } => "credentials_unavailable",
            Self::VaultCredentialInvalid { .. } => "vault_credential_invalid",
        }
    }
}

/// Where the HTTP capability gets a connection's bearer token.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token that is not about to expire (renewed first if it is).
    fn current(&self) -> BoxFuture<'_, Result<Secret, CredentialFailure>>;
    /// The API answered 401 to `rejected`: a token renewed since, or a new one.
    fn rejected<'a>(
        &'a self,
        rejected: &'a Secret,
    ) -> BoxFuture<'a, Result<Secret, CredentialFailure>>;
}
