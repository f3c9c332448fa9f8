//! Credential assets: a connection's secret field may hold a reference to a secret in an
//! external vault (the Vault HTTP API, KV version 1 or 2) instead of a value. The host
//! resolves it when the connection is used, keeps the value in memory for one hour sealed
//! under a key that exists only in this process ([`cache`]), never writes it down, and when
//! the API refuses it, drops it, reads the vault again and retries once.

pub mod cache;
pub mod client;

use crate::capabilities::http::HttpClient;
use crate::credentials::Secret;
use cache::{LoadError, SecretCache};
pub use client::{KvVersion, ReadError, VaultStore};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// The time the cache measures its hour on.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since some fixed point; never goes back.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to (tests of the hour's expiry).
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<Duration>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.0.lock().map(|n| *n).unwrap_or_default()
    }
}

/// Where a secret field's value lives: a key of a KV secret in a configured store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRef {
    /// The credential store's name in the service's configuration.
    pub store: String,
    /// The secret's path, relative to the store's KV mount.
    pub path: String,
    /// The key within the secret.
    pub key: String,
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.store, self.path, self.key)
    }
}

impl CredentialRef {
    /// Parses the CLI's form `<store>:<path>#<key>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (store, rest) = text.split_once(':')?;
        let (path, key) = rest.rsplit_once('#')?;
        let r = Self {
            store: store.to_owned(),
            path: path.to_owned(),
            key: key.to_owned(),
        };
        r.problem().is_none().then_some(r)
    }

    /// What is wrong with the reference's form, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.store.trim().is_empty() {
            return Some("`store` is empty".into());
        }
        if self.key.is_empty() {
            return Some("`key` is empty".into());
        }
        if normalise_path(&self.path).is_none()
            || self.path.contains(['?', '#', '\\'])
            || self.path.chars().any(char::is_control)
        {
            return Some(format!(
                "`path` must be a secret's path below the store's mount, such as `team/github` (got `{}`)",
                self.path
            ));
        }
        None
    }

    /// The same reference with its path made canonical ([`normalise_path`]).
    pub fn normalised(&self) -> Option<Self> {
        Some(Self {
            path: normalise_path(&self.path)?,
            ..self.clone()
        })
    }
}

/// A secret's path made canonical, as the store will read it: percent-escapes decoded
/// (`%2F` is a `/`), empty and `.` segments dropped, `..` applied. `None` when it is empty
/// or climbs above the mount, or does not decode to UTF-8 text without control characters.
pub fn normalise_path(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.chars().any(char::is_control) {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    (!segments.is_empty()).then(|| segments.join("/"))
}

/// Which tenants may use a credential store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTenants {
    /// The operator has not said: no tenant may (a store is closed until the operator
    /// lists its tenants or writes `"*"`).
    Unset,
    /// Every tenant (`tenants = "*"`).
    All,
    /// These tenants (ids).
    Only(Vec<String>),
}

/// How a store logs in.
#[derive(Clone)]
pub enum StoreAuth {
    /// A Vault token.
    Token(Secret),
    /// AppRole: a role id and a secret id, exchanged for a token at `auth/<mount>/login`.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: Secret,
    },
}

impl fmt::Debug for StoreAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

impl StoreAuth {
    pub fn method(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "approle",
        }
    }
}

/// A configured credential store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub name: String,
    /// The vault's address, such as `https://vault.example.com:8200`.
    pub address: Url,
    pub auth: StoreAuth,
    /// The KV engine's mount, such as `secret`.
    pub mount: String,
    pub kv_version: KvVersion,
    /// Enterprise namespaces (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// The limit of one request to the vault.
    pub timeout: Duration,
    /// How the store's client reaches the vault, and which certificates it trusts.
    pub client: crate::capabilities::http::ClientOptions,
    /// The tenants whose connections may reference the store.
    pub tenants: StoreTenants,
    /// Where each tenant's secrets live in the store, such as `tenants/{tenant_id}/`: a
    /// tenant's references must point below its own prefix.
    pub path_prefix: Option<String>,
}

