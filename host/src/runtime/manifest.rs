//! The host's model of a connector manifest, independent of the interface version the
//! component was built for, and the checks a manifest must pass before a component loads.

use crate::capabilities::allowed_hosts::{AllowList, placeholders};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub title: String,
    pub description: String,
    pub release: Release,
    pub docs: String,
    pub auth_schemes: Vec<AuthScheme>,
    pub fields: Vec<Field>,
    pub allowed_hosts: Vec<String>,
    pub reveal_fields: Vec<String>,
    pub actions: Vec<Action>,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    Preview,
    Ga,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthScheme {
    pub id: String,
    pub title: String,
    #[serde(flatten)]
    pub kind: AuthKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    Header,
    Query,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthKind {
    None,
    ApiKey {
        field: String,
        location: KeyLocation,
        name: String,
        prefix: Option<String>,
    },
    Basic {
        username_field: String,
        password_field: String,
    },
    Bearer {
        token_field: String,
    },
    Oauth2Code {
        authorize_url: String,
        token_url: String,
        scopes: Vec<String>,
        mandatory_scopes: Vec<String>,
        pkce: bool,
        allow_own_app: bool,
    },
    Oauth2Password {
        token_url: String,
        scopes: Vec<String>,
        mandatory_scopes: Vec<String>,
        username_field: String,
        password_field: String,
    },
    Oauth2ClientCredentials {
        token_url: String,
        scopes: Vec<String>,
        mandatory_scopes: Vec<String>,
    },
}

impl AuthKind {
    /// A short name for messages and filters: `api_key`, `basic`, `oauth2_code`…
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey { .. } => "api_key",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::Oauth2Code { .. } => "oauth2_code",
            Self::Oauth2Password { .. } => "oauth2_password",
            Self::Oauth2ClientCredentials { .. } => "oauth2_client_credentials",
        }
    }

    /// Fields the scheme reads, with whether each must be secret.
    fn field_refs(&self) -> Vec<(&str, bool)> {
        match self {
            Self::ApiKey { field, .. } => vec![(field, true)],
            Self::Basic {
                username_field,
                password_field,
            }
            | Self::Oauth2Password {
                username_field,
                password_field,
                ..
            } => vec![(username_field, false), (password_field, true)],
            Self::Bearer { token_field } => vec![(token_field, true)],
            _ => Vec::new(),
        }
    }

    /// The OAuth endpoint templates of the scheme (none for other kinds).
    pub fn urls(&self) -> Vec<&str> {
        match self {
            Self::Oauth2Code {
                authorize_url,
                token_url,
                ..
            } => vec![authorize_url, token_url],
            Self::Oauth2Password { token_url, .. }
            | Self::Oauth2ClientCredentials { token_url, .. } => vec![token_url],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub description: String,
    pub secret: bool,
    pub required: bool,
    pub default_value: Option<String>,
    /// Auth schemes the field belongs to; empty means all.
    pub schemes: Vec<String>,
}

impl Field {
    /// Whether the field is asked for with auth scheme `scheme`.
    pub fn applies_to(&self, scheme: &str) -> bool {
        self.schemes.is_empty() || self.schemes.iter().any(|s| s == scheme)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    pub title: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    pub title: String,
    pub description: String,
    pub kind: TriggerKind,
    pub config_schema: serde_json::Value,
    pub event_schema: serde_json::Value,
}

/// Everything wrong with a manifest, so an author fixes it in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub problems: Vec<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the manifest is malformed: {}", self.problems.join("; "))
    }
}

/// Parses a JSON Schema carried as text in the WIT manifest.
pub(crate) fn parse_schema(
    what: &str,
    text: &str,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() || v.is_boolean() => v,
        Ok(_) => {
            problems.push(format!("{what} must be a JSON Schema object"));
            serde_json::Value::Null
        }
        Err(e) => {
            problems.push(format!("{what} is not valid JSON ({e})"));
            serde_json::Value::Null
        }
    }
}

fn is_identifier(s: &str, sep: char) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == sep)
}

fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

/// The connection fields the host asks for on OAuth 2.0 schemes, beside the connector's
/// own: the OAuth app (client) a user brings, and the scopes to request.
pub const CLIENT_ID_FIELD: &str = "client_id";
pub const CLIENT_SECRET_FIELD: &str = "client_secret";
pub const SCOPES_FIELD: &str = "scopes";

