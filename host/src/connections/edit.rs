//! Creating, editing, reconnecting and deleting connections: the checks against the
//! manifest and the tenant's policy, the carry-over of stored secrets on edits, and the
//! OAuth grants these operations run or start.

use super::Connections;
use super::check::{self, FieldInput, apply_tenant_app, is_oauth, provider_of};
use super::consent::Authorization;
use super::error::{Error, Result};
use crate::access::Caller;
use crate::auth::oauth::{Grant, Provider};
use crate::capabilities::allowed_hosts::placeholders;
use crate::catalog::Policy;
use crate::credentials::Secret;
use crate::runtime::Manifest;
use crate::runtime::manifest::{AuthKind, CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD};
use crate::store::{
    ConnectionRecord, HealthStatus, NewConnection, Permissions, TenantAppBinding, Tokens,
    is_display_name,
};
use crate::vault::CredentialRef;
use std::collections::BTreeMap;

/// Polling intervals a connection may ask for, in seconds.
const POLL_INTERVAL: std::ops::RangeInclusive<u32> = 60..=86_400;

/// A connection to create.
#[derive(Debug)]
pub struct NewConnectionInput {
    pub connector: String,
    pub name: String,
    /// The caller's personal folder when not given.
    pub folder_id: Option<String>,
    /// Required when the connector has more than one auth scheme.
    pub auth: Option<String>,
    pub description: String,
    /// Values, or for secret fields a credential store reference.
    pub fields: BTreeMap<String, FieldInput>,
    pub poll_interval_seconds: Option<u32>,
}

/// An edit of a connection: what is `None` is kept.
#[derive(Debug, Default)]
pub struct Update {
    pub name: Option<String>,
    pub description: Option<String>,
    pub auth: Option<String>,
    /// A value (or, for a secret field, a credential store reference) sets a field; `None`
    /// clears it.
    pub fields: Option<BTreeMap<String, Option<FieldInput>>>,
    /// `Some(None)` clears it.
    pub poll_interval_seconds: Option<Option<u32>>,
}

/// A connection after a change, with the consent to finish in a browser if the change
/// started one.
#[derive(Debug)]
pub struct Changed {
    pub record: ConnectionRecord,
    pub authorization: Option<Authorization>,
}

fn check_name(name: &str) -> Result<()> {
    if is_display_name(name) {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "name",
            "`name` must be 1 to 200 characters and not blank",
        ))
    }
}

fn check_poll_interval(value: Option<u32>) -> Result<()> {
    match value {
        Some(v) if !POLL_INTERVAL.contains(&v) => Err(Error::invalid_field(
            "poll_interval_seconds",
            format!(
                "`poll_interval_seconds` must be from {} to {} seconds",
                POLL_INTERVAL.start(),
                POLL_INTERVAL.end()
            ),
        )),
        _ => Ok(()),
    }
}

impl Connections {
    /// For the password and client credentials grants: tokens now, or the provider's
    /// refusal.
    async fn request_tokens(&self, provider: &Provider) -> Result<Tokens> {
        self.oauth
            .request_tokens(provider)
            .await
            .map_err(|e| Error::grant(e, provider))
    }

    /// The provider settings of a checked connection whose scheme is OAuth 2.0 (`None`
    /// for other schemes); [`Error::Setup`] when they cannot work (no OAuth app, a bad
    /// endpoint).
    fn oauth_provider(
        &self,
        manifest: &Manifest,
        checked: &check::Checked,
        tenant_app: Option<&TenantAppBinding>,
    ) -> Result<Option<Provider>> {
        if !is_oauth(manifest, &checked.auth) {
            return Ok(None);
        }
        Ok(Some(provider_of(
            &self.oauth,
            manifest,
            &checked.auth,
            &checked.fields,
            &checked.all_secrets(),
            tenant_app,
        )?))
    }

    /// The connection `id` as the store holds it now, with `authorization`.
    async fn changed(
        &self,
        caller: &Caller,
        id: &str,
        authorization: Option<Authorization>,
    ) -> Result<Changed> {
        let record = self.record(caller, id).await?;
        Ok(Changed {
            record,
            authorization,
        })
    }

