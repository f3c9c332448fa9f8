//! Connections: their non-secret fields in clear, their secret fields sealed one by one
//! with the connection id and the field name as associated data, and their health.

use super::{Page, PageRequest, Store, StoreError, Timestamp, new_id, page_of};
use crate::credentials::Secret;
use crate::credentials::at_rest::Sealed;
use crate::vault::CredentialRef;
use serde::Serialize;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use std::collections::BTreeMap;

/// The associated data of a sealed field value: the record's identity.
pub(super) fn secret_aad(connection_id: &str, field: &str) -> Vec<u8> {
    format!("junction/connection-secret/v1\0{connection_id}\0{field}").into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Unknown,
    Healthy,
    Failing,
    NeedsReauthentication,
    /// An OAuth connection whose user has not finished the consent yet.
    PendingAuthorization,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Failing => "failing",
            Self::NeedsReauthentication => "needs_reauthentication",
            Self::PendingAuthorization => "pending_authorization",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Unknown,
            Self::Healthy,
            Self::Failing,
            Self::NeedsReauthentication,
            Self::PendingAuthorization,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    pub reason: Option<String>,
    pub checked_at: Option<Timestamp>,
}

/// A connection as stored, without its secret values.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub id: String,
    pub tenant_id: String,
    pub folder_id: String,
    pub created_by: String,
    pub connector: String,
    pub auth: String,
    pub name: String,
    pub description: String,
    /// Non-secret field values given by the user.
    pub fields: BTreeMap<String, String>,
    /// Names of the secret fields that hold a value.
    pub secrets_set: Vec<String>,
    /// Secret fields whose value lives in a credential store.
    pub secret_refs: BTreeMap<String, CredentialRef>,
    pub poll_interval_seconds: Option<u32>,
    pub health: Health,
    /// Set when the connection uses its tenant's predefined OAuth app.
    pub tenant_app: Option<TenantAppBinding>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a connection made with its tenant's predefined OAuth app keeps of it: the values
/// the operator fixed for the fields its OAuth endpoints (and, for client credentials, its
/// allowed hosts) are built from, and the scopes it may ask for (empty: any). Checked every
/// time a token is asked for, so that the app's secret only goes where the operator said,
/// whatever version of the connector runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantAppBinding {
    pub endpoint_fields: BTreeMap<String, String>,
    pub scopes: Vec<String>,
}

/// What creating or replacing a connection's content takes.
#[derive(Debug)]
pub struct NewConnection {
    pub tenant_id: String,
    pub folder_id: String,
    pub created_by: String,
    pub connector: String,
    pub auth: String,
    pub name: String,
    pub description: String,
    pub fields: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    /// Secret fields whose value lives in a credential store.
    pub secret_refs: BTreeMap<String, CredentialRef>,
    pub poll_interval_seconds: Option<u32>,
    /// The health it starts with (`pending_authorization` for an OAuth connection waiting
    /// for consent), or takes when an edit drops its tokens.
    pub health: HealthStatus,
    /// OAuth tokens obtained before it was created (password and client credentials).
    pub tokens: Option<super::Tokens>,
    /// The tenant's OAuth app it uses, if it does.
    pub tenant_app: Option<TenantAppBinding>,
}

/// Filters of a connection list.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// Only these folders (the ones the caller may view).
    pub folders: Vec<String>,
    pub connector: Option<String>,
    pub auth: Option<String>,
    pub health: Option<HealthStatus>,
}

const SELECT: &str = "SELECT c.*, \
     (SELECT group_concat(field, char(31)) FROM connection_secrets s WHERE s.connection_id = c.id) \
     AS secrets_set, \
     (SELECT json_group_object(field, json_object('store', store, 'path', path, 'key', key)) \
     FROM connection_secret_refs r WHERE r.connection_id = c.id) AS secret_refs \
     FROM connections c";

fn tenant_app_json(binding: Option<&TenantAppBinding>) -> Result<Option<String>, StoreError> {
    binding
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Write(e.to_string()))
}

