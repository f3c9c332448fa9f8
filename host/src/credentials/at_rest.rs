//! Encryption at rest: AES-256-GCM under a master key that lives outside the database (a key
//! file with owner-only permissions, or an environment variable). Every value gets its own
//! random 96-bit nonce, and the identity of the record it belongs to is the associated data,
//! so a ciphertext moved to another row or field does not decrypt.

use super::Secret;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a key cannot be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the key in {origin} is not a base64-encoded 32-byte key (generate one with `junction keys generate`)"
    )]
    Malformed { origin: String },
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("the system random generator failed: {0}")]
    Random(String),
    #[error("a value could not be encrypted")]
    Seal,
    #[error(
        "a stored value does not decrypt with key {key_id}: wrong key, or the record was altered"
    )]
    Open { key_id: String },
}

/// The master key. Zeroed on drop; `Debug` shows only its id.
pub struct MasterKey {
    cipher: Aes256Gcm,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// An encrypted value as stored: the id of the key, the nonce and the ciphertext (with its
/// 16-byte tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

impl MasterKey {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(bytes);
        // The id names the key in messages and in stored records; 8 bytes of a hash of a
        // random 256-bit key tell nothing about it.
        let id = format!("k-{}", hex(&digest[..8]));
        Self {
            cipher: Aes256Gcm::new(bytes.into()),
            id,
        }
    }

    /// A new random key, with its base64 encoding (to be written down once).
    pub fn generate() -> Result<(Self, Zeroizing<String>), KeyError> {
        let bytes = Zeroizing::new(random_bytes::<KEY_LEN>()?);
        let encoded = Zeroizing::new(STANDARD.encode(bytes.as_slice()));
        Ok((Self::from_bytes(&bytes), encoded))
    }

    /// A key from its base64 text; `origin` names where it came from, for the error.
    pub fn from_encoded(text: &str, origin: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed {
            origin: origin.to_owned(),
        };
        let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: &[u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    /// A short public name of the key (`k-` and 16 hex digits of its hash).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext` for the record named by `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, KeyError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Seal)?;
        Ok(Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a value sealed for the record named by `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let failed = || KeyError::Open {
            key_id: self.id.clone(),
        };
        if sealed.key_id != self.id || sealed.nonce.len() != NONCE_LEN {
            return Err(failed());
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| failed())
    }

    /// Encrypts a secret text.
    pub fn seal_secret(&self, aad: &[u8], secret: &Secret) -> Result<Sealed, KeyError> {
        self.seal(aad, secret.expose().as_bytes())
    }

    /// Decrypts a secret text.
    pub fn open_secret(&self, aad: &[u8], sealed: &Sealed) -> Result<Secret, KeyError> {
        let bytes = self.open(aad, sealed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Open {
            key_id: self.id.clone(),
        })?;
        Ok(Secret::new(text))
    }

    /// Reads a key file, refusing one that other users can read.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        check_owner_only(path)?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::from_encoded(&text, &path.display().to_string())
    }

    /// Writes `encoded` to a new key file readable by its owner only, and syncs it (and its
    /// directory) to disk before returning. Fails if the file exists.
    pub fn write_file(path: &Path, encoded: &str) -> Result<(), KeyError> {
        let write = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(write)?;
        file.write_all(encoded.as_bytes()).map_err(write)?;
        file.write_all(b"\n").map_err(write)?;
        file.sync_all().map_err(write)?;
        sync_parent(path).map_err(write)
    }
}

/// Syncs the directory holding `path`, so a created or renamed file survives a crash.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_its_record_identity() {
        let (key, _) = MasterKey::generate().unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let sealed = key.seal(b"connection:a:token", b"s3cret").unwrap();
        assert_eq!(
            key.open(b"connection:a:token", &sealed).unwrap().as_slice(),
            b"s3cret"
        );
        assert!(key.open(b"connection:b:token", &sealed).is_err());
        assert!(other.open(b"connection:a:token", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(key.open(b"connection:a:token", &tampered).is_err());
    }

    #[test]
    fn every_value_gets_its_own_nonce() {
        let (key, _) = MasterKey::generate().unwrap();
        let a = key.seal(b"r", b"same").unwrap();
        let b = key.seal(b"r", b"same").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn an_encoded_key_round_trips_and_bad_text_is_refused() {
        let (key, encoded) = MasterKey::generate().unwrap();
        let again = MasterKey::from_encoded(&encoded, "test").unwrap();
        assert_eq!(key.id(), again.id());
        let sealed = key.seal(b"r", b"v").unwrap();
        assert_eq!(again.open(b"r", &sealed).unwrap().as_slice(), b"v");
        assert!(MasterKey::from_encoded("not base64!", "test").is_err());
        assert!(MasterKey::from_encoded(&STANDARD.encode([0u8; 16]), "test").is_err());
        assert!(!format!("{key:?}").contains(encoded.as_str()));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_owner_only_and_open_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("junction-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("junction.key");
        let _ = std::fs::remove_file(&path);
        let (key, encoded) = MasterKey::generate().unwrap();
        MasterKey::write_file(&path, &encoded).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(MasterKey::read_file(&path).unwrap().id(), key.id());
        assert!(MasterKey::write_file(&path, &encoded).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::read_file(&path),
            Err(KeyError::TooOpen { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
