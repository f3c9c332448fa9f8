//! Running a connection: preparing its values for the runtime, testing it and recording
//! its health, invoking actions and recording every invocation.

use super::Connections;
use super::check::{is_oauth, provider_of};
use super::error::{Error, Result};
use super::secrets::{VaultUse, vault_failure};
use crate::access::Caller;
use crate::catalog::LoadedConnector;
use crate::credentials::{CredentialFailure, Secret};
use crate::runtime::{ConnectionSpec, ConnectorError, InvokeError, PreparedConnection};
use crate::store::{
    ConnectionRecord, Health, HealthStatus, InvocationError, InvocationRecord, Permissions,
    Timestamp, new_id,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A connection ready for the runtime, and the values it took from credential stores.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub connection: Arc<PreparedConnection>,
    pub vault: Vec<VaultUse>,
}

impl Connections {
    /// The record's values as the runtime takes them; the inner error (`connection`) when they
    /// no longer fit the connector (a new version of it may require another field), when an
    /// OAuth connection cannot reach its provider's settings, or when a credential store
    /// cannot give a value.
    async fn prepare(
        &self,
        loaded: &LoadedConnector,
        record: &ConnectionRecord,
    ) -> Result<std::result::Result<Prepared, InvokeError>> {
        let credentials_error = |failure| InvokeError::Credentials {
            connector: loaded.connector.id().clone(),
            failure,
        };
        let (secrets, vault) = match self.secrets_of(record).await? {
            Ok(found) => found,
            Err(failure) => return Ok(Err(credentials_error(failure))),
        };
        let manifest = loaded.connector.manifest();
        let token_source = if is_oauth(manifest, &record.auth) {
            match provider_of(
                &self.oauth,
                manifest,
                &record.auth,
                &record.fields,
                &secrets,
                record.tenant_app.as_ref(),
            ) {
                Ok(provider) => Some(self.oauth.source(&record.id, provider)),
                Err(e) => {
                    return Ok(Err(credentials_error(CredentialFailure::Unavailable {
                        reason: e.to_string(),
                    })));
                }
            }
        } else {
            None
        };
        let mut fields: BTreeMap<String, Secret> = record
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.as_str())))
            .collect();
        fields.extend(secrets);
        let spec = ConnectionSpec {
            auth: Some(record.auth.clone()),
            fields,
            access_token: None,
            token_source,
            // The tenant's invocations share the instance slots fairly with other tenants'.
            owner: Some(Arc::from(record.tenant_id.as_str())),
        };
        Ok(loaded
            .connector
            .prepare(&spec)
            .map(|connection| Prepared { connection, vault }))
    }

    /// Runs `run` on the connection. When the API refuses a value that came from a credential
    /// store, the value is dropped from the cache and read again; if the store holds a new
    /// one, `run` runs once more with it. A refusal of a value the store still holds, or of
    /// the new one, fails with `vault_credential_invalid`. Also returns the connection used
    /// last, to scrub what is said of the result.
    async fn run_rotating<T, F, Fut>(
        &self,
        loaded: &LoadedConnector,
        record: &ConnectionRecord,
        run: F,
    ) -> Result<(
        std::result::Result<T, InvokeError>,
        Option<Arc<PreparedConnection>>,
    )>
    where
        F: Fn(Arc<PreparedConnection>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, InvokeError>>,
    {
        let first = match self.prepare(loaded, record).await? {
            Ok(p) => p,
            Err(e) => return Ok((Err(e), None)),
        };
        let result = run(first.connection.clone()).await;
        if first.vault.is_empty() || !refused(&result, &first.connection) {
            return Ok((result, Some(first.connection)));
        }
        let first_result = &result;
        let invalid = |reason: String| InvokeError::Credentials {
            connector: loaded.connector.id().clone(),
            failure: CredentialFailure::VaultCredentialInvalid { reason },
        };
        let described: Vec<String> = first.vault.iter().map(VaultUse::describe).collect();
        let described = described.join(", ");
        let mut renewed = false;
        for used in &first.vault {
            match self
                .vaults
                .reresolve(&used.reference, used.generation, &used.value)
                .await
            {
                Ok(fresh) => renewed |= fresh.value != used.value,
                Err(e) => {
                    let failure = vault_failure(&used.field, &e);
                    let failure = match failure {
                        CredentialFailure::Unavailable { reason } => {
                            CredentialFailure::Unavailable {
                                reason: format!(
                                    "the API refused the connection's credentials, and reading them again failed: {reason}"
                                ),
                            }
                        }
                        other => other,
                    };
                    return Ok((
                        Err(InvokeError::Credentials {
                            connector: loaded.connector.id().clone(),
                            failure,
                        }),
                        Some(first.connection),
                    ));
                }
            }
        }
        if !renewed {
            let said_so = matches!(
                result,
                Err(InvokeError::Connector {
                    error: ConnectorError::Unauthorized { .. },
                    ..
                })
            ) || first.connection.rejection() == Some(401);
            // A 403 alone may be a permission the credential lacks, not a bad credential.
            if !said_so {
                return Ok((result, Some(first.connection)));
            }
            tracing::warn!(connection = %record.id, "the API refused a credential from a credential store, which holds no newer value");
            return Ok((
                Err(invalid(format!(
                    "the API refused {described}, and the store holds no newer value: update the secret in the vault"
                ))),
                Some(first.connection),
            ));
        }
        tracing::info!(connection = %record.id, "the API refused a credential from a credential store; retrying with the value read again");
        self.metrics.vault_retry();
        let second = match self.prepare(loaded, record).await? {
            Ok(p) => p,
            Err(e) => return Ok((Err(e), Some(first.connection))),
        };
        let result = run(second.connection.clone()).await;
        if result.is_ok() && refused_grant(first_result) {
            // The provider took the new value: the connection is usable again.
            let health = Health {
                status: HealthStatus::Healthy,
                reason: None,
                checked_at: Some(Timestamp::now()),
            };
            self.store.set_health(&record.id, &health).await?;
        }
        if refused(&result, &second.connection) {
            tracing::warn!(connection = %record.id, "the API refused a credential from a credential store, also after reading it again");
            return Ok((
                Err(invalid(format!(
                    "the API refused {described}, also after it was read again from the store: update the secret in the vault"
                ))),
                Some(second.connection),
            ));
        }
        Ok((result, Some(second.connection)))
    }

    /// The connector a connection uses, or [`Error::ConnectorNotRunning`].
    pub(crate) fn loaded(&self, record: &ConnectionRecord) -> Result<Arc<LoadedConnector>> {
        self.catalog
            .get(&record.connector)
            .ok_or_else(|| Error::ConnectorNotRunning {
                connector: record.connector.clone(),
            })
    }
}

