//! `junction new`: a connector crate that builds with one cargo command.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("`{0}` is not a valid connector name: use kebab-case such as `my-api`")]
    BadName(String),
    #[error("{0} already exists; choose another name or --path")]
    Exists(String),
    #[error(
        "cannot find the junction-sdk crate at {0}; pass --sdk <path to the sdk directory of a Junction checkout>"
    )]
    NoSdk(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The SDK this binary was built beside.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && !name.ends_with('-')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Writes a new connector crate named `name` into `dir`, depending on the SDK at `sdk`.
pub fn scaffold(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.display().to_string()));
    }
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NoSdk(sdk.display().to_string()))?;
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .chain(["Connector".to_owned()])
        .collect();
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    let files = [
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
junction-sdk = {{ path = "{sdk_path}" }}
serde = {{ version = "1", features = ["derive"] }}
schemars = {{ version = "1", default-features = false, features = ["derive", "std"] }}

[profile.release]
lto = "thin"
"#
            ),
        ),
        (
            ".cargo/config.toml",
            "# Connectors are WebAssembly components: build for wasm32-wasip2 by default.\n\
             [build]\ntarget = \"wasm32-wasip2\"\n"
                .to_owned(),
        ),
        (".gitignore", "/target\n".to_owned()),
        (
            "src/lib.rs",
            format!(
                r#"//! The {name} connector.

use junction_sdk::http::Request;
use junction_sdk::prelude::*;

struct {type_name};

/// Input of `hello`.
#[derive(Deserialize, JsonSchema)]
struct HelloInput {{
    /// Whom to greet.
    name: String,
}}

/// Output of `hello`.
#[derive(Serialize, JsonSchema)]
struct HelloOutput {{
    greeting: String,
}}

fn hello(input: HelloInput) -> Result<HelloOutput> {{
    log::info("saying hello");
    Ok(HelloOutput {{
        greeting: format!("Hello, {{}}!", input.name),
    }})
}}

impl Connector for {type_name} {{
    fn manifest() -> Manifest {{
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"))
            .title("{name}")
            .description("Describe what this connector connects to.")
            .field(Field::text("base_url", "API base URL").default_value("https://api.example.com"))
            .field(Field::secret("api_key", "API key"))
            .auth(Auth::api_key("api-key", "API key", "api_key", KeyLocation::Header, "X-API-Key"))
            .allowed_host("{{base_url}}")
            .action("hello", "Say hello", "Greets someone, without calling the API.", hello)
    }}

    fn test_connection() -> Result<()> {{
        let base = connection::field_or("base_url", "https://api.example.com")?;
        Request::get(base).send()?.error_for_status()?;
        Ok(())
    }}
}}

export_connector!({type_name});
"#
            ),
        ),
        (
            "README.md",
            format!(
                "# {name}\n\nBuild: `cargo build --release` (the component is \
                 `target/wasm32-wasip2/release/{crate_name}.wasm`).\n\n\
                 Try it: `junction invoke target/wasm32-wasip2/release/{crate_name}.wasm hello \
                 --input '{{\"name\":\"Ada\"}}' --field-env api_key=MY_API_KEY`\n"
            ),
        ),
    ];
    let mut written = Vec::new();
    for (rel, content) in files {
        let path = dir.join(rel);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn connector_names_are_kebab_case() {
        assert!(valid_name("my-api"));
        assert!(valid_name("s3"));
        assert!(!valid_name("My-API"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("x-"));
        assert!(!valid_name("a b"));
    }
}
