//! A connection as the runtime uses it: the user's values checked against the manifest,
//! with the credentials and the allow-list derived from them once.

use super::manifest::Manifest;
use crate::auth::{self, AuthError};
use crate::capabilities::allowed_hosts::{AllowList, AllowListError, placeholders};
use crate::credentials::scrub::Scrubber;
use crate::credentials::{Credentials, Secret, TokenSource};
use crate::runtime::slots::SlotOwner;
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// What a user gives for a connection. Every value is held as a [`Secret`] until the
/// manifest says which fields are not secret, so nothing here prints a value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// The auth scheme's id; may be left out when the connector has only one.
    #[serde(default)]
    pub auth: Option<String>,
    /// Field values by name.
    #[serde(default)]
    pub fields: BTreeMap<String, Secret>,
    /// For OAuth 2.0 schemes: an access token obtained from the provider.
    #[serde(default)]
    pub access_token: Option<Secret>,
    /// For OAuth 2.0 schemes run by the service: where the current access token comes
    /// from (kept renewed by the host).
    #[serde(skip)]
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// Who the connection's invocations run for (its tenant's id): they share the
    /// engine's instance slots fairly with other owners' ([`super::slots`]). `None`: the
    /// local owner of the command-line runs.
    #[serde(skip)]
    pub owner: Option<SlotOwner>,
}

