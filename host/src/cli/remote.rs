//! Commands that talk to a running Junction service (`junction serve`) over its HTTP API:
//! `junction connection create|list|show|test|delete` and
//! `junction invoke --connection <id> <action>`.
//!
//! Exit status: 0 on success; 1 when an invocation or a connection test ran and failed;
//! 2 for bad usage and when the service cannot be used (unreachable, token refused,
//! permission refused, unknown connection…).

use super::client::{
    Client, ClientError, Connection, ConnectionFilter, DEFAULT_SERVER, FieldArg, Health,
    NewConnection,
};
use crate::credentials::Secret;
use crate::vault::CredentialRef;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// Where the service is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of the Junction service (`junction serve`).
    #[arg(
        long,
        global = true,
        display_order = 100,
        env = "JUNCTION_SERVER",
        value_name = "URL",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// API token (`jt_…`; an operator's `jo_…` for `connector` and `policy`). Prefer the
    /// JUNCTION_TOKEN environment variable: a value on the command line is visible to other
    /// local users.
    #[arg(
        long,
        global = true,
        display_order = 101,
        env = "JUNCTION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = parse_secret
    )]
    pub token: Option<Secret>,
    /// Send the token over plain http to a host that is not this machine. Without it the
    /// command refuses: anyone on the network path could read the token. Prefer https://.
    #[arg(long, global = true, display_order = 102)]
    pub insecure: bool,
}

fn parse_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

impl ServerArgs {
    pub(crate) fn client(&self) -> Result<Client, RemoteError> {
        // `JUNCTION_TOKEN=` (set but empty) means no token.
        let token = self
            .token
            .as_ref()
            .filter(|t| !t.expose().trim().is_empty());
        if token.is_some() && !self.insecure {
            plain_http_refusal(&self.server)?;
        }
        Client::new(&self.server, token).map_err(|e| RemoteError::Usage(e.to_string()))
    }
}

/// Refuses a plain http address that is not this machine's: a token sent there crosses a
/// network in clear.
fn plain_http_refusal(server: &str) -> Result<(), RemoteError> {
    let base =
        crate::cli::client::parse_server(server).map_err(|e| RemoteError::Usage(e.to_string()))?;
    let Ok(url) = url::Url::parse(&base) else {
        return Ok(());
    };
    let local = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    };
    if url.scheme() == "http" && !local {
        return Err(RemoteError::Usage(format!(
            "refusing to send the API token over plain http to {base}: anyone on the network path could read it. Use an https:// address (TLS in front of the service), or pass --insecure if this network is trusted"
        )));
    }
    Ok(())
}

/// Examples shown by `junction connection --help`.
pub const CONNECTION_EXAMPLES: &str = "\
Examples:
  export JUNCTION_SERVER=http://127.0.0.1:7480 JUNCTION_TOKEN=jt_...
  junction connection create --connector github --name gh-ci --auth pat \\
      --field-env token=GITHUB_TOKEN
  junction connection list --connector github --health failing
  junction connection show con_0123456789abcdef0123456789
  junction connection test con_0123456789abcdef0123456789
  junction invoke --connection con_0123456789abcdef0123456789 get-repository \\
      --input '{\"owner\":\"octocat\",\"repo\":\"hello-world\"}'
  junction connection delete con_0123456789abcdef0123456789

Add --json to any of them for the API's JSON instead of text.";

/// Examples shown by `junction invoke --help`.
pub const INVOKE_EXAMPLES: &str = "\
Examples:
  # a component file, with the credentials given here
  junction invoke plugin.wasm get-repository --auth pat --field-env token=GITHUB_TOKEN \\
      --input '{\"owner\":\"octocat\",\"repo\":\"hello-world\"}'
  junction invoke plugin.wasm list-issues --connection-file connection.json --input @input.json
  # a stored connection, through the running service (`junction serve`)
  export JUNCTION_TOKEN=jt_...
  junction invoke --connection con_0123456789abcdef0123456789 get-repository \\
      --input '{\"owner\":\"octocat\",\"repo\":\"hello-world\"}'
  echo '{}' | junction invoke --connection con_0123456789abcdef0123456789 list-repositories -i -";

