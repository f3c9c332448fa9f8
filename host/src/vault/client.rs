//! A client of the Vault HTTP API: logs in (a token, or AppRole), and reads a KV secret
//! (version 1 or 2). It keeps the login token in memory only and logs in again when the
//! token expires or is refused.

use super::cache::Values;
use super::{StoreAuth, StoreSettings};
use crate::capabilities::http::HttpClient;
use crate::credentials::Secret;
use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};
use url::Url;
use zeroize::Zeroizing;

/// The largest answer read from a vault.
const MAX_BODY: usize = 1 << 20;

/// Why a read failed. Never contains a secret: vault error texts are kept, truncated, as
/// they describe the request, not the data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("there is no secret at `{path}`")]
    NotFound { path: String },
    #[error("the store's credentials may not read `{path}`: {detail}")]
    Denied { path: String, detail: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("the store could not log in: {0}")]
    Login(String),
}

/// One configured vault.
#[derive(Debug)]
pub struct VaultStore {
    settings: StoreSettings,
    http: HttpClient,
    /// The token of the last AppRole login, and when to log in again.
    login: tokio::sync::Mutex<Option<(Secret, Option<Instant>)>>,
}

fn vault_errors(body: &[u8]) -> String {
    // Vault answers `{"errors": [...]}`; RustyVault `{"error": "..."}`.
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| match (v.get("errors"), v.get("error")) {
            (Some(Value::Array(errors)), _) => Some(
                errors
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (_, Some(Value::String(error))) => Some(error.clone()),
            _ => None,
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "no error text".into());
    let mut text: String = text.chars().take(300).collect();
    if text.len() >= 300 {
        text.push('…');
    }
    text
}

impl VaultStore {
    pub fn new(settings: StoreSettings, http: HttpClient) -> Self {
        Self {
            settings,
            http,
            login: tokio::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// `<address>/v1/<segments…>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, ReadError> {
        let mut url = self.settings.address.clone();
        {
            let mut path = url.path_segments_mut().map_err(|_| {
                ReadError::Unavailable("the store's address cannot take a path".into())
            })?;
            path.pop_if_empty().push("v1");
            for segment in segments {
                for part in segment.split('/').filter(|p| !p.is_empty()) {
                    path.push(part);
                }
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        token: Option<&Secret>,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, ReadError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                ReadError::Login("the store's token has characters not allowed in a header".into())
            })?;
            value.set_sensitive(true);
            request = request.header("x-vault-token", value);
        }
        if let Some(namespace) = &self.settings.namespace {
            request = request.header("x-vault-namespace", namespace.as_str());
        }
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.unwrap_or_default())
            .map_err(|e| ReadError::Unavailable(format!("the request cannot be built: {e}")))?;
        self.http
            .exchange(request, self.settings.timeout, MAX_BODY)
            .await
            .map_err(|e| ReadError::Unavailable(e.to_string()))
    }

    /// The token to read with: the configured one, or an AppRole login's (logging in when
    /// there is none yet, or it expired, or `refused` is the one the vault just refused).
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, ReadError> {
        let (mount, role_id, secret_id) = match &self.settings.auth {
            StoreAuth::Token(token) => return Ok(token.clone()),
            StoreAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => (mount, role_id, secret_id),
        };
        let mut login = self.login.lock().await;
        if let Some((token, renew_at)) = login.as_ref()
            && renew_at.is_none_or(|at| Instant::now() < at)
            && Some(token) != refused
        {
            return Ok(token.clone());
        }
        #[derive(serde::Serialize)]
        struct Login<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let body = Zeroizing::new(
            serde_json::to_vec(&Login {
                role_id,
                secret_id: secret_id.expose(),
            })
            .map_err(|e| ReadError::Login(e.to_string()))?,
        );
        let url = self
            .url(&["auth", mount, "login"])
            .map_err(|e| ReadError::Login(e.to_string()))?;
        let response = self
            .send(Method::POST, url, None, Some(body.to_vec()))
            .await
            .map_err(|e| ReadError::Login(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ReadError::Login(format!(
                "AppRole login at `auth/{mount}` answered {}: {}",
                response.status(),
                vault_errors(response.body())
            )));
        }
        let answer: Value = serde_json::from_slice(response.body())
            .map_err(|_| ReadError::Login("the AppRole login answer is not JSON".into()))?;
        let auth = answer.get("auth");
        let token = auth
            .and_then(|a| a.get("client_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ReadError::Login("the AppRole login answer has no client_token".into())
            })?;
        let lease = auth
            .and_then(|a| a.get("lease_duration"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // Logged in again before the token runs out (at 80% of its lease).
        let renew_at = (lease > 0).then(|| Instant::now() + Duration::from_secs(lease) * 4 / 5);
        let token = Secret::new(token);
        *login = Some((token.clone(), renew_at));
        tracing::info!(store = %self.settings.name, "logged in to the credential store with AppRole");
        Ok(token)
    }

    /// The string values of the KV secret at `path` (relative to the store's mount).
    #[tracing::instrument(skip(self), fields(store = %self.settings.name))]
    pub async fn read(&self, path: &str) -> Result<Values, ReadError> {
        let mount = self.settings.mount.as_str();
        let url = match self.settings.kv_version {
            KvVersion::V1 => self.url(&[mount, path])?,
            KvVersion::V2 => self.url(&[mount, "data", path])?,
        };
        let mut token = self.token(None).await?;
        let mut relogged = false;
        let response = loop {
            let response = self
                .send(Method::GET, url.clone(), Some(&token), None)
                .await?;
            // An AppRole token the vault no longer accepts: log in once more.
            if response.status() == StatusCode::FORBIDDEN
                && !relogged
                && matches!(self.settings.auth, StoreAuth::AppRole { .. })
            {
                relogged = true;
                token = self.token(Some(&token)).await?;
                continue;
            }
            break response;
        };
        let status = response.status();
        match status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(ReadError::NotFound {
                    path: path.to_owned(),
                });
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(ReadError::Denied {
                    path: path.to_owned(),
                    detail: vault_errors(response.body()),
                });
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                return Err(ReadError::Unavailable(format!(
                    "the vault is sealed or not ready (503: {})",
                    vault_errors(response.body())
                )));
            }
            s => {
                return Err(ReadError::Unavailable(format!(
                    "the vault answered {s}: {}",
                    vault_errors(response.body())
                )));
            }
        }
        let answer: Value = serde_json::from_slice(response.body())
            .map_err(|_| ReadError::Unavailable("the vault's answer is not JSON".into()))?;
        let data = match self.settings.kv_version {
            KvVersion::V1 => answer.get("data"),
            KvVersion::V2 => answer.get("data").and_then(|d| d.get("data")),
        };
        let Some(Value::Object(data)) = data else {
            // KV v2 answers `data: null` for a deleted or destroyed version.
            return Err(ReadError::NotFound {
                path: path.to_owned(),
            });
        };
        Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(Secret::new)))
            .collect())
    }
}

/// The KV secrets engine version of a store's mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvVersion {
    V1,
    #[default]
    V2,
}