/// Why a connection does not fit a connector. Never contains a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("unknown auth scheme `{given}`; this connector supports: {known}")]
    UnknownAuthScheme { given: String, known: String },
    #[error("this connector supports several auth schemes ({known}); choose one")]
    AuthSchemeRequired { known: String },
    #[error("unknown field `{name}`; this connector's fields are: {known}")]
    UnknownField { name: String, known: String },
    #[error("field `{name}` does not belong to auth scheme `{scheme}`")]
    FieldNotForScheme { name: String, scheme: String },
    #[error("field `{name}` is required")]
    MissingField { name: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    AllowList(#[from] AllowListError),
}

/// A connection checked against a manifest.
#[derive(Debug, Clone)]
pub struct PreparedConnection {
    scheme: String,
    plain: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
    credentials: Credentials,
    allow: AllowList,
    scrubber: Scrubber,
    token_source: Option<Arc<dyn TokenSource>>,
    owner: Option<SlotOwner>,
    /// Tokens handed out while the connection was in use, scrubbed like its secrets.
    issued: Arc<Mutex<Scrubber>>,
    /// The last 401 or 403 an API answered to a request carrying the connection's own
    /// credentials (0: none), so that a value from a credential store can be read again.
    rejected: Arc<AtomicU16>,
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

impl PreparedConnection {
    /// Checks `spec` against `manifest`: known scheme, known fields, required fields set.
    pub fn prepare(manifest: &Manifest, spec: &ConnectionSpec) -> Result<Self, ConnectionError> {
        let known_schemes = || names(manifest.auth_schemes.iter().map(|s| s.id.as_str()));
        let scheme = match (&spec.auth, manifest.auth_schemes.as_slice()) {
            (Some(id), _) => {
                manifest
                    .scheme(id)
                    .ok_or_else(|| ConnectionError::UnknownAuthScheme {
                        given: id.clone(),
                        known: known_schemes(),
                    })?
            }
            (None, [only]) => only,
            (None, _) => {
                return Err(ConnectionError::AuthSchemeRequired {
                    known: known_schemes(),
                });
            }
        };
        let mut plain = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for (name, value) in &spec.fields {
            let field = manifest
                .field(name)
                .ok_or_else(|| ConnectionError::UnknownField {
                    name: name.clone(),
                    known: names(manifest.fields.iter().map(|f| f.name.as_str())),
                })?;
            if !field.applies_to(&scheme.id) {
                return Err(ConnectionError::FieldNotForScheme {
                    name: name.clone(),
                    scheme: scheme.id.clone(),
                });
            }
            if value.is_empty() {
                continue;
            }
            if field.secret {
                secrets.insert(name.clone(), value.clone());
            } else {
                plain.insert(name.clone(), value.expose().to_owned());
            }
        }
        for field in manifest.fields.iter().filter(|f| f.applies_to(&scheme.id)) {
            if plain.contains_key(&field.name) || secrets.contains_key(&field.name) {
                continue;
            }
            match &field.default_value {
                Some(default) => {
                    plain.insert(field.name.clone(), default.clone());
                }
                None if field.required => {
                    return Err(ConnectionError::MissingField {
                        name: field.name.clone(),
                    });
                }
                None => {}
            }
        }
        let credentials = auth::credentials(
            &scheme.id,
            &scheme.kind,
            |n| plain.get(n).cloned(),
            |n| secrets.get(n).cloned(),
            spec.access_token.as_ref(),
            spec.token_source.is_some(),
        )?;
        // A pattern built from an optional field that is not set contributes no host.
        let patterns = manifest.allowed_hosts.iter().filter(|p| {
            placeholders(p)
                .iter()
                .all(|n| plain.contains_key(*n) || manifest.field(n).is_some_and(|f| f.required))
        });
        let allow = AllowList::resolve(patterns.map(String::as_str), |n| plain.get(n).cloned())?;
        let mut echoed: Vec<Secret> = secrets
            .values()
            .chain(spec.access_token.iter())
            .flat_map(echo_forms)
            .collect();
        if let Credentials::Basic { username, password } = &credentials {
            echoed.push(Secret::new(
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose())),
            ));
        }
        Ok(Self {
            scheme: scheme.id.clone(),
            plain,
            secrets,
            credentials,
            allow,
            scrubber: Scrubber::new(echoed),
            token_source: spec.token_source.clone(),
            owner: spec.owner.clone(),
            issued: Arc::default(),
            rejected: Arc::default(),
        })
    }

    /// Who the connection's invocations run for, for the fair sharing of instance slots.
    pub fn owner(&self) -> Option<&SlotOwner> {
        self.owner.as_ref()
    }

    /// Where the current OAuth access token comes from, when the host manages it.
    pub fn token_source(&self) -> Option<&Arc<dyn TokenSource>> {
        self.token_source.as_ref()
    }

    /// Records a token handed out for this connection, so that it is scrubbed like the
    /// connection's secrets from everything the invocation returns.
    pub fn note_issued(&self, token: &Secret) {
        if let Ok(mut issued) = self.issued.lock() {
            if issued.contains(token) {
                return;
            }
            *issued = Scrubber::new(issued.needles().iter().cloned().chain(echo_forms(token)));
        }
    }

    /// `text` without the connection's secrets and the tokens issued for it.
    pub fn scrub_str(&self, text: String) -> String {
        let text = self.scrubber.scrub_str(text);
        match self.issued.lock() {
            Ok(issued) => issued.scrub_str(text),
            Err(_) => text,
        }
    }

    /// `bytes` without the connection's secrets and the tokens issued for it; `None` when
    /// nothing was found.
    pub fn scrub(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let first = self.scrubber.scrub(bytes);
        let again = match self.issued.lock() {
            Ok(issued) => issued.scrub(first.as_deref().unwrap_or(bytes)),
            Err(_) => None,
        };
        again.or(first)
    }

    /// Records that an API refused the credentials the host attached (401 or 403).
    pub fn note_rejection(&self, status: u16) {
        self.rejected.store(status, Ordering::Relaxed);
    }

    /// The status of the last refusal of the attached credentials, if any.
    pub fn rejection(&self) -> Option<u16> {
        Some(self.rejected.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    /// A non-secret field's value (defaults applied).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.plain.get(name).map(String::as_str)
    }
    /// A secret field's value.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }
}

/// Every form in which a credential may come back from an upstream API: as is, URL-encoded
/// (a key sent in a query), percent-encoded, and JSON-escaped.
fn echo_forms(secret: &Secret) -> Vec<Secret> {
    let value = secret.expose();
    let mut forms = vec![
        secret.clone(),
        Secret::new(url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()),
        Secret::new(
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ),
    ];
    if let Ok(quoted) = serde_json::to_string(value) {
        forms.push(Secret::new(
            quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or(&quoted),
        ));
    }
    forms
}
