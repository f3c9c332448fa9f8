//! Keeping OAuth connections alive: each connection's current access token in memory, and
//! its renewal before expiry or after a 401, one at a time per connection. Invocations
//! that need a renewal while one runs wait for it and use its result, so a thousand
//! invocations on an expired token make one token request.
//!
//! The order of a renewal matters: the new tokens (a rotated refresh token included) are
//! written to the store first, and only then handed to anyone. A refresh token the
//! provider rotated is never lost to a crash between the two.

use super::oauth::{Grant, GrantError, Provider, SetupError, renew_at};
use crate::capabilities::http::HttpClient;
use crate::config::OAuthApp;
use crate::credentials::tokens::BoxFuture;
use crate::credentials::{CredentialFailure, Secret, TokenSource};
use crate::runtime::manifest::AuthScheme;
use crate::store::{Health, HealthStatus, Store, StoredTokens, Timestamp, Tokens};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The path of the OAuth callback, below the public URL.
pub const CALLBACK_PATH: &str = "/v1/oauth/callback";

/// The OAuth side of the service: its apps, its redirect URI, and every connection's
/// current token.
#[derive(Debug)]
pub struct OAuth {
    store: Store,
    http: HttpClient,
    apps: BTreeMap<String, OAuthApp>,
    redirect_uri: String,
    public_url: String,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    token_requests: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    /// Held while a renewal runs.
    renewing: tokio::sync::Mutex<()>,
    latest: RwLock<Option<Current>>,
}

/// What the store holds for a renewal to decide on.
enum Stored {
    Fresh(Secret),
    Stale(Option<StoredTokens>),
}

#[derive(Debug, Clone)]
struct Current {
    access: Secret,
    renew_at: Option<Timestamp>,
}

impl Current {
    fn of(t: &Tokens, grant: &Grant) -> Self {
        Self {
            access: t.access_token.clone(),
            renew_at: renew_at(
                t.issued_at,
                t.expires_at,
                grant.renewable(t.refresh_token.is_some()),
            ),
        }
    }
    fn fresh(&self, now: Timestamp) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

impl Entry {
    fn fresh(&self, now: Timestamp) -> Option<Secret> {
        let latest = self.latest.read().ok()?;
        latest
            .as_ref()
            .filter(|c| c.fresh(now))
            .map(|c| c.access.clone())
    }
    fn set(&self, current: Option<Current>) {
        if let Ok(mut latest) = self.latest.write() {
            *latest = current;
        }
    }
}

fn unavailable(reason: impl std::fmt::Display) -> CredentialFailure {
    CredentialFailure::Unavailable {
        reason: reason.to_string(),
    }
}

impl OAuth {
    pub fn new(
        store: Store,
        http: HttpClient,
        apps: BTreeMap<String, OAuthApp>,
        public_url: &str,
    ) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        Self {
            store,
            http,
            apps,
            redirect_uri: format!("{public_url}{CALLBACK_PATH}"),
            public_url,
            entries: Mutex::default(),
            token_requests: AtomicU64::new(0),
        }
    }

    /// Whether the operator configured an OAuth app for `connector`.
    pub fn has_app(&self, connector: &str) -> bool {
        self.apps.contains_key(connector)
    }

