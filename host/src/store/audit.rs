//! The audit log: administrators' and operators' acts, kept for the retention the operator
//! sets. Rows are written once and never changed; they are only pruned by age.

use super::{Page, PageRequest, Store, StoreError, Timestamp, new_id, page_of};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditActor {
    /// `principal` (a tenant's), `operator`, or `local` (the offline `junction admin`
    /// commands, run on the service's machine).
    pub kind: String,
    pub id: String,
    pub name: String,
    /// The API token used (`tok_…`, an operator token's id), when one was.
    pub token_id: Option<String>,
}

/// How an act ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Refused: a permission, a policy, invalid input (4xx).
    Refused,
    /// The service failed (5xx).
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "refused" => Some(Self::Refused),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The outcome of an HTTP answer's status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => Self::Ok,
            400..=499 => Self::Refused,
            _ => Self::Failed,
        }
    }
}

/// One act, to record.
#[derive(Debug, Clone, Serialize)]
pub struct NewAuditEvent {
    pub tenant_id: Option<String>,
    pub actor: AuditActor,
    /// `principal.create`, `policy.set`, `catalog.install`…
    pub action: String,
    /// What it was done to (an id, a `name@version`).
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// The HTTP status answered (none for the offline commands).
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    /// Names, ids and settings; never a secret.
    pub details: Map<String, Value>,
}

/// A recorded act.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: NewAuditEvent,
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's events; `None`: every event (operators).
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
}

fn row(r: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let outcome: String = r.try_get("outcome")?;
    let details: String = r.try_get("details")?;
    let status: Option<i64> = r.try_get("status")?;
    Ok(AuditEvent {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        event: NewAuditEvent {
            tenant_id: r.try_get("tenant_id")?,
            actor: AuditActor {
                kind: r.try_get("actor_kind")?,
                id: r.try_get("actor_id")?,
                name: r.try_get("actor_name")?,
                token_id: r.try_get("token_id")?,
            },
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            outcome: AuditOutcome::parse(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("audit outcome `{outcome}`")))?,
            status: status.and_then(|s| u16::try_from(s).ok()),
            error_code: r.try_get("error_code")?,
            request_id: r.try_get("request_id")?,
            details: serde_json::from_str(&details)
                .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
        },
    })
}

impl Store {
    /// Records an act; its id.
    pub async fn record_audit(&self, event: &NewAuditEvent) -> Result<String, StoreError> {
        let id = new_id("aud")?;
        let details =
            serde_json::to_string(&event.details).map_err(|e| StoreError::Write(e.to_string()))?;
        sqlx::query(
            "INSERT INTO audit_events (id, at, tenant_id, actor_kind, actor_id, actor_name, \
             token_id, action, target, outcome, status, error_code, request_id, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(Timestamp::now())
        .bind(&event.tenant_id)
        .bind(&event.actor.kind)
        .bind(&event.actor.id)
        .bind(&event.actor.name)
        .bind(&event.actor.token_id)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(event.status.map(i64::from))
        .bind(&event.error_code)
        .bind(&event.request_id)
        .bind(details)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Events matching `filter`, newest first.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let mut sql = String::from("SELECT * FROM audit_events WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(after) = &page.after {
            sql.push_str(" AND id < ?");
            binds.push(after.clone());
        }
        for (column, value) in [
            ("tenant_id", &filter.tenant_id),
            ("action", &filter.action),
            ("actor_id", &filter.actor_id),
            ("outcome", &filter.outcome.map(|o| o.as_str().to_owned())),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                binds.push(value.clone());
            }
        }
        if filter.since.is_some() {
            sql.push_str(" AND at >= ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        for value in &binds {
            q = q.bind(value);
        }
        if let Some(since) = filter.since {
            q = q.bind(since);
        }
        let rows = q
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(items, page.limit, |e| &e.id))
    }

    /// Removes the events recorded before `before`; how many.
    pub async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeySource, StoreConfig};

    fn event(action: &str, tenant: Option<&str>) -> NewAuditEvent {
        NewAuditEvent {
            tenant_id: tenant.map(str::to_owned),
            actor: AuditActor {
                kind: "operator".into(),
                id: "opr_1".into(),
                name: "ops".into(),
                token_id: Some("otk_1".into()),
            },
            action: action.into(),
            target: None,
            outcome: AuditOutcome::Ok,
            status: Some(200),
            error_code: None,
            request_id: None,
            details: Map::new(),
        }
    }

    #[tokio::test]
    async fn events_are_listed_newest_first_by_tenant_and_pruned_by_age() {
        let dir = std::env::temp_dir().join(format!(
            "junction-store-audit-{}-{}",
            std::process::id(),
            Timestamp::now().0
        ));
        let config = StoreConfig {
            data_dir: dir.clone(),
            key: KeySource::File(dir.join("junction.key")),
        };
        let (store, _) = Store::open(&config, None).await.unwrap();
        for (action, tenant) in [
            ("a.one", Some("ten_a")),
            ("b.one", Some("ten_b")),
            ("c.one", None),
        ] {
            store.record_audit(&event(action, tenant)).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let page = PageRequest {
            after: None,
            limit: 10,
        };
        let all = store
            .audit_events(&AuditFilter::default(), &page)
            .await
            .unwrap();
        let actions: Vec<&str> = all.items.iter().map(|e| e.event.action.as_str()).collect();
        assert_eq!(actions, ["c.one", "b.one", "a.one"]);
        let only_a = AuditFilter {
            tenant_id: Some("ten_a".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            store
                .audit_events(&only_a, &page)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        // Retention: everything recorded before now goes.
        let removed = store
            .prune_audit(Timestamp(Timestamp::now().0 + 1))
            .await
            .unwrap();
        assert_eq!(removed, 3);
        assert!(
            store
                .audit_events(&AuditFilter::default(), &page)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