impl StoreSettings {
    /// Whether connections of tenant `tenant` (an id) may reference this store.
    pub fn open_to(&self, tenant: &str) -> bool {
        match &self.tenants {
            StoreTenants::Unset => false,
            StoreTenants::All => true,
            StoreTenants::Only(ids) => ids.iter().any(|id| id == tenant),
        }
    }

    /// Whether the canonical `path` lies below `tenant`'s prefix (always, without one).
    fn within_prefix(&self, tenant: &str, path: &str) -> bool {
        let Some(template) = &self.path_prefix else {
            return true;
        };
        let Some(prefix) = normalise_path(&template.replace("{tenant_id}", tenant)) else {
            return false;
        };
        path.strip_prefix(&prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    }
}

/// Why a reference could not be resolved. Names the store and the cause; never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no credential store `{store}` is configured; configured stores: {known}")]
    UnknownStore { store: String, known: String },
    #[error("{problem}")]
    BadReference { problem: String },
    #[error("credential store `{store}` has no secret at `{path}`")]
    NotFound { store: String, path: String },
    #[error("the secret at `{path}` in credential store `{store}` has no key `{key}`")]
    MissingKey {
        store: String,
        path: String,
        key: String,
    },
    #[error(
        "key `{key}` of the secret at `{path}` in credential store `{store}` is not a string: only string credentials can fill a secret field"
    )]
    NotACredential {
        store: String,
        path: String,
        key: String,
    },
    #[error("credential store `{store}` refused the read: {cause}")]
    Denied { store: String, cause: String },
    #[error("credential store `{store}` is unavailable: {cause}")]
    Unavailable { store: String, cause: String },
}

impl ResolveError {
    /// Whether the reference itself is wrong (the user must fix it), rather than the store
    /// failing.
    pub fn is_reference_problem(&self) -> bool {
        matches!(
            self,
            Self::UnknownStore { .. }
                | Self::BadReference { .. }
                | Self::NotFound { .. }
                | Self::MissingKey { .. }
                | Self::NotACredential { .. }
        )
    }
}

/// A resolved value, and which load of its secret it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub value: Secret,
    pub generation: u64,
}

/// The configured credential stores and the cache of what they resolved.
#[derive(Debug)]
pub struct CredentialStores {
    stores: BTreeMap<String, VaultStore>,
    cache: SecretCache,
    reads: Counter,
}

impl CredentialStores {
    /// The stores of `settings`, each with its own HTTP client (its proxy and trust
    /// settings), and a cache measured on `clock`.
    pub fn new(
        settings: Vec<StoreSettings>,
        clock: Arc<dyn Clock>,
        reads: Counter,
    ) -> Result<Self, StoreSetupError> {
        let mut stores = BTreeMap::new();
        for s in settings {
            let http = HttpClient::with_options(&s.client).map_err(|e| StoreSetupError {
                store: s.name.clone(),
                message: e.to_string(),
            })?;
            stores.insert(s.name.clone(), VaultStore::new(s, http));
        }
        let cache = SecretCache::new(clock).map_err(|e| StoreSetupError {
            store: "*".into(),
            message: format!("no random key for the credential cache: {e}"),
        })?;
        Ok(Self {
            stores,
            cache,
            reads,
        })
    }

    /// How long a value that an API refused, and the store still holds, is not read again
    /// for another refusal [default: [`cache::REREAD_PAUSE`]].
    pub fn with_reread_pause(mut self, pause: Duration) -> Self {
        self.cache.set_reread_pause(pause);
        self
    }

    pub fn stores(&self) -> impl Iterator<Item = &StoreSettings> {
        self.stores.values().map(VaultStore::settings)
    }

    /// Reads made on the vaults (not counting answers from the cache).
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    fn store(&self, name: &str) -> Result<&VaultStore, ResolveError> {
        self.stores
            .get(name)
            .ok_or_else(|| self.unknown(name, None))
    }

    fn unknown(&self, name: &str, tenant: Option<&str>) -> ResolveError {
        let open: Vec<&str> = self
            .stores
            .values()
            .map(VaultStore::settings)
            .filter(|s| tenant.is_none_or(|t| s.open_to(t)))
            .map(|s| s.name.as_str())
            .collect();
        ResolveError::UnknownStore {
            store: name.to_owned(),
            known: if open.is_empty() {
                "none (an operator adds them under [credential_stores.<name>] in the configuration file)".into()
            } else {
                open.join(", ")
            },
        }
    }

