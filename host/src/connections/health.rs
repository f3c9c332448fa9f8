//! The periodic health check: every connection not checked for an interval is tested, with
//! the same operation `POST /v1/connections/{id}/test` runs.

use super::Connections;
use super::error::Error;
use crate::store::{Health, HealthStatus, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// Checks, every `interval`, the connections not checked for that long, until `stop`
/// turns true. A check in progress finishes before the loop ends.
#[tracing::instrument(name = "health_check", skip_all)]
pub async fn health_loop(
    connections: Arc<Connections>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tick = interval.min(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let before = Timestamp(Timestamp::now().0 - interval.as_millis() as i64);
        let due = match connections
            .store
            .connections_due_for_check(before, 50)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "health check: cannot list connections");
                continue;
            }
        };
        for record in due {
            // A test can take the whole invocation timeout: a stop does not wait for it.
            let checked = tokio::select! {
                checked = connections.check_health(&record) => checked,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match checked {
                Ok(health) => tracing::info!(
                    connection = %record.id,
                    health = health.status.as_str(),
                    "health check"
                ),
                // The instances are all busy: check it at a later round.
                Err(Error::Busy(_)) => {
                    tracing::info!(connection = %record.id, "health check put off: every instance is busy");
                }
                Err(e @ Error::ConnectorNotRunning { .. }) => {
                    let reason = e.to_string();
                    tracing::warn!(connection = %record.id, error = %reason, "health check failed");
                    // Recorded, so the loop moves on to other connections.
                    let health = Health {
                        status: HealthStatus::Failing,
                        reason: Some(reason),
                        checked_at: Some(Timestamp::now()),
                    };
                    if let Err(e) = connections.store.set_health(&record.id, &health).await {
                        tracing::warn!(error = %e, "health check: cannot record health");
                    }
                }
                // The store failed: said in the log, and the connection is due again.
                Err(e) => {
                    tracing::warn!(connection = %record.id, error = %e, "health check failed");
                }
            }
        }
    }
}
