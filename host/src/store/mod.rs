//! Persistence. The embedded default is SQLite (one file in the data directory, WAL,
//! synchronous writes); every multi-row change is one transaction, so a crash or a stop
//! never leaves half a change behind.
//!
//! Secret values are sealed with the master key (`credentials::at_rest`) before they reach
//! this module's tables, and opened only when an invocation needs them.

mod audit;
mod catalog;
mod connections;
mod invocations;
mod keys;
mod oauth;
mod tenancy;

pub use audit::{AuditActor, AuditEvent, AuditFilter, AuditOutcome, NewAuditEvent};
pub use catalog::{
    Activation, NewVersion, OPERATOR_TOKEN_PREFIX, Operator, PolicyRecord, PublishedVersion,
    TenantOAuthApp,
};
pub use connections::{
    ConnectionFilter, ConnectionRecord, Health, HealthStatus, NewConnection, TenantAppBinding,
};
pub use invocations::{InvocationError, InvocationFilter, InvocationLog, InvocationRecord};
pub use keys::{KeySource, RotateReport};
pub use oauth::{PendingAuthorization, StartLookup, StateLookup, StoredTokens, Tokens};
pub use tenancy::{Folder, FolderKind, Grant, NewToken, Permissions, Principal, Role, Tenant};

use crate::credentials::at_rest::{KeyError, MasterKey, random_bytes};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "junction.db";
/// The default key file inside the data directory.
pub const KEY_FILE: &str = "junction.key";

/// Why the store cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store {database} is encrypted, but its key is missing: there is no key file at {key_file} and JUNCTION_KEY is not set. Restore the key file (or set JUNCTION_KEY / --key-file); without the key the stored secrets cannot be read"
    )]
    KeyMissing {
        database: PathBuf,
        key_file: PathBuf,
    },
    #[error(
        "the key from {origin} (id {given}) is not the key of the store {database} (id {expected}); the service refuses to start with a wrong key. Use the key this store was created with"
    )]
    WrongKey {
        database: PathBuf,
        origin: String,
        given: String,
        expected: String,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the store's schema cannot be migrated: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a stored record is malformed: {0}")]
    Corrupt(String),
    #[error("writing to the store failed: {0}")]
    Write(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store is closing: the service is stopping")]
    Closing,
    #[error("the data directory {path} is in use by a running `junction serve`; stop it first")]
    Locked { path: PathBuf },
    #[error("cannot lock the data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn conflict_on_unique(e: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what()),
            _ => Self::Database(e),
        }
    }
}

/// Where the store lives and where its key comes from.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub key: KeySource,
}

impl StoreConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// The store: a connection pool and the master key.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    key: Arc<MasterKey>,
    database: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.database)
            .field("key", &self.key.id())
            .finish()
    }
}

/// What opening the store did that the operator should hear about.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// A key file created because the data directory was new.
    pub created_key_file: Option<PathBuf>,
    /// A key rotation that had been interrupted after its commit and was completed now.
    pub completed_rotation: bool,
}

impl Store {
    /// Opens (creating on first use) the store in the data directory, checking the key.
    /// `lock` is the caller's lock on the data directory, if it holds one: only then may
    /// opening finish or discard an interrupted key rotation.
    #[tracing::instrument(skip_all, fields(data_dir = %config.data_dir.display()))]
    pub async fn open(
        config: &StoreConfig,
        lock: Option<&DataDirLock>,
    ) -> Result<(Self, OpenReport), StoreError> {
        create_private_dir(&config.data_dir)?;
        let database = config.database_path();
        create_owner_only(&database)?;
        let pool = connect(&database).await?;
        restrict_to_owner(&database)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let (key, report) = keys::unlock(&pool, config, &database, lock.is_some()).await?;
        Ok((
            Self {
                pool,
                key: Arc::new(key),
                database,
            },
            report,
        ))
    }

