//! Bindings of the interface versions this host supports, one module per version. Each
//! converts its types into the host's version-independent model, so the rest of the host
//! knows one manifest and one error type. A later `0.2.0` goes beside `v0_1_0`.

use super::error::ConnectorError;
use super::manifest::{self, Manifest, parse_schema};

/// Interface versions this host can load, newest first.
pub const SUPPORTED_INTERFACES: &[&str] = &["0.1.0"];

/// The export through which a component declares its interface version.
pub const GUEST_EXPORT_PREFIX: &str = "junction:connector/guest@";

pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "junction:connector/connector@0.1.0",
        imports: {
            "junction:connector/http.send": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

use v0_1_0::junction::connector::types as v1;

impl From<v1::ConnectorError> for ConnectorError {
    fn from(e: v1::ConnectorError) -> Self {
        match e {
            v1::ConnectorError::InvalidInput(message) => Self::InvalidInput { message },
            v1::ConnectorError::Unauthorized(message) => Self::Unauthorized { message },
            v1::ConnectorError::Forbidden(message) => Self::Forbidden { message },
            v1::ConnectorError::NotFound(message) => Self::NotFound { message },
            v1::ConnectorError::RateLimited(r) => Self::RateLimited {
                message: r.message,
                retry_after_seconds: r.retry_after_seconds,
            },
            v1::ConnectorError::Upstream(u) => Self::Upstream {
                status: u.status,
                body: u.body,
            },
            v1::ConnectorError::Timeout(message) => Self::Timeout { message },
            v1::ConnectorError::Denied(message) => Self::Denied { message },
            v1::ConnectorError::Internal(message) => Self::Internal { message },
        }
    }
}

/// The guest-facing form of a host-side refusal.
pub(crate) fn denied(message: impl Into<String>) -> v1::ConnectorError {
    v1::ConnectorError::Denied(message.into())
}

pub(crate) fn invalid_input(message: impl Into<String>) -> v1::ConnectorError {
    v1::ConnectorError::InvalidInput(message.into())
}

pub(crate) fn timeout(message: impl Into<String>) -> v1::ConnectorError {
    v1::ConnectorError::Timeout(message.into())
}

pub(crate) fn internal(message: impl Into<String>) -> v1::ConnectorError {
    v1::ConnectorError::Internal(message.into())
}

/// Converts a 0.1.0 manifest; schemas that are not JSON are returned as problems for
/// [`Manifest::validate`].
pub(crate) fn manifest_from_v1(m: v1::ConnectorManifest) -> (Manifest, Vec<String>) {
    let mut problems = Vec::new();
    let auth_schemes = m
        .auth_schemes
        .into_iter()
        .map(|s| manifest::AuthScheme {
            id: s.id,
            title: s.title,
            kind: match s.kind {
                v1::AuthKind::None => manifest::AuthKind::None,
                v1::AuthKind::ApiKey(k) => manifest::AuthKind::ApiKey {
                    field: k.field,
                    location: match k.location {
                        v1::KeyLocation::Header => manifest::KeyLocation::Header,
                        v1::KeyLocation::Query => manifest::KeyLocation::Query,
                    },
                    name: k.name,
                    prefix: k.prefix,
                },
                v1::AuthKind::Basic(b) => manifest::AuthKind::Basic {
                    username_field: b.username_field,
                    password_field: b.password_field,
                },
                v1::AuthKind::Bearer(b) => manifest::AuthKind::Bearer {
                    token_field: b.token_field,
                },
                v1::AuthKind::Oauth2Code(o) => manifest::AuthKind::Oauth2Code {
                    authorize_url: o.authorize_url,
                    token_url: o.token_url,
                    scopes: o.scopes,
                    mandatory_scopes: o.mandatory_scopes,
                    pkce: o.pkce,
                    allow_own_app: o.allow_own_app,
                },
                v1::AuthKind::Oauth2Password(o) => manifest::AuthKind::Oauth2Password {
                    token_url: o.token_url,
                    scopes: o.scopes,
                    mandatory_scopes: o.mandatory_scopes,
                    username_field: o.username_field,
                    password_field: o.password_field,
                },
                v1::AuthKind::Oauth2ClientCredentials(o) => {
                    manifest::AuthKind::Oauth2ClientCredentials {
                        token_url: o.token_url,
                        scopes: o.scopes,
                        mandatory_scopes: o.mandatory_scopes,
                    }
                }
            },
        })
        .collect();
    let fields = m
        .fields
        .into_iter()
        .map(|f| manifest::Field {
            name: f.name,
            label: f.label,
            description: f.description,
            secret: f.secret,
            required: f.required,
            default_value: f.default_value,
            schemes: f.schemes,
        })
        .collect();
    let actions = m
        .actions
        .into_iter()
        .map(|a| manifest::Action {
            input_schema: parse_schema(
                &format!("action `{}` input schema", a.name),
                &a.input_schema,
                &mut problems,
            ),
            output_schema: parse_schema(
                &format!("action `{}` output schema", a.name),
                &a.output_schema,
                &mut problems,
            ),
            name: a.name,
            title: a.title,
            description: a.description,
        })
        .collect();
    let triggers = m
        .triggers
        .into_iter()
        .map(|t| manifest::Trigger {
            config_schema: parse_schema(
                &format!("trigger `{}` config schema", t.name),
                &t.config_schema,
                &mut problems,
            ),
            event_schema: parse_schema(
                &format!("trigger `{}` event schema", t.name),
                &t.event_schema,
                &mut problems,
            ),
            name: t.name,
            title: t.title,
            description: t.description,
            kind: match t.kind {
                v1::TriggerKind::Polling => manifest::TriggerKind::Polling,
                v1::TriggerKind::Webhook => manifest::TriggerKind::Webhook,
            },
        })
        .collect();
    let mut manifest = Manifest {
        name: m.name,
        version: m.version,
        title: m.title,
        description: m.description,
        release: match m.release {
            v1::ReleaseStatus::Preview => manifest::Release::Preview,
            v1::ReleaseStatus::Ga => manifest::Release::Ga,
        },
        docs: m.docs,
        auth_schemes,
        fields,
        allowed_hosts: m.allowed_hosts,
        reveal_fields: m.reveal_fields,
        actions,
        triggers,
    };
    manifest.add_oauth_fields();
    (manifest, problems)
}