    /// Creates a connection in a folder where `caller` may create. OAuth: the password
    /// and client credentials grants run now (a refusal creates nothing); the
    /// authorization code grant starts a consent.
    #[tracing::instrument(skip_all, fields(connector = %new.connector))]
    pub async fn create(&self, caller: &Caller, new: NewConnectionInput) -> Result<Changed> {
        check_name(&new.name)?;
        check_poll_interval(new.poll_interval_seconds)?;
        let folder_id = new
            .folder_id
            .clone()
            .unwrap_or_else(|| caller.principal.personal_folder_id.clone());
        let (folder, granted) = self.folder(caller, &folder_id).await.map_err(|e| match e {
            Error::NotFound { what, id, .. } => Error::NotFound {
                what,
                id,
                field: Some("folder_id"),
            },
            other => other,
        })?;
        caller.require(&folder, granted, Permissions::CREATE)?;
        // The tenant's policy applies to connections created from now on.
        let policy = self.store.policy(&caller.tenant.id).await?;
        let policy = Policy {
            tenant_name: &caller.tenant.name,
            record: &policy,
        };
        let loaded = self.catalog.get(&new.connector).ok_or_else(|| {
            // Only the connectors this tenant may use: the others are absent for it.
            let known: Vec<String> = self
                .catalog
                .running()
                .iter()
                .map(|c| c.connector.manifest().name.clone())
                .filter(|name| policy.connector_enabled(name))
                .collect();
            Error::invalid_field(
                "connector",
                format!(
                    "no connector `{}` is installed; available: {}",
                    new.connector,
                    known.join(", ")
                ),
            )
        })?;
        let manifest = loaded.connector.manifest();
        policy.require_enabled(&new.connector)?;
        let (mut values, mut refs) = check::split_inputs(new.fields);
        let auth = new.auth.as_deref();
        // The scheme is checked against the policy before anything is read from a vault
        // or asked of a provider (an unknown scheme is reported by the field checks).
        let scheme = match auth {
            Some(id) => manifest.scheme(id),
            None if manifest.auth_schemes.len() == 1 => manifest.auth_schemes.first(),
            None => None,
        };
        let mut tenant_app = None;
        if let Some(scheme) = scheme {
            policy.require_new_connection(&new.connector, scheme)?;
            tenant_app = apply_tenant_app(
                &self.store,
                caller,
                manifest,
                &scheme.id,
                &mut values,
                &refs,
            )
            .await?;
        }
        if !refs.is_empty() {
            // The fields first: a reference on a field that cannot take one reads no store.
            check::check(manifest, auth, &values, &refs, &BTreeMap::new())?;
        }
        // References are resolved now: one that points nowhere creates nothing.
        let resolved = self.resolve_given(caller, &mut refs).await?;
        let checked = check::check(manifest, auth, &values, &refs, &resolved)?;
        let provider = self.oauth_provider(manifest, &checked, tenant_app.as_ref())?;
        let (health, tokens) = match &provider {
            None => (HealthStatus::Unknown, None),
            Some(p) if matches!(p.grant, Grant::Code { .. }) => {
                (HealthStatus::PendingAuthorization, None)
            }
            Some(p) => (HealthStatus::Healthy, Some(self.request_tokens(p).await?)),
        };
        let id = self
            .store
            .create_connection(NewConnection {
                tenant_id: caller.tenant.id.clone(),
                folder_id: folder.id.clone(),
                created_by: caller.principal.id.clone(),
                connector: new.connector.clone(),
                auth: checked.auth,
                name: new.name.trim().to_owned(),
                description: new.description,
                fields: checked.fields,
                secrets: checked.secrets,
                secret_refs: checked.refs,
                poll_interval_seconds: new.poll_interval_seconds,
                health,
                tokens,
                tenant_app,
            })
            .await?;
        tracing::info!(connection = %id, connector = %new.connector, folder = %folder.id, "connection created");
        let authorization = match &provider {
            Some(p) if matches!(p.grant, Grant::Code { .. }) => {
                Some(self.start_consent(caller, &id, p).await?)
            }
            _ => None,
        };
        self.changed(caller, &id, authorization).await
    }

