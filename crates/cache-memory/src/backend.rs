//! The [`CacheManager`] implementation on moka.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    EntryMetadata, Error, ErrorKind, KeyPattern, PutOptions, Result, StatsCounters, TtlPolicy,
    validate_key,
};
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use crate::config::MemoryConfig;

const NAME: &str = "memory";

/// An in-process cache of decoded entries on moka.
///
/// A hit returns the stored `Arc<CacheEntry>`: no decoding, no copy. Cloning a
/// `MemoryCache` is cheap and every clone shares the same entries.
#[derive(Clone)]
pub struct MemoryCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache<String, Stored>,
    tags: Arc<Mutex<TagIndex>>,
    counters: Arc<StatsCounters>,
    ttl_policy: TtlPolicy,
    max_entry_bytes: u64,
    next_id: AtomicU64,
}

/// What the moka cache holds: the entry, a copy of its expiry (so a hit checks it without
/// touching the entry's own memory) and an id unique to this put, so that index entries
/// and conditional removals refer to one version of a key, never a later one.
#[derive(Clone)]
struct Stored {
    entry: Arc<CacheEntry>,
    expires_at: SystemTime,
    id: u64,
}

/// moka ends an entry this much before its `expires_at`, so that its monotonic clock, read
/// a moment after the wall clock, never lets an entry outlive its expiry.
const EXPIRY_SAFETY_MARGIN: Duration = Duration::from_millis(1);

impl Stored {
    fn remaining_ttl(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .saturating_sub(EXPIRY_SAFETY_MARGIN)
    }
}

/// Tag to the (put id, key) pairs stored with it. Entries leave it when moka removes them
/// for any cause (the eviction listener), so it never outgrows the live entries.
#[derive(Default)]
struct TagIndex {
    members: HashMap<String, HashMap<u64, Arc<str>>>,
}

impl TagIndex {
    fn remove(&mut self, tags: &[String], id: u64) {
        for tag in tags {
            if let MapEntry::Occupied(mut members) = self.members.entry(tag.clone()) {
                members.get_mut().remove(&id);
                if members.get().is_empty() {
                    members.remove();
                }
            }
        }
    }
}

/// Gives every entry the remaining storage TTL it was put with.
struct EntryExpiry;

impl moka::Expiry<String, Stored> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Stored,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.remaining_ttl())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining_ttl())
    }
}

fn lock(tags: &Mutex<TagIndex>) -> MutexGuard<'_, TagIndex> {
    // The index stays consistent even if a holder panicked: every update is one map call.
    tags.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn weight(key: &str, entry: &CacheEntry) -> u64 {
    (key.len() + entry.approximate_size()) as u64
}

