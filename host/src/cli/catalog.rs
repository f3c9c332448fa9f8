//! The operator's commands of a running service: its connector catalog
//! (`junction connector publish|list|show|install|upgrade|rollback|skip|unskip`) and the
//! tenants' connector policies (`junction policy show|set|oauth-app`).
//!
//! They speak the catalog API (`/v1/catalog…`, `/v1/tenants/{id}/…`) with an operator
//! token (`jo_…`, from `junction admin create-operator`); `junction policy show` without
//! `--tenant` reads the caller's own tenant's policy with a tenant token.
//!
//! Exit status: 0 on success; 2 for bad usage, a refusal of the service (a component it
//! cannot load, a version that is not newer…) or a service that cannot be used. A command
//! given several connectors or files goes on after a refusal and exits 2 at the end.

use super::client::{
    ApiError, CatalogConnector, CatalogVersion, Client, ClientError, Installation, NewOAuthApp,
    Policy, PolicyUpdate, TenantOAuthApp,
};
use super::remote::{RemoteError, ServerArgs, clean, print_json};
use crate::credentials::Secret;
use clap::{ArgGroup, Args, Subcommand};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Examples shown by `junction connector --help`.
pub const CONNECTOR_EXAMPLES: &str = "\
Examples:
  export JUNCTION_SERVER=http://127.0.0.1:7480 JUNCTION_TOKEN=jo_...   # an operator token
  junction connector publish dist/github.wasm dist/rest.wasm
  junction connector list
  junction connector show github
  junction connector install --all               # every published connector not installed
  junction connector install github@1.2.0
  junction connector upgrade --all               # every installed connector with an upgrade
  junction connector rollback github
  junction connector skip github@1.3.0           # `upgrade` passes over 1.3.0 from now on

Add --json to any of them for the API's JSON instead of text.";

/// Examples shown by `junction policy --help`.
pub const POLICY_EXAMPLES: &str = "\
Examples:
  export JUNCTION_TOKEN=jo_...                    # an operator token
  junction policy show --tenant ten_0123456789abcdef
  junction policy set --tenant ten_0123456789abcdef --disable rest \\
      --allow-auth github=oauth2_code,bearer
  junction policy set --tenant ten_0123456789abcdef --enable-all
  junction policy show --tenant ten_0123456789abcdef --json > policy.json   # edit, then:
  junction policy set --tenant ten_0123456789abcdef --file policy.json
  GITHUB_CLIENT_SECRET=... junction policy oauth-app set --tenant ten_0123456789abcdef \\
      --connector github --client-id Iv1.0123 --client-secret-env GITHUB_CLIENT_SECRET \\
      --scope repo --scope read:org
  JUNCTION_TOKEN=jt_... junction policy show      # a tenant's own policy, with its token

Add --json to any of them for the API's JSON instead of text.";

