//! The `junction` binary.

use anyhow::Context as _;
use clap::Parser;
use junction::cli::{Cli, Command, ConnectionArgs, InvokeTarget, LimitArgs, RemoteError};
use junction::runtime::{
    Connector, EngineOptions, InvokeError, LoadError, Manifest, Runtime, manifest::AuthKind,
};
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

/// Exit status when the invocation ran and failed.
const FAILED: u8 = 1;
/// Exit status for bad usage, an unloadable component or an unusable connection.
const UNUSABLE: u8 = 2;

fn init_logging(cli: &Cli, serving: bool) {
    let default = match cli.verbose {
        0 if serving => "info,sqlx=warn",
        0 => "warn,junction::guest=info",
        1 => "info",
        2 => "debug,cranelift=info,wasmtime=info",
        _ => "trace,cranelift=info,wasmtime=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let mut serve = None;
    if let Command::Serve(args) = &cli.command {
        match args.resolve(cli.log_json) {
            Ok(config) => {
                cli.log_json = config.log_json;
                serve = Some(config);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(UNUSABLE);
            }
        }
    }
    init_logging(&cli, serve.is_some());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(UNUSABLE);
        }
    };
    if let Some(config) = serve {
        return runtime.block_on(async {
            match junction::api::server::serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the service cannot run");
                    eprintln!("error: {e}");
                    ExitCode::from(UNUSABLE)
                }
            }
        });
    }
    runtime.block_on(run(cli))
}

/// An error to print, with its exit status.
struct Failure {
    status: u8,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self {
            status: UNUSABLE,
            message: format!("{e:#}"),
        }
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        Self {
            status: UNUSABLE,
            message: e.to_string(),
        }
    }
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Self {
            status: e.exit_status(),
            message: e.to_string(),
        }
    }
}