/// Whether a run's result says the API refused the connection's credentials: the
/// connector said so (`unauthorized`), or the host saw a 401 or 403 to a request carrying
/// them.
fn refused<T>(
    result: &std::result::Result<T, InvokeError>,
    connection: &PreparedConnection,
) -> bool {
    matches!(
        result,
        Err(InvokeError::Connector {
            error: ConnectorError::Unauthorized { .. },
            ..
        })
    ) || connection.rejection().is_some()
        || refused_grant(result)
}

/// Whether the OAuth provider refused the connection's grant (a client secret or a
/// password from a store may have been rotated).
fn refused_grant<T>(result: &std::result::Result<T, InvokeError>) -> bool {
    matches!(
        result,
        Err(InvokeError::Credentials {
            failure: CredentialFailure::NeedsReauthentication { .. },
            ..
        })
    )
}

/// An OAuth connection that must be authorized again (or for the first time) before it
/// can be used: invocations fail at once with the reason instead of calling the API.
pub fn must_reauthenticate(
    loaded: &LoadedConnector,
    record: &ConnectionRecord,
) -> Option<InvokeError> {
    let status = record.health.status;
    if !matches!(
        status,
        HealthStatus::NeedsReauthentication | HealthStatus::PendingAuthorization
    ) || !is_oauth(loaded.connector.manifest(), &record.auth)
    {
        return None;
    }
    let reason = record.health.reason.clone().unwrap_or_else(|| {
        "the connection is not authorized at the provider yet; finish the consent, or reconnect it"
            .into()
    });
    Some(InvokeError::Credentials {
        connector: loaded.connector.id().clone(),
        failure: CredentialFailure::NeedsReauthentication { reason },
    })
}