    /// The reference `r` as connections of `tenant` may use it: its path made canonical
    /// ([`normalise_path`]). A store the tenant may not use is refused exactly as one that
    /// does not exist, and a path outside the tenant's prefix exactly as a path where the
    /// store holds nothing.
    pub fn reference_for(
        &self,
        r: &CredentialRef,
        tenant: &str,
    ) -> Result<CredentialRef, ResolveError> {
        let settings = match self.stores.get(&r.store) {
            Some(s) if s.settings().open_to(tenant) => s.settings(),
            _ => return Err(self.unknown(&r.store, Some(tenant))),
        };
        if let Some(problem) = r.problem() {
            return Err(ResolveError::BadReference { problem });
        }
        let normalised = r.normalised().ok_or_else(|| ResolveError::BadReference {
            problem: format!("`path` `{}` is not a secret's path", r.path),
        })?;
        if !settings.within_prefix(tenant, &normalised.path) {
            return Err(ResolveError::NotFound {
                store: r.store.clone(),
                path: r.path.clone(),
            });
        }
        Ok(normalised)
    }

    /// The value `r` points at: from the cache, or read from its store.
    #[tracing::instrument(skip_all, fields(store = %r.store, path = %r.path))]
    pub async fn resolve(&self, r: &CredentialRef) -> Result<Resolved, ResolveError> {
        if let Some(problem) = r.problem() {
            return Err(ResolveError::BadReference { problem });
        }
        let store = self.store(&r.store)?;
        let opened = self
            .cache
            .get_or_load(&r.store, &r.path, || async {
                self.reads.inc();
                tracing::debug!("reading the credential store");
                store.read(&r.path).await
            })
            .await
            .map_err(|e| match e.as_ref() {
                LoadError::Load(e) => read_error(&r.store, e),
                LoadError::Seal(e) => ResolveError::Unavailable {
                    store: r.store.clone(),
                    cause: e.to_string(),
                },
            })?;
        match opened.values.get(&r.key) {
            Some(Some(value)) => Ok(Resolved {
                value: value.clone(),
                generation: opened.generation,
            }),
            Some(None) => Err(ResolveError::NotACredential {
                store: r.store.clone(),
                path: r.path.clone(),
                key: r.key.clone(),
            }),
            // The secret's other keys are not listed: they are not the caller's to see.
            None => Err(ResolveError::MissingKey {
                store: r.store.clone(),
                path: r.path.clone(),
                key: r.key.clone(),
            }),
        }
    }

    /// `refused`, the value of `r` from load `generation`, was refused upstream: drop it
    /// (unless another caller already did) and resolve again. When the store still holds
    /// the same value, further refusals do not read it again for
    /// the re-read pause: a credential an API keeps refusing does not cost a vault read per
    /// invocation.
    pub async fn reresolve(
        &self,
        r: &CredentialRef,
        generation: u64,
        refused: &Secret,
    ) -> Result<Resolved, ResolveError> {
        self.cache
            .forget_refused(&r.store, &r.path, generation)
            .await;
        let fresh = self.resolve(r).await?;
        if fresh.value == *refused {
            self.cache.hold(&r.store, &r.path, fresh.generation).await;
        }
        Ok(fresh)
    }
}

fn read_error(store: &str, e: &ReadError) -> ResolveError {
    let store = store.to_owned();
    match e {
        ReadError::NotFound { path } => ResolveError::NotFound {
            store,
            path: path.clone(),
        },
        ReadError::Denied { .. } => ResolveError::Denied {
            store,
            cause: e.to_string(),
        },
        ReadError::Unavailable(_) | ReadError::Login(_) => ResolveError::Unavailable {
            store,
            cause: e.to_string(),
        },
    }
}

