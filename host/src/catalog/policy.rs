//! A tenant's governance policy: which connectors its users may create connections of, and
//! with which auth types. A policy is checked when a connection is created (or its auth
//! scheme changed), never when one is used: existing connections keep working.

use crate::runtime::manifest::{AuthKind, AuthScheme};
use crate::store::PolicyRecord;
use std::collections::BTreeMap;

/// The auth type names a policy may name.
pub const AUTH_TYPES: &[&str] = &[
    "none",
    "api_key",
    "basic",
    "bearer",
    "oauth2_code",
    "oauth2_password",
    "oauth2_client_credentials",
];

/// The key of `allowed_auth_types` that applies to every connector without its own entry.
pub const ANY_CONNECTOR: &str = "*";

/// A policy as the API takes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    #[serde(default)]
    pub enabled_connectors: Option<Vec<String>>,
    #[serde(default)]
    pub disabled_connectors: Vec<String>,
    #[serde(default)]
    pub allowed_auth_types: BTreeMap<String, Vec<String>>,
}

/// Why a policy is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

impl PolicyInput {
    /// Checks the names and returns the record to store.
    pub fn validate(self) -> Result<PolicyRecord, PolicyError> {
        for (connector, types) in &self.allowed_auth_types {
            if connector.is_empty() {
                return Err(PolicyError(
                    "allowed_auth_types: a connector name is empty".into(),
                ));
            }
            for t in types {
                if !AUTH_TYPES.contains(&t.as_str()) {
                    return Err(PolicyError(format!(
                        "allowed_auth_types.{connector}: unknown auth type `{t}`; the types are {}",
                        AUTH_TYPES.join(", ")
                    )));
                }
            }
        }
        let names = self
            .enabled_connectors
            .iter()
            .flatten()
            .chain(&self.disabled_connectors);
        if let Some(bad) = names
            .clone()
            .find(|n| n.is_empty() || n.as_str() == ANY_CONNECTOR)
        {
            return Err(PolicyError(format!(
                "`{bad}` is not a connector name; list connectors by name (an empty `enabled_connectors` disables all, `null` enables all)"
            )));
        }
        let sorted = |v: Vec<String>| {
            let mut v = v;
            v.sort();
            v.dedup();
            v
        };
        Ok(PolicyRecord {
            enabled_connectors: self.enabled_connectors.map(sorted),
            disabled_connectors: sorted(self.disabled_connectors),
            allowed_auth_types: self
                .allowed_auth_types
                .into_iter()
                .map(|(k, v)| (k, sorted(v)))
                .collect(),
            updated_at: None,
        })
    }
}

/// Why the policy refuses something; `code` is the API's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyRefusal {
    pub code: &'static str,
    pub message: String,
    /// The auth types the policy allows for the connector, when that is the reason.
    pub allowed: Option<Vec<String>>,
}

/// A tenant's policy, ready to answer questions.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub tenant_name: &'a str,
    pub record: &'a PolicyRecord,
}