/// The longest failure message recorded or returned.
const MAX_MESSAGE: usize = 4096;

/// What is said of a failure, in the store, the logs and responses: without the
/// connection's secrets (a connector may have been shown one, or an upstream may echo one
/// in a form the HTTP capability did not know), and at most [`MAX_MESSAGE`] bytes.
pub fn failure_message(e: &InvokeError, connection: Option<&PreparedConnection>) -> String {
    let text = e.to_string();
    let mut text = match connection {
        Some(c) => c.scrub_str(text),
        None => text,
    };
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("… (cut)");
    }
    text
}

/// What a connection test says about a connection's health.
pub fn health_of(
    result: &std::result::Result<(), InvokeError>,
    connection: Option<&PreparedConnection>,
) -> Health {
    let (status, reason) = match result {
        Ok(()) => (HealthStatus::Healthy, None),
        Err(
            e @ (InvokeError::Connector {
                error: ConnectorError::Unauthorized { .. },
                ..
            }
            | InvokeError::Credentials {
                failure: CredentialFailure::NeedsReauthentication { .. },
                ..
            }),
        ) => (
            HealthStatus::NeedsReauthentication,
            Some(failure_message(e, connection)),
        ),
        Err(e) => (HealthStatus::Failing, Some(failure_message(e, connection))),
    };
    Health {
        status,
        reason,
        checked_at: Some(Timestamp::now()),
    }
}

/// An invocation that ran, and its output.
#[derive(Debug)]
pub struct Invoked {
    pub record: InvocationRecord,
    pub output: serde_json::Value,
}

impl Connections {
    /// Runs the connector's connection test on a connection `caller` may use, and records
    /// the connection's health.
    pub async fn test(&self, caller: &Caller, id: &str) -> Result<Health> {
        let record = self.authorized(caller, id, Permissions::USE).await?;
        self.check_health(&record).await
    }

    /// Runs the connector's connection test and records the connection's health (the
    /// health check's entry: no caller).
    #[tracing::instrument(skip_all, fields(connection = %record.id, connector = %record.connector))]
    pub async fn check_health(&self, record: &ConnectionRecord) -> Result<Health> {
        let loaded = self.loaded(record)?;
        // An OAuth connection waiting for a (re)connect has nothing to test: its health
        // says so already, and asking the provider again would only repeat the refusal.
        if must_reauthenticate(&loaded, record).is_some() {
            let health = Health {
                checked_at: Some(Timestamp::now()),
                ..record.health.clone()
            };
            // Checked now, so the periodic check moves on to other connections.
            self.store.set_health(&record.id, &health).await?;
            return Ok(health);
        }
        let (result, connection) = self
            .run_rotating(&loaded, record, |prepared| {
                self.runtime.test_connection(&loaded.connector, prepared)
            })
            .await?;
        // A test that could not get an instance says nothing of the connection: its
        // health stays as it was.
        if let Err(e @ InvokeError::Busy { .. }) = &result {
            return Err(Error::Busy(e.to_string()));
        }
        let health = match (&result, connection) {
            (Err(e @ InvokeError::Connection { .. }), None) => Health {
                status: HealthStatus::Failing,
                reason: Some(format!(
                    "{e} (the connection no longer fits the connector; edit it)"
                )),
                checked_at: Some(Timestamp::now()),
            },
            (_, connection) => health_of(&result, connection.as_deref()),
        };
        self.store.set_health(&record.id, &health).await?;
        self.metrics.health_check(health.status.as_str());
        Ok(health)
    }

