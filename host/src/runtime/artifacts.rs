//! Precompiled components: a published component is compiled once and its compiled form
//! kept on disk, so that a restart (or a switch back to an older version) maps machine code
//! in milliseconds instead of compiling it again.
//!
//! Layout: `<root>/<engine key>/<digest hex>.cwasm`. The digest is the SHA-256 of the
//! component's bytes, so an artifact belongs to exactly one component; the engine key is a
//! hash of everything that makes compiled code of one engine usable by another (wasmtime's
//! version, the target and its CPU features, the compiler's and the engine's settings), so an
//! engine never even opens another configuration's artifacts. wasmtime checks the same
//! things again in the artifact's header when it loads it (see [`deserialize`]).
//!
//! An artifact is written once, atomically (a temporary file in the same directory, synced,
//! then renamed), and never modified in place: a replacement is a new file renamed over the
//! old name. Artifacts are read into memory, not mapped, so even a change made by someone
//! else while the service runs cannot reach code already loaded.

use super::{Connector, LoadError, Runtime};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components of one engine configuration are kept:
/// `<root>/<engine key>/<digest hex>.cwasm`.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// The directory of this engine's artifacts (created on the first write).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact of the component whose SHA-256 is `digest_hex`.
    pub fn artifact_path(&self, digest_hex: &str) -> PathBuf {
        self.dir.join(format!("{digest_hex}.cwasm"))
    }
}

/// Where a loaded connector's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOrigin {
    /// Compiled from the component's bytes (and its artifact written).
    Compiled,
    /// Mapped from a precompiled artifact.
    Precompiled,
}

impl Runtime {
    /// The artifact cache under `root` for this engine: the subdirectory is named by a hex
    /// hash of [`Engine::precompile_compatibility_hash`] (it covers the wasmtime version
    /// and the engine's settings), so artifacts of another engine or wasmtime version are
    /// never loaded.
    pub fn artifact_cache(&self, root: &Path) -> ArtifactCache {
        ArtifactCache {
            dir: root.join(engine_key(&self.shared.engine)),
        }
    }

    /// Loads the component stored at `component_path` whose SHA-256 is `digest_hex` (64
    /// lowercase hex characters): from its precompiled artifact when there is one, else
    /// compiles it (on a blocking thread, as [`Runtime::load`] does) and writes the
    /// artifact. Validation (interface version, imports, exports, manifest) is the same as
    /// [`Runtime::load`]'s, and so are its errors.
    ///
    /// An artifact that cannot be loaded (corrupt, truncated, of another engine) is deleted,
    /// logged and replaced by a fresh compilation; failing to write an artifact is logged and
    /// does not fail the load. An artifact is written only for a component that passed
    /// validation.
    /// `source_name` names the component in errors (the file a publisher gave, say, rather
    /// than where the service keeps it).
    #[tracing::instrument(skip(self, component_path, cache))]
    pub async fn load_cached(
        &self,
        component_path: &Path,
        digest_hex: &str,
        cache: &ArtifactCache,
        source_name: &str,
    ) -> Result<(Connector, LoadOrigin), LoadError> {
        let name = source_name.to_owned();
        if !is_sha256_hex(digest_hex) {
            return Err(LoadError::InvalidDigest {
                source_name: name,
                digest: digest_hex.to_owned(),
            });
        }
        let artifact = cache.artifact_path(digest_hex);

        let engine = self.shared.engine.clone();
        let path = artifact.clone();
        let mapped = tokio::task::spawn_blocking(move || read_artifact(&engine, &path))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading a precompiled artifact did not finish; compiling");
                None
            });
        if let Some(component) = mapped {
            let connector = self.finish(component, &name).await?;
            tracing::debug!(artifact = %artifact.display(), "loaded from the precompiled artifact");
            return Ok((connector, LoadOrigin::Precompiled));
        }

        let bytes = tokio::fs::read(component_path)
            .await
            .map_err(|source| LoadError::Read {
                path: name.clone(),
                source,
            })?;
        // What is compiled is what was published.
        let found = crate::catalog::digest_hex(&bytes);
        if found != digest_hex {
            return Err(LoadError::DigestMismatch {
                source_name: name,
                expected: digest_hex.to_owned(),
                found,
            });
        }
        let component = self.compile(bytes, &name).await?;
        let connector = self.finish(component.clone(), &name).await?;
        let path = artifact.clone();
        let written = tokio::task::spawn_blocking(move || write_artifact(&component, &path)).await;
        match written {
            Ok(Ok(())) => {
                tracing::debug!(artifact = %artifact.display(), "compiled; artifact written")
            }
            Ok(Err(e)) => tracing::warn!(
                artifact = %artifact.display(),
                error = %e,
                "cannot write the precompiled artifact; the next start compiles this component again"
            ),
            Err(e) => tracing::warn!(
                artifact = %artifact.display(),
                error = %e,
                "writing the precompiled artifact did not finish"
            ),
        }
        Ok((connector, LoadOrigin::Compiled))
    }
}

