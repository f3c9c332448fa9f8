//! Connections as the service handles them, with no HTTP in sight: checking what a user
//! gives against the connector's manifest, creating and editing connections, OAuth grants
//! and consents, testing a connection and recording its health, invoking actions and
//! recording every invocation, and the periodic health check. The API (`api/routes`) and
//! the health loop call the same [`Connections`] methods; each returns an [`Error`] in the
//! service's own terms, which the API maps to HTTP.

mod check;
mod consent;
mod edit;
mod error;
mod health;
mod run;
mod secrets;

pub use check::{
    Checked, FieldInput, check, check_tenant_app_binding, check_tenant_app_fits, is_oauth,
    split_inputs, tenant_app_usable,
};
pub use consent::{Authorization, START_PATH, random_token, sha256};
pub use edit::{Changed, NewConnectionInput, Update, references};
pub use error::{Error, Result};
pub use health::health_loop;
pub use run::{Invoked, failure_message, health_of};
pub use secrets::VaultUse;

use crate::access::Caller;
use crate::auth::OAuth;
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::{ConnectionRecord, Folder, InvocationLog, Permissions, Store};
use crate::vault::CredentialStores;
use std::sync::Arc;

/// Everything an operation on connections needs.
#[derive(Debug)]
pub struct Connections {
    store: Store,
    runtime: Runtime,
    catalog: Arc<Catalog>,
    oauth: Arc<OAuth>,
    vaults: Arc<CredentialStores>,
    /// Where invocation records are written (group commit).
    invocations: InvocationLog,
    metrics: Arc<Metrics>,
}

impl Connections {
    pub fn new(
        store: Store,
        runtime: Runtime,
        catalog: Arc<Catalog>,
        oauth: Arc<OAuth>,
        vaults: Arc<CredentialStores>,
        invocations: InvocationLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            runtime,
            catalog,
            oauth,
            vaults,
            invocations,
            metrics,
        }
    }

    /// A folder of the caller's tenant, with what was granted to the caller on it.
    pub async fn folder(&self, caller: &Caller, id: &str) -> Result<(Folder, Permissions)> {
        let folder = self
            .store
            .folder(&caller.tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("folder", id))?;
        let granted = self.store.granted(&folder.id, &caller.principal.id).await?;
        Ok((folder, granted))
    }

    /// A connection of the caller's tenant, whatever the caller's permissions on it.
    async fn record(&self, caller: &Caller, id: &str) -> Result<ConnectionRecord> {
        self.store
            .connection(&caller.tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("connection", id))
    }

    /// A connection of the caller's tenant that the caller holds `needed` on. Another
    /// tenant's connection is answered as an unknown one.
    pub async fn authorized(
        &self,
        caller: &Caller,
        id: &str,
        needed: Permissions,
    ) -> Result<ConnectionRecord> {
        let record = self.record(caller, id).await?;
        let (folder, granted) = self.folder(caller, &record.folder_id).await?;
        caller.require(&folder, granted, needed)?;
        Ok(record)
    }
}
