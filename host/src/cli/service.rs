//! The commands that run the service or work on its data directory: `serve`, `admin`,
//! `keys`.

use crate::config::StoreArgs;
use crate::credentials::at_rest::MasterKey;
use crate::store::{
    AuditActor, AuditOutcome, DataDirLock, KeySource, NewAuditEvent, Store, StoreError,
};
use clap::Subcommand;
use serde_json::json;

/// Offline administration of a data directory (the service may be running).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a tenant and its first administrator, and print the administrator's API token
    /// (shown once; store it in a secret manager).
    #[command(
        after_long_help = "Example:\n  junction admin create-tenant acme --admin ada\n  \
        export JUNCTION_TOKEN=jt_...   # the token printed; then: junction connection list"
    )]
    CreateTenant {
        /// The tenant's name, unique in this service.
        name: String,
        /// The first administrator's name.
        #[arg(long, value_name = "NAME")]
        admin: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create an operator, who runs the service's connector catalog and the tenants'
    /// policies (`junction connector`, `junction policy`), and print the operator's API token
    /// (`jo_…`, shown once; store it in a secret manager).
    #[command(
        after_long_help = "Example:\n  junction admin create-operator ops --data-dir /var/lib/junction\n  \
        export JUNCTION_TOKEN=jo_...   # the token printed; then: junction connector list"
    )]
    CreateOperator {
        /// The operator's name, unique in this service.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make another token for an operator and print it (shown once), to rotate: revoke the
    /// old ones once the new one is in use.
    CreateOperatorToken {
        /// The operator's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke every token of an operator (a lost or leaked one): they stop working at once,
    /// running services included.
    RevokeOperatorTokens {
        /// The operator's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The master key that encrypts secrets at rest.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored secret under a new key and replace the key file. Stop the
    /// service first. Safe to interrupt: the next start (or rotation) finishes or discards
    /// it. Works with a key file; with JUNCTION_KEY, write the key to a file first.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a new random key (base64), for JUNCTION_KEY.
    Generate,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceCommandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::credentials::at_rest::KeyError),
    #[error(
        "`keys rotate` replaces a key file, but the key comes from JUNCTION_KEY; write it to a file (owner-only), unset JUNCTION_KEY and pass --key-file"
    )]
    RotateEnvKey,
    #[error(
        "there is no store at {database}, so no key to rotate; give the data directory of the service with --data-dir (or JUNCTION_DATA_DIR)"
    )]
    NoStore { database: std::path::PathBuf },
}

pub async fn admin(command: AdminCommand) -> Result<(), ServiceCommandError> {
    match command {
        AdminCommand::CreateTenant { name, admin, store } => {
            let store = open_store(&store).await?;
            let created = store.create_tenant(&name, &admin).await;
            let target = created.as_ref().ok().map(|(t, _, _)| t.id.clone());
            record_local(
                &store,
                "tenant.create",
                target.as_deref(),
                created.as_ref().map(|_| ()),
                json!({"name": name, "admin": admin}),
            )
            .await;
            store.close().await;
            let (tenant, principal, token) = created?;
            let out = json!({"tenant": tenant, "principal": principal, "token": token});
            // Plain `Display` of a JSON value cannot fail, and this is the only copy of the
            // token: print it, never drop it.
            crate::outln!("{out:#}");
            Ok(())
        }
        AdminCommand::CreateOperatorToken { name, store } => {
            let store = open_store(&store).await?;
            let created = store.create_operator_token(&name).await;
            record_local(
                &store,
                "operator_token.create",
                None,
                created.as_ref().map(|_| ()),
                json!({"operator": name}),
            )
            .await;
            store.close().await;
            let (operator, token) = created?;
            let out = json!({"operator": operator, "token": token.expose()});
            crate::outln!("{out:#}");
            Ok(())
        }
        AdminCommand::RevokeOperatorTokens { name, store } => {
            let store = open_store(&store).await?;
            let revoked = store.revoke_operator_tokens(&name).await;
            record_local(
                &store,
                "operator_token.revoke_all",
                None,
                revoked.as_ref().map(|_| ()),
                json!({"operator": name, "revoked": revoked.as_ref().ok()}),
            )
            .await;
            store.close().await;
            crate::outln!("revoked {} token(s) of operator `{name}`", revoked?);
            Ok(())
        }
        AdminCommand::CreateOperator { name, store } => {
            let store = open_store(&store).await?;
            let created = store.create_operator(&name).await;
            record_local(
                &store,
                "operator.create",
                None,
                created.as_ref().map(|_| ()),
                json!({"operator": name}),
            )
            .await;
            store.close().await;
            let (operator, token) = created?;
            let out = json!({"operator": operator, "token": token.expose()});
            // As for create-tenant: the only copy of the token, printed.
            crate::outln!("{out:#}");
            Ok(())
        }
    }
}

/// Records an act of `junction admin` (run on the service's machine, with access to its
/// data directory) on the audit log. `tenant` is the tenant it concerns, if any.
async fn record_local(
    store: &Store,
    action: &str,
    tenant: Option<&str>,
    outcome: Result<(), &StoreError>,
    details: serde_json::Value,
) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let event = NewAuditEvent {
        tenant_id: tenant.map(str::to_owned),
        actor: AuditActor {
            kind: "local".into(),
            id: "junction-admin".into(),
            name: format!("junction admin (user {user})"),
            token_id: None,
        },
        action: action.to_owned(),
        target: tenant.map(str::to_owned),
        outcome: if outcome.is_ok() {
            AuditOutcome::Ok
        } else {
            AuditOutcome::Refused
        },
        status: None,
        error_code: outcome.err().map(|e| match e {
            StoreError::Conflict(_) => "conflict".to_owned(),
            _ => "error".to_owned(),
        }),
        request_id: None,
        details: match details {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    };
    if let Err(e) = store.record_audit(&event).await {
        eprintln!("warning: the act could not be recorded on the audit log: {e}");
    }
}

/// Opens the store of a data directory (creating it, and its key, on first use).
async fn open_store(args: &StoreArgs) -> Result<Store, ServiceCommandError> {
    let (config, _) = args.resolve();
    let (store, report) = Store::open(&config, None).await?;
    if let Some(path) = report.created_key_file {
        eprintln!(
            "created the encryption key {}; back it up apart from the database",
            path.display()
        );
    }
    Ok(store)
}

pub async fn keys(command: KeysCommand) -> Result<(), ServiceCommandError> {
    match command {
        KeysCommand::Generate => {
            let (_, encoded) = MasterKey::generate()?;
            crate::outln!("{}", encoded.as_str());
            Ok(())
        }
        KeysCommand::Rotate { store } => {
            let (config, key_file) = store.resolve();
            if matches!(config.key, KeySource::Env(_)) {
                return Err(ServiceCommandError::RotateEnvKey);
            }
            // Opening creates a store where there is none: a mistyped directory would get a
            // new store and key, rotated, and an operator told all went well.
            if !config.database_path().is_file() {
                return Err(ServiceCommandError::NoStore {
                    database: config.database_path(),
                });
            }
            let lock = DataDirLock::acquire(&config.data_dir)?;
            let (mut store, _) = Store::open(&config, Some(&lock)).await?;
            let report = store.rotate_key(&key_file).await?;
            store.close().await;
            crate::outln!(
                "rotated: {} secret values re-encrypted; key {} replaced by {} in {}",
                report.values,
                report.old_key_id,
                report.new_key_id,
                report.key_file.display()
            );
            Ok(())
        }
    }
}
