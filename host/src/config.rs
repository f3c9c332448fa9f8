//! The service's configuration: defaults, then a TOML file, then environment variables, then
//! flags (clap merges the last two: a flag wins over its variable).

use crate::capabilities::http::{ClientOptions, ProxySetting};
use crate::credentials::Secret;
use crate::egress::{AllowRule, EgressPolicy};
use crate::runtime::{EngineOptions, Limits};
use crate::store::{KEY_FILE, KeySource, StoreConfig};
use crate::vault::{KvVersion, StoreAuth, StoreSettings, StoreTenants};
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7480";
pub const DEFAULT_DATA_DIR: &str = "junction-data";

/// Settings of `junction serve`. Each can be set in the TOML file (`--config`), by an
/// environment variable, or by a flag; a flag wins over its variable, and both win over the
/// file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML configuration file. Its keys are the long flag names with `_` for `-`
    /// (`listen`, `data_dir`, `connectors = ["a.wasm", "dir/"]`, `health_check_interval`,
    /// and the limits under `[limits]`: `cpu_time`, `timeout`, `memory_mib`,
    /// `max_requests`, `max_response_mib`), the service's OAuth apps under
    /// `[oauth_apps.<connector>]`, and the vaults secret fields may reference under
    /// `[credential_stores.<name>]` (`address`, `auth` = "token" with `token_env` or
    /// `token_file`, or "approle" with `role_id` and `secret_id_env` or `secret_id_file`;
    /// `mount`, `kv_version`, `proxy`, `ca_cert`, `timeout`, `tenants`; see the README),
    /// and `credential_reread_pause` (seconds a refused credential that its store still
    /// holds is not read again; default 30). Relative paths are relative to the file.
    #[arg(long, env = "JUNCTION_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7480]. Port 0 picks a free port (the log
    /// line `listening` gives it).
    #[arg(long, env = "JUNCTION_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve `/metrics` on this address instead of the API's, for deployments that keep
    /// metrics private (such as 127.0.0.1:9090 while the API faces users) [default: the
    /// API's address].
    #[arg(long, env = "JUNCTION_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// The data directory: the database and, by default, the key file. Created on first
    /// start [default: ./junction-data].
    #[arg(long, env = "JUNCTION_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The key file encrypting secrets at rest [default: <data-dir>/junction.key]. Created,
    /// owner-only, on first start. Keep a copy apart from the database backups. To pass the
    /// key itself instead, set JUNCTION_KEY (base64, as `junction keys generate` prints).
    #[arg(long, env = "JUNCTION_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Connector components to load: `.wasm` files, or directories whose `.wasm` files are
    /// loaded. Repeat the flag, or separate with `:` in the variable
    /// [default: <data-dir>/connectors if it exists].
    #[arg(
        long = "connectors",
        env = "JUNCTION_CONNECTORS",
        value_name = "PATH",
        value_delimiter = ':'
    )]
    pub connectors: Vec<PathBuf>,
    /// The address users' browsers reach this service at, such as
    /// `https://junction.example.com`; OAuth providers redirect to
    /// `<public-url>/v1/oauth/callback`, which must be registered in each OAuth app
    /// [default: http://<listen>].
    #[arg(long, env = "JUNCTION_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes [default: 1048576].
    #[arg(long, env = "JUNCTION_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest component accepted for publishing (`POST /v1/catalog/versions`), in bytes
    /// [default: 67108864].
    #[arg(long, env = "JUNCTION_MAX_COMPONENT_BYTES", value_name = "BYTES")]
    pub max_component_bytes: Option<usize>,
    /// Days the audit log keeps administrators' and operators' acts; older ones are
    /// removed (at start, then every six hours). 0 keeps them forever [default: 365].
    #[arg(long, env = "JUNCTION_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Seconds between background health checks of each connection; 0 turns them off
    /// [default: 900].
    #[arg(long, env = "JUNCTION_HEALTH_CHECK_INTERVAL", value_name = "SECONDS")]
    pub health_check_interval: Option<u64>,
    /// On SIGTERM or Ctrl-C, seconds to let requests in flight finish before exiting
    /// [default: 75, above the invocation timeout].
    #[arg(long, env = "JUNCTION_SHUTDOWN_GRACE", value_name = "SECONDS")]
    pub shutdown_grace: Option<u64>,
    /// Connector instances that may run at once; more invocations wait [default: 100].
    /// Tenants share them fairly: one alone may use them all, and when several wait, a
    /// freed instance goes to the tenant holding the fewest.
    #[arg(long, env = "JUNCTION_MAX_INSTANCES", value_name = "N")]
    pub max_instances: Option<u32>,
    /// Seconds an invocation may wait for a free instance before it is refused (429 with
    /// Retry-After) [default: 30].
    #[arg(long, env = "JUNCTION_QUEUE_TIMEOUT", value_name = "SECONDS")]
    pub queue_timeout: Option<f64>,
    /// Wall-clock limit of one invocation, in seconds [default: 60].
    #[arg(long, env = "JUNCTION_TIMEOUT", value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// CPU-time limit of a connector's own code per invocation, in seconds [default: 5].
    #[arg(long, env = "JUNCTION_CPU_TIME", value_name = "SECONDS")]
    pub cpu_time: Option<f64>,
    /// Memory limit of one instance, in MiB [default: 64].
    #[arg(long, env = "JUNCTION_MEMORY_MIB", value_name = "MIB")]
    pub memory_mib: Option<usize>,
    /// Outbound requests per invocation [default: 50].
    #[arg(long, env = "JUNCTION_MAX_REQUESTS", value_name = "N")]
    pub max_requests: Option<u32>,
    /// Largest outbound response body, in MiB [default: 10].
    #[arg(long, env = "JUNCTION_MAX_RESPONSE_MIB", value_name = "MIB")]
    pub max_response_mib: Option<usize>,
    /// An address range that outbound connections made for tenants (connectors' requests
    /// and their redirects, OAuth token requests) may reach besides the public internet.
    /// By default they reach only globally reachable addresses: loopback, private,
    /// link-local and the other special-purpose ranges, and cloud metadata services, are
    /// refused. A CIDR, optionally with a port: `10.20.0.0/16`, `127.0.0.1/32:8080`,
    /// `[fd00::/8]:443`. Repeat the flag, or separate with commas in the variable; replaces
    /// the file's `[egress] allow`. This service's own addresses stay refused whatever it
    /// says; a metadata service is opened only by naming its address exactly (`/32`).
    #[arg(
        long = "egress-allow",
        env = "JUNCTION_EGRESS_ALLOW",
        value_name = "CIDR[:PORT]",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,
    /// `true` when outbound requests go through a forward proxy that alone can resolve
    /// names: the service then leaves the egress check of names to the proxy, which must
    /// enforce it (destinations given as addresses are still checked) [default: false].
    #[arg(
        long = "egress-proxy-enforces",
        env = "JUNCTION_EGRESS_PROXY_ENFORCES",
        value_name = "true|false"
    )]
    pub egress_proxy_enforces: Option<bool>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    connectors: Option<Vec<PathBuf>>,
    log_json: Option<bool>,
    max_body_bytes: Option<usize>,
    max_component_bytes: Option<usize>,
    health_check_interval: Option<u64>,
    audit_retention_days: Option<u32>,
    shutdown_grace: Option<u64>,
    max_instances: Option<u32>,
    public_url: Option<String>,
    #[serde(default)]
    limits: FileLimits,
    /// The service's own OAuth apps, by connector name.
    #[serde(default)]
    oauth_apps: BTreeMap<String, FileOAuthApp>,
    /// Vaults that secret fields may reference, by name.
    #[serde(default)]
    credential_stores: BTreeMap<String, FileCredentialStore>,
    /// Seconds during which a credential that an API refused, and its store still holds,
    /// is not read again [default: 30].
    credential_reread_pause: Option<f64>,
    /// What outbound connections made for tenants may reach.
    #[serde(default)]
    egress: FileEgress,
}