impl From<InvokeError> for Failure {
    fn from(e: InvokeError) -> Self {
        let status = match e {
            InvokeError::Connection { .. } => UNUSABLE,
            _ => FAILED,
        };
        Self {
            status,
            message: format!("[{}] {e}", e.code()),
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Inspect { component, json } => inspect(&component, json).await,
        Command::Invoke {
            target,
            remote,
            input,
            json,
            connection,
            limits,
            server,
        } => match junction::cli::invoke_target(remote.as_deref(), &target) {
            Ok(InvokeTarget::Local { component, action }) => {
                invoke(&component, &action, &input, &connection, &limits).await
            }
            Ok(InvokeTarget::Remote { connection, action }) => match read_input(&input) {
                Ok(input) => {
                    junction::cli::remote::invoke(&server, &connection, &action, &input, json)
                        .await
                        .map_err(Failure::from)
                }
                Err(f) => Err(f),
            },
            Err(e) => Err(e.into()),
        },
        Command::Serve(_) => Ok(()), // run from main, once logging knows the configuration
        Command::Admin(cmd) => junction::cli::service::admin(cmd)
            .await
            .map_err(|e| Failure {
                status: UNUSABLE,
                message: e.to_string(),
            }),
        Command::Keys(cmd) => junction::cli::service::keys(cmd)
            .await
            .map_err(|e| Failure {
                status: UNUSABLE,
                message: e.to_string(),
            }),
        Command::Connection(cmd) => junction::cli::remote::connection(cmd)
            .await
            .map_err(Failure::from),
        Command::Connector(cmd) => junction::cli::catalog::connector(cmd)
            .await
            .map_err(Failure::from),
        Command::Policy(cmd) => junction::cli::catalog::policy(cmd)
            .await
            .map_err(Failure::from),
        Command::Audit(cmd) => junction::cli::audit::audit(cmd)
            .await
            .map_err(Failure::from),
        Command::Test {
            component,
            connection,
            limits,
        } => test(&component, &connection, &limits).await,
        Command::New { name, path, sdk } => new(&name, path, sdk),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

async fn load(component: &Path, args: &LimitArgs) -> Result<(Runtime, Connector), Failure> {
    let egress = args.egress().map_err(|e| Failure {
        status: UNUSABLE,
        message: e.to_string(),
    })?;
    let limits = args.limits();
    let options = EngineOptions {
        max_instances: 4,
        max_memory_bytes: limits.memory_bytes.max(64 << 20),
    };
    let runtime = Runtime::new(options, limits, std::sync::Arc::new(egress))
        .context("cannot start the runtime")?;
    let connector = runtime.load_file(component).await?;
    Ok((runtime, connector))
}

async fn inspect(component: &Path, json: bool) -> Result<(), Failure> {
    let (_, connector) = load(component, &default_limits()).await?;
    let manifest = connector.manifest();
    if json {
        let text = serde_json::to_string_pretty(manifest).context("cannot encode the manifest")?;
        junction::outln!("{text}");
    } else {
        print_summary(manifest, connector.interface_version());
    }
    Ok(())
}

fn default_limits() -> LimitArgs {
    LimitArgs {
        timeout: 60.0,
        cpu_time: 5.0,
        memory_mib: 64,
        max_requests: 50,
        max_response_mib: 10,
        egress_allow: Vec::new(),
    }
}

fn print_summary(m: &Manifest, interface: &str) {
    let release = match m.release {
        junction::runtime::manifest::Release::Preview => "preview",
        junction::runtime::manifest::Release::Ga => "GA",
    };
    junction::outln!("{} {} ({release}) — {}", m.name, m.version, m.title);
    if !m.description.is_empty() {
        junction::outln!("{}", m.description);
    }
    junction::outln!("interface: junction:connector@{interface}");
    junction::outln!("\nauth schemes:");
    for s in &m.auth_schemes {
        let detail = match &s.kind {
            AuthKind::Oauth2Code {
                authorize_url,
                mandatory_scopes,
                ..
            } => format!(" {authorize_url} mandatory scopes: {mandatory_scopes:?}"),
            _ => String::new(),
        };
        junction::outln!(
            "  {:<16} {} [{}]{detail}",
            s.id,
            s.title,
            s.kind.type_name()
        );
    }
    junction::outln!("\nfields:");
    for f in &m.fields {
        let mut tags = vec![if f.required { "required" } else { "optional" }];
        if f.secret {
            tags.push("secret");
        }
        let default = f
            .default_value
            .as_ref()
            .map(|d| format!(" default {d}"))
            .unwrap_or_default();
        let schemes = if f.schemes.is_empty() {
            String::new()
        } else {
            format!(" (schemes: {})", f.schemes.join(", "))
        };
        junction::outln!(
            "  {:<16} {} [{}]{default}{schemes}",
            f.name,
            f.label,
            tags.join(", ")
        );
    }
    junction::outln!("\nallowed hosts: {}", m.allowed_hosts.join(", "));
    junction::outln!("\nactions:");
    for a in &m.actions {
        junction::outln!("  {:<24} {}", a.name, a.title);
    }
    if !m.triggers.is_empty() {
        junction::outln!("\ntriggers:");
        for t in &m.triggers {
            junction::outln!("  {:<24} {} ({:?})", t.name, t.title, t.kind);
        }
    }
    junction::outln!("\n`junction inspect --json` prints the full manifest with the schemas.");
}

fn read_input(input: &str) -> Result<String, Failure> {
    let text = if input == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the input from stdin")?;
        s
    } else if let Some(path) = input.strip_prefix('@') {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the input file {path}"))?
    } else {
        input.to_owned()
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| Failure {
        status: UNUSABLE,
        message: format!("the input is not valid JSON: {e}"),
    })?;
    Ok(text)
}

async fn invoke(
    component: &Path,
    action: &str,
    input: &str,
    connection: &ConnectionArgs,
    limits: &LimitArgs,
) -> Result<(), Failure> {
    let input = read_input(input)?;
    let spec = connection.spec().map_err(anyhow::Error::from)?;
    let (runtime, connector) = load(component, limits).await?;
    if connector.manifest().action(action).is_none() {
        let known: Vec<&str> = connector
            .manifest()
            .actions
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        return Err(Failure {
            status: UNUSABLE,
            message: format!(
                "{} has no action `{action}`; it has: {}",
                connector.id(),
                known.join(", ")
            ),
        });
    }
    let prepared = connector.prepare(&spec)?;
    let output = runtime
        .execute(&connector, prepared, action, &input)
        .await?;
    let pretty = serde_json::from_str::<serde_json::Value>(&output)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(output);
    junction::outln!("{pretty}");
    Ok(())
}

async fn test(
    component: &Path,
    connection: &ConnectionArgs,
    limits: &LimitArgs,
) -> Result<(), Failure> {
    let spec = connection.spec().map_err(anyhow::Error::from)?;
    let (runtime, connector) = load(component, limits).await?;
    let prepared = connector.prepare(&spec)?;
    runtime.test_connection(&connector, prepared).await?;
    junction::outln!("{}: the connection works", connector.id());
    Ok(())
}

fn new(
    name: &str,
    path: Option<std::path::PathBuf>,
    sdk: Option<std::path::PathBuf>,
) -> Result<(), Failure> {
    let dir = path.unwrap_or_else(|| std::path::PathBuf::from(name));
    let sdk = sdk.unwrap_or_else(junction::cli::default_sdk);
    junction::cli::scaffold(name, &dir, &sdk).map_err(anyhow::Error::from)?;
    junction::outln!("Created the connector `{name}` in {}.", dir.display());
    junction::outln!("Build it:  cd {} && cargo build --release", dir.display());
    junction::outln!(
        "Try it:    junction invoke target/wasm32-wasip2/release/{}.wasm hello --input '{{\"name\":\"Ada\"}}' --field api_key=test",
        name.replace('-', "_")
    );
    Ok(())
}
