//! OAuth 2.0 state: each connection's tokens, sealed, and the authorizations waiting for a
//! user's consent (the `state` sent to the provider, the start link handed to the user,
//! the browser that continued from it, and the PKCE verifier kept server-side).

use super::{Store, StoreError, Timestamp};
use crate::credentials::Secret;
use crate::credentials::at_rest::Sealed;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use zeroize::Zeroizing;

/// The associated data of a connection's sealed tokens.
pub(super) fn tokens_aad(connection_id: &str) -> Vec<u8> {
    format!("junction/oauth-tokens/v1\0{connection_id}").into_bytes()
}

/// The associated data of a pending authorization's sealed PKCE verifier.
pub(super) fn state_aad(connection_id: &str, state_hash: &[u8]) -> Vec<u8> {
    let mut aad = format!("junction/oauth-state/v1\0{connection_id}\0").into_bytes();
    aad.extend_from_slice(state_hash);
    aad
}

/// The columns of a pending authorization.
const SELECT_PENDING: &str = "SELECT state_hash, connection_id, tenant_id, principal_id, key_id, \
     nonce, ciphertext, created_at, expires_at, used_at, binding_hash FROM oauth_states";

/// A connection's tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A connection's tokens as stored, with the version of that write.
#[derive(Debug, Clone)]
pub struct StoredTokens {
    /// Grows with every write of the connection's tokens.
    pub version: i64,
    pub tokens: Tokens,
}

#[derive(Serialize, Deserialize)]
struct SealedPair<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
}

/// A first write of a connection's tokens (version 1); binds: connection id, key id, nonce,
/// ciphertext, scopes, issued at, expires at, updated at.
const INSERT: &str = "INSERT INTO oauth_tokens (connection_id, version, key_id, nonce, ciphertext, \
     scopes, issued_at, expires_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)";
/// The update of an upsert, from the values of the insert.
const REPLACE: &str = "version = version + 1, key_id = excluded.key_id, nonce = excluded.nonce, \
     ciphertext = excluded.ciphertext, scopes = excluded.scopes, issued_at = excluded.issued_at, \
     expires_at = excluded.expires_at, updated_at = excluded.updated_at";
/// The same update with its own binds: key id, nonce, ciphertext, scopes, issued at,
/// expires at, updated at.
const REPLACE_BOUND: &str = "version = version + 1, key_id = ?, nonce = ?, ciphertext = ?, \
     scopes = ?, issued_at = ?, expires_at = ?, updated_at = ?";

/// An authorization waiting for the provider's callback.
#[derive(Debug)]
pub struct PendingAuthorization {
    pub connection_id: String,
    pub tenant_id: String,
    pub principal_id: String,
    pub pkce_verifier: Secret,
    /// The provider's authorization URL (with the `state` and the PKCE challenge), where
    /// the start page sends the browser.
    pub authorize_url: Secret,
    pub created_at: Timestamp,
}

/// What is sealed in a pending authorization's row.
#[derive(Serialize, Deserialize)]
struct SealedStart<'a> {
    verifier: &'a str,
    authorize_url: &'a str,
}

/// An authorization as its start link finds it.
#[derive(Debug)]
pub struct StartLookup {
    pub pending: PendingAuthorization,
    pub expires_at: Timestamp,
    pub used: bool,
    /// The SHA-256 of the cookie value of the browser that continued from the start page,
    /// once one did.
    pub binding_hash: Option<Vec<u8>>,
}

/// What a callback's `state` turned out to be.
#[derive(Debug)]
pub enum StateLookup {
    /// Valid, and now consumed.
    Pending(PendingAuthorization),
    /// No authorization with this state was started here (or it was cleaned up long ago).
    Unknown,
    /// It was used already: a replayed callback.
    Used,
    /// Valid, but this browser did not continue from the start page (it holds no binding
    /// cookie of this authorization): left as it is, for the browser that did.
    NotThisBrowser,
    /// Started, but too long ago.
    Expired,
}

impl Store {
    fn seal_tokens(&self, connection_id: &str, tokens: &Tokens) -> Result<Sealed, StoreError> {
        let pair = Zeroizing::new(
            serde_json::to_vec(&SealedPair {
                access_token: tokens.access_token.expose(),
                refresh_token: tokens.refresh_token.as_ref().map(Secret::expose),
            })
            .map_err(|e| StoreError::Corrupt(format!("tokens: {e}")))?,
        );
        Ok(self.key.seal(&tokens_aad(connection_id), &pair)?)
    }