/// A store that cannot be set up (its certificates, its proxy).
#[derive(Debug, thiserror::Error)]
#[error("credential store `{store}`: {message}")]
pub struct StoreSetupError {
    pub store: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_from_the_cli_form_and_refuse_odd_paths() {
        let r = CredentialRef::parse("corp:team/github#token").unwrap();
        assert_eq!(
            (r.store.as_str(), r.path.as_str(), r.key.as_str()),
            ("corp", "team/github", "token")
        );
        assert_eq!(r.to_string(), "corp:team/github#token");
        assert!(CredentialRef::parse("corp:team/github").is_none());
        assert!(CredentialRef::parse("corp:../sys/x#k").is_none());
        assert!(CredentialRef::parse(":a#k").is_none());
        assert!(CredentialRef::parse("corp:a#").is_none());
    }
}

#[cfg(test)]
mod scoping {
    use super::*;
    use crate::capabilities::http::ClientOptions;
    use crate::egress::EgressPolicy;

    fn settings(tenants: StoreTenants, path_prefix: Option<&str>) -> StoreSettings {
        StoreSettings {
            name: "corp".into(),
            address: Url::parse("http://127.0.0.1:8200").unwrap(),
            auth: StoreAuth::Token(Secret::new("t")),
            mount: "secret".into(),
            kv_version: KvVersion::V1,
            namespace: None,
            timeout: Duration::from_secs(1),
            client: ClientOptions::new(
                Duration::from_secs(1),
                Arc::new(EgressPolicy::unrestricted()),
            ),
            tenants,
            path_prefix: path_prefix.map(str::to_owned),
        }
    }

    fn reference(path: &str) -> CredentialRef {
        CredentialRef {
            store: "corp".into(),
            path: path.into(),
            key: "k".into(),
        }
    }

    #[test]
    fn paths_are_made_canonical_before_any_check() {
        assert_eq!(normalise_path("a/b").as_deref(), Some("a/b"));
        assert_eq!(normalise_path("/a//b/./c/").as_deref(), Some("a/b/c"));
        assert_eq!(normalise_path("a/x/../b").as_deref(), Some("a/b"));
        assert_eq!(normalise_path("a%2Fb%2F..%2Fc").as_deref(), Some("a/c"));
        assert_eq!(normalise_path("a/%2e%2e/b").as_deref(), Some("b"));
        for bad in [
            "", "/", "..", "a/../..", "../x", "%2E%2E/x", "a/%0Ab", "%ff",
        ] {
            assert_eq!(normalise_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_store_without_tenants_is_closed_and_star_opens_it_to_all() {
        assert!(!settings(StoreTenants::Unset, None).open_to("ten_a"));
        assert!(settings(StoreTenants::All, None).open_to("ten_a"));
        let only = settings(StoreTenants::Only(vec!["ten_a".into()]), None);
        assert!(only.open_to("ten_a") && !only.open_to("ten_b"));
    }

    #[test]
    fn references_outside_the_tenants_prefix_answer_like_a_missing_path() {
        let stores = CredentialStores::new(
            vec![settings(StoreTenants::All, Some("tenants/{tenant_id}/"))],
            Arc::new(SystemClock::default()),
            Counter::default(),
        )
        .unwrap();
        let ok = stores
            .reference_for(&reference("tenants/ten_a//github/./token"), "ten_a")
            .unwrap();
        assert_eq!(ok.path, "tenants/ten_a/github/token");
        for outside in [
            "tenants/ten_b/github",
            "tenants/ten_a/../ten_b/github",
            "tenants%2Ften_b%2Fgithub",
            "tenants/ten_a%2F..%2Ften_b/github",
            "tenants/ten_ab/github",
            "tenants/ten_a",
            "github",
        ] {
            let refused = stores
                .reference_for(&reference(outside), "ten_a")
                .expect_err(outside);
            assert_eq!(
                refused,
                ResolveError::NotFound {
                    store: "corp".into(),
                    path: outside.into()
                },
                "{outside}"
            );
        }
        let closed = CredentialStores::new(
            vec![settings(StoreTenants::Unset, None)],
            Arc::new(SystemClock::default()),
            Counter::default(),
        )
        .unwrap();
        assert!(matches!(
            closed.reference_for(&reference("github"), "ten_a"),
            Err(ResolveError::UnknownStore { .. })
        ));
    }
}
