//! Auth types: from a connector's auth scheme and a connection's values to the credentials
//! the host attaches; the OAuth 2.0 grants (`oauth`) and the renewal of tokens (`tokens`).

pub mod oauth;
pub mod tokens;

pub use tokens::OAuth;

use crate::credentials::{Credentials, Secret, inject::KeyPlacement};
use crate::runtime::manifest::{AuthKind, KeyLocation};

/// What a scheme needs that the connection does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("field `{0}` is required by the auth scheme and is not set")]
    MissingField(String),
    #[error(
        "auth scheme `{0}` uses OAuth 2.0; give an access token obtained from the provider (`access_token`)"
    )]
    MissingAccessToken(String),
    #[error("the API key header name `{0}` is not a valid HTTP header name")]
    BadHeaderName(String),
}

/// The credentials for scheme `id` of kind `kind`, reading the connection's values through
/// `plain` (non-secret fields) and `secret` (secret fields).
pub fn credentials(
    id: &str,
    kind: &AuthKind,
    plain: impl Fn(&str) -> Option<String>,
    secret: impl Fn(&str) -> Option<Secret>,
    access_token: Option<&Secret>,
    managed: bool,
) -> Result<Credentials, AuthError> {
    let need_secret = |name: &str| secret(name).ok_or_else(|| AuthError::MissingField(name.into()));
    Ok(match kind {
        AuthKind::None => Credentials::None,
        AuthKind::ApiKey {
            field,
            location,
            name,
            prefix,
        } => Credentials::ApiKey {
            location: match location {
                KeyLocation::Header => KeyPlacement::Header(
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| AuthError::BadHeaderName(name.clone()))?,
                ),
                KeyLocation::Query => KeyPlacement::Query(name.clone()),
            },
            prefix: prefix.clone().unwrap_or_default(),
            key: need_secret(field)?,
        },
        AuthKind::Basic {
            username_field,
            password_field,
        } => Credentials::Basic {
            username: plain(username_field)
                .ok_or_else(|| AuthError::MissingField(username_field.clone()))?,
            password: need_secret(password_field)?,
        },
        AuthKind::Bearer { token_field } => Credentials::Bearer(need_secret(token_field)?),
        AuthKind::Oauth2Code { .. }
        | AuthKind::Oauth2Password { .. }
        | AuthKind::Oauth2ClientCredentials { .. } => match access_token {
            Some(token) => Credentials::Bearer(token.clone()),
            // The host's token source attaches the token it keeps renewed.
            None if managed => Credentials::None,
            None => return Err(AuthError::MissingAccessToken(id.into())),
        },
    })
}
