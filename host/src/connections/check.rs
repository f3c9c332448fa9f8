//! Checking what a user gives for a connection against its connector's manifest: the auth
//! scheme, the fields, credential store references, and the tenant's predefined OAuth app.

use super::error::{Error, Result};
use crate::access::Caller;
use crate::auth::OAuth;
use crate::auth::oauth::{Provider, SetupError};
use crate::capabilities::allowed_hosts::{AllowListError, placeholders};
use crate::credentials::tokens::BoxFuture;
use crate::credentials::{CredentialFailure, Secret, TokenSource};
use crate::runtime::connection::ConnectionError;
use crate::runtime::manifest::{
    AuthKind, AuthScheme, CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD,
};
use crate::runtime::{ConnectionSpec, Manifest, PreparedConnection};
use crate::store::{Store, TenantAppBinding};
use crate::vault::CredentialRef;
use std::collections::BTreeMap;
use std::sync::Arc;

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
) -> Result<Checked> {
    let mut all = values.clone();
    for name in refs.keys() {
        if let Some(field) = manifest.field(name)
            && !field.secret
        {
            return Err(Error::invalid_field(
                format!("fields.{name}"),
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
                AllowListError::MissingField { field, .. }
                | AllowListError::BadFieldValue { field, .. },
            ) => format!("fields.{field}"),
            _ => "fields".to_owned(),
        };
        Error::invalid_field(field, e.to_string())
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
        .flat_map(placeholders)
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
    store: &Store,
    caller: &Caller,
    manifest: &Manifest,
    auth: &str,
    values: &mut BTreeMap<String, Secret>,
    refs: &BTreeMap<String, CredentialRef>,
) -> Result<Option<TenantAppBinding>> {
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
    let Some((app, secret)) = store
        .tenant_oauth_app(&caller.tenant.id, &manifest.name)
        .await?
    else {
        return Ok(None);
    };
    tenant_app_usable(manifest, scheme, &app.endpoint_fields).map_err(|reason| {
        Error::invalid_field(
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
            return Err(Error::invalid_field(
                format!("fields.{name}"),
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
    oauth: &OAuth,
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
    oauth.provider(&manifest.name, scheme, &plain, |n| secrets.get(n).cloned())
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