    pub(super) async fn save_tokens_in(
        &self,
        tx: &mut super::Tx<'_>,
        connection_id: &str,
        tokens: &Tokens,
    ) -> Result<i64, StoreError> {
        let sealed = self.seal_tokens(connection_id, tokens)?;
        let row = sqlx::query(&format!(
            "{INSERT} ON CONFLICT (connection_id) DO UPDATE SET {REPLACE} RETURNING version"
        ))
        .bind(connection_id)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(tokens.scopes.join(" "))
        .bind(tokens.issued_at)
        .bind(tokens.expires_at)
        .bind(Timestamp::now())
        .fetch_one(&mut **tx)
        .await?;
        Ok(row.try_get("version")?)
    }

    /// Stores the tokens an authorization produced and marks the connection healthy, in
    /// one transaction.
    pub async fn authorize_connection(
        &self,
        connection_id: &str,
        tokens: &Tokens,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let version = self.save_tokens_in(&mut tx, connection_id, tokens).await?;
        sqlx::query(
            "UPDATE connections SET health = 'healthy', health_reason = NULL, \
             health_checked_at = ? WHERE id = ?",
        )
        .bind(Timestamp::now())
        .bind(connection_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Writes renewed tokens over the version `read` (`None`: there were none), and
    /// returns the new version; `None` when the tokens changed since they were read (a
    /// reconnect, an edit that dropped them), and nothing is written. One statement, so
    /// the check and the write cannot be separated.
    pub async fn save_renewed_tokens(
        &self,
        connection_id: &str,
        read: Option<i64>,
        tokens: &Tokens,
    ) -> Result<Option<i64>, StoreError> {
        let sealed = self.seal_tokens(connection_id, tokens)?;
        let sql = match read {
            Some(_) => format!(
                "UPDATE oauth_tokens SET {REPLACE_BOUND} WHERE connection_id = ? AND version = ? \
                 RETURNING version"
            ),
            None => format!("{INSERT} ON CONFLICT (connection_id) DO NOTHING RETURNING version"),
        };
        let mut q = sqlx::query(&sql);
        if read.is_none() {
            q = q.bind(connection_id);
        }
        q = q
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(tokens.scopes.join(" "))
            .bind(tokens.issued_at)
            .bind(tokens.expires_at)
            .bind(Timestamp::now());
        if let Some(version) = read {
            q = q.bind(connection_id).bind(version);
        }
        let row = q.fetch_optional(&self.pool).await?;
        row.map(|r| r.try_get("version"))
            .transpose()
            .map_err(Into::into)
    }

    /// A connection's tokens, if it holds any.
    pub async fn tokens(&self, connection_id: &str) -> Result<Option<StoredTokens>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT version, key_id, nonce, ciphertext, scopes, issued_at, expires_at \
             FROM oauth_tokens WHERE connection_id = ?",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        };
        let clear = self.key.open(&tokens_aad(connection_id), &sealed)?;
        let pair: SealedPair<'_> = serde_json::from_slice(&clear)
            .map_err(|_| StoreError::Corrupt("the sealed tokens are malformed".into()))?;
        let scopes: String = r.try_get("scopes")?;
        Ok(Some(StoredTokens {
            version: r.try_get("version")?,
            tokens: Tokens {
                access_token: Secret::new(pair.access_token),
                refresh_token: pair.refresh_token.map(Secret::new),
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                issued_at: r.try_get("issued_at")?,
                expires_at: r.try_get("expires_at")?,
            },
        }))
    }

    /// Records an authorization started by `principal_id` for a connection; `state_hash` is
    /// the SHA-256 of the `state` sent to the provider, `start_hash` that of the start
    /// link's token.
    pub async fn start_authorization(
        &self,
        state_hash: &[u8],
        start_hash: &[u8],
        pending: &PendingAuthorization,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let payload = Zeroizing::new(
            serde_json::to_vec(&SealedStart {
                verifier: pending.pkce_verifier.expose(),
                authorize_url: pending.authorize_url.expose(),
            })
            .map_err(|e| StoreError::Write(e.to_string()))?,
        );
        let sealed = self
            .key
            .seal(&state_aad(&pending.connection_id, state_hash), &payload)?;
        // Authorizations older than a day are of no use, even to tell a replay apart.
        let cutoff = Timestamp(Timestamp::now().0 - 24 * 3600 * 1000);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, start_hash, connection_id, tenant_id, \
             principal_id, key_id, nonce, ciphertext, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(state_hash)
        .bind(start_hash)
        .bind(&pending.connection_id)
        .bind(&pending.tenant_id)
        .bind(&pending.principal_id)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(pending.created_at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The authorization a start link's token hashes to (`start_hash`), used or not.
    pub async fn authorization_start(
        &self,
        start_hash: &[u8],
    ) -> Result<Option<StartLookup>, StoreError> {
        let Some(r) = sqlx::query(&format!("{SELECT_PENDING} WHERE start_hash = ?"))
            .bind(start_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let used_at: Option<Timestamp> = r.try_get("used_at")?;
        Ok(Some(StartLookup {
            pending: self.pending_of(&r)?,
            expires_at: r.try_get("expires_at")?,
            used: used_at.is_some(),
            binding_hash: r.try_get("binding_hash")?,
        }))
    }

    /// Binds the authorization of `start_hash` to a browser: `binding_hash` is the SHA-256
    /// of the cookie value given to it. Only a browser that holds the binding already
    /// (`presented`) may replace it; the first browser to continue wins. `false` when the
    /// authorization is used, or bound to another browser.
    pub async fn bind_authorization(
        &self,
        start_hash: &[u8],
        binding_hash: &[u8],
        presented: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<(Option<Vec<u8>>, Option<Timestamp>)> =
            sqlx::query_as("SELECT binding_hash, used_at FROM oauth_states WHERE start_hash = ?")
                .bind(start_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let allowed = match current {
            None | Some((_, Some(_))) => false,
            Some((None, None)) => true,
            Some((Some(bound), None)) => presented.contains(&bound),
        };
        if !allowed {
            return Ok(false);
        }
        sqlx::query("UPDATE oauth_states SET binding_hash = ? WHERE start_hash = ?")
            .bind(binding_hash)
            .bind(start_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Consumes the authorization whose state hashes to `state_hash`, when the browser
    /// presents its binding (`presented`: the SHA-256 of each binding cookie it sent): a
    /// state works once, and only in the browser that continued from the start page.
    pub async fn take_authorization(
        &self,
        state_hash: &[u8],
        presented: &[Vec<u8>],
    ) -> Result<StateLookup, StoreError> {
        self.authorization_for_callback(state_hash, presented, true)
            .await
    }

    /// What [`Store::take_authorization`] would find, without consuming anything: the
    /// callback prepares the exchange (reads a vault) before it uses the state up.
    pub async fn peek_authorization(
        &self,
        state_hash: &[u8],
        presented: &[Vec<u8>],
    ) -> Result<StateLookup, StoreError> {
        self.authorization_for_callback(state_hash, presented, false)
            .await
    }

    async fn authorization_for_callback(
        &self,
        state_hash: &[u8],
        presented: &[Vec<u8>],
        consume: bool,
    ) -> Result<StateLookup, StoreError> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let Some(r) = sqlx::query(&format!("{SELECT_PENDING} WHERE state_hash = ?"))
            .bind(state_hash)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(StateLookup::Unknown);
        };
        let used_at: Option<Timestamp> = r.try_get("used_at")?;
        if used_at.is_some() {
            return Ok(StateLookup::Used);
        }
        let expires_at: Timestamp = r.try_get("expires_at")?;
        let binding: Option<Vec<u8>> = r.try_get("binding_hash")?;
        if expires_at >= now && !binding.is_some_and(|b| presented.contains(&b)) {
            return Ok(StateLookup::NotThisBrowser);
        }
        if !consume {
            return Ok(if expires_at < now {
                StateLookup::Expired
            } else {
                StateLookup::Pending(self.pending_of(&r)?)
            });
        }
        let taken = sqlx::query(
            "UPDATE oauth_states SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
        )
        .bind(now)
        .bind(state_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if taken.rows_affected() != 1 {
            return Ok(StateLookup::Used);
        }
        if expires_at < now {
            return Ok(StateLookup::Expired);
        }
        Ok(StateLookup::Pending(self.pending_of(&r)?))
    }

    /// The authorization of a row of [`SELECT_PENDING`], its sealed part opened.
    fn pending_of(&self, r: &sqlx::sqlite::SqliteRow) -> Result<PendingAuthorization, StoreError> {
        let connection_id: String = r.try_get("connection_id")?;
        let state_hash: Vec<u8> = r.try_get("state_hash")?;
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        };
        let clear = self
            .key
            .open(&state_aad(&connection_id, &state_hash), &sealed)?;
        // Rows from before consent links sealed the verifier alone.
        let (pkce_verifier, authorize_url) = match serde_json::from_slice::<SealedStart<'_>>(&clear)
        {
            Ok(start) => (
                Secret::new(start.verifier),
                Secret::new(start.authorize_url),
            ),
            Err(_) => (
                Secret::new(String::from_utf8_lossy(&clear).into_owned()),
                Secret::new(""),
            ),
        };
        Ok(PendingAuthorization {
            connection_id,
            tenant_id: r.try_get("tenant_id")?,
            principal_id: r.try_get("principal_id")?,
            pkce_verifier,
            authorize_url,
            created_at: r.try_get("created_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HealthStatus, KeySource, NewConnection, StoreConfig};
    use std::collections::BTreeMap;

    fn tokens(access: &str, refresh: &str) -> Tokens {
        Tokens {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new(refresh)),
            scopes: vec!["read".into()],
            issued_at: Timestamp::now(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn tokens_and_pending_authorizations_are_versioned_single_use_and_survive_a_key_rotation()
    {
        let dir = std::env::temp_dir().join(format!(
            "junction-store-oauth-{}-{}",
            std::process::id(),
            Timestamp::now().0
        ));
        let config = StoreConfig {
            data_dir: dir.clone(),
            key: KeySource::File(dir.join("junction.key")),
        };
        let (mut store, _) = Store::open(&config, None).await.unwrap();
        let (tenant, admin, _) = store.create_tenant("t", "ada").await.unwrap();
        let id = store
            .create_connection(NewConnection {
                tenant_id: tenant.id.clone(),
                folder_id: admin.personal_folder_id.clone(),
                created_by: admin.id.clone(),
                connector: "probe".into(),
                auth: "oauth".into(),
                name: "crm".into(),
                description: String::new(),
                fields: BTreeMap::new(),
                secrets: BTreeMap::new(),
                secret_refs: BTreeMap::new(),
                poll_interval_seconds: None,
                health: HealthStatus::PendingAuthorization,
                tokens: None,
                tenant_app: None,
            })
            .await
            .unwrap();

        let v1 = store
            .authorize_connection(&id, &tokens("at-1", "rt-1"))
            .await
            .unwrap();
        // A renewal over the version it read is saved; one over a stale version is not.
        let v2 = store
            .save_renewed_tokens(&id, Some(v1), &tokens("at-2", "rt-2"))
            .await
            .unwrap();
        assert_eq!(v2, Some(v1 + 1));
        let stale = store
            .save_renewed_tokens(&id, Some(v1), &tokens("at-x", "rt-x"))
            .await
            .unwrap();
        assert_eq!(stale, None);
        assert_eq!(
            store
                .save_renewed_tokens(&id, None, &tokens("a", "r"))
                .await
                .unwrap(),
            None,
            "a first save must not overwrite tokens that exist"
        );

        let hash = [7u8; 32];
        let pending = PendingAuthorization {
            connection_id: id.clone(),
            tenant_id: tenant.id.clone(),
            principal_id: admin.id.clone(),
            pkce_verifier: Secret::new("verifier-1"),
            authorize_url: Secret::new("https://idp.example.test/authorize?state=s"),
            created_at: Timestamp::now(),
        };
        let later = Timestamp(Timestamp::now().0 + 60_000);
        let start = [9u8; 32];
        store
            .start_authorization(&hash, &start, &pending, later)
            .await
            .unwrap();
        // Unbound, the callback is refused and the authorization stays.
        assert!(matches!(
            store.take_authorization(&hash, &[]).await.unwrap(),
            StateLookup::NotThisBrowser
        ));
        let browser = vec![1u8; 32];
        assert!(
            store
                .bind_authorization(&start, &browser, &[])
                .await
                .unwrap()
        );
        // Another browser cannot take it over; the same one may bind again.
        assert!(
            !store
                .bind_authorization(&start, &[2u8; 32], &[])
                .await
                .unwrap()
        );
        assert!(
            store
                .bind_authorization(&start, &browser, std::slice::from_ref(&browser))
                .await
                .unwrap()
        );

        store.rotate_key(&dir.join("junction.key")).await.unwrap();
        store.close().await;
        let (store, _) = Store::open(&config, None).await.unwrap();
        let read = store.tokens(&id).await.unwrap().unwrap();
        assert_eq!(read.tokens.access_token.expose(), "at-2");
        assert_eq!(read.tokens.refresh_token.unwrap().expose(), "rt-2");
        assert_eq!(read.version, v1 + 1);
        let found = store.authorization_start(&start).await.unwrap().unwrap();
        assert_eq!(
            found.pending.authorize_url.expose(),
            "https://idp.example.test/authorize?state=s"
        );
        assert!(!found.used);
        assert!(matches!(
            store
                .take_authorization(&hash, &[vec![2u8; 32]])
                .await
                .unwrap(),
            StateLookup::NotThisBrowser
        ));
        match store
            .take_authorization(&hash, std::slice::from_ref(&browser))
            .await
            .unwrap()
        {
            StateLookup::Pending(p) => assert_eq!(p.pkce_verifier.expose(), "verifier-1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.take_authorization(&hash, &[browser]).await.unwrap(),
            StateLookup::Used
        ));
        assert!(matches!(
            store.take_authorization(&[0u8; 32], &[]).await.unwrap(),
            StateLookup::Unknown
        ));
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