// The options of `junction connection`; its help text is on the `Connection` command.
#[derive(Debug, Args)]
pub struct ConnectionCommand {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true, display_order = 99)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ConnectionSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionSubcommand {
    /// Create a connection: a connector, an auth scheme and the field values it needs.
    ///
    /// Secret field values are stored encrypted by the service and never shown again; pass
    /// them with `--field-env NAME=VAR` so they stay out of the command line (visible to
    /// other local users) and out of your shell history. `junction inspect` or
    /// `GET /v1/connectors/{name}` lists a connector's auth schemes and fields.
    #[command(after_long_help = "\
OAuth 2.0 (authorization code): the command prints the URL to open in a browser and waits
until the consent is given. To use your own OAuth app, give its `client_id` and
`client_secret` fields (and `scopes`), and register the service's redirect URI in the app
(`GET /v1/oauth/redirect-uri`). The password and client credentials grants run at once.

Examples:
  GITHUB_TOKEN=ghp_... junction connection create --connector github --name gh-ci \\
      --auth pat --field-env token=GITHUB_TOKEN
  junction connection create --connector github --name gh-oauth --auth oauth \\
      --field client_id=Iv1.0123 --field-env client_secret=GITHUB_CLIENT_SECRET
  junction connection create --connector rest --name billing --folder fld_... \\
      --field base_url=https://billing.example.com --field-env api_key=BILLING_KEY \\
      --description 'Billing API, read-only key' --poll-interval 300
  junction connection create --connector github --name gh-vault --auth pat \\
      --field-ref token=corp:teams/ci/github#token")]
    Create(CreateArgs),
    /// List the connections you can see, as a table (all pages, or up to --limit).
    #[command(after_long_help = "\
Examples:
  junction connection list
  junction connection list --connector github --health failing
  junction connection list --folder fld_... --limit 20 --json")]
    List(ListArgs),
    /// Show one connection: connector, auth scheme, non-secret fields, which secrets are
    /// set (never their values), health.
    #[command(after_long_help = "\
Example:
  junction connection show con_0123456789abcdef0123456789")]
    Show {
        /// The connection's id (`con_…`).
        id: String,
    },
    /// Run the connector's connection test with the stored credentials and print the
    /// health. Exit status 1 when the connection is not healthy.
    #[command(after_long_help = "\
Example:
  junction connection test con_0123456789abcdef0123456789 && echo working")]
    Test {
        /// The connection's id (`con_…`).
        id: String,
    },
    /// Authorize an OAuth 2.0 connection again, keeping its id (automations that use it
    /// keep working). With the authorization code grant, prints the URL to open in a
    /// browser and waits for the consent; with the password or client credentials grant,
    /// runs the grant at once.
    #[command(after_long_help = "\
Example:
  junction connection reconnect con_0123456789abcdef0123456789")]
    Reconnect {
        /// The connection's id (`con_…`).
        id: String,
        /// Print the consent URL and return without waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a connection and its stored secrets.
    #[command(after_long_help = "\
Example:
  junction connection delete con_0123456789abcdef0123456789")]
    Delete {
        /// The connection's id (`con_…`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The connector's name (`github`), as `junction inspect` shows it.
    #[arg(long, value_name = "NAME")]
    pub connector: String,
    /// A name for the connection, unique in its folder.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The folder's id (`fld_…`). Default: your personal folder.
    #[arg(long, value_name = "FOLDER_ID")]
    pub folder: Option<String>,
    /// The auth scheme (see `junction inspect`); needed when the connector has several.
    #[arg(long, value_name = "SCHEME")]
    pub auth: Option<String>,
    /// A description for people.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// For polling triggers: seconds between polls (60 to 86400).
    #[arg(long, value_name = "SECS")]
    pub poll_interval: Option<u64>,
    /// A field value, NAME=VALUE; repeat for several fields. For secrets use --field-env.
    #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// A field value read from an environment variable, NAME=VAR; repeat for several.
    /// Recommended for secrets: the value stays out of the command line and is never
    /// printed.
    #[arg(long = "field-env", value_name = "NAME=VAR")]
    pub field_env: Vec<String>,
    /// A secret field whose value lives in a credential store (a vault the operator
    /// configured), NAME=STORE:PATH#KEY; repeat for several. The service reads the value
    /// when the connection is used, keeps it in memory for at most an hour, and never
    /// stores it.
    #[arg(long = "field-ref", value_name = "NAME=STORE:PATH#KEY")]
    pub field_refs: Vec<String>,
    /// OAuth 2.0 authorization code: print the consent URL and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

const HEALTH_STATUSES: [&str; 5] = [
    "unknown",
    "healthy",
    "failing",
    "needs_reauthentication",
    "pending_authorization",
];

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only connections in this folder (`fld_…`).
    #[arg(long, value_name = "FOLDER_ID")]
    pub folder: Option<String>,
    /// Only connections of this connector.
    #[arg(long, value_name = "NAME")]
    pub connector: Option<String>,
    /// Only connections with this auth scheme.
    #[arg(long, value_name = "SCHEME")]
    pub auth: Option<String>,
    /// Only connections with this health.
    #[arg(long, value_name = "STATUS", value_parser = HEALTH_STATUSES)]
    pub health: Option<String>,
    /// Print at most N connections (default: all, following the pages).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// A command that could not do its job, with the exit status that says why.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Bad flags or input; or the service cannot be used as asked (unreachable, token or
    /// permission refused, unknown connection).
    #[error("{0}")]
    Usage(String),
    /// The invocation or the connection test ran and failed.
    #[error("{0}")]
    Failed(String),
}

impl RemoteError {
    /// The process exit status: 1 for a failed invocation or test, 2 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
        }
    }
}

/// What `junction invoke` runs: a component file locally, or an action of a stored
/// connection through the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeTarget {
    Local { component: PathBuf, action: String },
    Remote { connection: String, action: String },
}