    /// Where providers send users back: `<public-url>/v1/oauth/callback`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Where browsers reach the service (no trailing `/`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Token requests made since the start (every grant, refreshes included).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    fn count_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Exchanges an authorization code (and its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        provider: &Provider,
        code: &str,
        verifier: Option<&Secret>,
    ) -> Result<Tokens, GrantError> {
        self.count_token_request();
        provider.exchange_code(&self.http, code, verifier).await
    }

    /// The provider settings of a connection.
    pub fn provider(
        &self,
        connector: &str,
        scheme: &AuthScheme,
        plain: &BTreeMap<String, String>,
        secret: impl Fn(&str) -> Option<Secret>,
    ) -> Result<Provider, SetupError> {
        Provider::resolve(
            connector,
            scheme,
            plain,
            secret,
            self.apps.get(connector),
            &self.redirect_uri,
        )
    }

    /// Runs the password or client credentials grant.
    pub async fn request_tokens(&self, provider: &Provider) -> Result<Tokens, GrantError> {
        self.count_token_request();
        provider.request_tokens(&self.http).await
    }

    /// Forgets what is held in memory for a connection (its tokens were replaced, its
    /// credentials changed, or it was deleted).
    pub fn forget(&self, connection_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(connection_id);
        }
    }

    fn entry(&self, connection_id: &str) -> Arc<Entry> {
        match self.entries.lock() {
            Ok(mut entries) => entries.entry(connection_id.to_owned()).or_default().clone(),
            // A poisoned map still serves, without sharing: correctness over coalescing.
            Err(_) => Arc::default(),
        }
    }

    /// A source of tokens for one invocation on a connection.
    pub fn source(
        self: &Arc<Self>,
        connection_id: &str,
        provider: Provider,
    ) -> Arc<dyn TokenSource> {
        Arc::new(ConnectionTokens {
            oauth: self.clone(),
            connection_id: connection_id.to_owned(),
            provider,
        })
    }

    /// The connection's access token, renewed first when it is about to expire.
    #[tracing::instrument(skip_all, fields(connection = connection_id))]
    pub async fn access_token(
        &self,
        connection_id: &str,
        provider: &Provider,
    ) -> Result<Secret, CredentialFailure> {
        let entry = self.entry(connection_id);
        if let Some(token) = entry.fresh(Timestamp::now()) {
            return Ok(token);
        }
        let _renewing = entry.renewing.lock().await;
        // Renewed by the invocation this one waited for?
        if let Some(token) = entry.fresh(Timestamp::now()) {
            return Ok(token);
        }
        match self.stored(connection_id, provider, &entry, None).await? {
            Stored::Fresh(token) => Ok(token),
            Stored::Stale(stored) => self.renew(connection_id, provider, stored, &entry).await,
        }
    }

    /// The API answered 401 to `rejected`: the token renewed since, or a new one.
    #[tracing::instrument(skip_all, fields(connection = connection_id))]
    pub async fn after_rejection(
        &self,
        connection_id: &str,
        provider: &Provider,
        rejected: &Secret,
    ) -> Result<Secret, CredentialFailure> {
        let entry = self.entry(connection_id);
        let _renewing = entry.renewing.lock().await;
        if let Some(token) = entry.fresh(Timestamp::now())
            && token != *rejected
        {
            return Ok(token);
        }
        match self
            .stored(connection_id, provider, &entry, Some(rejected))
            .await?
        {
            Stored::Fresh(token) => Ok(token),
            Stored::Stale(stored) => {
                tracing::info!("the API rejected the access token; renewing it");
                self.renew(connection_id, provider, stored, &entry).await
            }
        }
    }

    /// The stored tokens: their access token if it is fresh (and not `rejected`), now
    /// held in memory too; otherwise what renewing them starts from.
    async fn stored(
        &self,
        connection_id: &str,
        provider: &Provider,
        entry: &Entry,
        rejected: Option<&Secret>,
    ) -> Result<Stored, CredentialFailure> {
        let stored = self
            .store
            .tokens(connection_id)
            .await
            .map_err(unavailable)?;
        if let Some(t) = &stored {
            let current = Current::of(&t.tokens, &provider.grant);
            if current.fresh(Timestamp::now()) && Some(&current.access) != rejected {
                entry.set(Some(current.clone()));
                return Ok(Stored::Fresh(current.access));
            }
        }
        Ok(Stored::Stale(stored))
    }

    /// Obtains new tokens (the caller holds the entry's renewal lock), saves them, then
    /// hands the access token out.
    async fn renew(
        &self,
        connection_id: &str,
        provider: &Provider,
        stored: Option<StoredTokens>,
        entry: &Entry,
    ) -> Result<Secret, CredentialFailure> {
        entry.set(None);
        let refresh = stored.as_ref().and_then(|t| t.tokens.refresh_token.clone());
        let read_version = stored.as_ref().map(|t| t.version);
        let granted = stored.map(|t| t.tokens.scopes).unwrap_or_default();
        let result = match refresh {
            Some(refresh_token) => {
                self.count_token_request();
                match provider.refresh(&self.http, &refresh_token, &granted).await {
                    // A refused refresh of a password grant: the password may still work.
                    Err(e)
                        if e.is_permanent() && matches!(provider.grant, Grant::Password { .. }) =>
                    {
                        tracing::info!(error = %e, "refresh refused; running the password grant again");
                        self.request_tokens(provider).await
                    }
                    other => other,
                }
            }
            None => match provider.grant {
                Grant::Code { .. } => {
                    return Err(self
                        .needs_reauthentication(
                            connection_id,
                            "the access token expired and the provider issued no refresh token; reconnect to authorize again (ask for offline access in the OAuth app's scopes to avoid this)".into(),
                        )
                        .await);
                }
                _ => self.request_tokens(provider).await,
            },
        };
        let tokens = match result {
            Ok(tokens) => tokens,
            Err(e) if e.is_permanent() => {
                return Err(self
                    .needs_reauthentication(connection_id, format!("{e}; reconnect it"))
                    .await);
            }
            Err(e) => return Err(unavailable(e)),
        };
        // Saved before anyone uses the new access token: a rotated refresh token must not
        // be lost. Saved only over the tokens this renewal started from: a reconnect or an
        // edit that replaced them meanwhile wins, and this result is thrown away.
        let saved = self
            .store
            .save_renewed_tokens(connection_id, read_version, &tokens)
            .await
            .map_err(|e| unavailable(format!("the renewed tokens could not be saved: {e}")))?;
        if saved.is_none() {
            return match self.stored(connection_id, provider, entry, None).await? {
                Stored::Fresh(token) => Ok(token),
                Stored::Stale(_) => Err(unavailable(
                    "the connection's tokens were replaced while they were being renewed; try again",
                )),
            };
        }
        entry.set(Some(Current::of(&tokens, &provider.grant)));
        tracing::info!(grant = provider.grant.name(), "access token renewed");
        Ok(tokens.access_token)
    }

    async fn needs_reauthentication(
        &self,
        connection_id: &str,
        reason: String,
    ) -> CredentialFailure {
        let health = Health {
            status: HealthStatus::NeedsReauthentication,
            reason: Some(reason.clone()),
            checked_at: Some(Timestamp::now()),
        };
        if let Err(e) = self.store.set_health(connection_id, &health).await {
            tracing::warn!(error = %e, connection = connection_id, "cannot record that the connection needs re-authentication");
        }
        tracing::warn!(connection = connection_id, reason = %reason, "connection needs re-authentication");
        CredentialFailure::NeedsReauthentication { reason }
    }
}

/// The tokens of one connection, as an invocation's HTTP capability asks for them.
#[derive(Debug)]
struct ConnectionTokens {
    oauth: Arc<OAuth>,
    connection_id: String,
    provider: Provider,
}

impl TokenSource for ConnectionTokens {
    fn current(&self) -> BoxFuture<'_, Result<Secret, CredentialFailure>> {
        Box::pin(self.oauth.access_token(&self.connection_id, &self.provider))
    }
    fn rejected<'a>(
        &'a self,
        rejected: &'a Secret,
    ) -> BoxFuture<'a, Result<Secret, CredentialFailure>> {
        Box::pin(
            self.oauth
                .after_rejection(&self.connection_id, &self.provider, rejected),
        )
    }
}
