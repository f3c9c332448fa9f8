//! The master key of a store: where it comes from, the check that it is the right one, and
//! rotation.
//!
//! Rotation is crash-safe in three steps: the new key is written to `<key file>.new` and
//! synced; one transaction re-encrypts every sealed value and the key check; the new file
//! is renamed over the old one. Whenever it stops, the next start finds a consistent state:
//! before the commit the store still opens with the old key (a stale `.new` is removed);
//! after the commit the `.new` key opens the store and the rename is completed.

use super::{OpenReport, StoreConfig, StoreError};
use crate::credentials::at_rest::{MasterKey, Sealed, sync_parent};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqlitePool};
use std::path::{Path, PathBuf};

/// The known value sealed in `store_key`, and its associated data.
const CHECK_PLAINTEXT: &[u8] = b"junction store key check v1";
const CHECK_AAD: &[u8] = b"junction/store-key";

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file; created (owner-only) when the data directory is new.
    File(PathBuf),
    /// The base64 key itself, from the environment (`JUNCTION_KEY`). Never created.
    Env(crate::credentials::Secret),
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Env(_) => "JUNCTION_KEY".into(),
        }
    }
}

fn pending_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

async fn stored_check(pool: &SqlitePool) -> Result<Option<Sealed>, StoreError> {
    let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM store_key WHERE singleton = 1")
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        })
    })
    .transpose()
}

fn opens(key: &MasterKey, check: &Sealed) -> bool {
    key.open(CHECK_AAD, check)
        .is_ok_and(|v| v.as_slice() == CHECK_PLAINTEXT)
}

/// Finds the key and checks it against the store. With `repair` (the caller holds the
/// data-directory lock, so no rotation is running) it also finishes or discards an
/// interrupted rotation; without it, it only reads: a rotation in progress elsewhere must
/// find its pending key where it left it.
pub(super) async fn unlock(
    pool: &SqlitePool,
    config: &StoreConfig,
    database: &Path,
    repair: bool,
) -> Result<(MasterKey, OpenReport), StoreError> {
    let mut report = OpenReport::default();
    let check = stored_check(pool).await?;
    let key = match &config.key {
        KeySource::Env(text) => MasterKey::from_encoded(text.expose(), "JUNCTION_KEY")?,
        KeySource::File(path) => {
            let pending = pending_path(path);
            match (&check, path.exists()) {
                (_, true) => {
                    let key = MasterKey::read_file(path)?;
                    match &check {
                        Some(check) if !opens(&key, check) && pending.exists() => {
                            let new = MasterKey::read_file(&pending)?;
                            if opens(&new, check) {
                                if repair {
                                    finish_rename(&pending, path)?;
                                    report.completed_rotation = true;
                                }
                                new
                            } else {
                                key
                            }
                        }
                        Some(check) if repair && opens(&key, check) && pending.exists() => {
                            // A rotation stopped before its commit: the store still uses the
                            // key file, and the pending key was never used.
                            std::fs::remove_file(&pending).map_err(|source| {
                                crate::credentials::at_rest::KeyError::Write {
                                    path: pending.clone(),
                                    source,
                                }
                            })?;
                            key
                        }
                        _ => key,
                    }
                }
                (None, false) => {
                    let (key, encoded) = MasterKey::generate()?;
                    MasterKey::write_file(path, &encoded)?;
                    report.created_key_file = Some(path.clone());
                    key
                }
                (Some(check), false) => {
                    // The key file is gone: the pending key of an interrupted rotation is
                    // accepted if it is the store's; otherwise the key is missing.
                    if pending.exists() {
                        let new = MasterKey::read_file(&pending)?;
                        if opens(&new, check) {
                            if repair {
                                finish_rename(&pending, path)?;
                                report.completed_rotation = true;
                            }
                            return Ok((new, report));
                        }
                    }
                    return Err(StoreError::KeyMissing {
                        database: database.to_owned(),
                        key_file: path.clone(),
                    });
                }
            }
        }
    };
    match check {
        Some(check) if opens(&key, &check) => {}
        Some(check) => {
            return Err(StoreError::WrongKey {
                database: database.to_owned(),
                origin: config.key.describe(),
                given: key.id().to_owned(),
                expected: check.key_id,
            });
        }
        None => {
            let sealed = key.seal(CHECK_AAD, CHECK_PLAINTEXT)?;
            sqlx::query(
                "INSERT INTO store_key (singleton, key_id, nonce, ciphertext) VALUES (1, ?, ?, ?)",
            )
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .execute(pool)
            .await?;
        }
    }
    Ok((key, report))
}

fn finish_rename(pending: &Path, key_file: &Path) -> Result<(), StoreError> {
    let write = |source| crate::credentials::at_rest::KeyError::Write {
        path: key_file.to_owned(),
        source,
    };
    std::fs::rename(pending, key_file).map_err(write)?;
    sync_parent(key_file).map_err(write)?;
    Ok(())
}

