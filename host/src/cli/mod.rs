//! The `junction` command line.

/// Writes the commands' output to stdout, like `print!`/`println!`, except that a closed
/// pipe (`junction inspect x.wasm | head`) ends the command quietly instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!($($arg)*))
    };
}

/// [`out!`] with a newline.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::emit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod audit;
pub mod catalog;
pub mod client;
mod local;
pub mod remote;
mod scaffold;
pub mod service;

pub use catalog::{ConnectorCommand, PolicyCommand};
pub use local::{ConnectionArgs, LimitArgs};
pub use remote::{ConnectionCommand, InvokeTarget, RemoteError, ServerArgs, invoke_target};
pub use scaffold::{ScaffoldError, default_sdk, scaffold};

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Junction runs integration connectors: sandboxed WebAssembly components that reach the
/// world only through the host, which owns the credentials and the network.
#[derive(Debug, Parser)]
#[command(
    name = "junction",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_long_help = TOP_EXAMPLES
)]
pub struct Cli {
    /// Log as JSON lines instead of text (logs go to stderr).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// More logging: -v shows info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a connector component's manifest: name, version, auth schemes, fields, allowed
    /// hosts, actions and triggers with their JSON schemas.
    Inspect {
        /// The component (`.wasm`).
        component: PathBuf,
        /// Print the manifest as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Run one action and print its JSON result: of a component file with the credentials
    /// given, or of a stored connection through the running service (`--connection <ID>`).
    ///
    /// Locally, credentials come from a connection file or from flags; prefer
    /// `--connection-file` or `--field-env` for secrets, as command-line values are visible to
    /// other local users. Through the service, the stored connection holds the credentials;
    /// the service's address and token come from --server/JUNCTION_SERVER and
    /// --token/JUNCTION_TOKEN. Exit status: 0 on success, 1 when the invocation failed, 2 for
    /// bad usage, a bad component, a connection that does not fit the connector, or a
    /// service that cannot be used (unreachable, token refused, unknown connection).
    #[command(
        override_usage = "junction invoke [OPTIONS] <COMPONENT> <ACTION>\n       \
                          junction invoke [OPTIONS] --connection <ID> <ACTION>",
        after_long_help = remote::INVOKE_EXAMPLES
    )]
    Invoke {
        /// `<COMPONENT> <ACTION>`: the component (`.wasm`) and the action's name, as listed
        /// by `junction inspect`; with --connection, only `<ACTION>`.
        #[arg(value_name = "COMPONENT|ACTION", num_args = 1..=2, required = true)]
        target: Vec<String>,
        /// Invoke through the running service, with this stored connection (`con_…`).
        #[arg(
            long = "connection",
            value_name = "ID",
            conflicts_with_all = [
                "connection_file", "auth", "fields", "field_env", "access_token_env",
                "timeout", "cpu_time", "memory_mib", "max_requests", "max_response_mib",
                "egress_allow",
            ]
        )]
        remote: Option<String>,
        /// The action's input: JSON text, `@file` to read a file, or `-` for stdin.
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// With --connection: print the service's whole answer (the invocation record and
        /// the output) instead of the output alone.
        #[arg(long, requires = "remote")]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a component's connection test with the credentials given.
    Test {
        /// The component (`.wasm`).
        component: PathBuf,
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Create a new connector crate that builds with `cargo build --release`.
    New {
        /// The connector's name, kebab-case (`my-api`). Also the directory created.
        name: String,
        /// Where to create it (default: ./<name>).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Path to the junction-sdk crate (default: the SDK this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run the service: the HTTP API, the store, the connectors, background health checks.
    ///
    /// On first start the data directory is created with a new encryption key
    /// (<data-dir>/junction.key, owner-only; back it up apart from the database). Then
    /// create a tenant and its administrator's token with `junction admin create-tenant`.
    ///
    /// Logs go to stderr (--log-json for JSON lines; RUST_LOG filters). SIGTERM or Ctrl-C
    /// stops accepting connections and lets requests in flight finish.
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(crate::config::ServeArgs),
    /// Offline administration of a data directory: tenants and their first administrator,
    /// operators of the connector catalog.
    #[command(subcommand)]
    Admin(service::AdminCommand),
    /// The master key encrypting stored secrets: rotate it, or generate one.
    #[command(subcommand)]
    Keys(service::KeysCommand),
    /// Manage the connections of a running service: create, list, show, test, delete.
    ///
    /// Talks to `junction serve` at --server (JUNCTION_SERVER, default
    /// http://127.0.0.1:7480) with the API token in JUNCTION_TOKEN (or --token). Exit status:
    /// 0 on success, 1 when a connection test finds the connection unhealthy, 2 for bad usage
    /// or a service that cannot be used (unreachable, token refused, unknown connection).
    #[command(after_long_help = remote::CONNECTION_EXAMPLES)]
    Connection(ConnectionCommand),
    /// Operator: the service's connector catalog. Publish connector versions, then install,
    /// upgrade, roll back or skip them.
    ///
    /// A published version is immutable and cannot be unpublished: to keep a connector from
    /// tenants, disable it with a policy (`junction policy set --disable`); to keep upgrades
    /// away from a version, skip it (`junction connector skip NAME@VERSION`).
    ///
    /// Talks to `junction serve` at --server (JUNCTION_SERVER, default
    /// http://127.0.0.1:7480) with an operator token (`jo_…`, printed by `junction admin
    /// create-operator`) in JUNCTION_TOKEN (or --token). Exit status: 0 on success, 2 for bad
    /// usage, a refusal (given several files or connectors, after trying every one) or a
    /// service that cannot be used.
    #[command(after_long_help = catalog::CONNECTOR_EXAMPLES)]
    Connector(ConnectorCommand),
    /// Operator: the tenants' connector policies. Which installed connectors a tenant sees,
    /// which auth types its new connections may use, its own OAuth apps.
    ///
    /// Talks to `junction serve` at --server (JUNCTION_SERVER, default
    /// http://127.0.0.1:7480) with an operator token (`jo_…`) in JUNCTION_TOKEN (or
    /// --token); with a tenant's token, `junction policy show` shows that tenant's policy.
    /// Exit status: 0 on success, 2 for bad usage, a refusal or a service that cannot be
    /// used.
    #[command(after_long_help = catalog::POLICY_EXAMPLES)]
    Policy(PolicyCommand),
    /// The audit log: what administrators and operators did or tried (principals, tokens,
    /// grants, folders, policies, OAuth apps, catalog changes, credential store references),
    /// who did it with which token, when, and how it ended. Never a secret.
    ///
    /// A tenant's administrator reads the tenant's acts (operators' acts on its policy
    /// included); an operator reads every act. Talks to `junction serve` at --server with
    /// JUNCTION_TOKEN. Exit status: 0 on success, 2 for bad usage or a service that cannot
    /// be used.
    #[command(subcommand_required = true)]
    Audit(audit::AuditCommand),
}

const SERVE_EXAMPLES: &str = "Examples:
  junction serve --connectors plugins.d/ --data-dir /var/lib/junction
  JUNCTION_LISTEN=0.0.0.0:7480 junction serve --config /etc/junction.toml
  junction admin create-tenant acme --admin ada   # then: export JUNCTION_TOKEN=jt_...";

const TOP_EXAMPLES: &str = "Running the service:
  junction serve --data-dir junction-data --connectors plugins.d/
  junction admin create-tenant acme --admin ada --data-dir junction-data
  export JUNCTION_TOKEN=jt_...
  junction connection create --connector github --name gh --auth pat --field-env token=GITHUB_TOKEN

Operating the catalog:
  junction admin create-operator ops --data-dir junction-data   # export JUNCTION_TOKEN=jo_...
  junction connector publish dist/*.wasm && junction connector install --all
  junction policy set --tenant ten_... --disable rest

Writing a connector:
  junction new my-api && cd my-api && cargo build --release
  junction inspect target/wasm32-wasip2/release/my_api.wasm
  junction invoke target/wasm32-wasip2/release/my_api.wasm hello --input '{\"name\":\"Ada\"}'";

/// Writes `text` to stdout. When the reader has gone (a closed pipe) the command's output
/// is no longer wanted: the process ends with status 0, as `head` expects; any other write
/// error ends it with status 2 and says why.
pub fn emit(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(2);
    }
}