    /// Runs `action` with `input` on a connection `caller` may use, and records the
    /// invocation. A failure of the action is [`Error::Invocation`], recorded too.
    #[tracing::instrument(skip_all, fields(connection = %id, action = %action))]
    pub async fn invoke(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
        input: &serde_json::Value,
    ) -> Result<Invoked> {
        let record = self.authorized(caller, id, Permissions::USE).await?;
        let loaded = self.loaded(&record)?;
        let connector = loaded.connector.id().clone();
        let problems = loaded.check_input(action, input).ok_or_else(|| {
            let known: Vec<&str> = loaded
                .connector
                .manifest()
                .actions
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            Error::invalid_field(
                "action",
                format!(
                    "connector {connector} has no action `{action}`; its actions are: {}",
                    known.join(", ")
                ),
            )
        })?;
        if !problems.is_empty() {
            let summary: Vec<String> = problems
                .iter()
                .map(|p| {
                    let at = if p.path.is_empty() { "input" } else { &p.path };
                    format!("{at}: {}", p.message)
                })
                .collect();
            return Err(Error::InvalidInput {
                action: action.to_owned(),
                summary: summary.join("; "),
                problems,
            });
        }
        let input_text = input.to_string();
        // The id is taken at the start, so ids (and the newest-first list) follow start
        // times.
        let invocation_id = new_id("inv").map_err(|e| Error::Unavailable(e.to_string()))?;
        let started_at = Timestamp::now();
        let clock = Instant::now();
        // Values that no longer fit the connector fail the invocation (`connection`),
        // recorded like any other failure; so does an OAuth connection waiting to be
        // reconnected.
        let (result, connection) = match must_reauthenticate(&loaded, &record) {
            Some(e) => (Err(e), None),
            None => {
                self.run_rotating(&loaded, &record, |prepared| {
                    self.runtime
                        .execute(&loaded.connector, prepared, action, &input_text)
                })
                .await?
            }
        };
        let elapsed = clock.elapsed();
        let output = result.and_then(|text| {
            // A connector shown a secret (`reveal-fields`) must not hand it back either.
            let text = match &connection {
                Some(c) => c.scrub_str(text),
                None => text,
            };
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| InvokeError::Host {
                connector: connector.clone(),
                message: format!("the connector returned output that is not JSON: {e}"),
            })
        });
        let (outcome, error) = match &output {
            Ok(_) => ("ok".to_owned(), None),
            Err(e) => (
                e.code(),
                Some(InvocationError {
                    code: e.code(),
                    message: failure_message(e, connection.as_deref()),
                }),
            ),
        };
        let invocation = InvocationRecord {
            id: invocation_id.clone(),
            tenant_id: caller.tenant.id.clone(),
            principal_id: caller.principal.id.clone(),
            connection_id: record.id.clone(),
            folder_id: record.folder_id.clone(),
            connector: connector.name.clone(),
            connector_version: connector.version.clone(),
            action: action.to_owned(),
            started_at,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            outcome: outcome.clone(),
            error,
        };
        self.metrics.invocation(&connector.name, &outcome, elapsed);
        if let Err(e) = self.invocations.record(invocation.clone()).await {
            // The action ran (perhaps with effects upstream): its result is the caller's
            // even if its record could not be written.
            tracing::error!(invocation = %invocation_id, error = %e, "the invocation ran but could not be recorded");
        }
        match output {
            Ok(output) => Ok(Invoked {
                record: invocation,
                output,
            }),
            Err(error) => {
                let message = failure_message(&error, connection.as_deref());
                Err(Error::Invocation {
                    error: Box::new(error),
                    invocation_id,
                    message,
                })
            }
        }
    }
}