/// Applies the positional rules of `junction invoke`: `<COMPONENT> <ACTION>`, or only
/// `<ACTION>` with `--connection <ID>`.
pub fn invoke_target(
    connection: Option<&str>,
    positionals: &[String],
) -> Result<InvokeTarget, RemoteError> {
    let usage = |m: &str| Err(RemoteError::Usage(m.to_owned()));
    match (connection, positionals) {
        (Some(id), _) if id.trim().is_empty() => {
            usage("--connection needs the id of a stored connection (`con_…`)")
        }
        (Some(id), [action]) => Ok(InvokeTarget::Remote {
            connection: id.to_owned(),
            action: action.clone(),
        }),
        (Some(_), [_, _, ..]) => usage(
            "with --connection, give only the action: `junction invoke --connection <ID> <ACTION>` \
             (the stored connection already names its connector); to run a component file, \
             drop --connection",
        ),
        (None, [component, action]) => Ok(InvokeTarget::Local {
            component: PathBuf::from(component),
            action: action.clone(),
        }),
        (None, [_]) => usage(
            "give the component and the action: `junction invoke <COMPONENT> <ACTION>`, or \
             invoke a stored connection through the service: \
             `junction invoke --connection <ID> <ACTION>`",
        ),
        (_, []) => usage(
            "give the action to run: `junction invoke <COMPONENT> <ACTION>` or \
             `junction invoke --connection <ID> <ACTION>`",
        ),
        (None, _) => usage(
            "too many arguments: `junction invoke <COMPONENT> <ACTION>` takes two \
             (the action's input goes in --input)",
        ),
    }
}

/// Runs `junction connection …`.
pub async fn connection(cmd: ConnectionCommand) -> Result<(), RemoteError> {
    let client = cmd.server.client()?;
    let json = cmd.json;
    match cmd.command {
        ConnectionSubcommand::Create(args) => create(&client, args, json).await,
        ConnectionSubcommand::List(args) => list(&client, &args, json).await,
        ConnectionSubcommand::Show { id } => show(&client, &id, json).await,
        ConnectionSubcommand::Test { id } => test(&client, &id, json).await,
        ConnectionSubcommand::Delete { id } => delete(&client, &id, json).await,
        ConnectionSubcommand::Reconnect { id, no_wait } => {
            reconnect(&client, &id, no_wait, json).await
        }
    }
}

/// Runs `junction invoke --connection <id> <action>` with `input`, JSON text already read
/// from `--input`. Prints the action's output, or with `json` the whole API answer.
pub async fn invoke(
    server: &ServerArgs,
    connection: &str,
    action: &str,
    input: &str,
    json: bool,
) -> Result<(), RemoteError> {
    let input: Value = serde_json::from_str(input)
        .map_err(|e| RemoteError::Usage(format!("the input is not valid JSON: {e}")))?;
    let client = server.client()?;
    let reply = client
        .invoke(connection, action, input)
        .await
        .map_err(|e| service_error(&client, e, Call::Invoke))?;
    let inv = &reply.value.invocation;
    tracing::info!(
        invocation = %inv.id,
        connector = inv.connector.as_deref().unwrap_or(""),
        version = inv.connector_version.as_deref().unwrap_or(""),
        duration_ms = inv.duration_ms.unwrap_or_default(),
        "invocation succeeded"
    );
    if json {
        print_json(&reply.json);
    } else {
        print_json(&reply.value.output);
    }
    Ok(())
}

/// Field values from `--field NAME=VALUE` and `--field-env NAME=VAR`, and for each field
/// read from the environment, the variable's name (what is shown instead of the value).
#[derive(Debug, Default)]
pub struct FieldValues {
    pub values: BTreeMap<String, Secret>,
    pub from_env: BTreeMap<String, String>,
}

/// Reads `--field` and `--field-env` values; `lookup` reads an environment variable.
pub fn field_values(
    fields: &[String],
    field_env: &[String],
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<FieldValues, RemoteError> {
    let mut out = FieldValues::default();
    for f in fields {
        // The text may be a secret typed without its name: never repeat it.
        let (name, value) = f
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| {
                RemoteError::Usage(
                    "a --field value is not NAME=VALUE (the `NAME=` part is missing)".to_owned(),
                )
            })?;
        insert(&mut out, name, Secret::new(value))?;
    }
    for f in field_env {
        let (name, var) = f
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| RemoteError::Usage(format!("--field-env `{f}` is not NAME=VAR")))?;
        let value = lookup(var).ok_or_else(|| {
            RemoteError::Usage(format!(
                "environment variable `{var}` (for field `{name}`) is not set"
            ))
        })?;
        let value = value.into_string().map_err(|_| {
            RemoteError::Usage(format!(
                "environment variable `{var}` (for field `{name}`) is not valid UTF-8"
            ))
        })?;
        if value.is_empty() {
            return Err(RemoteError::Usage(format!(
                "environment variable `{var}` (for field `{name}`) is empty"
            )));
        }
        insert(&mut out, name, Secret::new(value))?;
        out.from_env.insert(name.to_owned(), var.to_owned());
    }
    Ok(out)
}

/// Reads `--field-ref NAME=STORE:PATH#KEY` values.
pub fn field_refs(refs: &[String]) -> Result<Vec<(String, CredentialRef)>, RemoteError> {
    refs.iter()
        .map(|f| {
            let (name, reference) = f
                .split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| {
                    RemoteError::Usage(format!("--field-ref `{f}` is not NAME=STORE:PATH#KEY"))
                })?;
            let r = CredentialRef::parse(reference).ok_or_else(|| {
                RemoteError::Usage(format!(
                    "--field-ref `{f}`: `{reference}` is not STORE:PATH#KEY, such as corp:teams/ci/github#token"
                ))
            })?;
            Ok((name.to_owned(), r))
        })
        .collect()
}