/// `[egress]`: the address ranges opened besides the public internet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEgress {
    allow: Option<Vec<String>>,
    proxy_enforces: Option<bool>,
}

/// `[credential_stores.<name>]`: a vault (the Vault HTTP API) whose KV secrets connections
/// may reference. The store's own credentials (`token`, `secret_id`) come from the
/// environment or a file, like every secret of the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredentialStore {
    /// Only `vault` so far.
    #[serde(default = "vault_kind")]
    kind: String,
    address: String,
    /// `token` or `approle`.
    auth: String,
    token: Option<Secret>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    role_id: Option<String>,
    secret_id: Option<Secret>,
    secret_id_env: Option<String>,
    secret_id_file: Option<PathBuf>,
    /// Where AppRole is mounted [default: approle].
    approle_mount: Option<String>,
    /// The KV engine's mount [default: secret].
    mount: Option<String>,
    /// 1 or 2 [default: 2].
    kv_version: Option<u8>,
    namespace: Option<String>,
    /// Seconds [default: 10].
    timeout: Option<f64>,
    /// `env` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY: the default), `none`, or a proxy URL.
    proxy: Option<String>,
    /// PEM files: a CA to trust (besides the system's), and a client certificate and key.
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    /// The tenants (ids) whose connections may reference this store, or `"*"` for every
    /// tenant. Without it, no tenant may.
    tenants: Option<FileTenants>,
    /// Where each tenant's secrets live, such as `tenants/{tenant_id}/`.
    path_prefix: Option<String>,
}

