//! The connection the invocation runs with. Non-secret fields are readable; secret fields
//! stay in the host, which signs with them or attaches them to requests.

use crate::__bindings::junction::connector::connection as host;
use crate::Result;

/// The value of a non-secret field, or `None` when it is not set.
pub fn field(name: &str) -> Result<Option<String>> {
    host::field(name).map_err(Into::into)
}

/// The value of a non-secret field, or `default` when it is not set or empty.
pub fn field_or(name: &str, default: &str) -> Result<String> {
    Ok(field(name)?
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned()))
}

/// HMAC-SHA256 of `message` keyed with the secret field `secret_field`, computed by the host.
pub fn hmac_sha256(secret_field: &str, message: &[u8]) -> Result<Vec<u8>> {
    host::hmac_sha256(secret_field, message).map_err(Into::into)
}

/// The clear value of a secret field. Only works for fields the manifest lists with
/// [`crate::Manifest::reveal_field`]; prefer letting the host attach credentials.
pub fn reveal(name: &str) -> Result<String> {
    host::reveal(name).map_err(Into::into)
}