/// `template` with each `{field}` replaced by `value(field, at_start)`; `None` when a
/// value is missing. A value that starts the template (a URL field such as `{issuer}`)
/// loses its trailing `/`, so `{issuer}/token` reads naturally.
pub fn fill_placeholders(
    template: &str,
    mut value: impl FnMut(&str, bool) -> Option<String>,
) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + len];
        let at_start = out.is_empty();
        let v = value(name, at_start)?;
        out.push_str(if at_start {
            v.trim_end_matches('/')
        } else {
            &v
        });
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl Manifest {
    /// Declares the OAuth app fields of each OAuth 2.0 scheme, unless the connector
    /// declares a field of that name itself:
    /// - authorization code with `allow-own-app`: optional `client_id`, `client_secret`
    ///   and `scopes` (bring your own app; without them the service's app is used);
    /// - client credentials: required `client_id` and `client_secret` (the client is the
    ///   credential), optional `scopes`;
    /// - password: optional `client_id`, `client_secret` and `scopes`.
    pub(crate) fn add_oauth_fields(&mut self) {
        let mut wanted: Vec<(&'static str, bool, bool, String)> = Vec::new();
        for scheme in &self.auth_schemes {
            let required = match &scheme.kind {
                AuthKind::Oauth2Code { allow_own_app, .. } if *allow_own_app => false,
                AuthKind::Oauth2Password { .. } => false,
                AuthKind::Oauth2ClientCredentials { .. } => true,
                _ => continue,
            };
            wanted.push((CLIENT_ID_FIELD, false, required, scheme.id.clone()));
            wanted.push((CLIENT_SECRET_FIELD, true, required, scheme.id.clone()));
            wanted.push((SCOPES_FIELD, false, false, scheme.id.clone()));
        }
        let declared: Vec<String> = self.fields.iter().map(|f| f.name.clone()).collect();
        for (name, secret, required, scheme) in wanted {
            if declared.iter().any(|d| d == name) {
                continue;
            }
            if let Some(f) = self.fields.iter_mut().find(|f| f.name == name) {
                f.schemes.push(scheme);
                f.required &= required;
                continue;
            }
            let (label, description) = match name {
                CLIENT_ID_FIELD => (
                    "OAuth client id",
                    "The client id of your own OAuth app at the provider. Register the service's redirect URI (GET /v1/oauth/redirect-uri) in that app.",
                ),
                CLIENT_SECRET_FIELD => (
                    "OAuth client secret",
                    "The client secret of your own OAuth app.",
                ),
                _ => (
                    "Scopes",
                    "Scopes to request, separated by spaces; the connector's mandatory scopes are always requested.",
                ),
            };
            self.fields.push(Field {
                name: name.into(),
                label: label.into(),
                description: description.into(),
                secret,
                required,
                default_value: None,
                schemes: vec![scheme],
            });
        }
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn scheme(&self, id: &str) -> Option<&AuthScheme> {
        self.auth_schemes.iter().find(|s| s.id == id)
    }

    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Checks that the manifest is consistent; `problems` already holds what the
    /// conversion from the WIT form found (schemas that are not JSON).
    pub fn validate(&self, mut problems: Vec<String>) -> Result<(), ManifestError> {
        let p = &mut problems;
        if !is_identifier(&self.name, '-') {
            p.push(format!(
                "name `{}` must be kebab-case (a-z, 0-9, `-`), starting with a letter",
                self.name
            ));
        }
        if semver::Version::parse(&self.version).is_err() {
            p.push(format!(
                "version `{}` is not a semantic version such as 1.2.0",
                self.version
            ));
        }
        if self.title.trim().is_empty() {
            p.push("title is empty".into());
        }
        if self.auth_schemes.is_empty() {
            p.push("no auth scheme: declare at least one (use `none` for public APIs)".into());
        }
        for d in duplicates(self.auth_schemes.iter().map(|s| s.id.as_str())) {
            p.push(format!("auth scheme `{d}` is declared twice"));
        }
        for d in duplicates(self.fields.iter().map(|f| f.name.as_str())) {
            p.push(format!("field `{d}` is declared twice"));
        }
        for d in duplicates(self.actions.iter().map(|a| a.name.as_str())) {
            p.push(format!("action `{d}` is declared twice"));
        }
        for d in duplicates(self.triggers.iter().map(|t| t.name.as_str())) {
            p.push(format!("trigger `{d}` is declared twice"));
        }
        for scheme in &self.auth_schemes {
            if !is_identifier(&scheme.id, '-') && !is_identifier(&scheme.id, '_') {
                p.push(format!("auth scheme id `{}` must be kebab-case", scheme.id));
            }
            for (field, must_be_secret) in scheme.kind.field_refs() {
                match self.field(field) {
                    None => p.push(format!(
                        "auth scheme `{}` uses field `{field}`, which is not declared",
                        scheme.id
                    )),
                    Some(f) if must_be_secret && !f.secret => p.push(format!(
                        "auth scheme `{}` reads a credential from field `{field}`, which must be secret",
                        scheme.id
                    )),
                    Some(f) if !f.applies_to(&scheme.id) => p.push(format!(
                        "auth scheme `{}` uses field `{field}`, which is limited to other schemes",
                        scheme.id
                    )),
                    Some(_) => {}
                }
            }
            for url in scheme.kind.urls() {
                let mut bad_ref = false;
                for name in placeholders(url) {
                    match self.field(name) {
                        Some(f) if !f.secret && f.applies_to(&scheme.id) => {}
                        _ => {
                            bad_ref = true;
                            p.push(format!(
                                "auth scheme `{}`: `{url}` uses `{{{name}}}`, which must be a non-secret field of the scheme",
                                scheme.id
                            ));
                        }
                    }
                }
                // Check the syntax with sample values for the placeholders.
                let sample = fill_placeholders(url, |_, at_start| {
                    Some(
                        if at_start {
                            "https://example.test"
                        } else {
                            "example"
                        }
                        .into(),
                    )
                });
                match sample.as_deref().map(url::Url::parse) {
                    Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {}
                    _ if bad_ref => {}
                    _ => p.push(format!(
                        "auth scheme `{}`: `{url}` is not an absolute http(s) URL",
                        scheme.id
                    )),
                }
            }
            if let AuthKind::ApiKey { name, location, .. } = &scheme.kind {
                if *location == KeyLocation::Header
                    && http::HeaderName::from_bytes(name.as_bytes()).is_err()
                {
                    p.push(format!(
                        "auth scheme `{}`: `{name}` is not a valid header name",
                        scheme.id
                    ));
                }
                if name.is_empty() {
                    p.push(format!(
                        "auth scheme `{}`: the key's name is empty",
                        scheme.id
                    ));
                }
            }
        }
        for f in &self.fields {
            if !is_identifier(&f.name, '_') {
                p.push(format!("field name `{}` must be snake_case", f.name));
            }
            if f.secret && f.default_value.is_some() {
                p.push(format!(
                    "secret field `{}` cannot have a default value",
                    f.name
                ));
            }
            for s in &f.schemes {
                if self.scheme(s).is_none() {
                    p.push(format!(
                        "field `{}` names auth scheme `{s}`, which is not declared",
                        f.name
                    ));
                }
            }
        }
        for pattern in &self.allowed_hosts {
            let mut bad_ref = false;
            for name in placeholders(pattern) {
                match self.field(name) {
                    None => {
                        bad_ref = true;
                        p.push(format!(
                            "allowed host `{pattern}` uses field `{name}`, which is not declared"
                        ));
                    }
                    Some(f) if f.secret => {
                        bad_ref = true;
                        p.push(format!(
                            "allowed host `{pattern}` uses secret field `{name}`"
                        ));
                    }
                    Some(_) => {}
                }
            }
            if !bad_ref {
                // Check the syntax with sample values for the placeholders.
                let whole = placeholders(pattern).len() == 1 && pattern.trim().starts_with('{');
                let sample = if whole {
                    "https://example.test"
                } else {
                    "example"
                };
                if let Err(e) = AllowList::resolve([pattern.as_str()], |_| Some(sample.into())) {
                    p.push(e.to_string());
                }
            }
        }
        for name in &self.reveal_fields {
            match self.field(name) {
                Some(f) if f.secret => {}
                Some(_) => p.push(format!(
                    "reveal field `{name}` is not secret; read it with `connection.field`"
                )),
                None => p.push(format!("reveal field `{name}` is not declared")),
            }
        }
        for a in &self.actions {
            if !is_identifier(&a.name, '-') {
                p.push(format!("action name `{}` must be kebab-case", a.name));
            }
        }
        for t in &self.triggers {
            if !is_identifier(&t.name, '-') {
                p.push(format!("trigger name `{}` must be kebab-case", t.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Manifest {
        Manifest {
            name: "github".into(),
            version: "1.0.0".into(),
            title: "GitHub".into(),
            description: String::new(),
            release: Release::Ga,
            docs: String::new(),
            auth_schemes: vec![AuthScheme {
                id: "pat".into(),
                title: "Token".into(),
                kind: AuthKind::Bearer {
                    token_field: "token".into(),
                },
            }],
            fields: vec![
                Field {
                    name: "base_url".into(),
                    label: "URL".into(),
                    description: String::new(),
                    secret: false,
                    required: false,
                    default_value: Some("https://api.github.com".into()),
                    schemes: vec![],
                },
                Field {
                    name: "token".into(),
                    label: "Token".into(),
                    description: String::new(),
                    secret: true,
                    required: true,
                    default_value: None,
                    schemes: vec!["pat".into()],
                },
            ],
            allowed_hosts: vec!["{base_url}".into()],
            reveal_fields: vec![],
            actions: vec![Action {
                name: "get-user".into(),
                title: "Get user".into(),
                description: String::new(),
                input_schema: json!({}),
                output_schema: json!({}),
            }],
            triggers: vec![],
        }
    }

    fn with_oauth(authorize_url: &str) -> Manifest {
        let mut m = sample();
        m.auth_schemes.push(AuthScheme {
            id: "oauth".into(),
            title: "OAuth".into(),
            kind: AuthKind::Oauth2Code {
                authorize_url: authorize_url.into(),
                token_url: "{base_url}/token".into(),
                scopes: vec![],
                mandatory_scopes: vec!["repo".into()],
                pkce: true,
                allow_own_app: true,
            },
        });
        m.add_oauth_fields();
        m
    }

    #[test]
    fn oauth_schemes_get_the_fields_of_an_own_app_and_may_build_endpoints_from_fields() {
        let m = with_oauth("{base_url}/authorize?prompt=consent");
        assert_eq!(m.validate(vec![]), Ok(()));
        let secret = m.field(CLIENT_SECRET_FIELD).unwrap();
        assert!(secret.secret && !secret.required);
        assert_eq!(secret.schemes, ["oauth"]);
        assert!(!m.field(CLIENT_ID_FIELD).unwrap().applies_to("pat"));
        let filled = fill_placeholders("{base_url}/token", |_, start| {
            assert!(start);
            Some("https://ghe.example.test/".into())
        });
        assert_eq!(filled.as_deref(), Some("https://ghe.example.test/token"));
    }

    #[test]
    fn an_oauth_endpoint_built_from_a_secret_or_unknown_field_is_refused() {
        let err = with_oauth("{token}/authorize")
            .validate(vec![])
            .unwrap_err();
        assert!(err.to_string().contains("non-secret field"), "{err}");
        let err = with_oauth("https://{tenant}.example.test/authorize")
            .validate(vec![])
            .unwrap_err();
        assert!(err.to_string().contains("`{tenant}`"), "{err}");
    }

    #[test]
    fn a_consistent_manifest_passes() {
        sample().validate(vec![]).unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut m = sample();
        m.version = "one".into();
        m.fields[1].secret = false;
        m.allowed_hosts.push("{subdomain}.example.com".into());
        m.actions.push(m.actions[0].clone());
        m.reveal_fields.push("base_url".into());
        let err = m.validate(vec![]).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(text.contains("version `one`"));
        assert!(text.contains("field `token`, which must be secret"));
        assert!(text.contains("`subdomain`, which is not declared"));
        assert!(text.contains("action `get-user` is declared twice"));
        assert!(text.contains("reveal field `base_url` is not secret"));
    }

    #[test]
    fn a_secret_field_cannot_shape_the_allow_list() {
        let mut m = sample();
        m.allowed_hosts = vec!["{token}".into()];
        let err = m.validate(vec![]).unwrap_err();
        assert!(err.to_string().contains("uses secret field `token`"));
    }

    #[test]
    fn a_schema_that_is_not_json_is_reported() {
        let mut problems = vec![];
        parse_schema("action `x` input schema", "{nope", &mut problems);
        assert!(problems[0].starts_with("action `x` input schema is not valid JSON"));
    }
}
