//! The `junction` command line.

mod local;
mod scaffold;

pub use local::{ConnectionArgs, LimitArgs};
pub use scaffold::{ScaffoldError, default_sdk, scaffold};

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Junction runs integration connectors: sandboxed WebAssembly components that reach the
/// world only through the host, which owns the credentials and the network.
///
/// Typical use while writing a connector:
///
///   junction new my-api && cd my-api && cargo build --release
///   junction inspect target/wasm32-wasip2/release/my_api.wasm
///   junction invoke target/wasm32-wasip2/release/my_api.wasm hello --input '{"name":"Ada"}'
#[derive(Debug, Parser)]
#[command(name = "junction", version, about, long_about, max_term_width = 100)]
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
    /// Run one action of a component with the credentials given, and print its JSON result.
    ///
    /// Credentials come from a connection file or from flags; prefer `--connection` or
    /// `--field-env` for secrets, as command-line values are visible to other local users.
    /// Exit status: 0 on success, 1 when the invocation failed, 2 for bad usage, a bad
    /// component or a connection that does not fit the connector.
    Invoke {
        /// The component (`.wasm`).
        component: PathBuf,
        /// The action's name, as listed by `junction inspect`.
        action: String,
        /// The action's input: JSON text, `@file` to read a file, or `-` for stdin.
        #[arg(long, short, default_value = "{}")]
        input: String,
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        limits: LimitArgs,
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
}
