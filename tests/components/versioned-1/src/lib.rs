//! The `versioned` connector, one source for three packages: `versioned-1` (1.0.0, GA),
//! `versioned-2` (2.0.0, GA) and `versioned-3` (3.0.0-beta.1, preview), whose manifests
//! differ only by the package version they are built with. The catalog and hot-swap tests
//! publish, install, upgrade and roll back between them.
//!
//! Actions: `version` returns the version that runs; `hold` makes one GET below `base_url`
//! (the test server holds the response until the test releases it) and returns the version
//! with the status, to show that an invocation in flight finishes on the version it started
//! with.

use junction_sdk::http::Request;
use junction_sdk::prelude::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Versioned;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Serialize, JsonSchema)]
struct VersionOutput {
    version: String,
}

#[derive(Deserialize, JsonSchema)]
struct HoldInput {
    /// Path below `base_url`, starting with `/`.
    path: String,
}

#[derive(Serialize, JsonSchema)]
struct HoldOutput {
    version: String,
    status: u16,
}

/// A pre-release version (`3.0.0-beta.1`) is a preview; the others are GA.
fn release() -> Release {
    if env!("CARGO_PKG_VERSION_PRE").is_empty() {
        Release::Ga
    } else {
        Release::Preview
    }
}

fn url_for(path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Error::invalid_input("path must start with `/`"));
    }
    let base = connection::field_or("base_url", "http://127.0.0.1:9")?;
    Ok(format!("{}{path}", base.trim_end_matches('/')))
}

fn version(_: Empty) -> Result<VersionOutput> {
    Ok(VersionOutput {
        version: VERSION.to_owned(),
    })
}

fn hold(input: HoldInput) -> Result<HoldOutput> {
    let response = Request::get(url_for(&input.path)?).send()?;
    Ok(HoldOutput {
        version: VERSION.to_owned(),
        status: response.status,
    })
}

impl Connector for Versioned {
    fn manifest() -> Manifest {
        Manifest::new("versioned", VERSION)
            .title("Versioned")
            .description("A test connector published in several versions.")
            .release(release())
            .field(Field::text("base_url", "Base URL").default_value("http://127.0.0.1:9"))
            .auth(Auth::none("none", "No credentials"))
            .allowed_host("{base_url}")
            .action(
                "version",
                "Version",
                "Returns the version that runs.",
                version,
            )
            .action(
                "hold",
                "Hold",
                "Sends one GET below `base_url` and returns the version and the status.",
                hold,
            )
    }

    fn test_connection() -> Result<()> {
        Ok(())
    }
}

export_connector!(Versioned);