fn insert(out: &mut FieldValues, name: &str, value: Secret) -> Result<(), RemoteError> {
    if out.values.insert(name.to_owned(), value).is_some() {
        return Err(RemoteError::Usage(format!(
            "field `{name}` is given more than once"
        )));
    }
    Ok(())
}

async fn create(client: &Client, args: CreateArgs, json: bool) -> Result<(), RemoteError> {
    let fields = field_values(&args.fields, &args.field_env, |v| std::env::var_os(v))?;
    let mut values: BTreeMap<String, FieldArg> = fields
        .values
        .iter()
        .map(|(k, v)| (k.clone(), FieldArg::Value(v.clone())))
        .collect();
    for (name, r) in field_refs(&args.field_refs)? {
        if values
            .insert(name.clone(), FieldArg::Reference(r))
            .is_some()
        {
            return Err(RemoteError::Usage(format!(
                "field `{name}` is given more than once"
            )));
        }
    }
    let new = NewConnection {
        connector: args.connector,
        name: args.name,
        folder_id: args.folder,
        auth: args.auth,
        description: args.description,
        fields: values,
        poll_interval_seconds: args.poll_interval,
    };
    let reply = client
        .create_connection(&new)
        .await
        .map_err(|e| service_error(client, e, Call::Manage))?;
    if json {
        let mut shown = reply.json;
        mask_env_fields(&mut shown, &fields.from_env);
        print_json(&shown);
    } else {
        crate::outln!("Created connection {}.", clean(&reply.value.id));
        print_connection(&reply.value, &fields.from_env);
    }
    match &reply.value.authorization {
        Some(a) if !args.no_wait && !json => await_consent(client, &reply.value, a).await,
        _ => Ok(()),
    }
}