impl MemoryCache {
    /// A cache with `config`.
    pub fn new(config: MemoryConfig) -> Self {
        let tags: Arc<Mutex<TagIndex>> = Arc::default();
        let counters: Arc<StatsCounters> = Arc::default();
        let listener_tags = Arc::clone(&tags);
        let listener_counters = Arc::clone(&counters);
        let cache = Cache::builder()
            .max_capacity(config.capacity_bytes)
            .weigher(|key: &String, stored: &Stored| {
                u32::try_from(weight(key, &stored.entry)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .eviction_listener(
                move |_key: Arc<String>, stored: Stored, cause: RemovalCause| {
                    match cause {
                        RemovalCause::Expired => listener_counters.add_expirations(1),
                        RemovalCause::Size => listener_counters.add_evictions(1),
                        RemovalCause::Explicit | RemovalCause::Replaced => {}
                    }
                    if !stored.entry.metadata.tags.is_empty() {
                        lock(&listener_tags).remove(&stored.entry.metadata.tags, stored.id);
                    }
                },
            )
            .build();
        Self {
            inner: Arc::new(Inner {
                cache,
                tags,
                counters,
                ttl_policy: config.ttl_policy,
                max_entry_bytes: config.effective_max_entry_bytes(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// A configuration to build a cache from.
    pub fn builder() -> MemoryConfig {
        MemoryConfig::default()
    }

    /// The live entry under `key`, without going through the async trait.
    pub fn get_entry(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        validate_key(NAME, key)?;
        let inner = &*self.inner;
        // moka enforces expiry on its monotonic clock (see `EXPIRY_SAFETY_MARGIN`), so a
        // hit needs no wall-clock read.
        match inner.cache.get(key) {
            Some(stored) => {
                inner.counters.add_hits(1);
                Ok(Some(stored.entry))
            }
            None => {
                inner.counters.add_misses(1);
                Ok(None)
            }
        }
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
        let inner = &*self.inner;
        let metadata =
            inner
                .ttl_policy
                .entry_metadata(&policy, &response.headers, options, SystemTime::now());
        if metadata.storage_ttl().is_zero() {
            self.remove(key);
            return Ok(());
        }
        let entry = Arc::new(CacheEntry::new(response, policy, metadata));
        self.insert(key, entry)
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
            self.remove(key);
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

    /// Inserts a built entry (its metadata says when it ends), registering its tags.
    fn insert(&self, key: &str, entry: Arc<CacheEntry>) -> Result<()> {
        let inner = &*self.inner;
        let entry_weight = weight(key, &entry);
        if entry_weight > inner.max_entry_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry weighs {entry_weight} bytes, the limit is {}",
                    inner.max_entry_bytes
                ),
            )
            .with_key(key));
        }
        let stored = Stored {
            expires_at: entry.metadata.expires_at,
            entry,
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        };
        if stored.entry.metadata.tags.is_empty() {
            inner.cache.insert(key.to_owned(), stored);
        } else {
            // Registering the tags and inserting happen under moka's per-key lock, so a
            // concurrent `delete_tag` sees either both or neither.
            let indexed_key: Arc<str> = Arc::from(key);
            inner.cache.entry(key.to_owned()).and_compute_with(|_| {
                let mut index = lock(&inner.tags);
                for tag in &stored.entry.metadata.tags {
                    index
                        .members
                        .entry(tag.clone())
                        .or_default()
                        .insert(stored.id, Arc::clone(&indexed_key));
                }
                Op::Put(stored)
            });
        }
        inner.counters.add_puts(1);
        Ok(())
    }

    fn remove(&self, key: &str) {
        self.inner.cache.invalidate(key);
    }

    /// Removes `key` only while it still holds the put `id`; returns whether it did.
    fn remove_version(&self, key: &str, id: u64) -> bool {
        let result = self
            .inner
            .cache
            .entry_by_ref(key)
            .and_compute_with(|current| match current {
                Some(current) if current.value().id == id => Op::Remove,
                _ => Op::Nop,
            });
        matches!(result, CompResult::Removed(_))
    }

    /// Runs moka's pending maintenance now: expired and evicted entries are removed and
    /// the tag index shrinks accordingly. Counts and sizes are exact afterwards.
    pub fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks();
    }

    /// How many (tag, entry) memberships the tag index holds; it shrinks as entries are
    /// deleted, evicted or expire (after [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn tag_index_len(&self) -> usize {
        lock(&self.inner.tags)
            .members
            .values()
            .map(HashMap::len)
            .sum()
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.cache.entry_count())
            .field("weighted_size", &self.inner.cache.weighted_size())
            .field("ttl_policy", &self.inner.ttl_policy)
            .finish_non_exhaustive()
    }
}

impl MemoryCache {
    fn delete_entry(&self, key: &str) -> Result<()> {
        validate_key(NAME, key)?;
        self.remove(key);
        self.inner.counters.add_deletes(1);
        Ok(())
    }

    fn delete_tagged(&self, tag: &str) -> u64 {
        let members = lock(&self.inner.tags)
            .members
            .remove(tag)
            .unwrap_or_default();
        let mut removed = 0;
        for (id, key) in members {
            removed += u64::from(self.remove_version(&key, id));
        }
        self.inner.counters.add_deletes(removed);
        removed
    }

    fn delete_matching(&self, pattern: &KeyPattern) -> u64 {
        let prefix = pattern.literal_prefix();
        let matching: Vec<(Arc<String>, u64)> = self
            .inner
            .cache
            .iter()
            .filter(|(key, _)| key.starts_with(prefix.as_str()) && pattern.matches(key))
            .map(|(key, stored)| (key, stored.id))
            .collect();
        let mut removed = 0;
        for (key, id) in matching {
            removed += u64::from(self.remove_version(&key, id));
        }
        self.inner.counters.add_deletes(removed);
        removed
    }

    fn clear_all(&self) {
        let inner = &*self.inner;
        inner.cache.run_pending_tasks();
        inner.counters.add_deletes(inner.cache.entry_count());
        inner.cache.invalidate_all();
        inner.cache.run_pending_tasks();
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
        CacheFuture::ready(Ok(self.delete_tagged(tag)))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::ready(Ok(self.delete_matching(pattern)))
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        self.clear_all();
        CacheFuture::ready(Ok(()))
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        self.inner.cache.run_pending_tasks();
        CacheFuture::ready(Ok(self.inner.cache.entry_count()))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        self.inner.cache.run_pending_tasks();
        CacheFuture::ready(Ok(self.inner.cache.weighted_size()))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}