/// `tenants = ["ten_…", …]` or `tenants = "*"`.
#[derive(Debug)]
enum FileTenants {
    All,
    Only(Vec<String>),
}

impl<'de> Deserialize<'de> for FileTenants {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Star(s)) if s == "*" => Ok(Self::All),
            Ok(Raw::List(ids)) => Ok(Self::Only(ids)),
            _ => Err(serde::de::Error::custom(
                "`tenants` is a list of tenant ids ([\"ten_…\"]) or \"*\" for every tenant",
            )),
        }
    }
}

fn vault_kind() -> String {
    "vault".into()
}

/// `[oauth_apps.<connector>]`: the OAuth app this service registered at a connector's
/// provider, used by connections that do not bring their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOAuthApp {
    client_id: String,
    /// The secret itself…
    client_secret: Option<Secret>,
    /// …or the environment variable holding it.
    client_secret_env: Option<String>,
    /// The provider's endpoints, when the connector's depend on connection fields: the
    /// service's secret is sent only to endpoints named here.
    authorize_url: Option<String>,
    token_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    timeout: Option<f64>,
    queue_timeout: Option<f64>,
    cpu_time: Option<f64>,
    memory_mib: Option<usize>,
    max_requests: Option<u32>,
    max_response_mib: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

/// The resolved configuration of `junction serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Where `/metrics` is served, when not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub store: StoreConfig,
    pub key_file: PathBuf,
    pub connectors: Vec<PathBuf>,
    pub log_json: bool,
    pub max_body_bytes: usize,
    pub max_component_bytes: usize,
    pub health_check_interval: Option<Duration>,
    /// How long audit events are kept; `None`: forever.
    pub audit_retention: Option<Duration>,
    pub shutdown_grace: Duration,
    pub engine: EngineOptions,
    pub limits: Limits,
    /// Where browsers reach the service (no trailing `/`); `None`: the address it listens on.
    pub public_url: Option<String>,
    pub oauth_apps: BTreeMap<String, OAuthApp>,
    pub credential_stores: Vec<StoreSettings>,
    pub credential_reread_pause: Duration,
    pub egress: EgressSettings,
}

/// What outbound connections made for tenants may reach besides the public internet.
#[derive(Debug, Clone, Default)]
pub struct EgressSettings {
    pub allow: Vec<AllowRule>,
    /// A forward proxy resolves names and enforces the policy for them.
    pub proxy_enforces: bool,
}

impl EgressSettings {
    /// The policy these settings describe.
    pub fn policy(&self) -> EgressPolicy {
        EgressPolicy::new(self.allow.clone()).with_proxy_enforcing(self.proxy_enforces)
    }
}

/// Allow-list entries, each checked; the error names the setting and the entry.
pub fn allow_rules(
    setting: &'static str,
    entries: &[String],
) -> Result<Vec<AllowRule>, ConfigError> {
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.parse()
                .map_err(|e: crate::egress::AllowRuleError| ConfigError::Invalid {
                    setting,
                    message: e.to_string(),
                })
        })
        .collect()
}