    /// Edits a connection `caller` may edit. Stored secrets carry over, except where the
    /// edit changes where they are sent (then they must be given again); OAuth tokens are
    /// dropped when the client, endpoints or scopes they were granted for change.
    #[tracing::instrument(skip_all, fields(connection = %id))]
    pub async fn update(&self, caller: &Caller, id: &str, edit: Update) -> Result<Changed> {
        let record = self.authorized(caller, id, Permissions::EDIT).await?;
        if let Some(name) = &edit.name {
            check_name(name)?;
        }
        if let Some(poll) = edit.poll_interval_seconds {
            check_poll_interval(poll)?;
        }
        let loaded = self.loaded(&record)?;
        let manifest = loaded.connector.manifest();
        let credentials_changed = edit.fields.is_some() || edit.auth.is_some();
        let mut values: BTreeMap<String, Secret> = record
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.as_str())))
            .collect();
        let auth = edit.auth.clone().unwrap_or_else(|| record.auth.clone());
        let stored_secrets = self.store.connection_secrets(&record.id).await?;
        let kept_secrets: Vec<String> = stored_secrets
            .keys()
            .chain(record.secret_refs.keys())
            .cloned()
            .collect();
        values.extend(stored_secrets);
        let mut refs = record.secret_refs.clone();
        // What the edit sets: values, references, and clears.
        let mut given_refs = BTreeMap::new();
        let mut given: BTreeMap<String, Option<Secret>> = BTreeMap::new();
        for (name, input) in edit.fields.clone().unwrap_or_default() {
            match input {
                Some(FieldInput::Reference(r)) => {
                    given_refs.insert(name.clone(), r);
                    given.insert(name, Some(Secret::new("")));
                }
                Some(FieldInput::Value(v)) => {
                    given.insert(name, Some(v));
                }
                None => {
                    given.insert(name, None);
                }
            }
        }
        let given_fields = edit.fields.is_some().then_some(&given);
        if let Some(changed) = destination_change(manifest, &record, &auth, given_fields) {
            // Where the credentials go changes: a stored secret (or a reference to one)
            // must not follow silently (an editor who does not know it could otherwise
            // send it to a host of their choice).
            if let Some(missing) = kept_secrets.iter().find(|name| {
                manifest.field(name).is_some_and(|f| f.applies_to(&auth))
                    && !given_fields.is_some_and(|f| f.get(*name).is_some_and(Option::is_some))
            }) {
                return Err(Error::invalid_field(
                    format!("fields.{missing}"),
                    format!(
                        "changing `{changed}` changes where this connection's credentials are sent; give `{missing}` again in the same request"
                    ),
                ));
            }
        }
        if auth != record.auth
            && let Some(scheme) = manifest.scheme(&auth)
        {
            // Another scheme is a new way in: the tenant's policy must allow it (edits
            // that keep the scheme are not checked, so existing connections keep working).
            let policy = self.store.policy(&caller.tenant.id).await?;
            Policy {
                tenant_name: &caller.tenant.name,
                record: &policy,
            }
            .require_new_connection(&record.connector, scheme)?;
        }
        if auth != record.auth {
            // A new scheme starts from the values it shares with the old one (secret ones
            // included: `api_key` moving from a header to the query stays the same key):
            // drop the fields that do not belong to it.
            values.retain(|name, _| manifest.field(name).is_some_and(|f| f.applies_to(&auth)));
            refs.retain(|name, _| manifest.field(name).is_some_and(|f| f.applies_to(&auth)));
        }
        for (name, value) in &given {
            refs.remove(name);
            values.remove(name);
            if let Some(r) = given_refs.get(name) {
                refs.insert(name.clone(), r.clone());
            } else if let Some(v) = value {
                values.insert(name.clone(), v.clone());
            }
        }
        // New references are read now, so one that points nowhere is refused; those kept
        // are not (an edit of the name works while a store is down).
        if !given_refs.is_empty() {
            check::check(manifest, Some(&auth), &values, &refs, &BTreeMap::new())?;
        }
        let resolved = self.resolve_given(caller, &mut given_refs).await?;
        refs.extend(given_refs);
        let checked = check::check(manifest, Some(&auth), &values, &refs, &resolved)?;
        // OAuth tokens belong to the client, endpoints and scopes they were granted for:
        // an edit of any of those drops them, and the connection is authorized again.
        let drop_tokens = (is_oauth(manifest, &record.auth) || is_oauth(manifest, &checked.auth))
            && (checked.auth != record.auth
                || oauth_inputs(manifest, &checked.auth).iter().any(|name| {
                    given.get(name).is_some_and(|v| {
                        v.as_ref().map(Secret::expose)
                            != record.fields.get(name).map(String::as_str)
                            || manifest.field(name).is_some_and(|f| f.secret)
                    })
                }));
        // Bringing an app of one's own ends the use of the tenant's.
        let tenant_app = record.tenant_app.clone().filter(|_| {
            ![CLIENT_ID_FIELD, CLIENT_SECRET_FIELD]
                .iter()
                .any(|f| given.contains_key(*f))
        });
        if drop_tokens {
            // The new settings must be usable (an OAuth app, valid endpoints) before the
            // current grant is given up.
            self.oauth_provider(manifest, &checked, tenant_app.as_ref())?;
        }
        let health = match manifest.scheme(&checked.auth).map(|s| &s.kind) {
            Some(AuthKind::Oauth2Code { .. }) if drop_tokens => HealthStatus::PendingAuthorization,
            Some(AuthKind::Oauth2Code { .. }) => record.health.status,
            _ => HealthStatus::Unknown,
        };
        let new = NewConnection {
            tenant_id: record.tenant_id.clone(),
            folder_id: record.folder_id.clone(),
            created_by: record.created_by.clone(),
            connector: record.connector.clone(),
            auth: checked.auth,
            name: edit
                .name
                .map(|n| n.trim().to_owned())
                .unwrap_or(record.name),
            description: edit.description.unwrap_or(record.description),
            fields: checked.fields,
            secrets: checked.secrets,
            secret_refs: checked.refs,
            poll_interval_seconds: edit
                .poll_interval_seconds
                .unwrap_or(record.poll_interval_seconds),
            health,
            tokens: None,
            tenant_app,
        };
        self.store
            .update_connection(id, &new, credentials_changed || drop_tokens, drop_tokens)
            .await?;
        if drop_tokens {
            self.oauth.forget(id);
        }
        tracing::info!(connection = %id, credentials_changed, "connection edited");
        self.changed(caller, id, None).await
    }

    /// Authorizes an OAuth connection again, keeping its id (automations that use it keep
    /// working). The authorization code grant answers with the consent to finish; the
    /// others run their grant at once.
    #[tracing::instrument(skip_all, fields(connection = %id))]
    pub async fn reconnect(&self, caller: &Caller, id: &str) -> Result<Changed> {
        let record = self.authorized(caller, id, Permissions::EDIT).await?;
        let loaded = self.loaded(&record)?;
        let manifest = loaded.connector.manifest();
        if !is_oauth(manifest, &record.auth) {
            return Err(Error::invalid_field(
                "auth",
                format!(
                    "connection `{id}` uses auth scheme `{}`, not OAuth 2.0: give new credentials with PATCH /v1/connections/{id}",
                    record.auth
                ),
            ));
        }
        let secrets = self.grant_secrets(&record).await?;
        let provider = self.provider_for(manifest, &record, &secrets)?;
        let authorization = if matches!(provider.grant, Grant::Code { .. }) {
            Some(self.start_consent(caller, id, &provider).await?)
        } else {
            let tokens = self.request_tokens(&provider).await?;
            self.store.authorize_connection(id, &tokens).await?;
            self.oauth.forget(id);
            tracing::info!(connection = %id, "connection reconnected");
            None
        };
        self.changed(caller, id, authorization).await
    }

    /// The provider settings of a stored OAuth connection, with its secret values.
    pub fn provider_for(
        &self,
        manifest: &Manifest,
        record: &ConnectionRecord,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<Provider> {
        Ok(provider_of(
            &self.oauth,
            manifest,
            &record.auth,
            &record.fields,
            secrets,
            record.tenant_app.as_ref(),
        )?)
    }

    /// Deletes a connection `caller` may delete.
    #[tracing::instrument(skip_all, fields(connection = %id))]
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorized(caller, id, Permissions::DELETE).await?;
        self.store.delete_connection(&caller.tenant.id, id).await?;
        self.oauth.forget(id);
        tracing::info!(connection = %id, "connection deleted");
        Ok(())
    }
}

