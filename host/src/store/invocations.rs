//! Invocation records: who ran which action on which connection, how long it took and how
//! it ended. Never the input, the output or a secret.

use super::{Page, PageRequest, Store, StoreError, Timestamp, page_of};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Serialize)]
pub struct InvocationError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvocationRecord {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub principal_id: String,
    pub connection_id: String,
    pub folder_id: String,
    pub connector: String,
    pub connector_version: String,
    pub action: String,
    pub started_at: Timestamp,
    pub duration_ms: f64,
    /// `ok`, or the error code.
    pub outcome: String,
    pub error: Option<InvocationError>,
}

/// Filters of an invocation list.
#[derive(Debug, Clone, Default)]
pub struct InvocationFilter {
    /// Only invocations on connections of these folders.
    pub folders: Vec<String>,
    pub connection_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
}

fn row(r: &SqliteRow) -> Result<InvocationRecord, StoreError> {
    let outcome: String = r.try_get("outcome")?;
    let message: Option<String> = r.try_get("error_message")?;
    Ok(InvocationRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        principal_id: r.try_get("principal_id")?,
        connection_id: r.try_get("connection_id")?,
        folder_id: r.try_get("folder_id")?,
        connector: r.try_get("connector")?,
        connector_version: r.try_get("connector_version")?,
        action: r.try_get("action")?,
        started_at: r.try_get("started_at")?,
        duration_ms: r.try_get("duration_ms")?,
        error: message.map(|message| InvocationError {
            code: outcome.clone(),
            message,
        }),
        outcome,
    })
}

/// Records invocations with group commit: concurrent invocations share one transaction
/// (and so one sync to disk), and each caller returns only once its record is durable.
#[derive(Debug, Clone)]
pub struct InvocationLog {
    queue: mpsc::Sender<(InvocationRecord, oneshot::Sender<Result<(), String>>)>,
}

/// Records written in one transaction at most.
const BATCH: usize = 512;

impl InvocationLog {
    /// Starts the writer; it ends once every clone of the log is dropped and the queue is
    /// drained.
    pub fn start(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, mut rx) =
            mpsc::channel::<(InvocationRecord, oneshot::Sender<Result<(), String>>)>(4096);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let result = store
                    .insert_invocations(batch.iter().map(|(r, _)| r))
                    .await
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, records = batch.len(), "cannot record invocations");
                }
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(result.clone());
                }
            }
        });
        (Self { queue }, writer)
    }

    /// Writes `record` and waits until it is committed.
    pub async fn record(&self, record: InvocationRecord) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let closed = || StoreError::Closing;
        self.queue.send((record, ack)).await.map_err(|_| closed())?;
        done.await.map_err(|_| closed())?.map_err(StoreError::Write)
    }
}

impl Store {
    async fn insert_invocations(
        &self,
        records: impl Iterator<Item = &InvocationRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for record in records {
            sqlx::query(
                "INSERT INTO invocations (id, tenant_id, principal_id, connection_id, folder_id, \
                 connector, connector_version, action, started_at, duration_ms, outcome, error_message) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&record.id)
            .bind(&record.tenant_id)
            .bind(&record.principal_id)
            .bind(&record.connection_id)
            .bind(&record.folder_id)
            .bind(&record.connector)
            .bind(&record.connector_version)
            .bind(&record.action)
            .bind(record.started_at)
            .bind(record.duration_ms)
            .bind(&record.outcome)
            .bind(record.error.as_ref().map(|e| &e.message))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn invocation(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        let r = sqlx::query("SELECT * FROM invocations WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(row).transpose()
    }

    /// Newest first.
    pub async fn invocations(
        &self,
        tenant_id: &str,
        filter: &InvocationFilter,
        page: &PageRequest,
    ) -> Result<Page<InvocationRecord>, StoreError> {
        if filter.folders.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let mut sql = String::from("SELECT * FROM invocations WHERE tenant_id = ?");
        if page.after.is_some() {
            sql.push_str(" AND id < ?");
        }
        sql.push_str(" AND folder_id IN (");
        sql.push_str(&vec!["?"; filter.folders.len()].join(", "));
        sql.push(')');
        for (column, value) in [
            ("connection_id", &filter.connection_id),
            ("action", &filter.action),
            ("outcome", &filter.outcome),
        ] {
            if value.is_some() {
                sql.push_str(&format!(" AND {column} = ?"));
            }
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql).bind(tenant_id);
        if let Some(after) = &page.after {
            q = q.bind(after);
        }
        for f in &filter.folders {
            q = q.bind(f);
        }
        for value in [&filter.connection_id, &filter.action, &filter.outcome]
            .into_iter()
            .flatten()
        {
            q = q.bind(value);
        }
        let rows = q
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(items, page.limit, |i| &i.id))
    }
}