/// A hex hash of everything that decides whether this engine may load another's compiled
/// code. Not a security boundary (wasmtime checks the artifact's header itself): it keeps
/// each configuration's artifacts apart, so that none is thrown away by another.
fn engine_key(engine: &Engine) -> String {
    use std::hash::Hash as _;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..16])
}

/// A [`std::hash::Hasher`] that feeds SHA-256: a wide hash of what a `Hash` value writes.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The component in `path`, or `None` when there is no usable artifact there. An artifact
/// wasmtime refuses is deleted, so that a fresh one replaces it.
fn read_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    match path.try_exists() {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(artifact = %path.display(), error = %e, "cannot look for the precompiled artifact; compiling");
            return None;
        }
    }
    match deserialize(engine, path) {
        Ok(component) => Some(component),
        Err(e) => {
            let error = format!("{e:#}");
            tracing::warn!(
                artifact = %path.display(),
                error = %error,
                "the precompiled artifact is unusable (corrupt, truncated or of another engine); deleting it and compiling again"
            );
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    artifact = %path.display(),
                    error = %e,
                    "cannot delete the unusable artifact"
                ),
            }
            None
        }
    }
}

/// Loads a precompiled artifact: reads the file into memory, then lets wasmtime check and
/// load it.
///
/// wasmtime's `Component::deserialize` runs `Engine::load_code`, which first checks that
/// the engine's settings suit this CPU, then (`serialization::check_compatible`) parses the
/// bytes as wasmtime's ELF, requires the component flag, and compares the engine section:
/// the wasmtime version string, the target, every compiler and CPU-feature flag, the
/// tunables and the WebAssembly features. Any difference is an error, never a load.
///
/// The file is read, not mapped (`deserialize_file` maps it): a mapped file changed in
/// place while the service runs (a backup restored over the data directory, an editor)
/// would kill the process with SIGBUS; a copy in memory cannot be changed under it. Reading
/// a few megabytes costs about a millisecond.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: `deserialize` trusts the bytes to be machine code wasmtime wrote. They are:
    // - The file is one this service wrote (`write_artifact`, from `Component::serialize` of
    //   an engine of this process's configuration) into its private data directory. It was
    //   written atomically (temporary file, fsync, rename), so it is never seen half-written.
    // - It lies under the directory of this engine's key, and wasmtime checks its header
    //   (version, target, flags, tunables, features) before using anything in it, so an
    //   artifact of another configuration or wasmtime version is an error, not a load; a
    //   corrupt or truncated file fails those checks or the ELF parsing and is replaced.
    // - Whoever can write into the data directory can also rewrite the database (and the
    //   components it points to): an artifact there grants nothing that access does not.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// Writes `component`'s compiled form to `path` atomically.
