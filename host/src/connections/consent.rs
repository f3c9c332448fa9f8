//! Starting an OAuth 2.0 consent for a connection (on create and reconnect): a fresh
//! `state` (kept as its hash), the PKCE verifier and the provider's URL kept sealed
//! server-side, and a start link (its token kept as its hash) that opens the start page.
//! The start page and the callback are HTTP (`api/routes/oauth.rs`).

use super::Connections;
use super::error::{Error, Result};
use crate::access::Caller;
use crate::auth::oauth::Provider;
use crate::credentials::Secret;
use crate::store::{PendingAuthorization, Timestamp};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// How long a user has to finish the consent.
const AUTHORIZATION_TTL_MS: i64 = 10 * 60 * 1000;

/// Where a start link points, below the public URL: `/v1/oauth/start/<token>`.
pub const START_PATH: &str = "/v1/oauth/start/";

/// The consent window: [`AUTHORIZATION_TTL_MS`], or in a debug build what
/// `JUNCTION_TEST_AUTHORIZATION_TTL_MS` says (the tests of an expired state). Release
/// builds have no such switch.
fn authorization_ttl_ms() -> i64 {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("JUNCTION_TEST_AUTHORIZATION_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return ms;
    }
    AUTHORIZATION_TTL_MS
}

/// An authorization to finish in the browser.
#[derive(Debug, Clone, Serialize)]
pub struct Authorization {
    /// Open this URL in a browser to consent at the provider.
    pub url: String,
    /// Where the provider sends the browser back; it must be registered in the OAuth app.
    pub redirect_uri: String,
    pub expires_at: Timestamp,
}

/// The SHA-256 of a token: what is stored of it.
pub fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// 256 random bits, base64url.
pub fn random_token() -> Result<String> {
    let random = crate::credentials::at_rest::random_bytes::<32>()
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random))
}

impl Connections {
    /// Starts an authorization by `caller` for connection `connection_id`.
    pub(crate) async fn start_consent(
        &self,
        caller: &Caller,
        connection_id: &str,
        provider: &Provider,
    ) -> Result<Authorization> {
        let state = random_token()?;
        let start_token = random_token()?;
        let (url, verifier) = provider.authorization_url(&state)?;
        let now = Timestamp::now();
        let expires_at = Timestamp(now.0 + authorization_ttl_ms());
        self.store
            .start_authorization(
                &sha256(&state),
                &sha256(&start_token),
                &PendingAuthorization {
                    connection_id: connection_id.to_owned(),
                    tenant_id: caller.tenant.id.clone(),
                    principal_id: caller.principal.id.clone(),
                    pkce_verifier: verifier.unwrap_or_else(|| Secret::new("")),
                    authorize_url: Secret::new(url.to_string()),
                    created_at: now,
                },
                expires_at,
            )
            .await?;
        tracing::info!(connection = connection_id, principal = %caller.principal.id, own_app = provider.own_app, "authorization started");
        Ok(Authorization {
            url: format!("{}{START_PATH}{start_token}", self.oauth.public_url()),
            redirect_uri: provider.redirect_uri.clone(),
            expires_at,
        })
    }
}