// The options of `junction connector`; its help text is on the `Connector` command.
#[derive(Debug, Args)]
pub struct ConnectorCommand {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true, display_order = 99)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ConnectorSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorSubcommand {
    /// Publish connector components (`.wasm`) to the catalog, one version each.
    ///
    /// The service reads the name and version from the component's manifest. Publishing a
    /// version again with the same bytes changes nothing; with other bytes it is refused:
    /// published versions are immutable, so give a new build a new version. A file the
    /// service refuses (a component it cannot load, one built for an interface version it
    /// lacks) is reported and the others are still published; the exit status is then 2.
    /// Publishing does not install: see `junction connector install`.
    #[command(after_long_help = "\
Examples:
  junction connector publish target/wasm32-wasip2/release/github.wasm
  junction connector publish dist/*.wasm")]
    Publish {
        /// The components to publish.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// List the catalog's connectors: the installed (active) version, the newest published
    /// one, and the upgrade available (the newest version newer than the active one that is
    /// not skipped, and GA unless the active one is a preview).
    #[command(after_long_help = "\
Examples:
  junction connector list
  junction connector list --json")]
    List,
    /// Show a connector's published versions: state (active, available, skipped,
    /// previously installed; the newest is marked latest), release (GA or preview), digest,
    /// size and publication time.
    #[command(after_long_help = "\
Example:
  junction connector show github")]
    Show {
        /// The connector's name.
        name: String,
    },
    /// Install connectors, which makes them usable by the tenants their policy allows.
    ///
    /// Without a version, the service installs the newest GA version that is not skipped
    /// (or, when there is none, the newest version not skipped). An installed connector is
    /// changed with `upgrade` or `rollback` instead. Given several connectors, each one is
    /// reported as it goes (`[2/5] installed github 1.2.0`); a refusal is reported and the
    /// others go on, and the exit status is then 2.
    #[command(after_long_help = "\
Examples:
  junction connector install github
  junction connector install github@1.2.0 rest@0.4.1
  junction connector install --all")]
    Install(InstallArgs),
    /// Upgrade installed connectors to a newer version.
    ///
    /// Without a version: the newest GA version newer than the active one that is not
    /// skipped (a preview only when the active version is one; name a preview to go to it).
    /// Connections and automations keep working and use the new version
    /// from their next invocation. Given several connectors, each one is reported as it goes;
    /// a refusal is reported and the others go on, and the exit status is then 2.
    #[command(after_long_help = "\
Examples:
  junction connector upgrade github
  junction connector upgrade github@1.3.0-beta.2   # a preview, named explicitly
  junction connector upgrade --all")]
    Upgrade(UpgradeArgs),
    /// Go back to a version that was installed before (by default, the one active before
    /// the current one).
    #[command(after_long_help = "\
Examples:
  junction connector rollback github
  junction connector rollback github@1.1.0")]
    Rollback {
        /// The connector, and optionally the version to go back to.
        #[arg(value_name = "NAME[@VERSION]")]
        target: String,
    },
    /// Skip a version: upgrades (by default, and `upgrade --all`) pass over it, and an
    /// upgrade naming it is refused until it is unskipped. The active version cannot be
    /// skipped.
    #[command(after_long_help = "\
Example:
  junction connector skip github@1.3.0")]
    Skip {
        /// The connector and the version.
        #[arg(value_name = "NAME@VERSION")]
        target: String,
    },
    /// Make a skipped version available to upgrades again.
    #[command(after_long_help = "\
Example:
  junction connector unskip github@1.3.0")]
    Unskip {
        /// The connector and the version.
        #[arg(value_name = "NAME@VERSION")]
        target: String,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["connectors", "all"])))]
pub struct InstallArgs {
    /// The connectors to install, each optionally with a version.
    #[arg(value_name = "NAME[@VERSION]")]
    pub connectors: Vec<String>,
    /// Install every published connector that is not installed.
    #[arg(long, conflicts_with = "connectors")]
    pub all: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["connectors", "all"])))]
pub struct UpgradeArgs {
    /// The connectors to upgrade, each optionally with the version to upgrade to.
    #[arg(value_name = "NAME[@VERSION]")]
    pub connectors: Vec<String>,
    /// Upgrade every installed connector that has an upgrade available, each to the
    /// version `upgrade NAME` would choose.
    #[arg(long, conflicts_with = "connectors")]
    pub all: bool,
}

// The options of `junction policy`; its help text is on the `Policy` command.
#[derive(Debug, Args)]
pub struct PolicyCommand {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true, display_order = 99)]
    pub json: bool,
    #[command(subcommand)]
    pub command: PolicySubcommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicySubcommand {
    /// Show a tenant's policy: the connectors enabled and disabled, the auth types allowed,
    /// its own OAuth apps (never their secrets).
    ///
    /// With an operator token, name the tenant with --tenant. With a tenant's token, leave
    /// --tenant out: that shows the caller's own tenant's policy.
    #[command(after_long_help = "\
Examples:
  junction policy show --tenant ten_0123456789abcdef
  JUNCTION_TOKEN=jt_... junction policy show")]
    Show {
        /// The tenant's id (`ten_…`). Default: the tenant of the token (a tenant token).
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<String>,
    },
    /// Change a tenant's policy: reads the current one, applies the changes given, saves
    /// it and prints the result.
    ///
    /// With --file, the file (JSON, as `policy show --json` prints it) replaces the policy,
    /// then the flags apply; its `oauth_apps` are left alone (see `policy oauth-app`).
    /// A disabled connector stays disabled whatever is enabled. Connections that exist keep
    /// working whatever the policy says; new ones must fit it.
    #[command(after_long_help = "\
Auth types: none, api_key, basic, bearer, oauth2_code, oauth2_password,
oauth2_client_credentials. `--allow-auth '*=…'` applies to every connector without its own
entry; `--allow-auth NAME=all` removes a connector's entry.

Examples:
  junction policy set --tenant ten_0123456789abcdef --disable rest --enable github
  junction policy set --tenant ten_0123456789abcdef --enable-only github,http
  junction policy set --tenant ten_0123456789abcdef --allow-auth github=oauth2_code \\
      --allow-auth '*=api_key,bearer'
  junction policy set --tenant ten_0123456789abcdef --file policy.json")]
    Set(PolicySetArgs),
    /// A tenant's own OAuth app for a connector, used by its connections' consents instead
    /// of the service's.
    #[command(subcommand)]
    OauthApp(OAuthAppCommand),
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["enable", "enable_all", "enable_only", "disable", "allow_auth", "file"])
))]
pub struct PolicySetArgs {
    /// The tenant's id (`ten_…`).
    #[arg(long, value_name = "TENANT_ID")]
    pub tenant: String,
    /// Enable a connector: it is no longer disabled, and joins the enabled list when the
    /// policy has one. Repeat, or separate names with commas.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub enable: Vec<String>,
    /// Enable every installed connector (but those disabled).
    #[arg(long, conflicts_with = "enable_only")]
    pub enable_all: bool,
    /// Enable only these connectors (the others are hidden from the tenant). Repeat, or
    /// separate names with commas.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub enable_only: Vec<String>,
    /// Disable a connector: the tenant can no longer see it or create connections of it.
    /// Repeat, or separate names with commas.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub disable: Vec<String>,
    /// The auth types a connector's new connections may use, CONNECTOR=TYPE,TYPE (`*` for
    /// every connector without its own entry; TYPE `all` removes the restriction). Repeat
    /// for several connectors.
    #[arg(long, value_name = "CONNECTOR=TYPE,TYPE")]
    pub allow_auth: Vec<String>,
    /// Start from this policy (JSON) instead of the current one.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum OAuthAppCommand {
    /// Set a tenant's OAuth app for a connector (replacing the one set before).
    ///
    /// The client secret is read from an environment variable (--client-secret-env) or a
    /// file (--client-secret-file), never from the command line, where other local users
    /// could read it; it is stored encrypted and never shown again. Register the service's
    /// redirect URI (`GET /v1/oauth/redirect-uri`) in the app.
    #[command(after_long_help = "\
Examples:
  GITHUB_CLIENT_SECRET=... junction policy oauth-app set --tenant ten_0123456789abcdef \\
      --connector github --client-id Iv1.0123 --client-secret-env GITHUB_CLIENT_SECRET
  junction policy oauth-app set --tenant ten_0123456789abcdef --connector github \\
      --client-id Iv1.0123 --client-secret-file /run/secrets/github --scope repo")]
    Set(OAuthAppSetArgs),
    /// Remove a tenant's OAuth app for a connector: its consents use the service's app
    /// again, when there is one.
    #[command(after_long_help = "\
Example:
  junction policy oauth-app remove --tenant ten_0123456789abcdef --connector github")]
    Remove {
        /// The tenant's id (`ten_…`).
        #[arg(long, value_name = "TENANT_ID")]
        tenant: String,
        /// The connector's name.
        #[arg(long, value_name = "NAME")]
        connector: String,
    },
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("secret")
        .required(true)
        .args(["client_secret_env", "client_secret_file"])
))]
pub struct OAuthAppSetArgs {
    /// The tenant's id (`ten_…`).
    #[arg(long, value_name = "TENANT_ID")]
    pub tenant: String,
    /// The connector's name.
    #[arg(long, value_name = "NAME")]
    pub connector: String,
    /// The app's client id.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The environment variable holding the app's client secret.
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,
    /// A file holding the app's client secret (a final line break is dropped).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// A scope to ask for (default: the connector's). Repeat for several.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// NAME=VALUE: a connection field the connector builds its OAuth endpoints from (such as
    /// a self-hosted provider's address), fixed for every connection that uses the app, so
    /// that its secret goes only there. Repeat for several.
    #[arg(long = "endpoint-field", value_name = "NAME=VALUE", value_parser = parse_endpoint_field)]
    pub endpoint_fields: Vec<(String, String)>,
}

fn parse_endpoint_field(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !value.is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// Runs `junction connector …`.
pub async fn connector(cmd: ConnectorCommand) -> Result<(), RemoteError> {
    let client = cmd.server.client()?;
    let json = cmd.json;
    match cmd.command {
        ConnectorSubcommand::Publish { files } => publish(&client, &files, json).await,
        ConnectorSubcommand::List => list(&client, json).await,
        ConnectorSubcommand::Show { name } => show(&client, &name, json).await,
        ConnectorSubcommand::Install(args) => {
            install_or_upgrade(
                &client,
                Installation::Install,
                args.connectors,
                args.all,
                json,
            )
            .await
        }
        ConnectorSubcommand::Upgrade(args) => {
            install_or_upgrade(
                &client,
                Installation::Upgrade,
                args.connectors,
                args.all,
                json,
            )
            .await
        }
        ConnectorSubcommand::Rollback { target } => rollback(&client, &target, json).await,
        ConnectorSubcommand::Skip { target } => skip(&client, &target, true, json).await,
        ConnectorSubcommand::Unskip { target } => skip(&client, &target, false, json).await,
    }
}

/// Runs `junction policy …`.
pub async fn policy(cmd: PolicyCommand) -> Result<(), RemoteError> {
    let client = cmd.server.client()?;
    let json = cmd.json;
    match cmd.command {
        PolicySubcommand::Show { tenant } => policy_show(&client, tenant.as_deref(), json).await,
        PolicySubcommand::Set(args) => policy_set(&client, &args, json).await,
        PolicySubcommand::OauthApp(OAuthAppCommand::Set(args)) => {
            oauth_app_set(&client, &args, json).await
        }
        PolicySubcommand::OauthApp(OAuthAppCommand::Remove { tenant, connector }) => {
            oauth_app_remove(&client, &tenant, &connector, json).await
        }
    }
}

// ---- connector ----------------------------------------------------------------------------

/// `NAME` or `NAME@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    name: String,
    version: Option<String>,
}

impl Target {
    fn parse(text: &str) -> Result<Self, RemoteError> {
        let bad = || {
            RemoteError::Usage(format!(
                "`{}` is not NAME or NAME@VERSION (such as github or github@1.2.0)",
                clean(text)
            ))
        };
        let (name, version) = match text.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let unusable =
            |t: &str| t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '@');
        if unusable(name) || version.is_some_and(unusable) {
            return Err(bad());
        }
        let version = version.map(str::to_owned);
        Ok(Self {
            name: name.to_owned(),
            version,
        })
    }

    /// `NAME@VERSION`, the version required.
    fn parse_exact(text: &str) -> Result<(String, String), RemoteError> {
        match Self::parse(text)? {
            Self {
                name,
                version: Some(version),
            } => Ok((name, version)),
            Self { name, .. } => Err(RemoteError::Usage(format!(
                "give the version too: {}@VERSION (`junction connector show {}` lists them)",
                clean(&name),
                clean(&name)
            ))),
        }
    }
}

/// What happened to one of several items (files, connectors).
#[derive(Default)]
struct Tally {
    total: usize,
    done: usize,
    unchanged: usize,
    failed: Vec<String>,
    items: Vec<Value>,
}

impl Tally {
    fn new(total: usize) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }

    /// `[2/5] ` when there are several items, else nothing.
    fn prefix(&self, index: usize) -> String {
        if self.total > 1 {
            format!("[{}/{}] ", index + 1, self.total)
        } else {
            String::new()
        }
    }

    /// Reports a refused item: on stderr when there are several (the others go on), else
    /// as the command's error.
    fn refuse(
        &mut self,
        index: usize,
        label: String,
        message: String,
        item: Value,
    ) -> Result<(), RemoteError> {
        if self.total <= 1 {
            return Err(RemoteError::Usage(message));
        }
        eprintln!("{}error: {}: {message}", self.prefix(index), clean(&label));
        self.failed.push(label);
        self.items.push(item);
        Ok(())
    }

    /// After every item: the JSON document, or the summary; an error when any failed.
    fn finish(self, json: bool, verb: &str, noun: &str) -> Result<(), RemoteError> {
        if json {
            print_json(&json!({ "items": self.items }));
        } else if self.total > 1 {
            let unchanged = if self.unchanged > 0 {
                format!(", already {verb} {}", self.unchanged)
            } else {
                String::new()
            };
            crate::outln!(
                "{verb} {}{unchanged}, failed {}",
                self.done,
                self.failed.len()
            );
        }
        if self.failed.is_empty() {
            Ok(())
        } else {
            let names: Vec<String> = self.failed.iter().map(|n| clean(n)).collect();
            Err(RemoteError::Usage(format!(
                "{} of {} {noun} failed: {}",
                self.failed.len(),
                self.total,
                names.join(", ")
            )))
        }
    }
}

async fn publish(client: &Client, files: &[PathBuf], json: bool) -> Result<(), RemoteError> {
    let mut tally = Tally::new(files.len());
    for (i, file) in files.iter().enumerate() {
        let label = file.display().to_string();
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                let message = format!("cannot read {}: {e}", clean(&label));
                let item =
                    json!({"file": label, "error": {"code": "unreadable", "message": message}});
                tally.refuse(i, label, message, item)?;
                continue;
            }
        };
        match client.publish_version(bytes).await {
            Ok(reply) => {
                let v = &reply.value;
                if v.already_published {
                    tally.unchanged += 1;
                } else {
                    tally.done += 1;
                }
                if !json {
                    crate::outln!("{}{}", tally.prefix(i), published_line(v));
                }
                tally
                    .items
                    .push(json!({"file": label, "version": reply.json}));
            }
            Err(e) if is_refusal(&e) => {
                let item = json!({"file": label, "error": api_json(&e)});
                let message = catalog_error(client, e).to_string();
                tally.refuse(i, label, message, item)?;
            }
            Err(e) => return Err(catalog_error(client, e)),
        }
    }
    tally.finish(json, "published", "files")
}

/// `published github 1.2.0 (ga, sha256:0123456789ab…, 1.4 MiB)`, or
/// `already published: github 1.2.0 (identical)`.
fn published_line(v: &CatalogVersion) -> String {
    if v.already_published {
        format!(
            "already published: {} {} (identical)",
            clean(&v.name),
            clean(&v.version)
        )
    } else {
        format!(
            "published {} {} ({}, {}, {})",
            clean(&v.name),
            clean(&v.version),
            clean(&v.release),
            short_digest(&v.digest),
            size(v.size_bytes)
        )
    }
}

async fn list(client: &Client, json: bool) -> Result<(), RemoteError> {
    let reply = client
        .catalog()
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else if reply.value.items.is_empty() {
        crate::outln!(
            "The catalog is empty: publish connectors with `junction connector publish`."
        );
    } else {
        crate::out!("{}", catalog_table(&reply.value.items));
    }
    Ok(())
}

fn catalog_table(items: &[CatalogConnector]) -> String {
    let dash = |v: &Option<String>| clean(v.as_deref().unwrap_or("-"));
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "ACTIVE".to_owned(),
        "LATEST".to_owned(),
        "UPGRADE".to_owned(),
    ]];
    for c in items {
        rows.push(vec![
            clean(&c.name),
            dash(&c.active_version),
            dash(&c.latest_version),
            dash(&c.upgrade_available),
        ]);
    }
    table(&rows)
}

async fn show(client: &Client, name: &str, json: bool) -> Result<(), RemoteError> {
    let reply = client
        .catalog_connector(name)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        crate::out!("{}", connector_text(&reply.value));
    }
    Ok(())
}

fn connector_text(c: &CatalogConnector) -> String {
    let mut out = if c.title.is_empty() {
        format!("{}\n", clean(&c.name))
    } else {
        format!("{} — {}\n", clean(&c.name), clean(&c.title))
    };
    let lines = [
        (
            "active",
            c.active_version.as_deref().unwrap_or("not installed"),
        ),
        ("latest", c.latest_version.as_deref().unwrap_or("-")),
        ("upgrade", c.upgrade_available.as_deref().unwrap_or("-")),
    ];
    for (key, value) in lines {
        out.push_str(&format!("{:<9}{}\n", format!("{key}:"), clean(value)));
    }
    out.push('\n');
    let mut rows = vec![
        ["VERSION", "STATE", "RELEASE", "DIGEST", "SIZE", "PUBLISHED"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for v in &c.versions {
        rows.push(vec![
            clean(&v.version),
            // The newest version, when it is not the one in use, says so.
            clean(&if v.latest && v.state != "active" {
                format!("{} (latest)", v.state.replace('_', " "))
            } else {
                v.state.replace('_', " ")
            }),
            clean(&v.release),
            short_digest(&v.digest),
            size(v.size_bytes),
            clean(v.published_at.as_deref().unwrap_or("-")),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

async fn install_or_upgrade(
    client: &Client,
    operation: Installation,
    connectors: Vec<String>,
    all: bool,
    json: bool,
) -> Result<(), RemoteError> {
    let targets = connectors
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    // The active versions before, to say what changed (and, with --all, what to change).
    let before = if all || operation == Installation::Upgrade {
        let catalog = client
            .catalog()
            .await
            .map_err(|e| catalog_error(client, e))?;
        Some(catalog.value.items)
    } else {
        None
    };
    let targets = if all {
        let items = before.as_deref().unwrap_or_default();
        let chosen: Vec<Target> = items
            .iter()
            .filter(|c| match operation {
                Installation::Install => c.active_version.is_none() && !c.versions.is_empty(),
                _ => c.active_version.is_some() && c.upgrade_available.is_some(),
            })
            .map(|c| Target {
                name: c.name.clone(),
                version: None,
            })
            .collect();
        if chosen.is_empty() {
            if json {
                print_json(&json!({ "items": [] }));
            } else if operation == Installation::Install {
                crate::outln!("Nothing to install: every published connector is installed.");
            } else {
                crate::outln!("Nothing to upgrade: every installed connector is up to date.");
            }
            return Ok(());
        }
        chosen
    } else {
        targets
    };
    let active_before = |name: &str| {
        before
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.active_version.clone())
    };
    let mut tally = Tally::new(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let label = match &target.version {
            Some(v) => format!("{}@{v}", target.name),
            None => target.name.clone(),
        };
        match client
            .change_installation(&target.name, operation, target.version.as_deref())
            .await
        {
            Ok(reply) => {
                tally.done += 1;
                if !json {
                    let line = change_line(
                        operation,
                        &reply.value,
                        active_before(&target.name).as_deref(),
                    );
                    crate::outln!("{}{line}", tally.prefix(i));
                }
                tally
                    .items
                    .push(json!({"name": target.name, "connector": reply.json}));
            }
            Err(e) if is_refusal(&e) => {
                let item = json!({"name": target.name, "error": api_json(&e)});
                let message = catalog_error(client, e).to_string();
                tally.refuse(i, label, message, item)?;
            }
            Err(e) => return Err(catalog_error(client, e)),
        }
    }
    let (verb, noun) = match operation {
        Installation::Install => ("installed", "installations"),
        _ => ("upgraded", "upgrades"),
    };
    tally.finish(json, verb, noun)
}

/// `installed github 1.2.0`, `upgraded github 1.2.0 → 1.3.0`,
/// `rolled back github 1.3.0 → 1.2.0`.
fn change_line(operation: Installation, c: &CatalogConnector, before: Option<&str>) -> String {
    let name = clean(&c.name);
    let now = clean(c.active_version.as_deref().unwrap_or("-"));
    let verb = match operation {
        Installation::Install => return format!("installed {name} {now}"),
        Installation::Upgrade => "upgraded",
        Installation::Rollback => "rolled back",
    };
    match before {
        Some(b) => format!("{verb} {name} {} → {now}", clean(b)),
        None => format!("{verb} {name} to {now}"),
    }
}

async fn rollback(client: &Client, target: &str, json: bool) -> Result<(), RemoteError> {
    let target = Target::parse(target)?;
    // What is active now, to say what changed; the rollback reports any problem itself.
    let before = client
        .catalog_connector(&target.name)
        .await
        .ok()
        .and_then(|r| r.value.active_version);
    let reply = client
        .change_installation(
            &target.name,
            Installation::Rollback,
            target.version.as_deref(),
        )
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        crate::outln!(
            "{}",
            change_line(Installation::Rollback, &reply.value, before.as_deref())
        );
    }
    Ok(())
}

async fn skip(client: &Client, target: &str, skip: bool, json: bool) -> Result<(), RemoteError> {
    let (name, version) = Target::parse_exact(target)?;
    let reply = client
        .skip_version(&name, &version, skip)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        let upgrade = match &reply.value.upgrade_available {
            Some(v) => format!(" (upgrade available: {})", clean(v)),
            None => String::new(),
        };
        crate::outln!(
            "{} {} {}{upgrade}",
            if skip { "skipped" } else { "unskipped" },
            clean(&name),
            clean(&version)
        );
    }
    Ok(())
}

// ---- policy -------------------------------------------------------------------------------

async fn policy_show(client: &Client, tenant: Option<&str>, json: bool) -> Result<(), RemoteError> {
    let reply = client
        .policy(tenant)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        crate::out!("{}", policy_text(&reply.value));
    }
    Ok(())
}

/// A policy as `--file` gives it: as `policy show --json` prints it; the keys it lacks
/// take their defaults (every connector enabled, none disabled, every auth type allowed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    enabled_connectors: Option<Vec<String>>,
    #[serde(default)]
    disabled_connectors: Vec<String>,
    #[serde(default)]
    allowed_auth_types: BTreeMap<String, Vec<String>>,
    // What `policy show --json` prints besides, and `policy set` does not change.
    #[serde(default, rename = "tenant_id")]
    _tenant_id: IgnoredAny,
    #[serde(default)]
    oauth_apps: Option<Vec<Value>>,
    #[serde(default, rename = "updated_at")]
    _updated_at: IgnoredAny,
}

fn read_policy_file(path: &Path) -> Result<PolicyUpdate, RemoteError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RemoteError::Usage(format!(
            "cannot read the policy file {}: {e}",
            path.display()
        ))
    })?;
    let file: PolicyFile = serde_json::from_str(&text).map_err(|e| {
        RemoteError::Usage(format!(
            "the policy file {} is not a policy: {e} (expected JSON with enabled_connectors, \
             disabled_connectors, allowed_auth_types, as `junction policy show --json` prints)",
            path.display()
        ))
    })?;
    if file.oauth_apps.is_some_and(|apps| !apps.is_empty()) {
        eprintln!(
            "note: the oauth_apps of {} are left as they are; `junction policy oauth-app` changes them",
            path.display()
        );
    }
    Ok(PolicyUpdate {
        enabled_connectors: file.enabled_connectors,
        disabled_connectors: file.disabled_connectors,
        allowed_auth_types: file.allowed_auth_types,
    })
}

/// Applies `policy set`'s flags to a policy.
fn apply_changes(
    mut policy: PolicyUpdate,
    args: &PolicySetArgs,
) -> Result<PolicyUpdate, RemoteError> {
    let names = |list: &[String], flag: &str| -> Result<Vec<String>, RemoteError> {
        list.iter()
            .map(|n| {
                let n = n.trim();
                if n.is_empty() {
                    Err(RemoteError::Usage(format!("{flag} needs a connector name")))
                } else {
                    Ok(n.to_owned())
                }
            })
            .collect()
    };
    let enable = names(&args.enable, "--enable")?;
    let enable_only = names(&args.enable_only, "--enable-only")?;
    let disable = names(&args.disable, "--disable")?;
    if let Some(both) = disable
        .iter()
        .find(|d| enable.contains(d) || enable_only.contains(d))
    {
        return Err(RemoteError::Usage(format!(
            "`{}` is both enabled and disabled; give it once",
            clean(both)
        )));
    }
    if args.enable_all {
        policy.enabled_connectors = None;
    }
    if !enable_only.is_empty() {
        let mut only: Vec<String> = Vec::new();
        for name in enable_only {
            if !only.contains(&name) {
                only.push(name);
            }
        }
        policy.disabled_connectors.retain(|d| !only.contains(d));
        policy.enabled_connectors = Some(only);
    }
    for name in enable {
        policy.disabled_connectors.retain(|d| *d != name);
        if let Some(enabled) = &mut policy.enabled_connectors
            && !enabled.contains(&name)
        {
            enabled.push(name);
        }
    }
    for name in disable {
        if !policy.disabled_connectors.contains(&name) {
            policy.disabled_connectors.push(name);
        }
    }
    for rule in &args.allow_auth {
        let (connector, types) = rule
            .split_once('=')
            .map(|(c, t)| (c.trim(), t))
            .filter(|(c, _)| !c.is_empty())
            .ok_or_else(|| {
                RemoteError::Usage(format!(
                    "--allow-auth `{}` is not CONNECTOR=TYPE,TYPE (such as github=oauth2_code,bearer)",
                    clean(rule)
                ))
            })?;
        let types: Vec<String> = types
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        match types.as_slice() {
            [] => {
                return Err(RemoteError::Usage(format!(
                    "--allow-auth `{}` names no auth type; `{}=all` allows every type",
                    clean(rule),
                    clean(connector)
                )));
            }
            [all] if all == "all" => {
                policy.allowed_auth_types.remove(connector);
            }
            _ if types.iter().any(|t| t == "all") => {
                return Err(RemoteError::Usage(format!(
                    "--allow-auth `{}`: `all` stands alone",
                    clean(rule)
                )));
            }
            _ => {
                policy
                    .allowed_auth_types
                    .insert(connector.to_owned(), types);
            }
        }
    }
    Ok(policy)
}

async fn policy_set(client: &Client, args: &PolicySetArgs, json: bool) -> Result<(), RemoteError> {
    // Bad flags are reported before anything is asked of the service.
    apply_changes(PolicyUpdate::default(), args)?;
    let base = match &args.file {
        Some(path) => read_policy_file(path)?,
        None => {
            let current = client
                .policy(Some(&args.tenant))
                .await
                .map_err(|e| catalog_error(client, e))?;
            PolicyUpdate::from(&current.value)
        }
    };
    let updated = apply_changes(base, args)?;
    let reply = client
        .set_policy(&args.tenant, &updated)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        crate::outln!("Updated the policy of tenant {}:", clean(&args.tenant));
        crate::out!("{}", policy_text(&reply.value));
    }
    Ok(())
}

fn policy_text(p: &Policy) -> String {
    let enabled = match &p.enabled_connectors {
        None => "every installed connector".to_owned(),
        Some(list) if list.is_empty() => "none".to_owned(),
        Some(list) => list.join(", "),
    };
    let disabled = if p.disabled_connectors.is_empty() {
        "-".to_owned()
    } else {
        p.disabled_connectors.join(", ")
    };
    let auth = if p.allowed_auth_types.is_empty() {
        vec!["every type, for every connector".to_owned()]
    } else {
        p.allowed_auth_types
            .iter()
            .map(|(c, types)| format!("{c}: {}", types.join(", ")))
            .collect()
    };
    let apps = if p.oauth_apps.is_empty() {
        vec!["-".to_owned()]
    } else {
        p.oauth_apps.iter().map(oauth_app_text).collect()
    };
    let mut lines: Vec<(&str, Vec<String>)> = Vec::new();
    if !p.tenant_id.is_empty() {
        lines.push(("tenant", vec![p.tenant_id.clone()]));
    }
    lines.push(("enabled", vec![enabled]));
    lines.push(("disabled", vec![disabled]));
    lines.push(("auth types", auth));
    lines.push(("oauth apps", apps));
    lines.push((
        "updated",
        vec![p.updated_at.clone().unwrap_or_else(|| "never".to_owned())],
    ));
    let mut out = String::new();
    for (key, values) in lines {
        for (i, value) in values.iter().enumerate() {
            let key = if i == 0 {
                format!("{key}:")
            } else {
                String::new()
            };
            out.push_str(&format!("{key:<13}{}\n", clean(value)));
        }
    }
    out
}

/// `github: client id Iv1.0123, scopes repo read:org, client secret set (updated …)`.
fn oauth_app_text(app: &TenantOAuthApp) -> String {
    let scopes = if app.scopes.is_empty() {
        "the connector's scopes".to_owned()
    } else {
        format!("scopes {}", app.scopes.join(" "))
    };
    let secret = if app.client_secret_set {
        "client secret set"
    } else {
        "no client secret"
    };
    let updated = app
        .updated_at
        .as_ref()
        .map(|at| format!(" (updated {at})"))
        .unwrap_or_default();
    let endpoints = if app.endpoint_fields.is_empty() {
        String::new()
    } else {
        let fixed: Vec<String> = app
            .endpoint_fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(", endpoints from {}", fixed.join(" "))
    };
    format!(
        "{}: client id {}, {scopes}{endpoints}, {secret}{updated}",
        app.connector, app.client_id
    )
}

/// The client secret, from the variable or the file named (never from the command line).
fn client_secret(
    env: Option<&str>,
    file: Option<&Path>,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Secret, RemoteError> {
    let secret = match (env, file) {
        (Some(var), _) => {
            let value = lookup(var).ok_or_else(|| {
                RemoteError::Usage(format!(
                    "environment variable `{}` (--client-secret-env) is not set",
                    clean(var)
                ))
            })?;
            let value = value.into_string().map_err(|_| {
                RemoteError::Usage(format!(
                    "environment variable `{}` (--client-secret-env) is not valid UTF-8",
                    clean(var)
                ))
            })?;
            Secret::new(value)
        }
        (None, Some(path)) => {
            let mut text = std::fs::read_to_string(path).map_err(|e| {
                RemoteError::Usage(format!(
                    "cannot read the client secret file {}: {}",
                    path.display(),
                    e.kind()
                ))
            })?;
            let len = text.trim_end_matches(['\r', '\n']).len();
            text.truncate(len);
            Secret::new(text)
        }
        (None, None) => {
            return Err(RemoteError::Usage(
                "give the client secret with --client-secret-env VAR or --client-secret-file FILE"
                    .to_owned(),
            ));
        }
    };
    if secret.expose().trim().is_empty() {
        return Err(RemoteError::Usage(match env {
            Some(var) => format!(
                "environment variable `{}` (--client-secret-env) is empty",
                clean(var)
            ),
            None => "the client secret file is empty".to_owned(),
        }));
    }
    Ok(secret)
}

async fn oauth_app_set(
    client: &Client,
    args: &OAuthAppSetArgs,
    json: bool,
) -> Result<(), RemoteError> {
    let client_secret = client_secret(
        args.client_secret_env.as_deref(),
        args.client_secret_file.as_deref(),
        |v| std::env::var_os(v),
    )?;
    if args.client_id.trim().is_empty() {
        return Err(RemoteError::Usage("--client-id is empty".to_owned()));
    }
    let app = NewOAuthApp {
        client_id: args.client_id.clone(),
        client_secret,
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        endpoint_fields: args.endpoint_fields.iter().cloned().collect(),
    };
    let reply = client
        .set_oauth_app(&args.tenant, &args.connector, &app)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&reply.json);
    } else {
        crate::outln!(
            "Set the OAuth app of tenant {} for {}",
            clean(&args.tenant),
            clean(&oauth_app_text(&reply.value))
        );
    }
    Ok(())
}

async fn oauth_app_remove(
    client: &Client,
    tenant: &str,
    connector: &str,
    json: bool,
) -> Result<(), RemoteError> {
    client
        .remove_oauth_app(tenant, connector)
        .await
        .map_err(|e| catalog_error(client, e))?;
    if json {
        print_json(&json!({"removed": {"tenant_id": tenant, "connector": connector}}));
    } else {
        crate::outln!(
            "Removed the OAuth app of tenant {} for {}.",
            clean(tenant),
            clean(connector)
        );
    }
    Ok(())
}

// ---- shared -------------------------------------------------------------------------------

/// Whether a failed call refused one item only (the next may work), rather than saying the
/// service cannot be used at all (unreachable, token refused, not this API).
fn is_refusal(e: &ClientError) -> bool {
    match e.api() {
        Some((status, api)) => {
            status != http::StatusCode::UNAUTHORIZED
                && !matches!(
                    api.code.as_str(),
                    "operator_only" | "tenant_token_required" | "no_route" | "method_not_allowed"
                )
        }
        None => false,
    }
}

/// An API error as JSON, for `--json` documents of several items.
fn api_json(e: &ClientError) -> Value {
    match e.api() {
        Some((
            _,
            ApiError {
                code,
                message,
                details,
            },
        )) => {
            json!({"code": code, "message": message, "details": details})
        }
        None => json!({"code": "client", "message": e.to_string()}),
    }
}

/// The message of a failed call, with the details that help and a hint where one does.
pub(super) fn catalog_error(client: &Client, e: ClientError) -> RemoteError {
    let Some((status, api)) = e.api() else {
        return super::remote::transport_error(&e);
    };
    let mut message = format!("[{}] {}", clean(&api.code), clean(&api.message));
    let text = |name: &str| api.details.get(name).and_then(Value::as_str);
    let list = |name: &str| {
        api.details.get(name).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(clean)
                .collect::<Vec<_>>()
        })
    };
    for name in ["field", "parameter"] {
        if let Some(v) = text(name).filter(|v| !api.message.contains(v)) {
            message.push_str(&format!(" ({name} `{}`)", clean(v)));
        }
    }
    if let Some(supported) = list("supported").filter(|s| !s.is_empty())
        && !supported.iter().all(|s| api.message.contains(s.as_str()))
    {
        message.push_str(&format!(" (supported: {})", supported.join(", ")));
    }
    let digest_hex = |d: &str| d.split_once(':').map_or(d, |(_, h)| h).to_owned();
    if let (Some(published), Some(given)) = (text("published_digest"), text("given_digest"))
        && !api.message.contains(&digest_hex(published))
    {
        message.push_str(&format!(
            " (published {}, given {})",
            short_digest(published),
            short_digest(given)
        ));
    }
    if let Some(allowed) = list("allowed") {
        message.push_str(&format!(" (allowed: {})", allowed.join(", ")));
    }
    if status.is_server_error()
        && let ClientError::Api {
            request_id: Some(rid),
            ..
        } = &e
    {
        message.push_str(&format!(" (request {})", clean(rid)));
    }
    let hint = match api.code.as_str() {
        "unauthenticated" if client.has_token() => Some(
            "the service refused the token given (--token or JUNCTION_TOKEN): it is unknown or \
             revoked"
                .to_owned(),
        ),
        "unauthenticated" => Some(
            "no API token was given: set JUNCTION_TOKEN (or pass --token) to an operator token; \
             `junction admin create-operator` prints one"
                .to_owned(),
        ),
        "operator_only" => Some(
            "this needs an operator token (`jo_…`, printed by `junction admin create-operator`); \
             a tenant's own policy is read with `junction policy show` and no --tenant"
                .to_owned(),
        ),
        "tenant_token_required" => Some(
            "with an operator token, name the tenant: `junction policy show --tenant <ID>`"
                .to_owned(),
        ),
        "version_exists" if !api.message.contains("immutable") => {
            Some("published versions are immutable: give the new build a new version".to_owned())
        }
        "already_installed" => Some(
            "change the installed version with `junction connector upgrade` or `rollback`"
                .to_owned(),
        ),
        "not_installed" => {
            Some("install it first with `junction connector install <NAME>`".to_owned())
        }
        "version_skipped" => {
            Some("unskip it first with `junction connector unskip <NAME@VERSION>`".to_owned())
        }
        "not_found" if status == http::StatusCode::NOT_FOUND => Some(
            "`junction connector list` shows the published connectors, `junction connector \
             show <NAME>` their versions"
                .to_owned(),
        ),
        "no_route" | "method_not_allowed" => Some(format!(
            "is {} a Junction service of this version? (--server, JUNCTION_SERVER)",
            client.server()
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        message.push_str(&format!("\nhint: {hint}"));
    }
    RemoteError::Usage(message)
}

/// `sha256:0123456789ab…`.
fn short_digest(digest: &str) -> String {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("", digest));
    let short: String = hex.chars().take(12).collect();
    let more = if hex.chars().count() > 12 { "…" } else { "" };
    if algorithm.is_empty() {
        clean(&format!("{short}{more}"))
    } else {
        clean(&format!("{algorithm}:{short}{more}"))
    }
}

/// `512 B`, `12.3 KiB`, `1.4 MiB`.
fn size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    // Tenths, in integers: exact, and no float casts.
    let tenths = |unit: u64| {
        let t = bytes.saturating_mul(10).saturating_add(unit / 2) / unit;
        format!("{}.{}", t / 10, t % 10)
    };
    if bytes < KIB {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{} KiB", tenths(KIB))
    } else {
        format!("{} MiB", tenths(MIB))
    }
}

/// Aligned columns, two spaces apart; cells counted in characters.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.push_str(&" ".repeat(w - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    #[test]
    fn targets_are_a_name_and_maybe_a_version() {
        assert_eq!(
            Target::parse("github").unwrap(),
            Target {
                name: "github".into(),
                version: None
            }
        );
        assert_eq!(
            Target::parse("github@1.3.0-beta.2")
                .unwrap()
                .version
                .as_deref(),
            Some("1.3.0-beta.2")
        );
        for bad in ["", "@1.0.0", "github@", "github@1@2", "git hub"] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.exit_status(), 2);
            assert!(e.to_string().contains("is not NAME or NAME@VERSION"), "{e}");
        }
        let e = Target::parse_exact("github").unwrap_err().to_string();
        assert!(e.contains("give the version too: github@VERSION"), "{e}");
    }

    fn set_args(args: &[&str]) -> PolicySetArgs {
        let cli = Cli::try_parse_from(
            ["junction", "policy", "set", "--tenant", "ten_1"]
                .iter()
                .chain(args),
        )
        .unwrap();
        let Command::Policy(PolicyCommand {
            command: PolicySubcommand::Set(args),
            ..
        }) = cli.command
        else {
            panic!("not policy set");
        };
        args
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_flags_change_only_what_they_name() {
        let current = PolicyUpdate {
            enabled_connectors: None,
            disabled_connectors: strings(&["rest"]),
            allowed_auth_types: BTreeMap::from([("github".into(), strings(&["bearer"]))]),
        };
        let p = apply_changes(
            current.clone(),
            &set_args(&["--enable", "rest", "--disable", "http,probe"]),
        )
        .unwrap();
        assert_eq!(p.enabled_connectors, None);
        assert_eq!(p.disabled_connectors, ["http", "probe"]);
        assert_eq!(p.allowed_auth_types, current.allowed_auth_types);

        let p = apply_changes(
            current.clone(),
            &set_args(&[
                "--enable-only",
                "github",
                "--enable",
                "rest",
                "--allow-auth",
                "github=all",
                "--allow-auth",
                "*=api_key, bearer",
            ]),
        )
        .unwrap();
        assert_eq!(
            p.enabled_connectors.as_deref(),
            Some(&strings(&["github", "rest"])[..])
        );
        assert!(p.disabled_connectors.is_empty());
        assert_eq!(
            p.allowed_auth_types,
            BTreeMap::from([("*".into(), strings(&["api_key", "bearer"]))])
        );

        let p = apply_changes(
            PolicyUpdate {
                enabled_connectors: Some(strings(&["github"])),
                ..PolicyUpdate::default()
            },
            &set_args(&["--enable-all"]),
        )
        .unwrap();
        assert_eq!(p.enabled_connectors, None);
    }

    #[test]
    fn contradictory_policy_flags_are_usage_errors() {
        for (args, expected) in [
            (
                &["--enable", "a", "--disable", "a"][..],
                "both enabled and disabled",
            ),
            (&["--allow-auth", "github="], "names no auth type"),
            (&["--allow-auth", "=bearer"], "is not CONNECTOR=TYPE,TYPE"),
            (&["--allow-auth", "github=all,bearer"], "`all` stands alone"),
        ] {
            let e = apply_changes(PolicyUpdate::default(), &set_args(args)).unwrap_err();
            assert!(e.to_string().contains(expected), "{args:?}: {e}");
        }
        let e = Cli::try_parse_from([
            "junction",
            "policy",
            "set",
            "--tenant",
            "t",
            "--enable-all",
            "--enable-only",
            "a",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_policy_file_takes_what_policy_show_prints() {
        let dir = std::env::temp_dir().join(format!("junction-policy-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.json");
        std::fs::write(
            &file,
            r#"{"tenant_id": "ten_1", "enabled_connectors": ["github"], "disabled_connectors": [],
                "allowed_auth_types": {"github": ["bearer"]}, "oauth_apps": [],
                "updated_at": "2026-11-22T10:00:00.000Z"}"#,
        )
        .unwrap();
        let p = read_policy_file(&file).unwrap();
        assert_eq!(
            p.enabled_connectors.as_deref(),
            Some(&strings(&["github"])[..])
        );
        std::fs::write(&file, r#"{"enabled": ["github"]}"#).unwrap();
        let e = read_policy_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("is not a policy") && e.contains("enabled"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_client_secret_comes_from_the_variable_or_the_file_and_is_never_repeated() {
        let lookup = |name: &str| match name {
            "SET" => Some(OsString::from("s3cret-value")),
            "EMPTY" => Some(OsString::new()),
            _ => None,
        };
        assert_eq!(
            client_secret(Some("SET"), None, lookup).unwrap().expose(),
            "s3cret-value"
        );
        for var in ["EMPTY", "UNSET"] {
            let e = client_secret(Some(var), None, lookup)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{var}` (--client-secret-env)")), "{e}");
        }
        let dir = std::env::temp_dir().join(format!("junction-secret-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret-value\r\n").unwrap();
        let secret = client_secret(None, Some(&file), lookup).unwrap();
        assert_eq!(secret.expose(), "s3cret-value");
        assert!(!format!("{secret:?}").contains("s3cret"));
        std::fs::write(&file, "\n").unwrap();
        let e = client_secret(None, Some(&file), lookup).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_and_digests_are_short() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(12_595), "12.3 KiB");
        assert_eq!(size(1_468_006), "1.4 MiB");
        assert_eq!(size(64 << 20), "64.0 MiB");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest), "sha256:abababababab…");
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
    }

    fn connector_json() -> Value {
        json!({
            "name": "github", "title": "GitHub", "active_version": "1.2.0",
            "latest_version": "1.3.0-beta.1", "upgrade_available": null,
            "versions": [
                {"name": "github", "version": "1.3.0-beta.1", "title": "GitHub",
                 "release": "preview", "interface_version": "0.1.0",
                 "digest": format!("sha256:{}", "0".repeat(64)), "size_bytes": 1_468_006,
                 "published_at": "2026-11-22T10:00:00.000Z", "state": "skipped", "latest": true},
                {"name": "github", "version": "1.2.0", "title": "GitHub",
                 "release": "ga", "interface_version": "0.1.0",
                 "digest": format!("sha256:{}", "1".repeat(64)), "size_bytes": 900,
                 "published_at": "2026-11-21T10:00:00.000Z", "state": "active", "latest": false}
            ]
        })
    }

    #[test]
    fn show_and_list_print_aligned_tables() {
        let c: CatalogConnector = serde_json::from_value(connector_json()).unwrap();
        let text = connector_text(&c);
        assert!(
            text.starts_with("github — GitHub\nactive:  1.2.0\n"),
            "{text}"
        );
        assert!(text.contains("upgrade: -\n"), "{text}");
        let lines: Vec<&str> = text.lines().skip(5).collect();
        assert!(lines[0].starts_with("VERSION       STATE"), "{text}");
        let at = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
        assert_eq!(at(lines[0], "SIZE"), at(lines[1], "1.4 MiB"));
        assert_eq!(at(lines[0], "SIZE"), at(lines[2], "900 B"));
        assert!(lines[1].contains("sha256:000000000000…"), "{text}");

        let table = catalog_table(&[c]);
        assert_eq!(
            table,
            "NAME    ACTIVE  LATEST        UPGRADE\ngithub  1.2.0   1.3.0-beta.1  -\n"
        );
    }

    #[test]
    fn changes_say_from_what_to_what() {
        let c: CatalogConnector = serde_json::from_value(connector_json()).unwrap();
        assert_eq!(
            change_line(Installation::Install, &c, None),
            "installed github 1.2.0"
        );
        assert_eq!(
            change_line(Installation::Upgrade, &c, Some("1.1.0")),
            "upgraded github 1.1.0 → 1.2.0"
        );
        assert_eq!(
            change_line(Installation::Rollback, &c, None),
            "rolled back github to 1.2.0"
        );
        let v = &c.versions[0];
        assert_eq!(
            published_line(v),
            "published github 1.3.0-beta.1 (preview, sha256:000000000000…, 1.4 MiB)"
        );
    }

    #[test]
    fn policies_print_every_rule_without_secrets() {
        let p: Policy = serde_json::from_value(json!({
            "tenant_id": "ten_1", "enabled_connectors": ["github", "http"],
            "disabled_connectors": [], "allowed_auth_types": {"*": ["bearer"], "github": ["oauth2_code"]},
            "oauth_apps": [{"connector": "github", "client_id": "Iv1.x", "scopes": ["repo"],
                            "client_secret_set": true, "updated_at": "2026-11-22T10:00:00.000Z"}],
            "updated_at": null
        }))
        .unwrap();
        assert_eq!(
            policy_text(&p),
            "tenant:      ten_1\n\
             enabled:     github, http\n\
             disabled:    -\n\
             auth types:  *: bearer\n\
             \x20            github: oauth2_code\n\
             oauth apps:  github: client id Iv1.x, scopes repo, client secret set (updated 2026-11-22T10:00:00.000Z)\n\
             updated:     never\n"
        );
    }

    #[test]
    fn bulk_commands_take_names_or_all() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["junction", "connector"].iter().chain(args));
        let cli = parse(&["install", "github@1.2.0", "rest", "--json"]).unwrap();
        let Command::Connector(ConnectorCommand {
            json,
            command: ConnectorSubcommand::Install(args),
            ..
        }) = cli.command
        else {
            panic!("not install");
        };
        assert!(json);
        assert_eq!(args.connectors, ["github@1.2.0", "rest"]);
        assert!(parse(&["upgrade", "--all"]).is_ok());
        assert!(parse(&["upgrade"]).is_err());
        assert!(parse(&["upgrade", "--all", "github"]).is_err());
        assert!(parse(&["unpublish", "github@1.0.0"]).is_err());
        assert!(parse(&["--token", "jo_x", "publish", "a.wasm", "b.wasm"]).is_ok());
    }
}