    /// The id of the master key (the key itself never leaves the store).
    pub fn key_id(&self) -> &str {
        self.key.id()
    }
    pub fn database_path(&self) -> &Path {
        &self.database
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for writes in progress and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn connect(database: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Deleted and overwritten content (a rotated-out ciphertext) is zeroed, not left in
        // free pages.
        .pragma("secure_delete", "ON")
        .busy_timeout(Duration::from_secs(10));
    // An embedded database does not drop connections: no ping before each use.
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .connect_with(options)
        .await?)
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|source| StoreError::DataDir {
        path: path.to_owned(),
        source,
    })
}

/// Creates the database file, owner-only, before SQLite does (under the process's umask).
fn create_owner_only(database: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(database)
        .map(drop)
        .map_err(|source| StoreError::DataDir {
            path: database.to_owned(),
            source,
        })
}

/// Makes the database file readable by its owner only (SQLite gives its WAL and shared-
/// memory files the database file's permissions).
fn restrict_to_owner(database: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(database, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::DataDir {
                path: database.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = database;
    Ok(())
}

/// An exclusive lock on the data directory, held by `junction serve` and by key rotation
/// for as long as they run.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir)?;
        let path = data_dir.join("lock");
        let lock_err = |source| StoreError::Lock {
            path: data_dir.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: data_dir.to_owned(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(lock_err(e)),
        }
    }
}

/// Milliseconds since the Unix epoch; serialises as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self(i64::try_from(ms).unwrap_or(i64::MAX))
    }
    pub fn rfc3339(self) -> String {
        let ms = u64::try_from(self.0).unwrap_or(0);
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    }

    /// An RFC 3339 time (`2026-11-22T10:00:00Z`, `2026-11-22T11:00:00.5+01:00`).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let at = time::OffsetDateTime::parse(
            text.trim(),
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

/// Whether `name` is a display name (of a tenant, principal, folder or connection): 1 to
/// 200 characters, not blank.
pub fn is_display_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 200
}

/// A new id: a prefix, 12 hex digits of the creation time in milliseconds and 14 random
/// hex digits, so ids sort by creation time.
pub fn new_id(prefix: &str) -> Result<String, StoreError> {
    let random = random_bytes::<7>()?;
    let ms = Timestamp::now().0 & 0xffff_ffff_ffff;
    let mut id = format!("{prefix}_{ms:012x}");
    for b in random {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

/// One page of a list, and the cursor of the next one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// The id after which (or before which, for newest-first lists) the page starts.
    pub after: Option<String>,
    pub limit: u32,
}

/// A cursor is the last id of the previous page (clients treat it as opaque). Lists are
/// ordered by id, so any id-shaped cursor is a valid place to start: the API documents
/// the shape (`^[A-Za-z0-9_]{1,64}$`), and a cursor of that shape is never refused.
pub fn encode_cursor(id: &str) -> String {
    id.to_owned()
}

/// The id a cursor starts after, when it has an id's shape (1 to 64 of `[A-Za-z0-9_]`).
pub fn decode_cursor(cursor: &str) -> Option<String> {
    (!cursor.is_empty()
        && cursor.len() <= 64
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then(|| cursor.to_owned())
}

/// Cuts a page fetched with `limit + 1` rows into items and the next cursor.
fn page_of<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| encode_cursor(id(r)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

type Tx<'a> = sqlx::Transaction<'a, Sqlite>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_cursors_round_trip() {
        let a = new_id("con").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_id("con").unwrap();
        assert!(a < b, "{a} < {b}");
        assert_eq!(a.len(), "con_".len() + 26);
        assert_eq!(
            decode_cursor(&encode_cursor(&a)).as_deref(),
            Some(a.as_str())
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T01:00:00.5+01:00"),
            Some(Timestamp(500))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("0223-02-27t14:24:06.502842+20:46").map(|t| t.0 < 0),
            Some(true)
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
        assert_eq!(decode_cursor("!!"), None);
        assert_eq!(decode_cursor("x' OR 1"), None);
        assert_eq!(decode_cursor(""), None);
        assert_eq!(decode_cursor(&"a".repeat(65)), None);
        assert_eq!(decode_cursor("__main__").as_deref(), Some("__main__"));
    }

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_000_000_123).rfc3339(),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