fn write_artifact(component: &Component, path: &Path) -> io::Result<()> {
    let bytes = component.serialize().map_err(io::Error::other)?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` so that `path` is either absent, the previous file or the whole
/// new content: a temporary file in the same directory, synced, renamed over `path`, then
/// the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("an artifact path has a parent directory"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("an artifact path has a file name"))?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::runtime::{EngineOptions, Limits};
    use std::sync::OnceLock;

    fn runtime() -> &'static Runtime {
        static RUNTIME: OnceLock<Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            Runtime::new(
                EngineOptions {
                    max_instances: 4,
                    ..EngineOptions::default()
                },
                Limits::default(),
                std::sync::Arc::new(crate::egress::EgressPolicy::new(Vec::new())),
            )
            .unwrap()
        })
    }

    /// A fresh directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "junction-artifacts-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn minimal() -> (PathBuf, String) {
        let path = PathBuf::from(junction_tests::components::MINIMAL);
        let digest = hex(&Sha256::digest(fs::read(&path).unwrap()));
        (path, digest)
    }

    #[test]
    fn engine_key_follows_the_engine_settings() {
        let engine = |epochs: bool| {
            let mut config = wasmtime::Config::new();
            config.wasm_component_model(true).epoch_interruption(epochs);
            Engine::new(&config).unwrap()
        };
        let key = engine_key(&engine(true));
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, engine_key(&engine(true)), "the key is deterministic");
        assert_ne!(key, engine_key(&engine(false)));
        assert_ne!(
            runtime().artifact_cache(Path::new("/data")).dir(),
            Path::new("/data").join(engine_key(&engine(false)))
        );
    }

    #[test]
    fn digests_are_64_lowercase_hex_characters() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex("../../etc/passwd"));
    }

    #[tokio::test]
    async fn compiles_once_then_loads_the_artifact() {
        let rt = runtime();
        let root = temp_dir("reuse");
        let cache = rt.artifact_cache(&root);
        let (path, digest) = minimal();

        let (first, origin) = rt
            .load_cached(&path, &digest, &cache, "test.wasm")
            .await
            .unwrap();
        assert_eq!(origin, LoadOrigin::Compiled);
        assert!(cache.artifact_path(&digest).is_file());
        let leftovers: Vec<_> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let (second, origin) = rt
            .load_cached(&path, &digest, &cache, "test.wasm")
            .await
            .unwrap();
        assert_eq!(origin, LoadOrigin::Precompiled);
        assert_eq!(first.id(), second.id());
        assert_eq!(
            first.manifest().actions.len(),
            second.manifest().actions.len()
        );

        // The precompiled connector runs.
        let connection = second.prepare(&Default::default()).unwrap();
        let output = rt.execute(&second, connection, "note", "{}").await.unwrap();
        assert_eq!(output, r#"{"note":null}"#);
        fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn an_unusable_artifact_is_replaced() {
        let rt = runtime();
        let root = temp_dir("corrupt");
        let cache = rt.artifact_cache(&root);
        let (path, digest) = minimal();
        let artifact = cache.artifact_path(&digest);
        rt.load_cached(&path, &digest, &cache, "test.wasm")
            .await
            .unwrap();
        let good = fs::read(&artifact).unwrap();

        let other_engine = {
            let mut config = wasmtime::Config::new();
            config.wasm_component_model(true).epoch_interruption(false);
            Engine::new(&config).unwrap()
        };
        let foreign = other_engine
            .precompile_component(&fs::read(&path).unwrap())
            .unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            ("garbage", b"not an artifact at all".to_vec()),
            ("empty", Vec::new()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("another engine's", foreign),
        ];
        for (what, bytes) in cases {
            // A new file, as the cache replaces one (never rewritten in place).
            fs::remove_file(&artifact).unwrap();
            fs::write(&artifact, &bytes).unwrap();
            let refused = deserialize(&rt.shared.engine, &artifact)
                .map(drop)
                .unwrap_err();
            // wasmtime's own header check, not a guess of ours, refuses another engine's code.
            if what == "another engine's" {
                let refused = format!("{refused:#}");
                assert!(refused.contains("epoch interruption"), "{refused}");
            }
            let (connector, origin) = rt
                .load_cached(&path, &digest, &cache, "test.wasm")
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(origin, LoadOrigin::Compiled, "{what}");
            assert_eq!(connector.id().name, "minimal");
            assert_ne!(fs::read(&artifact).unwrap(), bytes, "{what}");
            let (_, origin) = rt
                .load_cached(&path, &digest, &cache, "test.wasm")
                .await
                .unwrap();
            assert_eq!(
                origin,
                LoadOrigin::Precompiled,
                "{what}: the replacement is used"
            );
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn validation_and_errors_are_those_of_load() {
        let rt = runtime();
        let root = temp_dir("errors");
        let cache = rt.artifact_cache(&root);
        let digest = "0".repeat(64);

        let missing = root.join("missing.wasm");
        let e = rt
            .load_cached(&missing, &digest, &cache, "test.wasm")
            .await
            .unwrap_err();
        assert!(matches!(e, LoadError::Read { .. }), "{e}");

        let bad = PathBuf::from(junction_tests::components::BAD_MANIFEST);
        let bad_digest = hex(&Sha256::digest(fs::read(&bad).unwrap()));
        let e = rt
            .load_cached(&bad, &bad_digest, &cache, "test.wasm")
            .await
            .unwrap_err();
        assert!(matches!(e, LoadError::Manifest { .. }), "{e}");
        assert!(
            !cache.artifact_path(&bad_digest).exists(),
            "no artifact for a component that failed validation"
        );

        let (path, _) = minimal();
        let e = rt
            .load_cached(&path, "../x", &cache, "test.wasm")
            .await
            .unwrap_err();
        assert!(matches!(e, LoadError::InvalidDigest { .. }), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }
}
