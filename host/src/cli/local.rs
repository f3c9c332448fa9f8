//! Options shared by the commands that run a component locally.

use crate::credentials::Secret;
use crate::egress::EgressPolicy;
use crate::runtime::{ConnectionSpec, Limits};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// How the connection is given.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// A connection file (JSON): {"auth": "<scheme>", "fields": {"name": "value"},
    /// "access_token": "<for OAuth schemes>"}. Flags below add to or override it.
    #[arg(long = "connection-file", short = 'c', value_name = "FILE")]
    pub connection_file: Option<PathBuf>,
    /// The auth scheme to use (see `junction inspect`); needed when there are several.
    #[arg(long, value_name = "SCHEME")]
    pub auth: Option<String>,
    /// A field value, NAME=VALUE. Repeat for several fields.
    #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// A field value read from an environment variable, NAME=VAR: keeps secrets out of
    /// the command line.
    #[arg(long = "field-env", value_name = "NAME=VAR")]
    pub field_env: Vec<String>,
    /// For OAuth 2.0 schemes: the environment variable holding an access token.
    #[arg(long, value_name = "VAR")]
    pub access_token_env: Option<String>,
}

/// A connection argument that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionArgsError {
    #[error("cannot read the connection file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the connection file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("`{0}` is not NAME=VALUE")]
    NotPair(String),
    #[error("environment variable `{0}` is not set")]
    MissingVariable(String),
}

fn pair(text: &str) -> Result<(&str, &str), ConnectionArgsError> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConnectionArgsError::NotPair(text.to_owned()))
}

fn env(var: &str) -> Result<Secret, ConnectionArgsError> {
    std::env::var(var)
        .map(Secret::new)
        .map_err(|_| ConnectionArgsError::MissingVariable(var.to_owned()))
}

impl ConnectionArgs {
    pub fn spec(&self) -> Result<ConnectionSpec, ConnectionArgsError> {
        let mut spec = match &self.connection_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConnectionArgsError::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
                serde_json::from_str(&text).map_err(|source| ConnectionArgsError::Parse {
                    path: path.display().to_string(),
                    source,
                })?
            }
            None => ConnectionSpec::default(),
        };
        if let Some(auth) = &self.auth {
            spec.auth = Some(auth.clone());
        }
        for f in &self.fields {
            let (k, v) = pair(f)?;
            spec.fields.insert(k.to_owned(), Secret::new(v));
        }
        for f in &self.field_env {
            let (k, var) = pair(f)?;
            spec.fields.insert(k.to_owned(), env(var)?);
        }
        if let Some(var) = &self.access_token_env {
            spec.access_token = Some(env(var)?);
        }
        Ok(spec)
    }
}

/// Limits a local run may change.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Wall-clock limit of the invocation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub timeout: f64,
    /// CPU-time limit of the guest's own code, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub cpu_time: f64,
    /// Linear memory limit, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_mib: usize,
    /// Outbound requests allowed in the invocation.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_requests: u32,
    /// Largest outbound response body, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 10)]
    pub max_response_mib: usize,
    /// An address range the connector's requests may reach besides the public internet and
    /// this machine's loopback (which local runs allow): a CIDR, optionally with a port,
    /// such as `10.20.0.0/16` or `192.168.1.5/32:8080`. Repeat for several. Private,
    /// link-local and other special-purpose addresses, and cloud metadata services, are
    /// refused otherwise, as the service refuses them.
    #[arg(
        long = "egress-allow",
        value_name = "CIDR[:PORT]",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,
}

impl LimitArgs {
    /// The egress policy of a local run: loopback and the ranges given.
    pub fn egress(&self) -> Result<EgressPolicy, crate::config::ConfigError> {
        let allow = crate::config::allow_rules("--egress-allow", &self.egress_allow)?;
        Ok(EgressPolicy::local(allow))
    }

    pub fn limits(&self) -> Limits {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.001, 86_400.0));
        Limits {
            wall_time: secs(self.timeout),
            cpu_time: secs(self.cpu_time),
            memory_bytes: self.memory_mib.clamp(1, 4096) << 20,
            requests: self.max_requests,
            response_bytes: self.max_response_mib.clamp(1, 1024) << 20,
            ..Limits::default()
        }
    }
}
