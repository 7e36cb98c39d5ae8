//! [`MemoryCache`]: the [`CacheManager`] implementation, thin: validate, call the store,
//! count.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    EntryMetadata, KeyPattern, PutOptions, Result, validate_key,
};

use crate::config::MemoryConfig;
use crate::core::{NAME, Store};

/// An in-process cache of decoded entries on moka.
///
/// A hit returns the stored `Arc<CacheEntry>`: no decoding, no copy. Cloning a
/// `MemoryCache` is cheap and every clone shares the same entries.
#[derive(Clone)]
pub struct MemoryCache {
    store: Arc<Store>,
}

impl MemoryCache {
    /// Opens an empty cache with `config`. Fails with `ErrorKind::Config` when the
    /// capacity or the entry limit is zero.
    pub fn open(config: MemoryConfig) -> Result<Self> {
        Ok(Self {
            store: Arc::new(Store::open(config)?),
        })
    }

    /// The live entry under `key`, without going through the async trait.
    pub fn get_entry(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        validate_key(NAME, key)?;
        let entry = self.store.read(key);
        if entry.is_some() {
            self.store.counters.add_hits(1);
        } else {
            self.store.counters.add_misses(1);
        }
        Ok(entry)
    }

    /// Stores a response, without going through the async trait.
    pub fn put_response(
        &self,
        key: &str,
        response: CachedResponse,
        policy: CachePolicy,
        options: &PutOptions,
    ) -> Result<()> {
        validate_key(NAME, key)?;
        let metadata = self.store.ttl_policy.entry_metadata(
            &policy,
            &response.headers,
            options,
            SystemTime::now(),
        );
        if metadata.storage_ttl().is_zero() {
            self.store.remove(key);
            return Ok(());
        }
        self.insert(key, Arc::new(CacheEntry::new(response, policy, metadata)))
    }

    /// Stores an entry read from another cache for at most `ttl` (and never past its own
    /// `expires_at`), without going through the async trait. When the entry's own expiry
    /// comes first, the `Arc` is stored as it is: nothing is copied, and a hit reports the
    /// entry's metadata as given. Otherwise the copy gets metadata of its own (stored now,
    /// expiring after `ttl`).
    pub fn put_shared_entry(
        &self,
        key: &str,
        entry: Arc<CacheEntry>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        validate_key(NAME, key)?;
        let now = SystemTime::now();
        let remaining = entry.metadata.remaining_ttl(now);
        if remaining.is_zero() || ttl.is_some_and(|ttl| ttl.is_zero()) {
            self.store.remove(key);
            return Ok(());
        }
        let entry = match ttl {
            Some(ttl) if ttl < remaining => {
                let metadata = EntryMetadata::new(now, ttl, entry.metadata.tags.clone());
                let (response, policy, _) = Arc::unwrap_or_clone(entry).into_parts();
                Arc::new(CacheEntry::new(response, policy, metadata))
            }
            _ => entry,
        };
        self.insert(key, entry)
    }

    fn insert(&self, key: &str, entry: Arc<CacheEntry>) -> Result<()> {
        self.store.write(key, entry)?;
        self.store.counters.add_puts(1);
        Ok(())
    }

    /// Runs moka's pending maintenance now: expired and evicted entries are removed and
    /// the tag index shrinks accordingly. Counts and sizes are exact afterwards.
    pub fn run_pending_tasks(&self) {
        self.store.run_pending_tasks();
    }

    /// How many (tag, entry) memberships the tag index holds; it shrinks as entries are
    /// deleted, evicted or expire (after [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn tag_index_len(&self) -> usize {
        self.store.tag_index_len()
    }

    fn delete_entry(&self, key: &str) -> Result<()> {
        validate_key(NAME, key)?;
        self.store.remove(key);
        self.store.counters.add_deletes(1);
        Ok(())
    }

    fn counted_deletes(&self, removed: u64) -> u64 {
        self.store.counters.add_deletes(removed);
        removed
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, weighted_size) = self.store.approximate_counts();
        f.debug_struct("MemoryCache")
            .field("entries", &entries)
            .field("weighted_size", &weighted_size)
            .field("max_entry_bytes", &self.store.max_entry_bytes)
            .field("ttl_policy", &self.store.ttl_policy)
            .finish_non_exhaustive()
    }
}

// Every operation completes without waiting, so each returns a ready future: a hit
// allocates nothing.
impl CacheManager for MemoryCache {
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
            .with_max_entry_bytes(self.store.max_entry_bytes)
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        CacheFuture::ready(self.get_entry(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready(self.put_response(key, response, policy, &options))
    }

    fn put_entry<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CacheEntry>,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready(self.put_shared_entry(key, entry, options.ttl()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready(self.delete_entry(key))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::ready(Ok(self.counted_deletes(self.store.remove_tagged(tag))))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::ready(Ok(self.counted_deletes(self.store.remove_matching(pattern))))
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        self.counted_deletes(self.store.remove_all());
        CacheFuture::ready(Ok(()))
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self.store.entry_count()))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self.store.weighted_size()))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.store.counters.snapshot())
    }
}