/// The credential store references an edit or a creation gives (for the audit log:
/// pointing a secret field at a vault is an administrator's act).
pub fn references<'a>(
    fields: impl IntoIterator<Item = (&'a String, Option<&'a FieldInput>)>,
) -> BTreeMap<String, CredentialRef> {
    fields
        .into_iter()
        .filter_map(|(name, input)| match input {
            Some(FieldInput::Reference(r)) => Some((name.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

/// The setting an edit changes that decides where credentials are sent: the auth scheme,
/// or a field an allowed-host pattern is built from.
fn destination_change(
    manifest: &Manifest,
    record: &ConnectionRecord,
    auth: &str,
    fields: Option<&BTreeMap<String, Option<Secret>>>,
) -> Option<String> {
    if auth != record.auth {
        return Some("auth".into());
    }
    // The OAuth endpoints too: a client secret goes to the token endpoint.
    let oauth_urls = manifest
        .scheme(auth)
        .map(|s| s.kind.urls())
        .unwrap_or_default();
    let host_fields: Vec<&str> = manifest
        .allowed_hosts
        .iter()
        .map(String::as_str)
        .chain(oauth_urls)
        .flat_map(placeholders)
        .collect();
    fields?
        .iter()
        .find(|(name, value)| {
            host_fields.contains(&name.as_str())
                && value.as_ref().map(Secret::expose)
                    != record.fields.get(*name).map(String::as_str)
        })
        .map(|(name, _)| format!("fields.{name}"))
}

/// The fields an OAuth scheme's grant depends on: the app, the scopes, the user's
/// password, and those its endpoints are built from.
fn oauth_inputs(manifest: &Manifest, auth: &str) -> Vec<String> {
    let mut names: Vec<String> = [CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD]
        .map(str::to_owned)
        .to_vec();
    let kind = manifest.scheme(auth).map(|s| &s.kind);
    if let Some(AuthKind::Oauth2Password {
        username_field,
        password_field,
        ..
    }) = kind
    {
        names.push(username_field.clone());
        names.push(password_field.clone());
    }
    for url in kind.map(AuthKind::urls).unwrap_or_default() {
        names.extend(placeholders(url).into_iter().map(str::to_owned));
    }
    names
}