/// What a rotation did.
#[derive(Debug)]
pub struct RotateReport {
    pub old_key_id: String,
    pub new_key_id: String,
    pub values: usize,
    pub key_file: PathBuf,
}

impl super::Store {
    /// Re-seals under `new` every sealed value of `table`, whose associated data `aad`
    /// builds from the row; returns how many values. Rows are addressed by `rowid`, so one
    /// loop serves every table.
    async fn reseal_table(
        &self,
        tx: &mut super::Tx<'_>,
        new: &MasterKey,
        table: &str,
        aad: impl Fn(&SqliteRow) -> Result<Vec<u8>, StoreError>,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(&format!("SELECT rowid AS row_id, * FROM {table}"))
            .fetch_all(&mut **tx)
            .await?;
        let update =
            format!("UPDATE {table} SET key_id = ?, nonce = ?, ciphertext = ? WHERE rowid = ?");
        for row in &rows {
            let aad = aad(row)?;
            let sealed = Sealed {
                key_id: row.try_get("key_id")?,
                nonce: row.try_get("nonce")?,
                ciphertext: row.try_get("ciphertext")?,
            };
            let clear = self.key.open(&aad, &sealed)?;
            let resealed = new.seal(&aad, &clear)?;
            let row_id: i64 = row.try_get("row_id")?;
            sqlx::query(&update)
                .bind(&resealed.key_id)
                .bind(&resealed.nonce)
                .bind(&resealed.ciphertext)
                .bind(row_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(rows.len())
    }

    /// Re-encrypts every sealed value under a new key and replaces the key file. The
    /// caller holds the data directory lock, so no service uses the old key meanwhile.
    #[tracing::instrument(skip_all, fields(old_key = %self.key.id()))]
    pub async fn rotate_key(&mut self, key_file: &Path) -> Result<RotateReport, StoreError> {
        let pending = pending_path(key_file);
        if pending.exists() {
            std::fs::remove_file(&pending).map_err(|source| {
                crate::credentials::at_rest::KeyError::Write {
                    path: pending.clone(),
                    source,
                }
            })?;
        }
        let (new, encoded) = MasterKey::generate()?;
        MasterKey::write_file(&pending, &encoded)?;

        let mut tx = self.pool.begin().await?;
        let count = self
            .reseal_table(&mut tx, &new, "connection_secrets", |row| {
                let id: String = row.try_get("connection_id")?;
                let field: String = row.try_get("field")?;
                Ok(super::connections::secret_aad(&id, &field))
            })
            .await?
            + self
                .reseal_table(&mut tx, &new, "oauth_tokens", |row| {
                    let id: String = row.try_get("connection_id")?;
                    Ok(super::oauth::tokens_aad(&id))
                })
                .await?
            + self
                .reseal_table(&mut tx, &new, "oauth_states", |row| {
                    let id: String = row.try_get("connection_id")?;
                    let hash: Vec<u8> = row.try_get("state_hash")?;
                    Ok(super::oauth::state_aad(&id, &hash))
                })
                .await?
            + self
                .reseal_table(&mut tx, &new, "tenant_oauth_apps", |row| {
                    let tenant: String = row.try_get("tenant_id")?;
                    let connector: String = row.try_get("connector")?;
                    Ok(super::catalog::oauth_app_aad(&tenant, &connector))
                })
                .await?;
        let check = new.seal(CHECK_AAD, CHECK_PLAINTEXT)?;
        sqlx::query(
            "UPDATE store_key SET key_id = ?, nonce = ?, ciphertext = ? WHERE singleton = 1",
        )
        .bind(&check.key_id)
        .bind(&check.nonce)
        .bind(&check.ciphertext)
        .execute(&mut *tx)
        .await?;
        crash_point("before-commit");
        // The pending key must still be there: it is the only copy of the key the
        // transaction sealed everything with.
        let still_there = MasterKey::read_file(&pending)
            .map(|k| k.id() == new.id())
            .unwrap_or(false);
        if !still_there {
            return Err(StoreError::Key(
                crate::credentials::at_rest::KeyError::Write {
                    path: pending,
                    source: std::io::Error::other(
                        "the new key file changed during the rotation; nothing was changed",
                    ),
                },
            ));
        }
        tx.commit().await?;
        crash_point("after-commit");
        // Move the committed pages into the database file and empty the WAL, so no copy
        // of the old ciphertexts stays behind (secure_delete zeroes them in the file).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        finish_rename(&pending, key_file)?;
        let old_key_id = self.key.id().to_owned();
        let new_key_id = new.id().to_owned();
        self.key = std::sync::Arc::new(new);
        Ok(RotateReport {
            old_key_id,
            new_key_id,
            values: count,
            key_file: key_file.to_owned(),
        })
    }
}

/// Fault injection for the tests of interrupted rotation: a debug build aborts here when
/// `JUNCTION_TEST_CRASH_AT` names this point. Release builds have no such switch.
fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("JUNCTION_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
