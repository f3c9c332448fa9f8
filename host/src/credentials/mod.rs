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

/// serde's type errors quote the value they found (`invalid type: string "…", expected a
/// map`); a body may carry a secret in the wrong place (`"fields": "ghp_…"`), so the value
/// is left out and only its kind stays (`invalid type: string, expected a map`).
pub fn without_found_value(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(at) = message.find(marker) else {
            continue;
        };
        let found_start = at + marker.len();
        let rest = &message[found_start..];
        // The expected part comes from the type, never from the body: search from the end.
        let Some(found_end) = rest.rfind(", expected") else {
            continue;
        };
        let found = &rest[..found_end];
        // The value follows its kind after a space, in backticks or double quotes
        // (`integer `7``, `string "x"`); kinds without a value (`sequence`) stay whole.
        let kind = match [found.find(" `"), found.find(" \"")]
            .into_iter()
            .flatten()
            .min()
        {
            Some(end) => &found[..end],
            None => found,
        };
        return format!("{}{marker}{kind}{}", &message[..at], &rest[found_end..]);
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::without_found_value;

    #[test]
    fn type_errors_name_the_kind_found_but_not_the_value() {
        let cases = [
            (
                "fields: invalid type: string \"ghp_secret, expected\", expected a map at line 1 column 66",
                "fields: invalid type: string, expected a map at line 1 column 66",
            ),
            (
                "fields.token: invalid type: integer `12345678`, expected a string at line 1 column 72",
                "fields.token: invalid type: integer, expected a string at line 1 column 72",
            ),
            (
                "limit: invalid value: floating point `1.5`, expected u32 at line 1 column 9",
                "limit: invalid value: floating point, expected u32 at line 1 column 9",
            ),
            (
                "fields: invalid type: sequence, expected a map at line 1 column 3",
                "fields: invalid type: sequence, expected a map at line 1 column 3",
            ),
            (
                "missing field `name` at line 1 column 2",
                "missing field `name` at line 1 column 2",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(without_found_value(given), expected);
        }
    }
}