async fn reconnect(
    client: &Client,
    id: &str,
    no_wait: bool,
    json: bool,
) -> Result<(), RemoteError> {
    let reply = client
        .reconnect_connection(id)
        .await
        .map_err(|e| service_error(client, e, Call::One))?;
    if json {
        print_json(&reply.json);
    } else if reply.value.authorization.is_none() {
        crate::outln!(
            "Reconnected {}: {}",
            clean(id),
            health_text(&reply.value.health)
        );
    }
    match &reply.value.authorization {
        Some(a) if !no_wait && !json => await_consent(client, &reply.value, a).await,
        Some(a) if !json => {
            crate::outln!(
                "Open this URL in a browser to authorize the connection:\n  {}",
                clean(&a.url)
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Prints the consent URL and waits (polling the connection) until the provider sent the
/// user back and the service recorded the outcome, or the authorization expired.
async fn await_consent(
    client: &Client,
    connection: &Connection,
    authorization: &crate::cli::client::Authorization,
) -> Result<(), RemoteError> {
    use std::io::Write as _;
    crate::outln!(
        "\nOpen this URL in a browser to authorize the connection (it works once, until {}):\n  {}\n\
         The provider sends you back to {}; that address must be registered in the OAuth app.",
        clean(&authorization.expires_at),
        clean(&authorization.url),
        clean(&authorization.redirect_uri)
    );
    let before = connection.health.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10 * 60);
    let mut dots = 0;
    eprint!(
        "Waiting for the consent (Ctrl-C stops waiting; `junction connection reconnect` starts again) "
    );
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = client
            .connection(&connection.id)
            .await
            .map_err(|e| service_error(client, e, Call::One))?
            .value;
        let changed = now.health.checked_at != before.checked_at
            || now.health.reason != before.reason
            || now.health.status != before.status;
        if changed {
            eprintln!();
            if now.health.is_healthy() {
                crate::outln!(
                    "Authorized: {} is {}.",
                    clean(&now.id),
                    health_text(&now.health)
                );
                return Ok(());
            }
            return Err(RemoteError::Failed(format!(
                "the authorization of {} failed: {}",
                clean(&now.id),
                health_text(&now.health)
            )));
        }
        if std::time::Instant::now() > deadline {
            eprintln!();
            return Err(RemoteError::Failed(format!(
                "no consent within 10 minutes; run `junction connection reconnect {}` to start again",
                clean(&connection.id)
            )));
        }
        dots += 1;
        if dots % 5 == 0 {
            eprint!(".");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Replaces the values of fields read from the environment by `<from $VAR>`: the service
/// shows non-secret fields, but what came from the environment is never printed.
fn mask_env_fields(connection: &mut Value, from_env: &BTreeMap<String, String>) {
    if let Some(fields) = connection.get_mut("fields").and_then(Value::as_object_mut) {
        for (name, var) in from_env {
            if let Some(v) = fields.get_mut(name) {
                *v = Value::String(format!("<from ${var}>"));
            }
        }
    }
}

/// The most a page may hold, per the API.
const MAX_PAGE: u32 = 200;

async fn list(client: &Client, args: &ListArgs, json: bool) -> Result<(), RemoteError> {
    let filter = ConnectionFilter {
        folder_id: args.folder.clone(),
        connector: args.connector.clone(),
        auth: args.auth.clone(),
        health: args.health.clone(),
    };
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = args
            .limit
            .map(|l| l.saturating_sub(u32::try_from(items.len()).unwrap_or(u32::MAX)));
        let page_size = wanted.map_or(MAX_PAGE, |w| w.min(MAX_PAGE));
        let page = client
            .list_connections(&filter, Some(page_size), cursor.as_deref())
            .await
            .map_err(|e| service_error(client, e, Call::Manage))?
            .value;
        let got = page.items.len();
        items.extend(page.items);
        if let Some(limit) = args.limit {
            items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let full = args
            .limit
            .is_some_and(|l| items.len() >= usize::try_from(l).unwrap_or(usize::MAX));
        match page.next_cursor {
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(RemoteError::Usage(format!(
                    "{} returned the same page cursor twice; stopping",
                    client.server()
                )));
            }
            // An empty page that promises more would loop forever: stop there.
            Some(next) if !full && got > 0 => cursor = Some(next),
            rest => {
                cursor = rest;
                break;
            }
        }
    }
    if json {
        print_json(&serde_json::json!({"items": items, "next_cursor": cursor}));
        return Ok(());
    }
    let connections = items
        .iter()
        .map(|item| {
            serde::Deserialize::deserialize(item).map_err(|e| {
                RemoteError::Usage(format!(
                    "a connection listed by {} does not match the API: {e}",
                    client.server()
                ))
            })
        })
        .collect::<Result<Vec<Connection>, _>>()?;
    if connections.is_empty() {
        crate::outln!("No connections.");
        return Ok(());
    }
    crate::out!("{}", table(&connections));
    if cursor.is_some() {
        eprintln!("(more connections exist: raise --limit, or use --json for the next cursor)");
    }
    Ok(())
}

/// The table `connection list` prints: one line per connection, aligned columns.
fn table(connections: &[Connection]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "NAME".to_owned(),
        "CONNECTOR".to_owned(),
        "AUTH".to_owned(),
        "HEALTH".to_owned(),
        "FOLDER".to_owned(),
    ]];
    for c in connections {
        rows.push([
            clean(&c.id),
            clean(&c.name),
            clean(&connector_label(c)),
            clean(c.auth.as_deref().unwrap_or("-")),
            clean(&c.health.status),
            clean(c.folder_id.as_deref().unwrap_or("-")),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn connector_label(c: &Connection) -> String {
    match &c.connector_version {
        Some(v) => format!("{}@{v}", c.connector),
        None => c.connector.clone(),
    }
}

async fn show(client: &Client, id: &str, json: bool) -> Result<(), RemoteError> {
    let reply = client
        .connection(id)
        .await
        .map_err(|e| service_error(client, e, Call::One))?;
    if json {
        print_json(&reply.json);
    } else {
        print_connection(&reply.value, &BTreeMap::new());
    }
    Ok(())
}

async fn test(client: &Client, id: &str, json: bool) -> Result<(), RemoteError> {
    let reply = client
        .test_connection(id)
        .await
        .map_err(|e| service_error(client, e, Call::One))?;
    let health = &reply.value.health;
    if json {
        print_json(&reply.json);
    } else {
        crate::outln!("{}: {}", clean(id), health_text(health));
    }
    if health.is_healthy() {
        Ok(())
    } else {
        Err(RemoteError::Failed(format!(
            "[{}] the connection test of {} failed",
            clean(&health.status),
            clean(id)
        )))
    }
}

async fn delete(client: &Client, id: &str, json: bool) -> Result<(), RemoteError> {
    client
        .delete_connection(id)
        .await
        .map_err(|e| service_error(client, e, Call::One))?;
    if json {
        print_json(&serde_json::json!({"deleted": id}));
    } else {
        crate::outln!("Deleted connection {}.", clean(id));
    }
    Ok(())
}

/// `key: value` lines for one connection. Fields read from the environment show the
/// variable's name, never the value.
fn print_connection(c: &Connection, from_env: &BTreeMap<String, String>) {
    crate::out!("{}", connection_text(c, from_env));
}

fn connection_text(c: &Connection, from_env: &BTreeMap<String, String>) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("id", c.id.clone()),
        ("name", c.name.clone()),
        (
            "connector",
            match &c.connector_version {
                Some(v) => format!("{}@{v}", c.connector),
                None => format!("{} (not loaded)", c.connector),
            },
        ),
        ("auth", c.auth.clone().unwrap_or_else(|| "-".into())),
        ("folder", c.folder_id.clone().unwrap_or_else(|| "-".into())),
    ];
    if !c.description.is_empty() {
        lines.push(("description", c.description.clone()));
    }
    let fields: Vec<String> = c
        .fields
        .iter()
        .map(|(k, v)| match from_env.get(k) {
            Some(var) => format!("{k}=<from ${var}>"),
            None => format!("{k}={v}"),
        })
        .collect();
    lines.push((
        "fields",
        if fields.is_empty() {
            "-".into()
        } else {
            fields.join(", ")
        },
    ));
    let secrets: Vec<String> = c
        .secrets
        .iter()
        .map(|(k, set)| match c.secret_refs.get(k) {
            Some(r) => format!("{k} (from credential store {r})"),
            None => format!("{k} ({})", if *set { "set" } else { "not set" }),
        })
        .collect();
    lines.push((
        "secrets",
        if secrets.is_empty() {
            "-".into()
        } else {
            secrets.join(", ")
        },
    ));
    if let Some(secs) = c.poll_interval_seconds {
        lines.push(("poll interval", format!("{secs}s")));
    }
    lines.push(("health", health_text(&c.health)));
    if let Some(at) = &c.created_at {
        let by = c
            .created_by
            .as_ref()
            .map(|p| format!(" by {p}"))
            .unwrap_or_default();
        lines.push(("created", format!("{at}{by}")));
    }
    if let Some(at) = &c.updated_at {
        lines.push(("updated", at.clone()));
    }
    let mut out = String::new();
    for (key, value) in lines {
        out.push_str(&format!("{:<15}{}\n", format!("{key}:"), clean(&value)));
    }
    out
}

fn health_text(h: &Health) -> String {
    let mut text = h.status.clone();
    if let Some(reason) = h.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(": {reason}"));
    }
    if let Some(at) = &h.checked_at {
        text.push_str(&format!(" (checked {at})"));
    }
    text
}

/// Text from the service, made safe for a terminal: control characters (escape sequences,
/// carriage returns) of names and messages other people chose are not interpreted.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Text of several lines from the service (an error message quoting an upstream API's
/// body), made safe for a terminal like [`clean`] but with its line breaks and tabs kept
/// (`\r\n` as `\n`).
pub(crate) fn clean_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

pub(crate) fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => crate::outln!("{text}"),
        Err(_) => crate::outln!("{value}"),
    }
}

