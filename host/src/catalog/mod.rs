//! The connectors a service has loaded, by name, with the validators of their actions'
//! input schemas compiled once at load time.

use crate::runtime::{Connector, LoadError, Runtime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded connector version and its compiled input validators.
pub struct LoadedConnector {
    pub connector: Connector,
    inputs: BTreeMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for LoadedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedConnector")
            .field("id", self.connector.id())
            .finish()
    }
}

/// One way an input does not match an action's schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputProblem {
    /// A JSON pointer into the input (`""` for the whole input).
    pub path: String,
    pub message: String,
}

impl LoadedConnector {
    fn new(connector: Connector) -> Result<Self, CatalogError> {
        let mut inputs = BTreeMap::new();
        for action in &connector.manifest().actions {
            let validator = jsonschema::validator_for(&action.input_schema).map_err(|e| {
                CatalogError::Schema {
                    connector: connector.id().to_string(),
                    action: action.name.clone(),
                    detail: e.to_string(),
                }
            })?;
            inputs.insert(action.name.clone(), validator);
        }
        Ok(Self { connector, inputs })
    }

    /// Checks an action's input against its schema: `None` when the action is unknown,
    /// else every problem found (empty when the input is valid).
    pub fn check_input(
        &self,
        action: &str,
        input: &serde_json::Value,
    ) -> Option<Vec<InputProblem>> {
        let validator = self.inputs.get(action)?;
        Some(
            validator
                .iter_errors(input)
                .map(|e| InputProblem {
                    path: e.instance_path().to_string(),
                    message: e.to_string(),
                })
                .collect(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "{connector}: the input schema of action `{action}` is not a valid JSON Schema: {detail}"
    )]
    Schema {
        connector: String,
        action: String,
        detail: String,
    },
    #[error("cannot read the connector directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("two components provide connector `{name}`: {first} and {second}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

/// The loaded connectors, by name.
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, (Arc<LoadedConnector>, PathBuf)>,
}

impl Catalog {
    /// Loads every `.wasm` file among `paths` (files, or directories searched one level
    /// deep), reporting progress through `on_loaded`.
    pub async fn load(
        runtime: &Runtime,
        paths: &[PathBuf],
        mut on_loaded: impl FnMut(&LoadedConnector, &Path),
    ) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                let entries = std::fs::read_dir(path).map_err(|source| CatalogError::ReadDir {
                    path: path.clone(),
                    source,
                })?;
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                    .collect();
                found.sort();
                files.extend(found);
            } else {
                files.push(path.clone());
            }
        }
        let mut catalog = Self::default();
        for file in files {
            let connector = runtime.load_file(&file).await?;
            let loaded = LoadedConnector::new(connector)?;
            let name = loaded.connector.manifest().name.clone();
            if let Some((_, first)) = catalog.by_name.get(&name) {
                return Err(CatalogError::Duplicate {
                    name,
                    first: first.display().to_string(),
                    second: file.display().to_string(),
                });
            }
            on_loaded(&loaded, &file);
            catalog.by_name.insert(name, (Arc::new(loaded), file));
        }
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedConnector>> {
        self.by_name.get(name).map(|(c, _)| c.clone())
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<LoadedConnector>> {
        self.by_name.values().map(|(c, _)| c)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
