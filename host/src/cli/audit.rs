//! `junction audit`: the audit log of administrators' and operators' acts, through the
//! running service.

use super::catalog::catalog_error;
use super::client::Client;
use super::remote::{RemoteError, ServerArgs, clean, print_json};
use clap::{Args, Subcommand};
use serde_json::Value;

/// The examples of `junction audit list --help`.
const LIST_EXAMPLES: &str = "\
Examples:
  junction audit list                                  # your tenant's acts (an administrator's token)
  junction audit list --action policy.set --since 2026-11-01T00:00:00Z
  junction audit list --outcome refused --all --json   # every refused act, as JSON lines
  JUNCTION_TOKEN=jo_... junction audit list --tenant ten_...   # an operator: one tenant";

// The options of `junction audit`; its help text is on the `Audit` command.
#[derive(Debug, Args)]
pub struct AuditCommand {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true, display_order = 99)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AuditSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditSubcommand {
    /// List acts, newest first: when, who (and with which token), what, on what, and how it
    /// ended (`ok`, `refused`, `failed`).
    #[command(after_long_help = LIST_EXAMPLES)]
    List {
        /// Only this action (`principal.create`, `grant.set`, `policy.set`,
        /// `catalog.install`, `connection.reference_secret`…).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only the acts of this principal or operator (`prn_…`, `opr_…`).
        #[arg(long, value_name = "ID")]
        actor: Option<String>,
        /// Only acts that ended so: ok, refused or failed.
        #[arg(long, value_name = "OUTCOME")]
        outcome: Option<String>,
        /// Only acts at or after this time (RFC 3339: 2026-11-22T10:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Operators: only the acts concerning this tenant (`ten_…`).
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<String>,
        /// Acts per page [default: 50, at most 200].
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
    },
}

/// Runs `junction audit`.
pub async fn audit(cmd: AuditCommand) -> Result<(), RemoteError> {
    let client = cmd.server.client()?;
    match cmd.command {
        AuditSubcommand::List {
            action,
            actor,
            outcome,
            since,
            tenant,
            limit,
            all,
        } => {
            let filters: Vec<(&str, &str)> = [
                ("action", action.as_deref()),
                ("actor_id", actor.as_deref()),
                ("outcome", outcome.as_deref()),
                ("since", since.as_deref()),
                ("tenant_id", tenant.as_deref()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            list(&client, &filters, limit, all, cmd.json).await
        }
    }
}

async fn list(
    client: &Client,
    filters: &[(&str, &str)],
    limit: Option<u32>,
    all: bool,
    json: bool,
) -> Result<(), RemoteError> {
    let mut cursor: Option<String> = None;
    let mut first = true;
    loop {
        let reply = client
            .audit_events(filters, limit, cursor.as_deref())
            .await
            .map_err(|e| catalog_error(client, e))?;
        if json {
            if all {
                for item in &reply.value.items {
                    crate::outln!("{item}");
                }
            } else {
                print_json(&reply.json);
            }
        } else {
            if first {
                crate::outln!(
                    "{:<25} {:<36} {:<28} {:<36} OUTCOME",
                    "TIME",
                    "ACTOR",
                    "ACTION",
                    "TARGET"
                );
            }
            for item in &reply.value.items {
                crate::outln!("{}", row(item));
            }
        }
        first = false;
        match reply.value.next_cursor {
            Some(next) if all => cursor = Some(next),
            Some(_) if !json => {
                crate::outln!("(more: --all follows every page)");
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
}

/// One act as a line of the table.
fn row(item: &Value) -> String {
    let text = |v: &Value| clean(v.as_str().unwrap_or("-"));
    let actor = &item["actor"];
    let who = format!("{} ({})", text(&actor["name"]), text(&actor["id"]));
    let outcome = match item["error_code"].as_str() {
        Some(code) => format!("{} [{}]", text(&item["outcome"]), clean(code)),
        None => text(&item["outcome"]),
    };
    format!(
        "{:<25} {:<36} {:<28} {:<36} {outcome}",
        text(&item["at"]),
        who,
        text(&item["action"]),
        text(&item["target"]),
    )
}
