//! Attaching credentials to an outbound request.

use super::Secret;
use base64::Engine as _;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HeaderName};
use url::Url;

/// The credentials of a connection, ready to attach.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// Nothing to attach.
    #[default]
    None,
    /// An API key in a header or a query parameter.
    ApiKey {
        location: KeyPlacement,
        prefix: String,
        key: Secret,
    },
    /// HTTP basic authentication.
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer <token>` (personal access tokens, OAuth access tokens).
    Bearer(Secret),
}

/// Where an API key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPlacement {
    Header(HeaderName),
    Query(String),
}

/// A credential that cannot be put on a request. The message never contains the value.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("the credential contains characters that are not allowed in an HTTP header")]
    InvalidHeaderValue,
}

impl Credentials {
    /// Attaches the credentials to a request whose destination the caller has already
    /// checked against the connection's allow-list. Any header of the same name the
    /// connector set is replaced, so a connector cannot pick what the host sends.
    pub fn apply(&self, url: &mut Url, headers: &mut http::HeaderMap) -> Result<(), InjectError> {
        match self {
            Self::None => {}
            Self::ApiKey {
                location: KeyPlacement::Header(name),
                prefix,
                key,
            } => {
                let value = sensitive(&format!("{prefix}{}", key.expose()))?;
                headers.insert(name.clone(), value);
            }
            Self::ApiKey {
                location: KeyPlacement::Query(name),
                prefix,
                key,
            } => {
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let mut pairs = url.query_pairs_mut();
                pairs.clear();
                pairs.extend_pairs(kept);
                pairs.append_pair(name, &format!("{prefix}{}", key.expose()));
            }
            Self::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                headers.insert(AUTHORIZATION, sensitive(&format!("Basic {encoded}"))?);
            }
            Self::Bearer(token) => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {}", token.expose()))?,
                );
            }
        }
        Ok(())
    }

    /// The header this scheme sets, if any: a connector may not set it itself on requests
    /// that leave the allow-list either, so the host strips it there.
    pub fn header_name(&self) -> Option<HeaderName> {
        match self {
            Self::ApiKey {
                location: KeyPlacement::Header(name),
                ..
            } => Some(name.clone()),
            Self::Basic { .. } | Self::Bearer(_) => Some(AUTHORIZATION),
            _ => None,
        }
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, InjectError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| InjectError::InvalidHeaderValue)?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(c: &Credentials, url: &str) -> (Url, http::HeaderMap) {
        let mut url = Url::parse(url).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer chosen-by-guest"),
        );
        c.apply(&mut url, &mut headers).unwrap();
        (url, headers)
    }

    #[test]
    fn bearer_token_replaces_any_authorization_the_connector_set() {
        let (_, headers) = apply(&Credentials::Bearer(Secret::new("tok")), "https://a.test/");
        assert_eq!(headers[AUTHORIZATION], "Bearer tok");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
    }

    #[test]
    fn basic_auth_is_base64_of_user_and_password() {
        let c = Credentials::Basic {
            username: "ann".into(),
            password: Secret::new("pw"),
        };
        let (_, headers) = apply(&c, "https://a.test/");
        assert_eq!(headers[AUTHORIZATION], "Basic YW5uOnB3");
    }

    #[test]
    fn api_key_goes_in_the_named_header_with_its_prefix() {
        let c = Credentials::ApiKey {
            location: KeyPlacement::Header(HeaderName::from_static("x-api-key")),
            prefix: "Token ".into(),
            key: Secret::new("k1"),
        };
        let (_, headers) = apply(&c, "https://a.test/");
        assert_eq!(headers["x-api-key"], "Token k1");
    }

    #[test]
    fn api_key_in_query_replaces_a_parameter_of_the_same_name() {
        let c = Credentials::ApiKey {
            location: KeyPlacement::Query("api_key".into()),
            prefix: String::new(),
            key: Secret::new("s e&cret"),
        };
        let (url, _) = apply(&c, "https://a.test/x?api_key=guess&page=2");
        assert_eq!(url.query(), Some("page=2&api_key=s+e%26cret"));
    }

    #[test]
    fn a_credential_with_a_newline_is_refused_without_echoing_it() {
        let c = Credentials::Bearer(Secret::new("tok\r\nX-Evil: 1"));
        let mut url = Url::parse("https://a.test/").unwrap();
        let err = c.apply(&mut url, &mut http::HeaderMap::new()).unwrap_err();
        assert!(!err.to_string().contains("tok"));
    }
}
