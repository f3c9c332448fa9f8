//! The connector catalog: published versions (immutable, content-addressed on disk, compiled
//! once into precompiled artifacts), the installed connectors with the version each runs,
//! and the switch between versions.
//!
//! The running versions sit behind one atomic pointer to an immutable map. A switch loads
//! the new version first (from its precompiled artifact, or compiling it) off the request
//! path, records it, then swaps the pointer: an invocation holds the `Arc` of the version
//! it started with until it ends, and every invocation that starts after the swap gets the
//! new one. Changes (publish, install, upgrade, rollback, skip) run one at a time.

mod components;
pub mod policy;
pub mod versions;

pub use components::digest_hex;
pub use policy::{Policy, PolicyInput, PolicyRefusal};
pub use versions::{ConnectorView, History, PlanRefusal, VersionState, VersionView};

use crate::runtime::{ArtifactCache, Connector, LoadError, LoadOrigin, Runtime};
use crate::store::{NewVersion, Store, StoreError};
use arc_swap::ArcSwap;
use components::ComponentFiles;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Who publishes the components given to `junction serve --connectors`.
pub const STARTUP_PUBLISHER: &str = "startup";

/// A loaded connector version and its compiled input validators.
pub struct LoadedConnector {
    pub connector: Connector,
    /// Lowercase hex SHA-256 of the component.
    pub digest: String,
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
    fn new(connector: Connector, digest: String) -> Result<Self, CatalogError> {
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
        Ok(Self {
            connector,
            digest,
            inputs,
        })
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
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{name} {version} is already published with other content (sha256:{published_digest}; this component is sha256:{given_digest}); a published version is immutable: give the new build a new version"
    )]
    VersionExists {
        name: String,
        version: String,
        published_digest: String,
        given_digest: String,
    },
    #[error(
        "{name} {version}: a published version cannot carry build metadata (`+…`): it does not order versions; publish it as a new version (for instance a pre-release `-build.N`)"
    )]
    BuildMetadata { name: String, version: String },
    #[error("the component is {size} bytes; the service accepts components up to {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Plan(#[from] PlanRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What publishing did.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: VersionView,
    /// `false` when this exact component was published already.
    pub created: bool,
}

/// A change of the active version of a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Install,
    Upgrade,
    Rollback,
}

impl Switch {
    fn verb(self) -> &'static str {
        match self {
            Self::Install => "installed",
            Self::Upgrade => "upgraded",
            Self::Rollback => "rolled back",
        }
    }
}

type Live = BTreeMap<String, Arc<LoadedConnector>>;