fn seconds(setting: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Invalid {
            setting,
            message: format!("{value} is not a number of seconds from 0 to 86400"),
        })
    }
}

impl ServeArgs {
    /// Resolves the settings; `log_json_flag` is the global `--log-json`.
    pub fn resolve(&self, log_json_flag: bool) -> Result<ServeConfig, ConfigError> {
        let (file, base) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: toml_error(&text, &e),
                })?;
                let base = path
                    .parent()
                    .map(Path::to_owned)
                    .unwrap_or_else(|| PathBuf::from("."));
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        let from_file = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let listen = match self.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                setting: "listen",
                message: "the default address does not parse".into(),
            })?,
        };
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.as_ref().map(from_file))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let key_file = self
            .key_file
            .clone()
            .or_else(|| file.key_file.as_ref().map(from_file))
            .unwrap_or_else(|| data_dir.join(KEY_FILE));
        let explicit_file = self.key_file.is_some() || file.key_file.is_some();
        let key = key_source(explicit_file, &key_file);
        let connectors = if !self.connectors.is_empty() {
            self.connectors.clone()
        } else if let Some(list) = &file.connectors {
            list.iter().map(from_file).collect()
        } else {
            let default = data_dir.join("connectors");
            if default.is_dir() {
                vec![default]
            } else {
                Vec::new()
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            wall_time: match self.timeout.or(file.limits.timeout) {
                Some(s) => seconds("timeout", s)?,
                None => defaults.wall_time,
            },
            cpu_time: match self.cpu_time.or(file.limits.cpu_time) {
                Some(s) => seconds("cpu_time", s)?,
                None => defaults.cpu_time,
            },
            queue_wait: match self.queue_timeout.or(file.limits.queue_timeout) {
                Some(s) => seconds("queue_timeout", s)?,
                None => defaults.queue_wait,
            },
            memory_bytes: self
                .memory_mib
                .or(file.limits.memory_mib)
                .map(|m| m.clamp(1, 4096) << 20)
                .unwrap_or(defaults.memory_bytes),
            requests: self
                .max_requests
                .or(file.limits.max_requests)
                .unwrap_or(defaults.requests),
            response_bytes: self
                .max_response_mib
                .or(file.limits.max_response_mib)
                .map(|m| m.clamp(1, 1024) << 20)
                .unwrap_or(defaults.response_bytes),
            ..defaults
        };
        let engine = EngineOptions {
            max_instances: self
                .max_instances
                .or(file.max_instances)
                .unwrap_or(EngineOptions::default().max_instances)
                .max(1),
            max_memory_bytes: EngineOptions::default()
                .max_memory_bytes
                .max(limits.memory_bytes),
        };
        let public_url = match self.public_url.clone().or(file.public_url.clone()) {
            Some(u) => {
                let parsed = url::Url::parse(&u).map_err(|e| ConfigError::Invalid {
                    setting: "public_url",
                    message: format!("`{u}` is not an absolute URL: {e}"),
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::Invalid {
                        setting: "public_url",
                        message: format!("`{u}` must be an http or https URL"),
                    });
                }
                Some(u.trim_end_matches('/').to_owned())
            }
            None => None,
        };
        let mut oauth_apps = BTreeMap::new();
        for (connector, app) in &file.oauth_apps {
            let client_secret = match (&app.client_secret, &app.client_secret_env) {
                (Some(s), None) => Some(s.clone()),
                (None, Some(var)) => Some(Secret::new(std::env::var(var).map_err(|_| {
                    ConfigError::Invalid {
                        setting: "oauth_apps",
                        message: format!(
                            "[oauth_apps.{connector}] reads its client secret from ${var}, which is not set"
                        ),
                    }
                })?)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid {
                        setting: "oauth_apps",
                        message: format!(
                            "[oauth_apps.{connector}] sets both client_secret and client_secret_env; keep one"
                        ),
                    });
                }
            };
            oauth_apps.insert(
                connector.clone(),
                OAuthApp {
                    client_id: app.client_id.clone(),
                    client_secret,
                    authorize_url: app.authorize_url.clone(),
                    token_url: app.token_url.clone(),
                },
            );
        }
        let mut credential_stores = Vec::new();
        for (name, store) in &file.credential_stores {
            credential_stores.push(credential_store(
                name,
                store,
                &from_file,
                limits.connect_timeout,
            )?);
        }
        let egress = EgressSettings {
            allow: if !self.egress_allow.is_empty() {
                allow_rules("egress-allow", &self.egress_allow)?
            } else {
                allow_rules(
                    "egress.allow",
                    file.egress.allow.as_deref().unwrap_or_default(),
                )?
            },
            proxy_enforces: self
                .egress_proxy_enforces
                .or(file.egress.proxy_enforces)
                .unwrap_or(false),
        };
        let health = self
            .health_check_interval
            .or(file.health_check_interval)
            .unwrap_or(900);
        Ok(ServeConfig {
            listen,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            store: StoreConfig { data_dir, key },
            key_file,
            connectors,
            log_json: log_json_flag || file.log_json.unwrap_or(false),
            max_body_bytes: self
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(1 << 20)
                .max(1024),
            max_component_bytes: self
                .max_component_bytes
                .or(file.max_component_bytes)
                .unwrap_or(crate::catalog::DEFAULT_MAX_COMPONENT_BYTES)
                .max(1024),
            health_check_interval: (health > 0).then(|| Duration::from_secs(health)),
            audit_retention: match self
                .audit_retention_days
                .or(file.audit_retention_days)
                .unwrap_or(365)
            {
                0 => None,
                days => Some(Duration::from_secs(u64::from(days) * 86_400)),
            },
            shutdown_grace: Duration::from_secs(
                self.shutdown_grace.or(file.shutdown_grace).unwrap_or(75),
            ),
            engine,
            limits,
            public_url,
            oauth_apps,
            credential_stores,
            credential_reread_pause: match file.credential_reread_pause {
                Some(0.0) => Duration::ZERO,
                Some(s) => seconds("credential_reread_pause", s)?,
                None => crate::vault::cache::REREAD_PAUSE,
            },
            egress,
        })
    }
}

