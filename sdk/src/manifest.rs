//! The manifest builder. Actions are registered with their handler, so what the manifest
//! declares and what `execute` dispatches to come from the same line of code.

use crate::__bindings::junction::connector::types as wit;
use crate::{Error, Result};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

/// How mature this connector version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Preview,
    Ga,
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLocation {
    Header,
    Query,
}

/// Polling or webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Polling,
    Webhook,
}

/// A connection field.
#[derive(Debug, Clone)]
pub struct Field(wit::ConnectionField);

impl Field {
    fn new(name: &str, label: &str, secret: bool) -> Self {
        Self(wit::ConnectionField {
            name: name.to_owned(),
            label: label.to_owned(),
            description: String::new(),
            secret,
            required: true,
            default_value: None,
            schemes: Vec::new(),
        })
    }
    /// A required, non-secret text field.
    pub fn text(name: &str, label: &str) -> Self {
        Self::new(name, label, false)
    }
    /// A required secret field: stored encrypted, never given to the connector.
    pub fn secret(name: &str, label: &str) -> Self {
        Self::new(name, label, true)
    }
    pub fn description(mut self, text: &str) -> Self {
        self.0.description = text.to_owned();
        self
    }
    /// Not required; `default` is used when the user leaves it empty.
    pub fn default_value(mut self, default: &str) -> Self {
        self.0.required = false;
        self.0.default_value = Some(default.to_owned());
        self
    }
    pub fn optional(mut self) -> Self {
        self.0.required = false;
        self
    }
    /// Only asked for with these auth schemes.
    pub fn schemes<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.schemes = ids.into_iter().map(str::to_owned).collect();
        self
    }
}

/// An auth scheme.
#[derive(Debug, Clone)]
pub struct Auth(wit::AuthScheme);

impl Auth {
    fn new(id: &str, title: &str, kind: wit::AuthKind) -> Self {
        Self(wit::AuthScheme {
            id: id.to_owned(),
            title: title.to_owned(),
            kind,
        })
    }
    /// No credentials.
    pub fn none(id: &str, title: &str) -> Self {
        Self::new(id, title, wit::AuthKind::None)
    }
    /// An API key from secret field `field`, sent as header or query parameter `name`.
    pub fn api_key(id: &str, title: &str, field: &str, location: KeyLocation, name: &str) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::ApiKey(wit::ApiKeyScheme {
                field: field.to_owned(),
                location: match location {
                    KeyLocation::Header => wit::KeyLocation::Header,
                    KeyLocation::Query => wit::KeyLocation::Query,
                },
                name: name.to_owned(),
                prefix: None,
            }),
        )
    }
    /// Text put before an API key, such as `Token `.
    pub fn prefix(mut self, prefix: &str) -> Self {
        if let wit::AuthKind::ApiKey(k) = &mut self.0.kind {
            k.prefix = Some(prefix.to_owned());
        }
        self
    }
    /// HTTP basic authentication.
    pub fn basic(id: &str, title: &str, username_field: &str, password_field: &str) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::Basic(wit::BasicScheme {
                username_field: username_field.to_owned(),
                password_field: password_field.to_owned(),
            }),
        )
    }
    /// A bearer token from secret field `token_field` (a personal access token, say).
    pub fn bearer(id: &str, title: &str, token_field: &str) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::Bearer(wit::BearerScheme {
                token_field: token_field.to_owned(),
            }),
        )
    }
    /// OAuth 2.0 authorization code grant.
    pub fn oauth2_code(id: &str, title: &str, authorize_url: &str, token_url: &str) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::Oauth2Code(wit::Oauth2CodeScheme {
                authorize_url: authorize_url.to_owned(),
                token_url: token_url.to_owned(),
                scopes: Vec::new(),
                mandatory_scopes: Vec::new(),
                pkce: true,
                allow_own_app: true,
            }),
        )
    }
    /// OAuth 2.0 resource owner password grant.
    pub fn oauth2_password(
        id: &str,
        title: &str,
        token_url: &str,
        username_field: &str,
        password_field: &str,
    ) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::Oauth2Password(wit::Oauth2PasswordScheme {
                token_url: token_url.to_owned(),
                scopes: Vec::new(),
                mandatory_scopes: Vec::new(),
                username_field: username_field.to_owned(),
                password_field: password_field.to_owned(),
            }),
        )
    }
    /// OAuth 2.0 client credentials grant.
    pub fn oauth2_client_credentials(id: &str, title: &str, token_url: &str) -> Self {
        Self::new(
            id,
            title,
            wit::AuthKind::Oauth2ClientCredentials(wit::Oauth2ClientCredentialsScheme {
                token_url: token_url.to_owned(),
                scopes: Vec::new(),
                mandatory_scopes: Vec::new(),
            }),
        )
    }
    fn scope_lists(&mut self) -> Option<(&mut Vec<String>, &mut Vec<String>)> {
        match &mut self.0.kind {
            wit::AuthKind::Oauth2Code(s) => Some((&mut s.scopes, &mut s.mandatory_scopes)),
            wit::AuthKind::Oauth2Password(s) => Some((&mut s.scopes, &mut s.mandatory_scopes)),
            wit::AuthKind::Oauth2ClientCredentials(s) => {
                Some((&mut s.scopes, &mut s.mandatory_scopes))
            }
            _ => None,
        }
    }
    /// Scopes requested by default (OAuth schemes only).
    pub fn scopes<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some((requested, _)) = self.scope_lists() {
            requested.extend(scopes.into_iter().map(str::to_owned));
        }
        self
    }
    /// Scopes the grant must contain (OAuth schemes only); they are also requested.
    pub fn mandatory_scopes<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some((requested, mandatory)) = self.scope_lists() {
            for scope in scopes {
                if !requested.iter().any(|s| s == scope) {
                    requested.push(scope.to_owned());
                }
                mandatory.push(scope.to_owned());
            }
        }
        self
    }
    /// Whether the provider supports PKCE (authorization code only; on by default).
    pub fn pkce(mut self, supported: bool) -> Self {
        if let wit::AuthKind::Oauth2Code(s) = &mut self.0.kind {
            s.pkce = supported;
        }
        self
    }
    /// Whether users may bring their own OAuth app (authorization code only; on by default).
    pub fn allow_own_app(mut self, allowed: bool) -> Self {
        if let wit::AuthKind::Oauth2Code(s) = &mut self.0.kind {
            s.allow_own_app = allowed;
        }
        self
    }
}