/// The catalog of a service.
pub struct Catalog {
    live: ArcSwap<Live>,
    runtime: Runtime,
    store: Store,
    files: ComponentFiles,
    artifacts: ArtifactCache,
    /// Publications and switches, one at a time.
    changes: tokio::sync::Mutex<()>,
    max_component_bytes: usize,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("running", &self.live.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The default largest component accepted for publishing.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;

impl Catalog {
    /// Opens the catalog kept in `data_dir` (`catalog/components`, `catalog/compiled`) and
    /// loads the active version of every installed connector, from its precompiled
    /// artifact when there is one. A connector that cannot be loaded is logged and left out
    /// (its connections fail with a clear error) rather than keeping the service down.
    pub async fn open(
        runtime: &Runtime,
        store: &Store,
        data_dir: &Path,
        max_component_bytes: usize,
    ) -> Result<Self, CatalogError> {
        let root = data_dir.join("catalog");
        let catalog = Self {
            live: ArcSwap::from_pointee(Live::new()),
            runtime: runtime.clone(),
            store: store.clone(),
            files: ComponentFiles::new(root.join("components")),
            artifacts: runtime.artifact_cache(&root.join("compiled")),
            changes: tokio::sync::Mutex::new(()),
            max_component_bytes,
        };
        let installs = store.installs().await?;
        let mut live = Live::new();
        for (name, version) in installs {
            match catalog.load_published(&name, &version).await {
                Ok(loaded) => {
                    live.insert(name, Arc::new(loaded));
                }
                Err(e) => {
                    tracing::error!(connector = %name, version = %version, error = %e, "cannot load an installed connector; its connections fail until it loads")
                }
            }
        }
        catalog.live.store(Arc::new(live));
        Ok(catalog)
    }

    /// The running version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedConnector>> {
        self.live.load().get(name).cloned()
    }

    /// The running connectors, by name.
    pub fn running(&self) -> Vec<Arc<LoadedConnector>> {
        self.live.load().values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.live.load().is_empty()
    }

    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// Loads a published version from its file (or its precompiled artifact).
    async fn load_published(
        &self,
        name: &str,
        version: &str,
    ) -> Result<LoadedConnector, CatalogError> {
        let record = self
            .store
            .published_version(name, version)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("{name} {version} is not published")))?;
        let started = Instant::now();
        let path = self.files.path(&record.digest);
        let (connector, origin) = self
            .runtime
            .load_cached(
                &path,
                &record.digest,
                &self.artifacts,
                &format!("{name} {version} ({})", path.display()),
            )
            .await?;
        let loaded = LoadedConnector::new(connector, record.digest)?;
        tracing::info!(
            connector = %loaded.connector.id(),
            origin = origin_name(origin),
            load_ms = started.elapsed().as_secs_f64() * 1e3,
            "connector loaded"
        );
        Ok(loaded)
    }

    /// Publishes a component: validates it (it loads, its interface version is supported,
    /// its manifest is consistent, its version is new), stores it content-addressed and
    /// compiles it once. Publishing the same component twice is not an error.
    #[tracing::instrument(skip_all, fields(size = bytes.len(), by = %by))]
    pub async fn publish(&self, bytes: &[u8], by: &str) -> Result<Published, CatalogError> {
        if bytes.len() > self.max_component_bytes {
            return Err(CatalogError::TooLarge {
                size: bytes.len(),
                limit: self.max_component_bytes,
            });
        }
        let _one_at_a_time = self.changes.lock().await;
        let digest = digest_hex(bytes);
        // Writing (and syncing) up to the size limit is blocking work: off the async workers.
        let (files, owned, key) = (self.files.clone(), bytes.to_vec(), digest.clone());
        let stored = tokio::task::spawn_blocking(move || files.put(&key, &owned))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (path, written) = stored.map_err(|source| CatalogError::Io {
            path: self.files.path(&digest),
            source,
        })?;
        // These exact bytes were published and validated before (every start that is given
        // `--connectors` comes here): no need to load them again.
        if let Some(known) = self.store.version_with_digest(&digest).await? {
            return Ok(Published {
                version: self.version_view(&known.name, &known.version).await?,
                created: false,
            });
        }
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let published = self.record_stored(&path, &digest, size, by).await;
        if published.is_err() && written {
            // Refused: nothing of it stays behind.
            self.files.discard(&path);
            self.files.discard(&self.artifacts.artifact_path(&digest));
        }
        published
    }

    /// Validates a component stored at `path` and records it as published.
    async fn record_stored(
        &self,
        path: &Path,
        digest: &str,
        size_bytes: i64,
        by: &str,
    ) -> Result<Published, CatalogError> {
        let (loaded, _) = self
            .runtime
            .load_cached(path, digest, &self.artifacts, "the component")
            .await?;
        let manifest = loaded.manifest();
        let (name, version) = (manifest.name.clone(), manifest.version.clone());
        if version.contains('+') {
            // Build metadata does not order versions: `1.0.0+a` and `1.0.0+b` are one
            // version to anyone choosing between them.
            return Err(CatalogError::BuildMetadata { name, version });
        }
        if let Some(existing) = self.store.published_version(&name, &version).await? {
            if existing.digest != digest {
                return Err(CatalogError::VersionExists {
                    name,
                    version,
                    published_digest: existing.digest,
                    given_digest: digest.to_owned(),
                });
            }
            return Ok(Published {
                version: self.version_view(&name, &version).await?,
                created: false,
            });
        }
        // The input schemas must compile, as they will when the version is installed.
        LoadedConnector::new(loaded.clone(), digest.to_owned())?;
        self.store
            .insert_version(&NewVersion {
                name: name.clone(),
                version: version.clone(),
                title: manifest.title.clone(),
                release: release_name(manifest.release).into(),
                interface_version: loaded.interface_version().into(),
                digest: digest.to_owned(),
                size_bytes,
                published_by: by.to_owned(),
            })
            .await?;
        tracing::info!(connector = %name, version = %version, digest = %digest, "connector version published");
        Ok(Published {
            version: self.version_view(&name, &version).await?,
            created: true,
        })
    }

    /// Everything stored about one connector's versions; `None` when none is published.
    pub async fn history(&self, name: &str) -> Result<Option<History>, CatalogError> {
        let published = self.store.published_versions(Some(name)).await?;
        if published.is_empty() {
            return Ok(None);
        }
        Ok(Some(History {
            published,
            active: self.store.installs().await?.remove(name),
            activations: self.store.activations(name).await?,
            skipped: self.store.skipped_versions(name).await?,
        }))
    }

    async fn require_history(&self, name: &str) -> Result<History, CatalogError> {
        self.history(name).await?.ok_or_else(|| {
            CatalogError::NotFound(format!(
                "no version of connector `{name}` is published; see `junction connector list`"
            ))
        })
    }

    /// One connector of the catalog.
    pub async fn view(&self, name: &str) -> Result<ConnectorView, CatalogError> {
        Ok(self.require_history(name).await?.view())
    }

    /// Every connector of the catalog, by name.
    pub async fn views(&self) -> Result<Vec<ConnectorView>, CatalogError> {
        let all = self.store.published_versions(None).await?;
        let mut names: Vec<String> = all.iter().map(|v| v.name.clone()).collect();
        names.dedup();
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            views.push(self.view(&name).await?);
        }
        Ok(views)
    }

    pub async fn version_view(
        &self,
        name: &str,
        version: &str,
    ) -> Result<VersionView, CatalogError> {
        self.view(name)
            .await?
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| CatalogError::NotFound(format!("{name} {version} is not published")))
    }

    /// Installs, upgrades or rolls back `name` to `requested` (or the default version of
    /// that change), and swaps the running version.
    #[tracing::instrument(skip(self))]
    pub async fn switch(
        &self,
        name: &str,
        how: Switch,
        requested: Option<&str>,
    ) -> Result<ConnectorView, CatalogError> {
        let _one_at_a_time = self.changes.lock().await;
        let history = self.require_history(name).await?;
        let target = match how {
            Switch::Install => history.plan_install(requested)?,
            Switch::Upgrade => history.plan_upgrade(requested)?,
            Switch::Rollback => history.plan_rollback(requested)?,
        };
        self.activate(name, &target, history.active.as_deref(), how)
            .await?;
        self.view(name).await
    }

    /// Loads `version`, records it as active and swaps it in. The caller holds `changes`.
    async fn activate(
        &self,
        name: &str,
        version: &str,
        previous: Option<&str>,
        how: Switch,
    ) -> Result<(), CatalogError> {
        let loaded = Arc::new(self.load_published(name, version).await?);
        self.store.activate(name, version).await?;
        self.live.rcu(|live| {
            let mut next = Live::clone(live);
            next.insert(name.to_owned(), loaded.clone());
            next
        });
        tracing::info!(connector = %name, version = %version, previous = previous.unwrap_or("-"), "connector {}", how.verb());
        Ok(())
    }

    /// Marks a version as skipped (or not): it is not offered as an upgrade.
    pub async fn set_skipped(
        &self,
        name: &str,
        version: &str,
        skipped: bool,
    ) -> Result<ConnectorView, CatalogError> {
        let _one_at_a_time = self.changes.lock().await;
        let history = self.require_history(name).await?;
        if skipped {
            history.check_skip(version)?;
        } else if history.find(version).is_none() {
            return Err(CatalogError::NotFound(format!(
                "{name} {version} is not published"
            )));
        }
        self.store.set_skipped(name, version, skipped).await?;
        self.view(name).await
    }

    /// Publishes the components among `paths` (files, or directories searched one level
    /// deep) and installs each connector that is not installed yet. An operator's choice
    /// of version is never changed: a newer file is published and offered as an upgrade.
    /// A file whose version is published with other content is left out with a warning.
    /// Runs at start, before the service listens: nothing else changes the catalog
    /// meanwhile.
    pub async fn publish_and_install(&self, paths: &[PathBuf]) -> Result<(), CatalogError> {
        let mut names = Vec::new();
        for file in component_files(paths)? {
            let bytes = std::fs::read(&file).map_err(|source| CatalogError::Io {
                path: file.clone(),
                source,
            })?;
            match self.publish(&bytes, STARTUP_PUBLISHER).await {
                Ok(p) => {
                    if p.created {
                        tracing::info!(connector = %p.version.name, version = %p.version.version, path = %file.display(), "published from the connectors directory");
                    }
                    names.push(p.version.name);
                }
                Err(e @ CatalogError::VersionExists { .. }) => {
                    tracing::warn!(path = %file.display(), error = %e, "component left out");
                }
                Err(e) => return Err(e),
            }
        }
        names.sort();
        names.dedup();
        for name in names {
            let history = self.require_history(&name).await?;
            if let Some(active) = &history.active {
                if self.get(&name).is_none() {
                    // Installed, but it could not be loaded at start (its file was
                    // missing): a file given now may bring it back (when it is the active
                    // version's); if not, the service runs without it, as `open` does.
                    match self.load_published(&name, active).await {
                        Ok(loaded) => {
                            let loaded = Arc::new(loaded);
                            self.live.rcu(|live| {
                                let mut next = Live::clone(live);
                                next.insert(name.clone(), loaded.clone());
                                next
                            });
                        }
                        Err(e) => {
                            tracing::error!(connector = %name, version = %active, error = %e, "cannot load an installed connector; its connections fail until it loads")
                        }
                    }
                }
                if let Some(newer) = history.upgrade_available() {
                    tracing::info!(connector = %name, active = %active, available = %newer, "a newer version is published: `junction connector upgrade {name}`");
                }
                continue;
            }
            let _one_at_a_time = self.changes.lock().await;
            let target = history.plan_install(None)?;
            self.activate(&name, &target, None, Switch::Install).await?;
        }
        Ok(())
    }
}

fn origin_name(origin: LoadOrigin) -> &'static str {
    match origin {
        LoadOrigin::Compiled => "compiled",
        LoadOrigin::Precompiled => "precompiled",
    }
}

pub fn release_name(release: crate::runtime::manifest::Release) -> &'static str {
    match release {
        crate::runtime::manifest::Release::Preview => "preview",
        crate::runtime::manifest::Release::Ga => "ga",
    }
}

/// The `.wasm` files among `paths`: files as given, directories searched one level deep
/// (sorted).
fn component_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CatalogError> {
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
    Ok(files)
}