/// The service's own OAuth app for a connector.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
}

/// A secret of the configuration: given inline, or read from an environment variable or
/// a file (trailing newline dropped). Exactly one of them.
fn config_secret(
    what: &str,
    inline: Option<&Secret>,
    env: Option<&String>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, String> {
    match (inline, env, file) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(v.clone())),
        (None, Some(var), None) => std::env::var(var)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| format!("reads its {what} from ${var}, which is not set")),
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map(|v| Some(Secret::new(v.trim_end_matches(['\r', '\n']))))
            .map_err(|e| format!("cannot read its {what} from {}: {e}", path.display())),
        _ => Err(format!("gives its {what} more than one way; keep one")),
    }
}

fn credential_store(
    name: &str,
    file: &FileCredentialStore,
    from_file: &dyn Fn(&PathBuf) -> PathBuf,
    connect_timeout: Duration,
) -> Result<StoreSettings, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        setting: "credential_stores",
        message: format!("[credential_stores.{name}] {message}"),
    };
    if file.kind != "vault" {
        return Err(invalid(format!(
            "has kind `{}`; the kinds supported are: vault",
            file.kind
        )));
    }
    let address = url::Url::parse(&file.address)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            invalid(format!(
                "has address `{}`, which is not an http(s) URL such as https://vault.example.com:8200",
                file.address
            ))
        })?;
    let path_of = |p: &Option<PathBuf>| p.as_ref().map(from_file);
    let auth = match file.auth.as_str() {
        "token" => StoreAuth::Token(
            config_secret(
                "token",
                file.token.as_ref(),
                file.token_env.as_ref(),
                path_of(&file.token_file),
            )
            .map_err(&invalid)?
            .ok_or_else(|| invalid("uses auth = \"token\": set token_env or token_file".into()))?,
        ),
        "approle" => StoreAuth::AppRole {
            mount: file
                .approle_mount
                .clone()
                .unwrap_or_else(|| "approle".into()),
            role_id: file
                .role_id
                .clone()
                .ok_or_else(|| invalid("uses auth = \"approle\": set role_id".into()))?,
            secret_id: config_secret(
                "secret id",
                file.secret_id.as_ref(),
                file.secret_id_env.as_ref(),
                path_of(&file.secret_id_file),
            )
            .map_err(&invalid)?
            .ok_or_else(|| {
                invalid("uses auth = \"approle\": set secret_id_env or secret_id_file".into())
            })?,
        },
        other => {
            return Err(invalid(format!(
                "has auth `{other}`; the methods supported are: token, approle"
            )));
        }
    };
    let kv_version = match file.kv_version.unwrap_or(2) {
        1 => KvVersion::V1,
        2 => KvVersion::V2,
        v => return Err(invalid(format!("has kv_version {v}; it is 1 or 2"))),
    };
    let read_pem = |p: &Option<PathBuf>, what: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        match path_of(p) {
            None => Ok(None),
            Some(path) => std::fs::read(&path)
                .map(Some)
                .map_err(|e| invalid(format!("cannot read its {what} {}: {e}", path.display()))),
        }
    };
    let identity = match (
        read_pem(&file.client_cert, "client_cert")?,
        read_pem(&file.client_key, "client_key")?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "sets one of client_cert and client_key; set both".into(),
            ));
        }
    };
    let proxy = match &file.proxy {
        None => ProxySetting::Environment,
        Some(p) => p
            .parse()
            .map_err(|e| invalid(format!("has an invalid proxy: {e}")))?,
    };
    let timeout = match file.timeout {
        Some(s) => seconds("credential_stores", s)?,
        None => Duration::from_secs(10),
    };
    Ok(StoreSettings {
        name: name.to_owned(),
        address,
        auth,
        mount: file
            .mount
            .clone()
            .unwrap_or_else(|| "secret".into())
            .trim_matches('/')
            .to_owned(),
        kv_version,
        namespace: file.namespace.clone(),
        timeout,
        client: ClientOptions {
            connect_timeout: connect_timeout.min(timeout),
            // A vault is the operator's own configuration, not a tenant's destination.
            egress: Arc::new(EgressPolicy::unrestricted()),
            proxy,
            no_proxy: None,
            extra_roots_pem: read_pem(&file.ca_cert, "ca_cert")?.into_iter().collect(),
            client_identity_pem: identity,
        },
        tenants: match &file.tenants {
            None => StoreTenants::Unset,
            Some(FileTenants::All) => StoreTenants::All,
            Some(FileTenants::Only(ids)) => StoreTenants::Only(ids.clone()),
        },
        path_prefix: match &file.path_prefix {
            None => None,
            Some(prefix) => {
                if crate::vault::normalise_path(&prefix.replace("{tenant_id}", "ten_x")).is_none() {
                    return Err(invalid(format!(
                        "has path_prefix `{prefix}`, which is not a path below the mount (such as `tenants/{{tenant_id}}/`)"
                    )));
                }
                Some(prefix.clone())
            }
        },
    })
}

