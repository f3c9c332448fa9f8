//! Secrets and the credentials the host attaches to outbound requests.
//!
//! A connection's secret fields become [`Secret`]s as soon as they are read; from them the
//! host derives [`Credentials`] for the connection's auth scheme and applies them to each
//! allowed outbound request with [`Credentials::apply`]. The connector never holds them.

pub mod at_rest;
pub(crate) mod inject;
pub mod scrub;
mod secret;
pub mod tokens;

pub use inject::{Credentials, InjectError};
pub use secret::Secret;
pub use tokens::{CredentialFailure, TokenSource};
