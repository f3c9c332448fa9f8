//! The catalog's records: published connector versions (insert only: the schema refuses
//! updates and deletes), installs and their history, skipped versions, operators, and the
//! governance policies of tenants with their predefined OAuth apps.

use super::{Store, StoreError, Timestamp, new_id};
use crate::credentials::Secret;
use crate::credentials::at_rest::Sealed;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use std::collections::BTreeMap;

/// A published connector version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedVersion {
    pub name: String,
    pub version: String,
    pub title: String,
    /// `preview` or `ga`.
    pub release: String,
    pub interface_version: String,
    /// Lowercase hex SHA-256 of the component.
    pub digest: String,
    pub size_bytes: i64,
    pub published_at: Timestamp,
    pub published_by: String,
}

/// What publishing records; the time is the store's.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub name: String,
    pub version: String,
    pub title: String,
    pub release: String,
    pub interface_version: String,
    pub digest: String,
    pub size_bytes: i64,
    pub published_by: String,
}

/// A version that was active once, and when it last became active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub version: String,
    pub activated_at: Timestamp,
}

/// Someone who runs the service: publishes, installs, sets policies. Belongs to no tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// A tenant's policy as stored (see `catalog::policy` for what it means).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRecord {
    pub enabled_connectors: Option<Vec<String>>,
    pub disabled_connectors: Vec<String>,
    pub allowed_auth_types: BTreeMap<String, Vec<String>>,
    pub updated_at: Option<Timestamp>,
}

/// A tenant's predefined OAuth app for one connector; the secret is read apart.
#[derive(Debug, Clone, Serialize)]
pub struct TenantOAuthApp {
    pub connector: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Values of the connection fields the OAuth endpoints are built from, fixed by the
    /// operator.
    pub endpoint_fields: BTreeMap<String, String>,
    pub client_secret_set: bool,
    pub updated_at: Timestamp,
}

/// The associated data sealing a tenant OAuth app's client secret.
pub(crate) fn oauth_app_aad(tenant_id: &str, connector: &str) -> Vec<u8> {
    format!("junction/tenant-oauth-app/{tenant_id}/{connector}").into_bytes()
}

