//! The [`CacheManager`] implementation: validate, call the core, count.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    ErrorKind, KeyPattern, PutOptions, Result, codec, validate_key,
};
use cache_kit::blocking;

use crate::config::RocksDbConfig;
use crate::core::{Inner, NAME, StoredValue};

/// A disk cache in a RocksDB database.
///
/// Column family `entries` maps each key to its write sequence number and the core
/// codec's envelope; `write_order` maps sequence numbers to keys, oldest first, for
/// eviction. In memory, each stored key's write sequence and stored size (about the key's
/// length plus 48 bytes per entry, rebuilt by the scan at open), so a put or delete never
/// reads the old value from disk. Every RocksDB call runs on tokio's blocking pool.
/// Cloning is cheap.
#[derive(Clone)]
pub struct RocksDbCache {
    pub(crate) inner: Arc<Inner>,
}

impl RocksDbCache {
    /// Opens (or creates) the database in `config`'s directory. A database RocksDB
    /// reports as corrupt is salvaged (see the crate docs: what cannot be read is
    /// dropped, nothing is archived). Then the accounting is rebuilt and the capacity
    /// enforced.
    pub async fn open(config: RocksDbConfig) -> Result<Self> {
        let inner = CacheFuture::blocking(NAME, move || Inner::open(&config)).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Compacts the whole database now: expired entries are dropped by the compaction
    /// filter and deleted data is reclaimed. RocksDB also compacts on its own.
    pub async fn compact(&self) -> Result<()> {
        blocking::run(NAME, &self.inner, Inner::compact).await
    }

    /// Removes expired entries and write-order records whose entry is gone; returns how
    /// many entries expired. Writes go on meanwhile: each key is locked only to remove it.
    pub async fn sweep(&self) -> Result<u64> {
        blocking::run(NAME, &self.inner, Inner::sweep).await
    }
}

impl std::fmt::Debug for RocksDbCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbCache")
            .field("path", &self.inner.path)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheManager for RocksDbCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        // Tags are not supported: an index that stays correct when compaction drops
        // expired entries behind its back could not be kept bounded.
        Capabilities::none()
            .with_delete_pattern()
            .with_clear()
            .with_entry_count()
            .with_size_bytes()
            .with_stats()
            .with_stores_bytes()
            // An entry larger than the whole capacity is refused (key and encoded
            // value counted).
            .with_max_entry_bytes(self.inner.capacity_bytes)
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = &self.inner;
        CacheFuture::new(async move {
            // Only the read runs on the blocking pool; decoding is CPU work, done here.
            let (reader, owned_key) = (Arc::clone(inner), key.to_owned());
            let stored = CacheFuture::blocking(NAME, move || reader.read(&owned_key)).await?;
            let Some(StoredValue { sequence, envelope }) = stored else {
                inner.counters.add_misses(1);
                return Ok(None);
            };
            let now = SystemTime::now();
            let expired = match envelope.map(|envelope| codec::decode_for_key(envelope, key)) {
                Some(Ok(entry)) if entry.metadata.expires_at > now => {
                    inner.counters.add_hits(1);
                    return Ok(Some(Arc::new(entry)));
                }
                Some(Ok(_)) => true,
                Some(Err(_)) | None => false,
            };
            inner.counters.add_misses(1);
            let (inner, owned_key) = (Arc::clone(inner), key.to_owned());
            CacheFuture::blocking(NAME, move || {
                if expired {
                    if inner.remove(owned_key.as_bytes(), sequence)?.is_some() {
                        inner.counters.add_expirations(1);
                    }
                    Ok(())
                } else {
                    inner.remove_corrupt(owned_key.as_bytes(), sequence)
                }
            })
            .await?;
            Ok(None)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            // Encoding is CPU work, done here; only the write runs on the blocking pool.
            let prepared = self.inner.prepare_put(key, &response, &policy, &options);
            let (inner, owned_key) = (Arc::clone(&self.inner), key.to_owned());
            CacheFuture::blocking(NAME, move || match prepared {
                Ok(Some((sequence, value))) => inner.write(&owned_key, sequence, value),
                Ok(None) => inner.remove(owned_key.as_bytes(), None).map(drop),
                // A refused put leaves no entry: the previous version goes too.
                Err(error) if error.kind() == ErrorKind::TooLarge => {
                    inner.remove(owned_key.as_bytes(), None)?;
                    Err(error)
                }
                Err(error) => Err(error),
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        blocking::keyed(NAME, &self.inner, key, |inner, key| {
            inner.remove(key.as_bytes(), None)?;
            inner.counters.add_deletes(1);
            Ok(())
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let pattern = pattern.clone();
        blocking::run(NAME, &self.inner, move |inner| {
            let removed = inner.delete_pattern(&pattern)?;
            inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        blocking::run(NAME, &self.inner, |inner| {
            let removed = inner.clear()?;
            inner.counters.add_deletes(removed);
            Ok(())
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self
            .inner
            .accounting
            .entries
            .load(std::sync::atomic::Ordering::Relaxed)))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self
            .inner
            .accounting
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed)))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}