/// Which kind of call failed: it decides the exit status of an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `connection list` and `create`: a folder or a connector may be unknown.
    Manage,
    /// `connection show`, `test`, `delete`: the connection may be unknown.
    One,
    Invoke,
}

impl Call {
    fn names_a_connection(self) -> bool {
        matches!(self, Self::One | Self::Invoke)
    }
}

/// A call that got no answer from the API (unreachable, not the service…), with a hint.
pub(super) fn transport_error(e: &ClientError) -> RemoteError {
    let hint = match e {
        ClientError::Unreachable { .. } => {
            "\nhint: start the service with `junction serve`, or point --server \
             (JUNCTION_SERVER) at the address where it runs"
        }
        _ => "",
    };
    RemoteError::Usage(format!("{e}{hint}"))
}

/// The message and exit status of a failed call, with a hint where one helps.
fn service_error(client: &Client, e: ClientError, call: Call) -> RemoteError {
    let Some((status, api)) = e.api() else {
        return transport_error(&e);
    };
    let mut message = format!("[{}] {}", clean(&api.code), clean_text(&api.message));
    let detail = |name: &str| api.details.get(name).and_then(Value::as_str);
    for name in ["field", "parameter"] {
        if let Some(v) = detail(name).filter(|v| !api.message.contains(v)) {
            message.push_str(&format!(" ({name} `{}`)", clean(v)));
        }
    }
    if let Some(errors) = api.details.get("errors").and_then(Value::as_array) {
        for err in errors {
            let path = err.get("path").and_then(Value::as_str).unwrap_or("");
            let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
            if msg.is_empty() || (path.is_empty() && api.message.contains(msg)) {
                continue;
            }
            let path = if path.is_empty() { "(input)" } else { path };
            message.push_str(&format!("\n  at {}: {}", clean(path), clean(msg)));
        }
    }
    if let Some(secs) = api
        .details
        .get("retry_after_seconds")
        .and_then(Value::as_u64)
    {
        message.push_str(&format!(" (retry after {secs}s)"));
    }
    if let Some(id) = detail("invocation_id") {
        message.push_str(&format!(" (invocation {})", clean(id)));
    }
    if status.is_server_error()
        && detail("invocation_id").is_none()
        && let ClientError::Api {
            request_id: Some(rid),
            ..
        } = &e
    {
        message.push_str(&format!(" (request {})", clean(rid)));
    }
    let hint = match api.code.as_str() {
        "unauthenticated" if client.has_token() => Some(
            "the service refused the token given (--token or JUNCTION_TOKEN): it is unknown \
             or revoked"
                .to_owned(),
        ),
        "unauthenticated" => Some(
            "no API token was given: set JUNCTION_TOKEN (or pass --token); \
             `junction admin create-tenant` prints a tenant's first token"
                .to_owned(),
        ),
        "not_found" if status == http::StatusCode::NOT_FOUND && call.names_a_connection() => {
            Some("`junction connection list` shows the connections you can see".to_owned())
        }
        "no_route" | "method_not_allowed" => Some(format!(
            "is {} a Junction service of this version? (--server, JUNCTION_SERVER)",
            client.server()
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        message.push_str(&format!("\nhint: {hint}"));
    }
    let ran_and_failed = call == Call::Invoke
        && api.code != "connection"
        && (detail("invocation_id").is_some() || matches!(status.as_u16(), 422 | 429 | 502 | 504));
    if ran_and_failed {
        RemoteError::Failed(message)
    } else {
        RemoteError::Usage(message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn messages_keep_their_line_breaks_and_lose_other_control_characters() {
        let body = "the upstream API answered 500: line one\r\n\tline two\n\u{1b}[31mred";
        assert_eq!(
            clean_text(body),
            "the upstream API answered 500: line one\n\tline two\n\u{fffd}[31mred"
        );
        assert_eq!(
            clean("a\nb"),
            "a\u{fffd}b",
            "one-line fields stay on one line"
        );
    }

    #[test]
    fn a_token_goes_over_plain_http_only_to_this_machine_unless_insecure_is_given() {
        let args = |server: &str, insecure: bool| ServerArgs {
            server: server.into(),
            token: Some(Secret::new("jt_token")),
            insecure,
        };
        for local in [
            "http://127.0.0.1:7480",
            "http://[::1]:7480",
            "localhost:7480",
            "http://junction.localhost",
            "https://junction.example.com",
        ] {
            assert!(args(local, false).client().is_ok(), "{local}");
        }
        for remote in [
            "http://junction.example.com",
            "10.0.0.5:7480",
            "http://[fd00::1]",
        ] {
            let refused = args(remote, false).client().expect_err(remote).to_string();
            assert!(
                refused.contains("refusing to send the API token over plain http")
                    && refused.contains("--insecure"),
                "{refused}"
            );
            assert!(args(remote, true).client().is_ok(), "{remote}");
        }
        // Without a token there is nothing to protect.
        let anonymous = ServerArgs {
            server: "http://junction.example.com".into(),
            token: None,
            insecure: false,
        };
        assert!(anonymous.client().is_ok());
    }

    #[test]
    fn invoke_takes_component_and_action_locally_and_only_the_action_remotely() {
        assert_eq!(
            invoke_target(None, &strings(&["p.wasm", "echo"])).unwrap(),
            InvokeTarget::Local {
                component: "p.wasm".into(),
                action: "echo".into()
            }
        );
        assert_eq!(
            invoke_target(Some("con_1"), &strings(&["echo"])).unwrap(),
            InvokeTarget::Remote {
                connection: "con_1".into(),
                action: "echo".into()
            }
        );
    }

    #[test]
    fn invoke_explains_a_wrong_number_of_positionals() {
        let cases: [(Option<&str>, &[&str], &str); 5] = [
            (Some("con_1"), &["p.wasm", "echo"], "give only the action"),
            (None, &["echo"], "give the component and the action"),
            (None, &[], "give the action to run"),
            (None, &["a", "b", "c"], "too many arguments"),
            (Some(" "), &["echo"], "--connection needs the id"),
        ];
        for (connection, positionals, expected) in cases {
            let e = invoke_target(connection, &strings(positionals)).unwrap_err();
            assert_eq!(e.exit_status(), 2);
            assert!(e.to_string().contains(expected), "{positionals:?}: {e}");
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).map(OsString::from)
    }

    #[test]
    fn field_env_reads_the_variable_and_remembers_only_its_name() {
        let fields = field_values(
            &strings(&["base_url=https://api.example.com/?a=b"]),
            &strings(&["token=GH_TOKEN"]),
            env(&[("GH_TOKEN", "ghp_s3cret")]),
        )
        .unwrap();
        assert_eq!(fields.values["token"].expose(), "ghp_s3cret");
        assert_eq!(
            fields.values["base_url"].expose(),
            "https://api.example.com/?a=b"
        );
        assert_eq!(fields.from_env["token"], "GH_TOKEN");
        assert!(!format!("{fields:?}").contains("ghp_s3cret"));
    }

    #[test]
    fn bad_field_flags_are_usage_errors_that_never_repeat_a_value() {
        let cases: [(&[&str], &[&str], &str); 6] = [
            (&["ghp_pasted_alone"], &[], "is not NAME=VALUE"),
            (&["=ghp_no_name"], &[], "is not NAME=VALUE"),
            (&[], &["token"], "`token` is not NAME=VAR"),
            (
                &[],
                &["token=MISSING"],
                "`MISSING` (for field `token`) is not set",
            ),
            (
                &[],
                &["token=EMPTY"],
                "`EMPTY` (for field `token`) is empty",
            ),
            (
                &["token=ghp_a"],
                &["token=SET"],
                "`token` is given more than once",
            ),
        ];
        for (fields, from_env, expected) in cases {
            let e = field_values(
                &strings(fields),
                &strings(from_env),
                env(&[("EMPTY", ""), ("SET", "ghp_b")]),
            )
            .unwrap_err();
            let text = e.to_string();
            assert_eq!(e.exit_status(), 2);
            assert!(text.contains(expected), "{fields:?} {from_env:?}: {text}");
            assert!(!text.contains("ghp_"), "a value leaked: {text}");
        }
    }

    mod parsing {
        use crate::cli::{Cli, Command};
        use clap::{CommandFactory as _, Parser as _, error::ErrorKind};

        fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
            Cli::try_parse_from(std::iter::once("junction").chain(args.iter().copied()))
        }

        #[test]
        fn the_command_line_definition_is_consistent() {
            Cli::command().debug_assert();
        }

        #[test]
        fn invoke_with_a_connection_id_takes_the_action_alone() {
            let cli = parse(&[
                "invoke",
                "--connection",
                "con_1",
                "echo",
                "-i",
                "{}",
                "--json",
            ])
            .unwrap();
            let Command::Invoke {
                target,
                remote,
                json,
                ..
            } = cli.command
            else {
                panic!("not invoke");
            };
            assert_eq!(target, ["echo"]);
            assert_eq!(remote.as_deref(), Some("con_1"));
            assert!(json);
        }

        #[test]
        fn the_connection_file_keeps_its_short_flag() {
            for flag in ["-c", "--connection-file"] {
                let cli = parse(&["invoke", "p.wasm", "echo", flag, "conn.json"]).unwrap();
                let Command::Invoke {
                    target,
                    remote,
                    connection,
                    ..
                } = cli.command
                else {
                    panic!("not invoke");
                };
                assert_eq!(target, ["p.wasm", "echo"]);
                assert_eq!(remote, None);
                assert_eq!(
                    connection.connection_file.as_deref(),
                    Some(std::path::Path::new("conn.json"))
                );
            }
        }

        #[test]
        fn local_flags_do_not_mix_with_a_connection_id() {
            for flag in [
                &["-c", "f.json"][..],
                &["--field", "a=b"],
                &["--field-env", "a=B"],
                &["--auth", "pat"],
                &["--timeout", "3"],
                &["--memory-mib", "8"],
            ] {
                let mut args = vec!["invoke", "--connection", "con_1", "echo"];
                args.extend_from_slice(flag);
                let e = parse(&args).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{flag:?}");
            }
            let e = parse(&["invoke", "p.wasm", "echo", "--json"]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
            let e = parse(&["invoke", "a", "b", "c"]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TooManyValues);
        }

        #[test]
        fn connection_flags_parse_before_or_after_the_subcommand() {
            let cli = parse(&[
                "connection",
                "--json",
                "create",
                "--connector",
                "github",
                "--name",
                "gh",
                "--field",
                "base_url=http://x",
                "-f",
                "owner=o",
                "--field-env",
                "token=GH_TOKEN",
                "--poll-interval",
                "300",
                "--server",
                "http://127.0.0.1:9",
            ])
            .unwrap();
            let Command::Connection(cmd) = cli.command else {
                panic!("not connection");
            };
            assert!(cmd.json);
            assert_eq!(cmd.server.server, "http://127.0.0.1:9");
            let super::ConnectionSubcommand::Create(create) = cmd.command else {
                panic!("not create");
            };
            assert_eq!(create.fields, ["base_url=http://x", "owner=o"]);
            assert_eq!(create.field_env, ["token=GH_TOKEN"]);
            assert_eq!(create.poll_interval, Some(300));

            let cli =
                parse(&["connection", "list", "--health", "failing", "--limit", "5"]).unwrap();
            let Command::Connection(cmd) = cli.command else {
                panic!("not connection");
            };
            let super::ConnectionSubcommand::List(list) = cmd.command else {
                panic!("not list");
            };
            assert_eq!(list.health.as_deref(), Some("failing"));
            assert_eq!(list.limit, Some(5));
            for bad in [
                &["connection", "list", "--limit", "0"][..],
                &["connection", "list", "--health", "sick"],
                &["connection", "create", "--name", "x"],
                &["connection", "show"],
            ] {
                assert!(parse(bad).is_err(), "{bad:?}");
            }
        }

        #[test]
        fn a_token_given_on_the_command_line_is_never_debug_printed() {
            let cli = parse(&["connection", "list", "--token", "jt_very_secret"]).unwrap();
            assert!(!format!("{cli:?}").contains("jt_very_secret"));
        }
    }

    fn connection(json: Value) -> Connection {
        serde::Deserialize::deserialize(&json).unwrap()
    }

    fn sample() -> Value {
        serde_json::json!({
            "id": "con_01", "folder_id": "fld_01", "created_by": "prn_01",
            "connector": "rest", "connector_version": "0.2.0", "auth": "api_key",
            "name": "billing\u{1b}[2J", "description": "",
            "fields": {"base_url": "https://billing.example.com", "account": "acct-from-env"},
            "secrets": {"api_key": true, "webhook_secret": false},
            "poll_interval_seconds": 300,
            "health": {"status": "failing", "reason": "401 from billing.example.com",
                "checked_at": "2026-11-22T10:00:00.123Z"},
            "created_at": "2026-11-22T10:00:00.123Z", "updated_at": "2026-11-22T10:00:00.123Z"
        })
    }

    #[test]
    fn show_prints_key_values_without_env_values_or_terminal_escapes() {
        let from_env = BTreeMap::from([("account".to_owned(), "ACCOUNT".to_owned())]);
        let text = connection_text(&connection(sample()), &from_env);
        assert!(text.contains("connector:     rest@0.2.0\n"), "{text}");
        assert!(text.contains("account=<from $ACCOUNT>"), "{text}");
        assert!(!text.contains("acct-from-env"), "{text}");
        assert!(
            text.contains("api_key (set), webhook_secret (not set)"),
            "{text}"
        );
        assert!(text.contains("health:        failing: 401 from billing.example.com"));
        assert!(!text.contains('\u{1b}'), "{text}");

        let mut json = sample();
        mask_env_fields(&mut json, &from_env);
        assert_eq!(json["fields"]["account"], "<from $ACCOUNT>");
        assert_eq!(json["fields"]["base_url"], "https://billing.example.com");
    }

    #[test]
    fn list_prints_an_aligned_table() {
        let mut other = sample();
        other["id"] = "con_0000000002".into();
        other["name"] = "gh".into();
        other["connector"] = "github".into();
        other["connector_version"] = Value::Null;
        other["health"] = serde_json::json!({"status": "healthy"});
        let text = table(&[connection(sample()), connection(other)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID              NAME"), "{text}");
        // Columns are counted in characters: the name's escape became one U+FFFD.
        let at = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
        assert_eq!(at(lines[0], "CONNECTOR"), at(lines[1], "rest@0.2.0"));
        assert_eq!(at(lines[0], "HEALTH"), at(lines[2], "healthy"));
    }
}