fn row(r: &SqliteRow) -> Result<ConnectionRecord, StoreError> {
    let fields: String = r.try_get("fields")?;
    let fields = serde_json::from_str(&fields)
        .map_err(|e| StoreError::Corrupt(format!("connection fields: {e}")))?;
    let secrets_set: Option<String> = r.try_get("secrets_set")?;
    let mut secrets_set: Vec<String> = secrets_set
        .map(|s| s.split('\u{1f}').map(str::to_owned).collect())
        .unwrap_or_default();
    secrets_set.sort();
    let refs: Option<String> = r.try_get("secret_refs")?;
    let secret_refs = match refs {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("connection secret references: {e}")))?,
        None => BTreeMap::new(),
    };
    let status: &str = r.try_get("health")?;
    let poll: Option<i64> = r.try_get("poll_interval_seconds")?;
    let tenant_app: Option<String> = r.try_get("tenant_oauth_app")?;
    let tenant_app = tenant_app
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("connection tenant OAuth app: {e}")))?;
    Ok(ConnectionRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        folder_id: r.try_get("folder_id")?,
        created_by: r.try_get("created_by")?,
        connector: r.try_get("connector")?,
        auth: r.try_get("auth")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        fields,
        secrets_set,
        secret_refs,
        poll_interval_seconds: poll.and_then(|p| u32::try_from(p).ok()),
        health: Health {
            status: HealthStatus::parse(status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown health `{status}`")))?,
            reason: r.try_get("health_reason")?,
            checked_at: r.try_get("health_checked_at")?,
        },
        tenant_app,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn duplicate_name(e: sqlx::Error, name: &str) -> StoreError {
    StoreError::conflict_on_unique(e, || {
        format!("the folder already has a connection named `{name}`; choose another name")
    })
}

fn fields_json(fields: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(fields).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// How many connections of each tenant reference each credential store:
    /// `(store, tenant id, connections)`.
    pub async fn credential_store_usage(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT r.store, c.tenant_id, COUNT(DISTINCT r.connection_id) \
             FROM connection_secret_refs r JOIN connections c ON c.id = r.connection_id \
             GROUP BY r.store, c.tenant_id ORDER BY r.store, c.tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn write_secrets(
        &self,
        tx: &mut super::Tx<'_>,
        id: &str,
        secrets: &BTreeMap<String, Secret>,
        refs: &BTreeMap<String, CredentialRef>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM connection_secrets WHERE connection_id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM connection_secret_refs WHERE connection_id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        for (field, r) in refs {
            sqlx::query(
                "INSERT INTO connection_secret_refs (connection_id, field, store, path, key) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(field)
            .bind(&r.store)
            .bind(&r.path)
            .bind(&r.key)
            .execute(&mut **tx)
            .await?;
        }
        for (field, value) in secrets {
            let sealed = self.key.seal_secret(&secret_aad(id, field), value)?;
            sqlx::query(
                "INSERT INTO connection_secrets (connection_id, field, key_id, nonce, ciphertext) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(field)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub async fn create_connection(&self, new: NewConnection) -> Result<String, StoreError> {
        let id = new_id("con")?;
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO connections (id, tenant_id, folder_id, created_by, connector, auth, name, \
             description, fields, poll_interval_seconds, health, health_checked_at, created_at, \
             updated_at, tenant_oauth_app) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&new.tenant_id)
        .bind(&new.folder_id)
        .bind(&new.created_by)
        .bind(&new.connector)
        .bind(&new.auth)
        .bind(&new.name)
        .bind(&new.description)
        .bind(fields_json(&new.fields)?)
        .bind(new.poll_interval_seconds.map(i64::from))
        .bind(new.health.as_str())
        .bind(new.tokens.as_ref().map(|_| now))
        .bind(now)
        .bind(now)
        .bind(tenant_app_json(new.tenant_app.as_ref())?)
        .execute(&mut *tx)
        .await
        .map_err(|e| duplicate_name(e, &new.name))?;
        self.write_secrets(&mut tx, &id, &new.secrets, &new.secret_refs)
            .await?;
        if let Some(tokens) = &new.tokens {
            self.save_tokens_in(&mut tx, &id, tokens).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Replaces the editable content of a connection, and resets its health (to
    /// `new.health`) when the credentials changed; `drop_tokens` forgets its OAuth tokens
    /// (they belong to the credentials that changed).
    pub async fn update_connection(
        &self,
        id: &str,
        new: &NewConnection,
        credentials_changed: bool,
        drop_tokens: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE connections SET auth = ?, name = ?, description = ?, fields = ?, \
             poll_interval_seconds = ?, updated_at = ?, tenant_oauth_app = ?, \
             health = CASE WHEN ? THEN ? ELSE health END, \
             health_reason = CASE WHEN ? THEN NULL ELSE health_reason END, \
             health_checked_at = CASE WHEN ? THEN NULL ELSE health_checked_at END \
             WHERE id = ?",
        )
        .bind(&new.auth)
        .bind(&new.name)
        .bind(&new.description)
        .bind(fields_json(&new.fields)?)
        .bind(new.poll_interval_seconds.map(i64::from))
        .bind(Timestamp::now())
        .bind(tenant_app_json(new.tenant_app.as_ref())?)
        .bind(credentials_changed)
        .bind(new.health.as_str())
        .bind(credentials_changed)
        .bind(credentials_changed)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| duplicate_name(e, &new.name))?;
        if credentials_changed {
            self.write_secrets(&mut tx, id, &new.secrets, &new.secret_refs)
                .await?;
        }
        if drop_tokens {
            sqlx::query("DELETE FROM oauth_tokens WHERE connection_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn connection(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let r = sqlx::query(&format!("{SELECT} WHERE c.tenant_id = ? AND c.id = ?"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(row).transpose()
    }

    pub async fn connections(
        &self,
        tenant_id: &str,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> Result<Page<ConnectionRecord>, StoreError> {
        if filter.folders.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let mut sql = format!("{SELECT} WHERE c.tenant_id = ? AND c.id > ? AND c.folder_id IN (");
        sql.push_str(&vec!["?"; filter.folders.len()].join(", "));
        sql.push(')');
        if filter.connector.is_some() {
            sql.push_str(" AND c.connector = ?");
        }
        if filter.auth.is_some() {
            sql.push_str(" AND c.auth = ?");
        }
        if filter.health.is_some() {
            sql.push_str(" AND c.health = ?");
        }
        sql.push_str(" ORDER BY c.id LIMIT ?");
        let mut q = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(page.after.as_deref().unwrap_or(""));
        for f in &filter.folders {
            q = q.bind(f);
        }
        if let Some(c) = &filter.connector {
            q = q.bind(c);
        }
        if let Some(a) = &filter.auth {
            q = q.bind(a);
        }
        if let Some(h) = filter.health {
            q = q.bind(h.as_str());
        }
        let rows = q
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(items, page.limit, |c| &c.id))
    }

    /// The decrypted secret field values of a connection.
    pub async fn connection_secrets(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, Secret>, StoreError> {
        let rows = sqlx::query(
            "SELECT field, key_id, nonce, ciphertext FROM connection_secrets WHERE connection_id = ?",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let field: String = r.try_get("field")?;
                let sealed = Sealed {
                    key_id: r.try_get("key_id")?,
                    nonce: r.try_get("nonce")?,
                    ciphertext: r.try_get("ciphertext")?,
                };
                let value = self.key.open_secret(&secret_aad(id, &field), &sealed)?;
                Ok((field, value))
            })
            .collect()
    }

    pub async fn delete_connection(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        // The sealed values go with the row (ON DELETE CASCADE), in the same statement.
        let done = sqlx::query("DELETE FROM connections WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_health(&self, id: &str, health: &Health) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE connections SET health = ?, health_reason = ?, health_checked_at = ? WHERE id = ?",
        )
        .bind(health.status.as_str())
        .bind(&health.reason)
        .bind(health.checked_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Connections (of every tenant) not checked since `before`, oldest check first.
    pub async fn connections_due_for_check(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE (c.health_checked_at IS NULL OR c.health_checked_at < ?) \
             AND c.health <> 'pending_authorization' \
             ORDER BY COALESCE(c.health_checked_at, 0), c.id LIMIT ?"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }
}