fn version_row(r: &SqliteRow) -> Result<PublishedVersion, StoreError> {
    Ok(PublishedVersion {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        title: r.try_get("title")?,
        release: r.try_get("release")?,
        interface_version: r.try_get("interface_version")?,
        digest: r.try_get("digest")?,
        size_bytes: r.try_get("size_bytes")?,
        published_at: r.try_get("published_at")?,
        published_by: r.try_get("published_by")?,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Write(e.to_string()))
}

const VERSION_COLUMNS: &str = "name, version, title, release, interface_version, digest, \
     size_bytes, published_at, published_by";

impl Store {
    /// Records a published version. A version already published is a conflict: versions
    /// are immutable.
    pub async fn insert_version(&self, v: &NewVersion) -> Result<PublishedVersion, StoreError> {
        let now = Timestamp::now();
        sqlx::query(&format!(
            "INSERT INTO connector_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&v.name)
        .bind(&v.version)
        .bind(&v.title)
        .bind(&v.release)
        .bind(&v.interface_version)
        .bind(&v.digest)
        .bind(v.size_bytes)
        .bind(now)
        .bind(&v.published_by)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::conflict_on_unique(e, || {
                format!("{} {} is already published", v.name, v.version)
            })
        })?;
        Ok(PublishedVersion {
            name: v.name.clone(),
            version: v.version.clone(),
            title: v.title.clone(),
            release: v.release.clone(),
            interface_version: v.interface_version.clone(),
            digest: v.digest.clone(),
            size_bytes: v.size_bytes,
            published_at: now,
            published_by: v.published_by.clone(),
        })
    }

    pub async fn published_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PublishedVersion>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM connector_versions WHERE name = ? AND version = ?"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(version_row)
        .transpose()
    }

    /// A published version with this digest, if there is one.
    pub async fn version_with_digest(
        &self,
        digest: &str,
    ) -> Result<Option<PublishedVersion>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM connector_versions WHERE digest = ? LIMIT 1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(version_row)
        .transpose()
    }

    /// Every published version (of one connector, or of all), in publication order.
    pub async fn published_versions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<PublishedVersion>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM connector_versions \
             WHERE ? IS NULL OR name = ? ORDER BY name, published_at"
        ))
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(version_row)
        .collect()
    }

    /// The active version of every installed connector.
    pub async fn installs(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT name, active_version FROM connector_installs")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("active_version")?)))
            .collect()
    }

    /// The versions of `name` that have been active, most recent first.
    pub async fn activations(&self, name: &str) -> Result<Vec<Activation>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, activated_at FROM connector_activations WHERE name = ? \
             ORDER BY activated_at DESC, rowid DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Activation {
                    version: r.try_get("version")?,
                    activated_at: r.try_get("activated_at")?,
                })
            })
            .collect()
    }

    /// Makes `version` the active version of `name`, and records the activation.
    pub async fn activate(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO connector_installs (name, active_version, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET active_version = excluded.active_version, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO connector_activations (name, version, activated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name, version) DO UPDATE SET activated_at = excluded.activated_at",
        )
        .bind(name)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The skipped versions of `name`.
    pub async fn skipped_versions(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT version FROM connector_skips WHERE name = ?")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("version")?)).collect()
    }

    pub async fn set_skipped(
        &self,
        name: &str,
        version: &str,
        skipped: bool,
    ) -> Result<(), StoreError> {
        if skipped {
            sqlx::query(
                "INSERT INTO connector_skips (name, version, skipped_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name, version) DO NOTHING",
            )
            .bind(name)
            .bind(version)
            .bind(Timestamp::now())
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM connector_skips WHERE name = ? AND version = ?")
                .bind(name)
                .bind(version)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Creates an operator and its token (`jo_…`, shown once).
    pub async fn create_operator(&self, name: &str) -> Result<(Operator, Secret), StoreError> {
        let operator = Operator {
            id: new_id("opr")?,
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO operators (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&operator.id)
            .bind(&operator.name)
            .bind(operator.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::conflict_on_unique(e, || format!("an operator `{name}` exists"))
            })?;
        let token = insert_operator_token(&mut tx, &operator.id).await?;
        tx.commit().await?;
        Ok((operator, token))
    }

    async fn operator_named(&self, name: &str) -> Result<Operator, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM operators WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("there is no operator `{name}`")))?;
        Ok(Operator {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Another token for an operator (to rotate: make one, then revoke the old ones).
    pub async fn create_operator_token(
        &self,
        name: &str,
    ) -> Result<(Operator, Secret), StoreError> {
        let operator = self.operator_named(name).await?;
        let mut tx = self.pool.begin().await?;
        let token = insert_operator_token(&mut tx, &operator.id).await?;
        tx.commit().await?;
        Ok((operator, token))
    }

    /// Revokes every token of an operator; how many were in force.
    pub async fn revoke_operator_tokens(&self, name: &str) -> Result<u64, StoreError> {
        let operator = self.operator_named(name).await?;
        let done = sqlx::query(
            "UPDATE operator_tokens SET revoked_at = ? WHERE operator_id = ? AND revoked_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(&operator.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The operator an operator token belongs to, if the token is valid.
    /// The operator holding `token`, and the token's id.
    pub async fn authenticate_operator(
        &self,
        token: &str,
    ) -> Result<Option<(Operator, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.created_at, t.id AS token_id FROM operators o \
             JOIN operator_tokens t ON t.operator_id = o.id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        )
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                Operator {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                },
                r.try_get("token_id")?,
            ))
        })
        .transpose()
    }

    /// A tenant's policy; the default (everything allowed) when none was set.
    pub async fn policy(&self, tenant_id: &str) -> Result<PolicyRecord, StoreError> {
        let row = sqlx::query(
            "SELECT enabled_connectors, disabled_connectors, allowed_auth_types, updated_at \
             FROM tenant_policies WHERE tenant_id = ?",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(PolicyRecord::default());
        };
        let enabled: Option<String> = r.try_get("enabled_connectors")?;
        Ok(PolicyRecord {
            enabled_connectors: enabled
                .map(|t| json_column(&t, "enabled_connectors"))
                .transpose()?,
            disabled_connectors: json_column(
                r.try_get("disabled_connectors")?,
                "disabled_connectors",
            )?,
            allowed_auth_types: json_column(
                r.try_get("allowed_auth_types")?,
                "allowed_auth_types",
            )?,
            updated_at: Some(r.try_get("updated_at")?),
        })
    }

    pub async fn set_policy(
        &self,
        tenant_id: &str,
        policy: &PolicyRecord,
    ) -> Result<PolicyRecord, StoreError> {
        let now = Timestamp::now();
        sqlx::query(
            "INSERT INTO tenant_policies (tenant_id, enabled_connectors, disabled_connectors, \
             allowed_auth_types, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET \
             enabled_connectors = excluded.enabled_connectors, \
             disabled_connectors = excluded.disabled_connectors, \
             allowed_auth_types = excluded.allowed_auth_types, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(
            policy
                .enabled_connectors
                .as_ref()
                .map(to_json)
                .transpose()?,
        )
        .bind(to_json(&policy.disabled_connectors)?)
        .bind(to_json(&policy.allowed_auth_types)?)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(PolicyRecord {
            updated_at: Some(now),
            ..policy.clone()
        })
    }

    /// A tenant's predefined OAuth apps, without their secrets.
    pub async fn tenant_oauth_apps(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<TenantOAuthApp>, StoreError> {
        let rows = sqlx::query(
            "SELECT connector, client_id, scopes, endpoint_fields, updated_at FROM tenant_oauth_apps \
             WHERE tenant_id = ? ORDER BY connector",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(oauth_app_row).collect()
    }

    /// A tenant's predefined OAuth app for `connector`, with its secret opened.
    pub async fn tenant_oauth_app(
        &self,
        tenant_id: &str,
        connector: &str,
    ) -> Result<Option<(TenantOAuthApp, Secret)>, StoreError> {
        let row = sqlx::query(
            "SELECT connector, client_id, scopes, endpoint_fields, updated_at, key_id, nonce, ciphertext \
             FROM tenant_oauth_apps WHERE tenant_id = ? AND connector = ?",
        )
        .bind(tenant_id)
        .bind(connector)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        };
        let secret = self
            .key
            .open_secret(&oauth_app_aad(tenant_id, connector), &sealed)?;
        Ok(Some((oauth_app_row(&r)?, secret)))
    }

    pub async fn set_tenant_oauth_app(
        &self,
        tenant_id: &str,
        connector: &str,
        client_id: &str,
        client_secret: &Secret,
        scopes: &[String],
        endpoint_fields: &BTreeMap<String, String>,
    ) -> Result<TenantOAuthApp, StoreError> {
        let sealed = self
            .key
            .seal_secret(&oauth_app_aad(tenant_id, connector), client_secret)?;
        let now = Timestamp::now();
        sqlx::query(
            "INSERT INTO tenant_oauth_apps (tenant_id, connector, client_id, scopes, \
             endpoint_fields, key_id, nonce, ciphertext, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, connector) DO UPDATE SET client_id = excluded.client_id, \
             scopes = excluded.scopes, endpoint_fields = excluded.endpoint_fields, key_id = excluded.key_id, nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(connector)
        .bind(client_id)
        .bind(to_json(&scopes)?)
        .bind(to_json(endpoint_fields)?)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(TenantOAuthApp {
            connector: connector.to_owned(),
            client_id: client_id.to_owned(),
            scopes: scopes.to_vec(),
            endpoint_fields: endpoint_fields.clone(),
            client_secret_set: true,
            updated_at: now,
        })
    }

    /// Removes a predefined OAuth app; whether there was one.
    pub async fn delete_tenant_oauth_app(
        &self,
        tenant_id: &str,
        connector: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM tenant_oauth_apps WHERE tenant_id = ? AND connector = ?")
                .bind(tenant_id)
                .bind(connector)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_operator_token(
    tx: &mut super::Tx<'_>,
    operator_id: &str,
) -> Result<Secret, StoreError> {
    let token = Secret::new(format!(
        "{OPERATOR_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?)
    ));
    sqlx::query(
        "INSERT INTO operator_tokens (id, operator_id, token_hash, created_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(new_id("otk")?)
    .bind(operator_id)
    .bind(Sha256::digest(token.expose().as_bytes()).to_vec())
    .bind(Timestamp::now())
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

/// The prefix of operator tokens; tenant tokens start with `jt_`.
pub const OPERATOR_TOKEN_PREFIX: &str = "jo_";

fn oauth_app_row(r: &SqliteRow) -> Result<TenantOAuthApp, StoreError> {
    Ok(TenantOAuthApp {
        connector: r.try_get("connector")?,
        client_id: r.try_get("client_id")?,
        scopes: json_column(r.try_get("scopes")?, "scopes")?,
        endpoint_fields: json_column(r.try_get("endpoint_fields")?, "endpoint_fields")?,
        client_secret_set: true,
        updated_at: r.try_get("updated_at")?,
    })
}