impl Policy<'_> {
    pub fn connector_enabled(&self, connector: &str) -> bool {
        let r = self.record;
        !r.disabled_connectors.iter().any(|d| d == connector)
            && r.enabled_connectors
                .as_ref()
                .is_none_or(|e| e.iter().any(|n| n == connector))
    }

    /// The auth types allowed for `connector`; `None` when every type is.
    pub fn allowed_auth_types(&self, connector: &str) -> Option<&[String]> {
        let map = &self.record.allowed_auth_types;
        map.get(connector)
            .or_else(|| map.get(ANY_CONNECTOR))
            .map(Vec::as_slice)
    }

    pub fn auth_allowed(&self, connector: &str, kind: &AuthKind) -> bool {
        self.allowed_auth_types(connector)
            .is_none_or(|allowed| allowed.iter().any(|a| a == kind.type_name()))
    }

    /// The schemes of `schemes` the policy allows.
    pub fn allowed_schemes<'s>(
        &self,
        connector: &str,
        schemes: &'s [AuthScheme],
    ) -> Vec<&'s AuthScheme> {
        schemes
            .iter()
            .filter(|s| self.auth_allowed(connector, &s.kind))
            .collect()
    }

    /// Refuses a connector the policy disables.
    pub fn require_enabled(&self, connector: &str) -> Result<(), PolicyRefusal> {
        if self.connector_enabled(connector) {
            return Ok(());
        }
        Err(PolicyRefusal {
            code: "connector_disabled",
            message: format!(
                "connector `{connector}` is disabled by the policy of tenant `{}`; ask an operator to enable it",
                self.tenant_name
            ),
            allowed: None,
        })
    }

    /// Refuses a new connection of `connector` with `scheme`.
    pub fn require_new_connection(
        &self,
        connector: &str,
        scheme: &AuthScheme,
    ) -> Result<(), PolicyRefusal> {
        self.require_enabled(connector)?;
        if self.auth_allowed(connector, &scheme.kind) {
            return Ok(());
        }
        let allowed = self
            .allowed_auth_types(connector)
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        Err(PolicyRefusal {
            code: "auth_type_not_allowed",
            message: format!(
                "the policy of tenant `{}` does not allow auth type `{}` (scheme `{}`) for connector `{connector}`; it allows: {}",
                self.tenant_name,
                scheme.kind.type_name(),
                scheme.id,
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
            allowed: Some(allowed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(kind: AuthKind) -> AuthScheme {
        AuthScheme {
            id: "s".into(),
            title: "S".into(),
            kind,
        }
    }

    fn bearer() -> AuthKind {
        AuthKind::Bearer {
            token_field: "token".into(),
        }
    }

    fn policy(json: serde_json::Value) -> PolicyRecord {
        serde_json::from_value::<PolicyInput>(json)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn disabled_wins_over_enabled_and_null_enables_all() {
        let r = policy(serde_json::json!({"disabled_connectors": ["github"]}));
        let p = Policy {
            tenant_name: "acme",
            record: &r,
        };
        assert!(!p.connector_enabled("github"));
        assert!(p.connector_enabled("http"));
        let e = p.require_enabled("github").unwrap_err();
        assert_eq!(e.code, "connector_disabled");
        assert!(e.message.contains("policy of tenant `acme`"), "{e}");

        let r = policy(serde_json::json!({
            "enabled_connectors": ["http", "github"], "disabled_connectors": ["github"]
        }));
        let p = Policy {
            tenant_name: "acme",
            record: &r,
        };
        assert!(p.connector_enabled("http"));
        assert!(!p.connector_enabled("github"));
        assert!(!p.connector_enabled("probe"));
    }

    #[test]
    fn auth_types_are_per_connector_with_a_default() {
        let r = policy(serde_json::json!({
            "allowed_auth_types": {"github": ["oauth2_code"], "*": ["bearer", "api_key"]}
        }));
        let p = Policy {
            tenant_name: "acme",
            record: &r,
        };
        assert!(!p.auth_allowed("github", &bearer()));
        assert!(p.auth_allowed("http", &bearer()));
        assert!(!p.auth_allowed("http", &AuthKind::None));
        let e = p
            .require_new_connection("github", &scheme(bearer()))
            .unwrap_err();
        assert_eq!(e.code, "auth_type_not_allowed");
        assert_eq!(e.allowed, Some(vec!["oauth2_code".to_owned()]));
        assert!(e.message.contains("it allows: oauth2_code"), "{e}");
    }

    #[test]
    fn unknown_auth_types_and_bad_names_are_refused() {
        let bad = serde_json::from_value::<PolicyInput>(
            serde_json::json!({"allowed_auth_types": {"github": ["pat"]}}),
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(bad.0.contains("unknown auth type `pat`"), "{bad}");
        let bad = serde_json::from_value::<PolicyInput>(
            serde_json::json!({"disabled_connectors": ["*"]}),
        )
        .unwrap()
        .validate();
        assert!(bad.is_err());
        assert!(serde_json::from_value::<PolicyInput>(serde_json::json!({"enabled": []})).is_err());
    }
}
