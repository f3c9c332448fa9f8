//! Resolved vault secrets, held in memory for one hour, sealed under a key that exists only
//! in this process. moka expires them and coalesces loads: while one read of a secret is
//! in flight, every other caller of the same secret waits for its result instead of
//! reading again.

use super::Clock;
use crate::credentials::Secret;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use moka::future::Cache;
use moka::ops::compute::Op;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a resolved value is kept: the promise made to users, not a setting.
pub const TTL: Duration = Duration::from_secs(3600);

/// A value that an API refused, read again and found unchanged in the vault, is not read
/// again for another refusal within this time (by default): a credential the API keeps
/// refusing costs the vault one read per pause, not one per invocation.
pub const REREAD_PAUSE: Duration = Duration::from_secs(30);

const NONCE_LEN: usize = 12;

/// Why a value could not be sealed or opened (the process key is broken: never expected).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the in-memory credential cache failed to {0} a value")]
pub struct SealError(&'static str);

/// One secret's values (key → value; `None` where the value is not a string), sealed.
struct Sealed {
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    /// Tells a reload from the value it replaces.
    generation: u64,
    /// When it was read, on the cache's clock.
    fetched: Duration,
    /// Until when (in milliseconds on the cache's clock) a refusal does not read it again:
    /// set when a read after a refusal found the same value.
    held_until_ms: AtomicU64,
}

/// The values of one secret as read from a vault.
pub type Values = BTreeMap<String, Option<Secret>>;

/// A secret's values, opened from the cache, and which load they came from.
#[derive(Debug)]
pub struct Opened {
    pub values: Values,
    pub generation: u64,
}

/// The cache of resolved secrets, keyed by store and path.
pub struct SecretCache {
    entries: Cache<(String, String), Arc<Sealed>>,
    cipher: Aes256Gcm,
    clock: Arc<dyn Clock>,
    generations: AtomicU64,
    reread_pause: Duration,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn aad(store: &str, path: &str) -> Vec<u8> {
    [
        b"junction/vault-cache/v1\0",
        store.as_bytes(),
        b"\0",
        path.as_bytes(),
    ]
    .concat()
}

impl SecretCache {
    /// A cache with a fresh random key, expiring values [`TTL`] after they were read on
    /// `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Result<Self, getrandom::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())?;
        let cipher =
            Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| getrandom::Error::UNSUPPORTED)?;
        Ok(Self {
            // moka drops entries after the hour on its own clock too, so memory is freed
            // even for secrets nobody asks for again.
            entries: Cache::builder()
                .time_to_live(TTL)
                .max_capacity(100_000)
                .build(),
            cipher,
            clock,
            generations: AtomicU64::new(1),
            reread_pause: REREAD_PAUSE,
        })
    }

    /// Sets how long a value found unchanged after a refusal is held (see [`REREAD_PAUSE`]).
    pub fn set_reread_pause(&mut self, pause: Duration) {
        self.reread_pause = pause;
    }

    fn seal(&self, store: &str, path: &str, values: &Values) -> Result<Sealed, SealError> {
        let plain: BTreeMap<&str, Option<&str>> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref().map(Secret::expose)))
            .collect();
        let plain = Zeroizing::new(serde_json::to_vec(&plain).map_err(|_| SealError("seal"))?);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError("seal"))?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad(store, path),
                },
            )
            .map_err(|_| SealError("seal"))?;
        Ok(Sealed {
            nonce,
            ciphertext,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            fetched: self.clock.now(),
            held_until_ms: AtomicU64::new(0),
        })
    }

    fn open(&self, store: &str, path: &str, sealed: &Sealed) -> Result<Opened, SealError> {
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad(store, path),
                    },
                )
                .map_err(|_| SealError("open"))?,
        );
        let parsed: BTreeMap<String, Option<String>> =
            serde_json::from_slice(&plain).map_err(|_| SealError("open"))?;
        Ok(Opened {
            values: parsed
                .into_iter()
                .map(|(k, v)| (k, v.map(Secret::new)))
                .collect(),
            generation: sealed.generation,
        })
    }

    /// The values of `store`/`path`: from the cache while they are younger than [`TTL`],
    /// else from `load`, run once however many callers ask at the same time.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        store: &str,
        path: &str,
        load: F,
    ) -> Result<Opened, Arc<LoadError<E>>>
    where
        E: Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Values, E>>,
    {
        let key = (store.to_owned(), path.to_owned());
        // At most twice: an entry found past its hour is dropped and read again once.
        for _ in 0..2 {
            let sealed = self
                .entries
                .try_get_with(key.clone(), async {
                    let values = load().await.map_err(LoadError::Load)?;
                    self.seal(store, path, &values)
                        .map(Arc::new)
                        .map_err(LoadError::Seal)
                })
                .await?;
            if self.clock.now().saturating_sub(sealed.fetched) >= TTL {
                self.forget(store, path, sealed.generation).await;
                continue;
            }
            return self
                .open(store, path, &sealed)
                .map_err(|e| Arc::new(LoadError::Seal(e)));
        }
        Err(Arc::new(LoadError::Seal(SealError("keep"))))
    }

    /// Drops the values of `store`/`path` if they are still those of load `generation`
    /// (a value another caller already reloaded is kept).
    pub async fn forget(&self, store: &str, path: &str, generation: u64) {
        let key = (store.to_owned(), path.to_owned());
        self.entries
            .entry(key)
            .and_compute_with(|entry| async move {
                match entry {
                    Some(e) if e.value().generation == generation => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// An API refused the value of load `generation`: drops it, unless another caller
    /// already did, or it is held (see [`SecretCache::hold`]).
    pub async fn forget_refused(&self, store: &str, path: &str, generation: u64) {
        let key = (store.to_owned(), path.to_owned());
        let now = millis(self.clock.now());
        self.entries
            .entry(key)
            .and_compute_with(|entry| async move {
                match entry {
                    Some(e)
                        if e.value().generation == generation
                            && e.value().held_until_ms.load(Ordering::Relaxed) <= now =>
                    {
                        Op::Remove
                    }
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// A read after a refusal found the value of load `generation` unchanged: further
    /// refusals do not read it again for the re-read pause ([`REREAD_PAUSE`] by default).
    pub async fn hold(&self, store: &str, path: &str, generation: u64) {
        let key = (store.to_owned(), path.to_owned());
        if let Some(sealed) = self.entries.get(&key).await
            && sealed.generation == generation
        {
            let until = millis(self.clock.now() + self.reread_pause);
            sealed.held_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// Whether `store`/`path` is cached (and not past its hour).
    pub async fn contains(&self, store: &str, path: &str) -> bool {
        let key = (store.to_owned(), path.to_owned());
        match self.entries.get(&key).await {
            Some(sealed) => self.clock.now().saturating_sub(sealed.fetched) < TTL,
            None => false,
        }
    }
}

/// Why a value is not in the cache: its load failed, or the cache could not keep it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    #[error("{0}")]
    Load(E),
    #[error(transparent)]
    Seal(SealError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::ManualClock;
    use std::sync::atomic::AtomicUsize;

    fn values(v: &str) -> Values {
        BTreeMap::from([("k".to_owned(), Some(Secret::new(v)))])
    }

    #[tokio::test]
    async fn a_value_is_loaded_once_then_served_sealed_until_its_hour_is_over() {
        let clock = Arc::new(ManualClock::default());
        let cache = SecretCache::new(clock.clone()).unwrap();
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(values("v1"))
        };
        let first = cache.get_or_load("s", "p", load).await.unwrap();
        assert_eq!(first.values["k"].as_ref().unwrap().expose(), "v1");
        cache.get_or_load("s", "p", load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The clear value is nowhere in the entry.
        let sealed = cache.entries.get(&("s".into(), "p".into())).await.unwrap();
        assert!(!sealed.ciphertext.windows(2).any(|w| w == b"v1"));

        clock.advance(TTL - Duration::from_secs(1));
        cache.get_or_load("s", "p", load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        assert!(!cache.contains("s", "p").await);
        cache.get_or_load("s", "p", load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load_and_forget_spares_a_newer_value() {
        let cache = Arc::new(SecretCache::new(Arc::new(ManualClock::default())).unwrap());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load("s", "p", || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(values("v1"))
                    })
                    .await
                    .unwrap()
                    .generation
            }));
        }
        let mut generations = Vec::new();
        for t in tasks {
            generations.push(t.await.unwrap());
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let old = generations[0];
        cache.forget_refused("s", "p", old).await;
        let new = cache
            .get_or_load("s", "p", || async { Ok::<_, String>(values("v2")) })
            .await
            .unwrap();
        assert_ne!(new.generation, old);
        // A second caller rejecting the old value does not drop the new one.
        cache.forget_refused("s", "p", old).await;
        assert!(cache.contains("s", "p").await);
        // A value found unchanged after a refusal is held: not dropped again until the
        // pause is over.
        cache.hold("s", "p", new.generation).await;
        cache.forget_refused("s", "p", new.generation).await;
        assert!(cache.contains("s", "p").await);
        let failed = cache
            .get_or_load("t", "p", || async { Err::<Values, _>("down".to_owned()) })
            .await
            .unwrap_err();
        assert_eq!(failed.to_string(), "down");
        assert!(!cache.contains("t", "p").await);
    }
}
