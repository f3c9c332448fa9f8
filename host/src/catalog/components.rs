//! Published components on disk, content-addressed: `<dir>/<sha256 hex>.wasm`, written once
//! (temporary file, fsync, rename) and never changed.

use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The directory of published components.
#[derive(Debug, Clone)]
pub struct ComponentFiles {
    dir: PathBuf,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn digest_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

impl ComponentFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Stores `bytes` under their digest (nothing to do when they are there already);
    /// returns the path and whether it was written now.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> std::io::Result<(PathBuf, bool)> {
        let path = self.path(digest);
        // A file already there is kept when it holds these bytes (a damaged one is
        // replaced).
        if std::fs::read(&path).is_ok_and(|stored| digest_hex(&stored) == digest) {
            return Ok((path, false));
        }
        std::fs::create_dir_all(&self.dir)?;
        let temp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            crate::credentials::at_rest::sync_parent(&path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map(|()| (path, true))
    }

    /// Removes a file written for a publication that failed (the component, its artifact).
    pub fn discard(&self, path: &Path) {
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the file of a refused component");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_stored_once_under_their_digest() {
        let dir = std::env::temp_dir().join(format!("junction-components-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = ComponentFiles::new(dir.clone());
        let digest = digest_hex(b"component");
        assert_eq!(digest.len(), 64);
        let (path, new) = files.put(&digest, b"component").unwrap();
        assert!(new);
        assert_eq!(std::fs::read(&path).unwrap(), b"component");
        let (again, new) = files.put(&digest, b"component").unwrap();
        assert_eq!((again, new), (path, false));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
