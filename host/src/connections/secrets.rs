//! A connection's secret values: those stored sealed, and those credential store
//! references resolve to.

use super::Connections;
use super::error::{Error, Result};
use crate::access::Caller;
use crate::credentials::{CredentialFailure, Secret};
use crate::store::ConnectionRecord;
use crate::vault::{CredentialRef, ResolveError};
use std::collections::BTreeMap;

impl Connections {
    /// Resolves the references a request gives, so a wrong one is refused before anything is
    /// saved: a reference that points nowhere is a 400 on its field; a store that cannot be
    /// read is a 502 naming the store and the cause. Each reference's path is made canonical
    /// in place: that is what is stored.
    ///
    /// Pointing a field at a store is an administrator's act: whoever may reference a vault
    /// path may send its value to a host of their choosing (a connection's `base_url`), so that
    /// right must be as strong as reading the vault. A store the tenant may not use answers as
    /// one that does not exist, and a path outside the tenant's prefix in the store as a path
    /// that holds nothing.
    pub(crate) async fn resolve_given(
        &self,
        caller: &Caller,
        refs: &mut BTreeMap<String, CredentialRef>,
    ) -> Result<BTreeMap<String, Secret>> {
        let mut resolved = BTreeMap::new();
        if !refs.is_empty() {
            caller.require_admin("point a secret field at a credential store")?;
        }
        for (name, r) in refs.iter_mut() {
            let found = match self.vaults.reference_for(r, &caller.tenant.id) {
                Ok(canonical) => {
                    *r = canonical;
                    self.vaults.resolve(r).await
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(v) => {
                    resolved.insert(name.clone(), v.value);
                }
                Err(e) if e.is_reference_problem() => {
                    return Err(Error::invalid_field(
                        format!("fields.{name}"),
                        format!("field `{name}`: {e}"),
                    ));
                }
                Err(e) => {
                    return Err(Error::CredentialStoreUnavailable {
                        field: format!("fields.{name}"),
                        store: r.store.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(resolved)
    }

    /// A connection's secret values: those stored (sealed), and those its references resolve
    /// to (from the cache, or read from their store).
    pub(crate) async fn secrets_of(
        &self,
        record: &ConnectionRecord,
    ) -> Result<std::result::Result<(BTreeMap<String, Secret>, Vec<VaultUse>), CredentialFailure>>
    {
        let mut secrets = self.store.connection_secrets(&record.id).await?;
        let mut uses = Vec::new();
        for (field, r) in &record.secret_refs {
            // Checked again at every use: the operator may have closed the store to the
            // tenant, or narrowed its prefix, since the reference was given.
            let found = match self.vaults.reference_for(r, &record.tenant_id) {
                Ok(canonical) => self.vaults.resolve(&canonical).await,
                Err(e) => Err(e),
            };
            match found {
                Ok(resolved) => {
                    secrets.insert(field.clone(), resolved.value.clone());
                    uses.push(VaultUse {
                        field: field.clone(),
                        reference: r.clone(),
                        value: resolved.value,
                        generation: resolved.generation,
                    });
                }
                Err(e) => return Ok(Err(vault_failure(field, &e))),
            }
        }
        Ok(Ok((secrets, uses)))
    }

    /// A connection's secret values for running its OAuth grant (a code exchange, a
    /// reconnect): those stored and those its references resolve to. A value that cannot be
    /// had is [`Error::Credentials`] saying why.
    pub async fn grant_secrets(
        &self,
        record: &ConnectionRecord,
    ) -> Result<BTreeMap<String, Secret>> {
        match self.secrets_of(record).await? {
            Ok((secrets, _)) => Ok(secrets),
            Err(failure) => Err(Error::Credentials(failure)),
        }
    }
}

/// A value a connection took from a credential store for one use.
#[derive(Debug, Clone)]
pub struct VaultUse {
    pub field: String,
    pub reference: CredentialRef,
    pub(super) value: Secret,
    pub(super) generation: u64,
}

impl VaultUse {
    pub(super) fn describe(&self) -> String {
        format!(
            "`{}` (credential store `{}`, `{}` key `{}`)",
            self.field, self.reference.store, self.reference.path, self.reference.key
        )
    }
}

pub(super) fn vault_failure(field: &str, e: &ResolveError) -> CredentialFailure {
    if e.is_reference_problem() {
        CredentialFailure::VaultCredentialInvalid {
            reason: format!("field `{field}`: {e}"),
        }
    } else {
        CredentialFailure::Unavailable {
            reason: format!("field `{field}`: {e}"),
        }
    }
}