type Handler = Box<dyn Fn(&str) -> Result<String>>;
type SchemaFn = fn() -> String;

fn schema_of<T: JsonSchema>() -> String {
    schemars::schema_for!(T).as_value().to_string()
}

/// An action: its description, the schemas of its input and output, and its handler.
pub struct Action {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    input_schema: SchemaFn,
    output_schema: SchemaFn,
    handler: Handler,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action").field("name", &self.name).finish()
    }
}

/// A trigger's description; its behaviour lives in [`crate::Connector::poll`] and the
/// webhook entry points.
#[derive(Debug)]
pub struct Trigger {
    name: String,
    title: String,
    description: String,
    kind: TriggerKind,
    config_schema: SchemaFn,
    event_schema: SchemaFn,
}

impl Trigger {
    /// A trigger whose configuration is `C` and whose events are `E`.
    pub fn new<C: JsonSchema, E: JsonSchema>(
        kind: TriggerKind,
        name: &str,
        title: &str,
        description: &str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            kind,
            config_schema: schema_of::<C>,
            event_schema: schema_of::<E>,
        }
    }
}

/// An incoming webhook call.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// The first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a webhook call produced and what the host answers the sender.
#[derive(Debug, Clone)]
pub struct WebhookResponse {
    pub events: Vec<serde_json::Value>,
    pub status: u16,
    pub body: Option<Vec<u8>>,
}

/// The description of a connector.
#[derive(Debug)]
pub struct Manifest {
    name: String,
    version: String,
    title: String,
    description: String,
    release: Release,
    docs: String,
    auth: Vec<Auth>,
    fields: Vec<Field>,
    allowed_hosts: Vec<String>,
    reveal_fields: Vec<String>,
    actions: Vec<Action>,
    triggers: Vec<Trigger>,
}

