//! The [`CacheManager`] implementation: validate, call the core, count.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    KeyPattern, PutOptions, Result,
};
use cache_kit::{SweeperHandle, blocking, lock};

use crate::config::CacacheConfig;
use crate::core::{Inner, NAME, ORPHAN_GRACE, SweepReport};

/// A disk cache in a cacache directory.
///
/// Entries are the core codec's envelopes, stored as cacache content; an in-memory index
/// (key to content hash, size, expiry, tags, recency), rebuilt from cacache's index at
/// open, lets a hit read the content file by hash without parsing an index bucket or
/// hashing the content again (the envelope's checksum guards it). Every file operation
/// runs on tokio's blocking pool. Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct CacacheCache {
    pub(crate) inner: Arc<Inner>,
}

impl CacacheCache {
    /// Opens (or creates) the cache in `config`'s directory: rebuilds the index from disk,
    /// drops expired and unreadable entries, evicts down to the capacity, and removes
    /// orphaned content and temporary files.
    pub async fn open(config: CacacheConfig) -> Result<Self> {
        let inner = CacheFuture::blocking(NAME, move || Inner::open(config)).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Removes expired entries, and content, buckets and temporary files that no entry
    /// references and that are older than a minute. Runs on the blocking pool.
    pub async fn sweep(&self) -> Result<SweepReport> {
        blocking::run(NAME, &self.inner, |inner| inner.sweep(ORPHAN_GRACE)).await
    }

    /// Runs [`sweep`](Self::sweep) every `period` (at least 10 ms: a shorter one is taken
    /// as 10 ms) until the returned handle is dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> SweeperHandle {
        let cache = self.clone();
        SweeperHandle::spawn(period, move || {
            let cache = cache.clone();
            // A failed sweep is retried at the next tick; its errors are I/O errors the
            // next sweep meets again if they persist.
            async move { cache.sweep().await }
        })
    }
}

impl std::fmt::Debug for CacacheCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacacheCache")
            .field("dir", &self.inner.dir)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheManager for CacacheCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_tags()
            .with_delete_pattern()
            .with_clear()
            .with_entry_count()
            .with_size_bytes()
            .with_stats()
            .with_stores_bytes()
            // An entry larger than the whole capacity is refused (its encoded bytes,
            // key and tags counted).
            .with_max_entry_bytes(self.inner.capacity_bytes)
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        blocking::keyed(NAME, &self.inner, key, |inner, key| {
            Ok(inner.get(key)?.map(Arc::new))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        blocking::keyed(NAME, &self.inner, key, move |inner, key| {
            inner.put(key, &response, &policy, &options)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        blocking::keyed(NAME, &self.inner, key, |inner, key| {
            inner.remove_entry(key, None)?;
            inner.counters.add_deletes(1);
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        let tag = tag.to_owned();
        blocking::run(NAME, &self.inner, move |inner| {
            let removed = inner.delete_tag(&tag)?;
            inner.counters.add_deletes(removed);
            Ok(removed)
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
        CacheFuture::ready(Ok(lock(&self.inner.index).len() as u64))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(lock(&self.inner.index).total_bytes()))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}