/// A TOML error as it may be shown: where it is and what is wrong, without the line itself
/// or a value found (a configuration file holds secrets: a client secret in the wrong
/// place must not end up in a log).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = crate::credentials::without_found_value(e.message().trim_end());
    let Some(span) = e.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.len() - line_start + 1;
    // The setting's name (the key before `=` on that line, below its table), never its
    // value.
    let this_line = text[line_start..].lines().next().unwrap_or_default();
    let key = this_line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line}, column {column}, `{t}.{k}`: {message}"),
        (None, Some(k)) => format!("line {line}, column {column}, `{k}`: {message}"),
        _ => format!("line {line}, column {column}: {message}"),
    }
}

/// The key file when one was named (it wins, like any explicit setting), else the key in
/// `JUNCTION_KEY` when set, else the default key file.
fn key_source(explicit_file: bool, key_file: &Path) -> KeySource {
    match std::env::var("JUNCTION_KEY") {
        Ok(text) if !explicit_file && !text.trim().is_empty() => KeySource::Env(Secret::new(text)),
        _ => KeySource::File(key_file.to_owned()),
    }
}

/// Where the store is, for the commands that work on it offline.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The data directory [default: ./junction-data].
    #[arg(long, env = "JUNCTION_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The key file [default: <data-dir>/junction.key]; JUNCTION_KEY gives the key itself.
    #[arg(long, env = "JUNCTION_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl StoreArgs {
    pub fn resolve(&self) -> (StoreConfig, PathBuf) {
        let serve = ServeArgs {
            data_dir: self.data_dir.clone(),
            key_file: self.key_file.clone(),
            ..ServeArgs::default()
        };
        let data_dir = serve
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let key_file = serve
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(KEY_FILE));
        let key = key_source(self.key_file.is_some(), &key_file);
        (StoreConfig { data_dir, key }, key_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_file_paths_are_relative_to_it() {
        let dir = std::env::temp_dir().join(format!("junction-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("junction.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"data\"\nconnectors = [\"c.wasm\"]\n\
             health_check_interval = 0\n[limits]\ntimeout = 5\nmemory_mib = 32\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = args.resolve(false).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.store.data_dir, dir.join("data"));
        assert_eq!(config.key_file, dir.join("data").join(KEY_FILE));
        assert_eq!(config.connectors, vec![dir.join("c.wasm")]);
        assert_eq!(config.health_check_interval, None);
        assert_eq!(config.limits.wall_time, Duration::from_secs(5));
        assert_eq!(config.limits.memory_bytes, 32 << 20);

        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let err = args.resolve(false).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod secret_hygiene {
    use super::*;

    fn config_file(name: &str, text: &str) -> (PathBuf, ServeArgs) {
        let dir =
            std::env::temp_dir().join(format!("junction-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("junction.toml");
        std::fs::write(&file, text).unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        (dir, args)
    }

    #[test]
    fn debug_of_the_configuration_never_prints_a_secret() {
        let text = "[oauth_apps.github]\nclient_id = \"Iv1.app\"\nclient_secret = \"gh-S3cret-in-file\"\n\
                    [credential_stores.corp]\naddress = \"https://vault.example.com\"\nauth = \"approle\"\n\
                    role_id = \"role\"\nsecret_id = \"approle-S3cret-in-file\"\ntenants = \"*\"\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let (dir, args) = config_file("debug", text);
        let resolved = args.resolve(false).unwrap();
        for shown in [
            format!("{file:?}"),
            format!("{resolved:?}"),
            format!("{resolved:#?}"),
        ] {
            assert!(!shown.contains("gh-S3cret-in-file"), "{shown}");
            assert!(!shown.contains("approle-S3cret-in-file"), "{shown}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_toml_error_says_where_and_never_quotes_the_line_or_the_value() {
        for (text, expected) in [
            (
                "[oauth_apps.github]\nclient_id = \"x\"\nclient_secret = \"gh-S3cret-unterminated\n",
                "line 3",
            ),
            (
                "max_instances = \"gh-S3cret-wrong-type\"\n",
                "line 1, column 17, `max_instances`: invalid type: string, expected u32",
            ),
            (
                "[oauth_apps.github]\nclient_id = \"x\"\nclient_secret = [\"gh-S3cret-in-a-list\"]\n",
                "line 3",
            ),
        ] {
            let (dir, args) = config_file("toml-error", text);
            let error = args.resolve(false).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("S3cret"), "{error}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn egress_ranges_come_from_the_file_unless_a_flag_or_variable_gives_them() {
        let (dir, args) = config_file(
            "egress",
            "[egress]\nallow = [\"10.20.0.0/16\", \"127.0.0.1/32:8080\"]\nproxy_enforces = true\n",
        );
        let from_file = args.resolve(false).unwrap().egress;
        let shown: Vec<String> = from_file.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.20.0.0/16", "127.0.0.1/32:8080"]);
        assert!(from_file.proxy_enforces);
        let flags = ServeArgs {
            egress_allow: vec!["192.168.7.0/24".into()],
            egress_proxy_enforces: Some(false),
            ..args
        };
        let from_flags = flags.resolve(false).unwrap().egress;
        assert_eq!(from_flags.allow.len(), 1);
        assert!(!from_flags.proxy_enforces);
        // Audit retention: a year by default, days when given, forever with 0.
        let year = ServeArgs::default().resolve(false).unwrap().audit_retention;
        assert_eq!(year, Some(Duration::from_secs(365 * 86_400)));
        for (days, kept) in [(7, Some(Duration::from_secs(7 * 86_400))), (0, None)] {
            let args = ServeArgs {
                audit_retention_days: Some(days),
                ..ServeArgs::default()
            };
            assert_eq!(args.resolve(false).unwrap().audit_retention, kept);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
