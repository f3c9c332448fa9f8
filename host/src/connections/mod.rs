//! Connections as the service handles them: checking what a user gives against the
//! connector's manifest, testing a connection and recording its health, invoking actions
//! and recording every invocation, and the periodic health check.

use crate::access::Caller;
use crate::api::{ApiError, Service};
use crate::auth::oauth::{Provider, SetupError};
use crate::catalog::LoadedConnector;
use crate::credentials::tokens::BoxFuture;
use crate::credentials::{CredentialFailure, Secret, TokenSource};
use crate::runtime::connection::ConnectionError;
use crate::runtime::manifest::{
    AuthKind, AuthScheme, CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD,
};
use crate::runtime::{ConnectionSpec, ConnectorError, InvokeError, Manifest, PreparedConnection};
use crate::store::{
    ConnectionRecord, Health, HealthStatus, InvocationError, InvocationRecord, TenantAppBinding,
    Timestamp, new_id,
};
use crate::vault::{CredentialRef, ResolveError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's content, checked against its connector's manifest.
#[derive(Debug)]
pub struct Checked {
    pub auth: String,
    /// Non-secret values the user gave (defaults are not stored, so they follow the
    /// connector).
    pub fields: BTreeMap<String, String>,
    /// Secret values to store (sealed).
    pub secrets: BTreeMap<String, Secret>,
    /// Secret fields whose value lives in a credential store: only the reference is stored.
    pub refs: BTreeMap<String, CredentialRef>,
    /// The values those references resolved to, when they were resolved (for a grant run
    /// now); never stored.
    pub resolved: BTreeMap<String, Secret>,
}

impl Checked {
    /// Every secret value: those given, those resolved from stores, and a stand-in for
    /// references not read (an edit that only checks the settings reads no store).
    pub fn all_secrets(&self) -> BTreeMap<String, Secret> {
        let mut all = self.secrets.clone();
        for name in self.refs.keys() {
            let value = self.resolved.get(name).cloned();
            all.insert(
                name.clone(),
                value.unwrap_or_else(|| Secret::new(UNRESOLVED)),
            );
        }
        all
    }
}

/// A field's value as a request gives it: the value, or (for a secret field) where it
/// lives in a credential store, as `{"store": …, "path": …, "key": …}`.
#[derive(Debug, Clone)]
pub enum FieldInput {
    Value(Secret),
    Reference(CredentialRef),
}

impl<'de> serde::Deserialize<'de> for FieldInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FieldInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a string, or a credential store reference {\"store\", \"path\", \"key\"}",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldInput, E> {
                Ok(FieldInput::Value(Secret::new(v)))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FieldInput, E> {
                Ok(FieldInput::Value(Secret::new(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<FieldInput, A::Error> {
                <CredentialRef as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )
                .map(FieldInput::Reference)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Splits a request's field inputs into values and credential store references.
pub fn split_inputs(
    inputs: BTreeMap<String, FieldInput>,
) -> (BTreeMap<String, Secret>, BTreeMap<String, CredentialRef>) {
    let mut values = BTreeMap::new();
    let mut refs = BTreeMap::new();
    for (name, input) in inputs {
        match input {
            FieldInput::Value(v) => {
                values.insert(name, v);
            }
            FieldInput::Reference(r) => {
                refs.insert(name, r);
            }
        }
    }
    (values, refs)
}

/// Stands for a reference's value when an edit checks a connection without reading the
/// store (the reference was checked when it was given): it is never stored or sent.
const UNRESOLVED: &str = "\u{1}credential-store-reference";

/// Checks a connection's auth scheme and field values against `manifest`. Each problem is a
/// 400 naming the field (`auth`, or `fields.<name>`). `refs` name secret fields whose
/// value lives in a credential store; `resolved` holds the values of those read already.
pub fn check(
    manifest: &Manifest,
    auth: Option<&str>,
    values: &BTreeMap<String, Secret>,
    refs: &BTreeMap<String, CredentialRef>,
    resolved: &BTreeMap<String, Secret>,
) -> Result<Checked, ApiError> {
    let mut all = values.clone();
    for name in refs.keys() {
        if let Some(field) = manifest.field(name)
            && !field.secret
        {
            return Err(ApiError::invalid_field(
                &format!("fields.{name}"),
                format!(
                    "field `{name}` is not secret: only secret fields can take their value from a credential store; give the value itself"
                ),
            ));
        }
        all.insert(
            name.clone(),
            resolved
                .get(name)
                .cloned()
                .unwrap_or_else(|| Secret::new(UNRESOLVED)),
        );
    }
    let spec = ConnectionSpec {
        auth: auth.map(str::to_owned),
        fields: all,
        access_token: None,
        token_source: Some(Arc::new(NotAuthorized)),
        owner: None,
    };
    let prepared = PreparedConnection::prepare(manifest, &spec).map_err(|e| {
        let field = match &e {
            ConnectionError::UnknownAuthScheme { .. }
            | ConnectionError::AuthSchemeRequired { .. } => "auth".to_owned(),
            ConnectionError::UnknownField { name, .. }
            | ConnectionError::FieldNotForScheme { name, .. }
            | ConnectionError::MissingField { name } => format!("fields.{name}"),
            ConnectionError::Auth(crate::auth::AuthError::MissingField(name)) => {
                format!("fields.{name}")
            }
            ConnectionError::AllowList(
                crate::capabilities::allowed_hosts::AllowListError::MissingField { field, .. }
                | crate::capabilities::allowed_hosts::AllowListError::BadFieldValue { field, .. },
            ) => format!("fields.{field}"),
            _ => "fields".to_owned(),
        };
        ApiError::invalid_field(&field, e.to_string())
    })?;
    let scheme = prepared.scheme().to_owned();
    let mut fields = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (name, value) in values {
        if value.is_empty() || refs.contains_key(name) {
            continue;
        }
        match manifest.field(name) {
            Some(f) if f.secret => {
                secrets.insert(name.clone(), value.clone());
            }
            _ => {
                fields.insert(name.clone(), value.expose().to_owned());
            }
        }
    }
    Ok(Checked {
        auth: scheme,
        fields,
        secrets,
        refs: refs.clone(),
        resolved: resolved
            .iter()
            .filter(|(name, _)| refs.contains_key(*name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

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
pub async fn resolve_given(
    service: &Service,
    caller: &Caller,
    refs: &mut BTreeMap<String, CredentialRef>,
) -> Result<BTreeMap<String, Secret>, ApiError> {
    let mut resolved = BTreeMap::new();
    if !refs.is_empty() {
        caller.require_admin("point a secret field at a credential store")?;
    }
    for (name, r) in refs.iter_mut() {
        let found = match service.vaults.reference_for(r, &caller.tenant.id) {
            Ok(canonical) => {
                *r = canonical;
                service.vaults.resolve(r).await
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(v) => {
                resolved.insert(name.clone(), v.value);
            }
            Err(e) if e.is_reference_problem() => {
                return Err(ApiError::invalid_field(
                    &format!("fields.{name}"),
                    format!("field `{name}`: {e}"),
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "credential_store_unavailable",
                    format!("field `{name}`: {e}"),
                )
                .detail("field", format!("fields.{name}"))
                .detail("store", r.store.clone()));
            }
        }
    }
    Ok(resolved)
}

/// A value a connection took from a credential store for one use.
#[derive(Debug, Clone)]
pub struct VaultUse {
    pub field: String,
    pub reference: CredentialRef,
    value: Secret,
    generation: u64,
}

impl VaultUse {
    fn describe(&self) -> String {
        format!(
            "`{}` (credential store `{}`, `{}` key `{}`)",
            self.field, self.reference.store, self.reference.path, self.reference.key
        )
    }
}

fn vault_failure(field: &str, e: &ResolveError) -> CredentialFailure {
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

/// A connection's secret values: those stored (sealed), and those its references resolve
/// to (from the cache, or read from their store).
pub async fn secrets_of(
    service: &Service,
    record: &ConnectionRecord,
) -> Result<Result<(BTreeMap<String, Secret>, Vec<VaultUse>), CredentialFailure>, ApiError> {
    let mut secrets = service.store.connection_secrets(&record.id).await?;
    let mut uses = Vec::new();
    for (field, r) in &record.secret_refs {
        // Checked again at every use: the operator may have closed the store to the
        // tenant, or narrowed its prefix, since the reference was given.
        let found = match service.vaults.reference_for(r, &record.tenant_id) {
            Ok(canonical) => service.vaults.resolve(&canonical).await,
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
/// had is the API error saying why: 502 `credential_store_unavailable` for a store that
/// cannot be read, 409 with the failure's code for a reference that no longer resolves.
pub async fn grant_secrets(
    service: &Service,
    record: &ConnectionRecord,
) -> Result<BTreeMap<String, Secret>, ApiError> {
    match secrets_of(service, record).await? {
        Ok((secrets, _)) => Ok(secrets),
        Err(failure) => {
            let (status, code) = match failure {
                CredentialFailure::Unavailable { .. } => (
                    axum::http::StatusCode::BAD_GATEWAY,
                    "credential_store_unavailable",
                ),
                _ => (axum::http::StatusCode::CONFLICT, failure.code()),
            };
            Err(ApiError::new(status, code, failure.to_string()))
        }
    }
}

/// Stands in for the token source when a connection is only checked against its
/// connector (its grant comes later): every request would fail with the reason.
#[derive(Debug)]
struct NotAuthorized;

impl TokenSource for NotAuthorized {
    fn current(&self) -> BoxFuture<'_, Result<Secret, CredentialFailure>> {
        Box::pin(async {
            Err(CredentialFailure::NeedsReauthentication {
                reason: "the connection is not authorized at the provider yet; reconnect it".into(),
            })
        })
    }
    fn rejected<'a>(&'a self, _: &'a Secret) -> BoxFuture<'a, Result<Secret, CredentialFailure>> {
        self.current()
    }
}

/// The fields a tenant's predefined OAuth app must fix for `scheme`: those its OAuth
/// endpoints are built from (the app's secret goes there) and, for the client credentials
/// grant, those its allowed hosts are built from (the token is the app's own, not a user's).
fn tenant_app_fixed_fields<'m>(manifest: &'m Manifest, scheme: &'m AuthScheme) -> Vec<&'m str> {
    let hosts: Vec<&str> = match scheme.kind {
        AuthKind::Oauth2ClientCredentials { .. } => {
            manifest.allowed_hosts.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    };
    let mut fields: Vec<&str> = scheme
        .kind
        .urls()
        .into_iter()
        .chain(hosts)
        .flat_map(crate::capabilities::allowed_hosts::placeholders)
        .collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// Whether a tenant's predefined OAuth app may be used with `scheme`: only when the
/// scheme takes an app (`client_id` is one of its fields) and the app fixes every field of
/// [`tenant_app_fixed_fields`]. A field the user sets would let whoever creates the
/// connection send the tenant's client secret (or the app's token) to a host of their
/// choosing.
pub fn tenant_app_usable(
    manifest: &Manifest,
    scheme: &AuthScheme,
    endpoint_fields: &BTreeMap<String, String>,
) -> Result<(), String> {
    let takes_app = manifest
        .field(CLIENT_ID_FIELD)
        .is_some_and(|f| f.applies_to(&scheme.id));
    if !takes_app {
        return Err(format!(
            "auth scheme `{}` does not take an OAuth app",
            scheme.id
        ));
    }
    match tenant_app_fixed_fields(manifest, scheme)
        .into_iter()
        .find(|f| !endpoint_fields.contains_key(*f))
    {
        Some(field) => Err(format!(
            "auth scheme `{}` sends the app's credentials (or its token) to an address built from field `{field}`, which the app does not fix (give it in the app's `endpoint_fields`)",
            scheme.id
        )),
        None => Ok(()),
    }
}

/// Checks, before a token is asked for, that a connection using its tenant's OAuth app
/// still sends it only where the app's operator said: every field of
/// [`tenant_app_fixed_fields`] (of the version running now) holds the value the app fixed,
/// and the scopes asked for are among the app's (when it names any).
pub fn check_tenant_app_binding(
    manifest: &Manifest,
    scheme: &AuthScheme,
    binding: &TenantAppBinding,
    plain: &BTreeMap<String, String>,
) -> Result<(), String> {
    for field in tenant_app_fixed_fields(manifest, scheme) {
        let fixed = binding.endpoint_fields.get(field);
        if fixed.is_none() || fixed != plain.get(field) {
            return Err(format!(
                "this connection uses its tenant's OAuth app, which is only sent to the endpoints its operator fixed; field `{field}` is not one of them (ask an operator to fix it in the app's `endpoint_fields`, or bring your own app)"
            ));
        }
    }
    if !binding.scopes.is_empty()
        && let Some(asked) = plain.get(SCOPES_FIELD)
    {
        let mandatory = match &scheme.kind {
            AuthKind::Oauth2Code {
                mandatory_scopes, ..
            }
            | AuthKind::Oauth2Password {
                mandatory_scopes, ..
            }
            | AuthKind::Oauth2ClientCredentials {
                mandatory_scopes, ..
            } => mandatory_scopes.as_slice(),
            _ => &[],
        };
        if let Some(extra) = asked
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .find(|s| !binding.scopes.iter().any(|a| a == s) && !mandatory.iter().any(|m| m == s))
        {
            return Err(format!(
                "scope `{extra}` is not among those the tenant's OAuth app allows ({})",
                binding.scopes.join(" ")
            ));
        }
    }
    Ok(())
}

/// Refuses a predefined OAuth app for a connector none of whose schemes can use it.
pub fn check_tenant_app_fits(
    manifest: &Manifest,
    endpoint_fields: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut reasons = Vec::new();
    for scheme in &manifest.auth_schemes {
        match tenant_app_usable(manifest, scheme, endpoint_fields) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(format!(
        "connector `{}` cannot use this OAuth app: {}",
        manifest.name,
        reasons.join("; ")
    ))
}

/// Gives a new connection the tenant's predefined OAuth app for its connector, when the
/// user brings no app of their own: the app's client id, its endpoint fields (and scopes,
/// unless the user chose some) as fields, and its secret as the connection's sealed
/// `client_secret`, which the user never sees. Returns what the connection keeps of the app,
/// when one was applied. An app that cannot serve this scheme is an error, not a silent
/// fall-back to another app.
pub async fn apply_tenant_app(
    service: &Service,
    caller: &Caller,
    manifest: &Manifest,
    auth: &str,
    values: &mut BTreeMap<String, Secret>,
    refs: &BTreeMap<String, CredentialRef>,
) -> Result<Option<TenantAppBinding>, ApiError> {
    let Some(scheme) = manifest.scheme(auth) else {
        return Ok(None);
    };
    let takes_app = manifest
        .field(CLIENT_ID_FIELD)
        .is_some_and(|f| f.applies_to(&scheme.id));
    if !is_oauth(manifest, auth)
        || !takes_app
        || values.contains_key(CLIENT_ID_FIELD)
        || values.contains_key(CLIENT_SECRET_FIELD)
        || refs.contains_key(CLIENT_SECRET_FIELD)
    {
        return Ok(None);
    }
    let Some((app, secret)) = service
        .store
        .tenant_oauth_app(&caller.tenant.id, &manifest.name)
        .await?
    else {
        return Ok(None);
    };
    tenant_app_usable(manifest, scheme, &app.endpoint_fields).map_err(|reason| {
        ApiError::invalid_field(
            "auth",
            format!(
                "the OAuth app of tenant `{}` for connector `{}` cannot be used: {reason}; bring your own app (`client_id`, `client_secret`) or ask an operator",
                caller.tenant.name, manifest.name
            ),
        )
    })?;
    for (name, fixed) in &app.endpoint_fields {
        if let Some(given) = values.get(name)
            && given.expose() != fixed
        {
            return Err(ApiError::invalid_field(
                &format!("fields.{name}"),
                format!(
                    "field `{name}` is fixed by the OAuth app of tenant `{}` for connector `{}` ({fixed}); leave it out, or bring your own app (`client_id`, `client_secret`)",
                    caller.tenant.name, manifest.name
                ),
            ));
        }
        values.insert(name.clone(), Secret::new(fixed.as_str()));
    }
    values.insert(CLIENT_ID_FIELD.into(), Secret::new(app.client_id));
    values.insert(CLIENT_SECRET_FIELD.into(), secret);
    if !app.scopes.is_empty() && !values.contains_key(SCOPES_FIELD) {
        values.insert(SCOPES_FIELD.into(), Secret::new(app.scopes.join(" ")));
    }
    Ok(Some(TenantAppBinding {
        endpoint_fields: app.endpoint_fields,
        scopes: app.scopes,
    }))
}

/// Whether `auth` names an OAuth 2.0 scheme of `manifest`.
pub fn is_oauth(manifest: &Manifest, auth: &str) -> bool {
    manifest.scheme(auth).is_some_and(|s| {
        matches!(
            s.kind,
            AuthKind::Oauth2Code { .. }
                | AuthKind::Oauth2Password { .. }
                | AuthKind::Oauth2ClientCredentials { .. }
        )
    })
}

/// The provider settings of an OAuth connection from its checked values.
pub fn provider_of(
    service: &Service,
    manifest: &Manifest,
    auth: &str,
    fields: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, Secret>,
    tenant_app: Option<&TenantAppBinding>,
) -> Result<Provider, SetupError> {
    let scheme = manifest
        .scheme(auth)
        .ok_or_else(|| SetupError::NotOAuth(auth.to_owned()))?;
    let mut plain = fields.clone();
    for f in manifest.fields.iter().filter(|f| f.applies_to(auth)) {
        if let Some(d) = &f.default_value {
            plain.entry(f.name.clone()).or_insert_with(|| d.clone());
        }
    }
    if let Some(binding) = tenant_app {
        check_tenant_app_binding(manifest, scheme, binding, &plain)
            .map_err(SetupError::TenantApp)?;
    }
    service
        .oauth
        .provider(&manifest.name, scheme, &plain, |n| secrets.get(n).cloned())
}

/// A connection ready for the runtime, and the values it took from credential stores.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub connection: Arc<PreparedConnection>,
    pub vault: Vec<VaultUse>,
}

/// The record's values as the runtime takes them; the inner error (`connection`) when they
/// no longer fit the connector (a new version of it may require another field), when an
/// OAuth connection cannot reach its provider's settings, or when a credential store
/// cannot give a value.
pub async fn prepare(
    service: &Service,
    loaded: &LoadedConnector,
    record: &ConnectionRecord,
) -> Result<Result<Prepared, InvokeError>, ApiError> {
    let credentials_error = |failure| InvokeError::Credentials {
        connector: loaded.connector.id().clone(),
        failure,
    };
    let (secrets, vault) = match secrets_of(service, record).await? {
        Ok(found) => found,
        Err(failure) => return Ok(Err(credentials_error(failure))),
    };
    let manifest = loaded.connector.manifest();
    let token_source = if is_oauth(manifest, &record.auth) {
        match provider_of(
            service,
            manifest,
            &record.auth,
            &record.fields,
            &secrets,
            record.tenant_app.as_ref(),
        ) {
            Ok(provider) => Some(service.oauth.source(&record.id, provider)),
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

/// Whether a run's result says the API refused the connection's credentials: the
/// connector said so (`unauthorized`), or the host saw a 401 or 403 to a request carrying
/// them.
fn refused<T>(result: &Result<T, InvokeError>, connection: &PreparedConnection) -> bool {
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
fn refused_grant<T>(result: &Result<T, InvokeError>) -> bool {
    matches!(
        result,
        Err(InvokeError::Credentials {
            failure: CredentialFailure::NeedsReauthentication { .. },
            ..
        })
    )
}

/// Runs `run` on the connection. When the API refuses a value that came from a credential
/// store, the value is dropped from the cache and read again; if the store holds a new
/// one, `run` runs once more with it. A refusal of a value the store still holds, or of
/// the new one, fails with `vault_credential_invalid`. Also returns the connection used
/// last, to scrub what is said of the result.
pub async fn run_rotating<T, F, Fut>(
    service: &Service,
    loaded: &LoadedConnector,
    record: &ConnectionRecord,
    run: F,
) -> Result<(Result<T, InvokeError>, Option<Arc<PreparedConnection>>), ApiError>
where
    F: Fn(Arc<PreparedConnection>) -> Fut,
    Fut: std::future::Future<Output = Result<T, InvokeError>>,
{
    let first = match prepare(service, loaded, record).await? {
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
        match service
            .vaults
            .reresolve(&used.reference, used.generation, &used.value)
            .await
        {
            Ok(fresh) => renewed |= fresh.value != used.value,
            Err(e) => {
                let failure = vault_failure(&used.field, &e);
                let failure = match failure {
                    CredentialFailure::Unavailable { reason } => CredentialFailure::Unavailable {
                        reason: format!(
                            "the API refused the connection's credentials, and reading them again failed: {reason}"
                        ),
                    },
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
    service.metrics.vault_retry();
    let second = match prepare(service, loaded, record).await? {
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
        service.store.set_health(&record.id, &health).await?;
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
        "the connection is not authorized at the provider yet; finish the consent".into()
    });
    Some(InvokeError::Credentials {
        connector: loaded.connector.id().clone(),
        failure: CredentialFailure::NeedsReauthentication {
            reason: if reason.contains("reconnect") {
                reason
            } else {
                format!("{reason} (reconnect the connection)")
            },
        },
    })
}

/// The connector a connection uses, or a 503 when it is not loaded.
pub fn loaded(
    service: &Service,
    record: &ConnectionRecord,
) -> Result<Arc<LoadedConnector>, ApiError> {
    service.catalog.get(&record.connector).ok_or_else(|| {
        ApiError::unavailable(format!(
            "connector `{}` is not running in this service: it is not installed, or its installed version could not be loaded (see the service log); an operator can install it (`junction connector install`)",
            record.connector
        ))
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
    result: &Result<(), InvokeError>,
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

/// Runs the connector's connection test and records the connection's health.
#[tracing::instrument(skip_all, fields(connection = %record.id, connector = %record.connector))]
pub async fn test(service: &Service, record: &ConnectionRecord) -> Result<Health, ApiError> {
    let loaded = loaded(service, record)?;
    // An OAuth connection waiting for a (re)connect has nothing to test: its health says
    // so already, and asking the provider again would only repeat the refusal.
    if must_reauthenticate(&loaded, record).is_some() {
        let health = Health {
            checked_at: Some(Timestamp::now()),
            ..record.health.clone()
        };
        // Checked now, so the periodic check moves on to other connections.
        service.store.set_health(&record.id, &health).await?;
        return Ok(health);
    }
    let (result, connection) = run_rotating(service, &loaded, record, |prepared| {
        service.runtime.test_connection(&loaded.connector, prepared)
    })
    .await?;
    // A test that could not get an instance says nothing of the connection: its health
    // stays as it was.
    if let Err(e @ InvokeError::Busy { .. }) = &result {
        return Err(ApiError::busy(e.to_string()));
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
    service.store.set_health(&record.id, &health).await?;
    service.metrics.health_check(health.status.as_str());
    Ok(health)
}

/// Runs an action on a connection and records the invocation.
#[tracing::instrument(skip_all, fields(connection = %record.id, connector = %record.connector, action))]
pub async fn invoke(
    service: &Service,
    caller: &Caller,
    record: &ConnectionRecord,
    action: &str,
    input: &serde_json::Value,
) -> Result<(InvocationRecord, serde_json::Value), ApiError> {
    tracing::Span::current().record("action", action);
    let loaded = loaded(service, record)?;
    let id = loaded.connector.id().clone();
    let problems = loaded.check_input(action, input).ok_or_else(|| {
        let known: Vec<&str> = loaded
            .connector
            .manifest()
            .actions
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        ApiError::invalid_field(
            "action",
            format!(
                "connector {id} has no action `{action}`; its actions are: {}",
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
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!(
                "the input does not match the schema of action `{action}`: {}",
                summary.join("; ")
            ),
        )
        .detail(
            "errors",
            serde_json::to_value(&problems).unwrap_or_default(),
        ));
    }
    // Values that no longer fit the connector fail the invocation (`connection`), recorded
    // like any other failure; so does an OAuth connection waiting to be reconnected.
    let input_text = input.to_string();
    // The id is taken at the start, so ids (and the newest-first list) follow start times.
    let invocation_id = new_id("inv")?;
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let (result, connection) = match must_reauthenticate(&loaded, record) {
        Some(e) => (Err(e), None),
        None => {
            run_rotating(service, &loaded, record, |prepared| {
                service
                    .runtime
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
            connector: id.clone(),
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
    let record = InvocationRecord {
        id: invocation_id.clone(),
        tenant_id: caller.tenant.id.clone(),
        principal_id: caller.principal.id.clone(),
        connection_id: record.id.clone(),
        folder_id: record.folder_id.clone(),
        connector: id.name.clone(),
        connector_version: id.version.clone(),
        action: action.to_owned(),
        started_at,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        outcome: outcome.clone(),
        error,
    };
    service.metrics.invocation(&id.name, &outcome, elapsed);
    if let Err(e) = service.invocations.record(record.clone()).await {
        // The action ran (perhaps with effects upstream): its result is the caller's even
        // if its record could not be written.
        tracing::error!(invocation = %invocation_id, error = %e, "the invocation ran but could not be recorded");
    }
    match output {
        Ok(v) => Ok((record, v)),
        Err(e) => {
            let message = failure_message(&e, connection.as_deref());
            Err(ApiError::invocation(&e, &invocation_id, message))
        }
    }
}

/// Checks, every `interval`, the connections not checked for that long, until `stop`
/// turns true. A check in progress finishes before the loop ends.
#[tracing::instrument(name = "health_check", skip_all)]
pub async fn health_loop(
    service: Arc<Service>,
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
        let due = match service.store.connections_due_for_check(before, 50).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "health check: cannot list connections");
                continue;
            }
        };
        for record in due {
            // A test can take the whole invocation timeout: a stop does not wait for it.
            let checked = tokio::select! {
                checked = test(&service, &record) => checked,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match checked {
                Ok(health) => tracing::info!(
                    connection = %record.id,
                    health = health.status.as_str(),
                    "health check"
                ),
                // The instances are all busy: check it at a later round.
                Err(e) if e.code == "busy" => {
                    tracing::info!(connection = %record.id, "health check put off: every instance is busy");
                }
                Err(e) => {
                    tracing::warn!(connection = %record.id, error = %e.message, "health check failed");
                    // A connector that is not loaded: record it so the loop moves on.
                    let health = Health {
                        status: HealthStatus::Failing,
                        reason: Some(e.message),
                        checked_at: Some(Timestamp::now()),
                    };
                    if let Err(e) = service.store.set_health(&record.id, &health).await {
                        tracing::warn!(error = %e, "health check: cannot record health");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::manifest::{Field, Release};

    /// A connector with a code scheme whose token endpoint is `token_url` and a client
    /// credentials scheme at the same endpoint; its allowed host is `{base_url}`.
    fn manifest(token_url: &str) -> Manifest {
        let mut m = Manifest {
            name: "crm".into(),
            version: "1.0.0".into(),
            title: "CRM".into(),
            description: String::new(),
            release: Release::Ga,
            docs: String::new(),
            auth_schemes: vec![
                AuthScheme {
                    id: "oauth".into(),
                    title: "OAuth".into(),
                    kind: AuthKind::Oauth2Code {
                        authorize_url: "https://id.example.test/authorize".into(),
                        token_url: token_url.into(),
                        scopes: vec![],
                        mandatory_scopes: vec!["openid".into()],
                        pkce: true,
                        allow_own_app: true,
                    },
                },
                AuthScheme {
                    id: "machine".into(),
                    title: "Client credentials".into(),
                    kind: AuthKind::Oauth2ClientCredentials {
                        token_url: token_url.into(),
                        scopes: vec![],
                        mandatory_scopes: vec![],
                    },
                },
            ],
            fields: vec![Field {
                name: "base_url".into(),
                label: "URL".into(),
                description: String::new(),
                secret: false,
                required: false,
                default_value: Some("https://api.example.test".into()),
                schemes: vec![],
            }],
            allowed_hosts: vec!["{base_url}".into()],
            reveal_fields: vec![],
            actions: vec![],
            triggers: vec![],
        };
        m.add_oauth_fields();
        m
    }

    fn binding(fixed: &[(&str, &str)], scopes: &[&str]) -> TenantAppBinding {
        TenantAppBinding {
            endpoint_fields: fixed
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn plain(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_tenant_app_is_refused_when_a_later_version_builds_its_endpoint_from_a_free_field() {
        // Made with version 1, whose endpoints are fixed: nothing to fix.
        let v1 = manifest("https://id.example.test/token");
        let code = &v1.auth_schemes[0];
        let made = binding(&[], &[]);
        assert_eq!(tenant_app_usable(&v1, code, &made.endpoint_fields), Ok(()));
        let user = plain(&[("base_url", "https://evil.example.test")]);
        assert_eq!(check_tenant_app_binding(&v1, code, &made, &user), Ok(()));
        // Version 2 builds the token endpoint from `base_url`, which the user set: the
        // app's secret is not sent there.
        let v2 = manifest("{base_url}/oauth/token");
        let refused = check_tenant_app_binding(&v2, &v2.auth_schemes[0], &made, &user);
        assert!(refused.is_err_and(|e| e.contains("field `base_url`")));
        // Unless the operator fixed that field, to the value the connection holds.
        let fixed = binding(&[("base_url", "https://api.example.test")], &[]);
        let same = plain(&[("base_url", "https://api.example.test")]);
        assert_eq!(
            check_tenant_app_binding(&v2, &v2.auth_schemes[0], &fixed, &same),
            Ok(())
        );
        assert!(check_tenant_app_binding(&v2, &v2.auth_schemes[0], &fixed, &user).is_err());
    }

    #[test]
    fn client_credentials_with_a_tenant_app_also_need_the_allowed_hosts_fixed() {
        // The token is the app's own: it must not go to a host the user chose.
        let m = manifest("https://id.example.test/token");
        let machine = &m.auth_schemes[1];
        let refused = tenant_app_usable(&m, machine, &BTreeMap::new());
        assert!(refused.is_err_and(|e| e.contains("field `base_url`")));
        let fixed = binding(&[("base_url", "https://api.example.test")], &[]);
        assert_eq!(
            tenant_app_usable(&m, machine, &fixed.endpoint_fields),
            Ok(())
        );
        let moved = plain(&[("base_url", "https://evil.example.test")]);
        assert!(check_tenant_app_binding(&m, machine, &fixed, &moved).is_err());
        // The code grant's token is the user's: its allowed hosts are the user's business.
        assert_eq!(
            tenant_app_usable(&m, &m.auth_schemes[0], &BTreeMap::new()),
            Ok(())
        );
    }

    #[test]
    fn a_tenant_apps_scopes_are_a_ceiling() {
        let m = manifest("https://id.example.test/token");
        let code = &m.auth_schemes[0];
        let app = binding(&[], &["read", "write"]);
        let asked = |s: &str| plain(&[("scopes", s)]);
        assert_eq!(
            check_tenant_app_binding(&m, code, &app, &asked("read")),
            Ok(())
        );
        // The connector's mandatory scopes are always allowed.
        assert_eq!(
            check_tenant_app_binding(&m, code, &app, &asked("read openid")),
            Ok(())
        );
        let refused = check_tenant_app_binding(&m, code, &app, &asked("read admin"));
        assert!(refused.is_err_and(|e| e.contains("scope `admin`")));
        // An app that names no scopes sets no ceiling.
        let open = binding(&[], &[]);
        assert_eq!(
            check_tenant_app_binding(&m, code, &open, &asked("admin")),
            Ok(())
        );
    }
}