impl Manifest {
    /// A connector named `name` (kebab-case) at `version` (use `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            title: name.to_owned(),
            description: String::new(),
            release: Release::Preview,
            docs: String::new(),
            auth: Vec::new(),
            fields: Vec::new(),
            allowed_hosts: Vec::new(),
            reveal_fields: Vec::new(),
            actions: Vec::new(),
            triggers: Vec::new(),
        }
    }
    pub fn title(mut self, title: &str) -> Self {
        self.title = title.to_owned();
        self
    }
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }
    pub fn release(mut self, release: Release) -> Self {
        self.release = release;
        self
    }
    pub fn docs(mut self, markdown: &str) -> Self {
        self.docs = markdown.to_owned();
        self
    }
    pub fn auth(mut self, scheme: Auth) -> Self {
        self.auth.push(scheme);
        self
    }
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }
    /// A destination the connector may call: `[scheme://]host[:port]`, with `*.` wildcards
    /// and `{field}` placeholders.
    pub fn allowed_host(mut self, pattern: &str) -> Self {
        self.allowed_hosts.push(pattern.to_owned());
        self
    }
    /// Lets the connector read secret field `name` in clear with [`crate::connection::reveal`].
    pub fn reveal_field(mut self, name: &str) -> Self {
        self.reveal_fields.push(name.to_owned());
        self
    }
    /// An action whose input is `I` and output `O`, run by `handler`.
    /// Handlers are usually plain functions; being zero-sized, registering them costs no
    /// allocation, so building the manifest on every call stays cheap.
    pub fn action<I, O, F>(
        mut self,
        name: &'static str,
        title: &'static str,
        description: &'static str,
        handler: F,
    ) -> Self
    where
        I: DeserializeOwned + JsonSchema + 'static,
        O: Serialize + JsonSchema + 'static,
        F: Fn(I) -> Result<O> + 'static,
    {
        self.actions.push(Action {
            name,
            title,
            description,
            input_schema: schema_of::<I>,
            output_schema: schema_of::<O>,
            handler: Box::new(move |input| {
                let text = if input.trim().is_empty() { "{}" } else { input };
                let input: I =
                    serde_json::from_str(text).map_err(|e| Error::invalid_input(format!("{e}")))?;
                let output = handler(input)?;
                serde_json::to_string(&output)
                    .map_err(|e| Error::internal(format!("cannot encode the output: {e}")))
            }),
        });
        self
    }
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.triggers.push(trigger);
        self
    }

    pub(crate) fn run_action(&self, name: &str, input: &str) -> Result<String> {
        let action = self
            .actions
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.actions.iter().map(|a| a.name).collect();
                Error::invalid_input(format!(
                    "unknown action `{name}`; this connector has: {}",
                    known.join(", ")
                ))
            })?;
        (action.handler)(input)
    }

    pub(crate) fn into_wit(self) -> wit::ConnectorManifest {
        wit::ConnectorManifest {
            name: self.name,
            version: self.version,
            title: self.title,
            description: self.description,
            release: match self.release {
                Release::Preview => wit::ReleaseStatus::Preview,
                Release::Ga => wit::ReleaseStatus::Ga,
            },
            docs: self.docs,
            auth_schemes: self.auth.into_iter().map(|a| a.0).collect(),
            fields: self.fields.into_iter().map(|f| f.0).collect(),
            allowed_hosts: self.allowed_hosts,
            reveal_fields: self.reveal_fields,
            actions: self
                .actions
                .into_iter()
                .map(|a| wit::Action {
                    name: a.name.to_owned(),
                    title: a.title.to_owned(),
                    description: a.description.to_owned(),
                    input_schema: (a.input_schema)(),
                    output_schema: (a.output_schema)(),
                })
                .collect(),
            triggers: self
                .triggers
                .into_iter()
                .map(|t| wit::Trigger {
                    name: t.name,
                    title: t.title,
                    description: t.description,
                    kind: match t.kind {
                        TriggerKind::Polling => wit::TriggerKind::Polling,
                        TriggerKind::Webhook => wit::TriggerKind::Webhook,
                    },
                    config_schema: (t.config_schema)(),
                    event_schema: (t.event_schema)(),
                })
                .collect(),
        }
    }
}
