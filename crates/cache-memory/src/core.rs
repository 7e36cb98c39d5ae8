//! The store's primitives on moka: open, read, write, remove (one key, one version, by
//! tag, by pattern, all), and the tag index that eviction and expiry keep in step.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cache_core::{CacheEntry, Error, ErrorKind, KeyPattern, Result, StatsCounters, TtlPolicy};
// Poison-tolerant: the tag index stays consistent even if a holder panicked (every
// update is one map call).
use cache_kit::lock;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use crate::config::MemoryConfig;

pub(crate) const NAME: &str = "memory";

/// The entries, their tag index and the counters, shared by every clone of a cache.
pub(crate) struct Store {
    cache: Cache<String, Stored>,
    tags: Arc<Mutex<TagIndex>>,
    pub(crate) counters: Arc<StatsCounters>,
    pub(crate) ttl_policy: TtlPolicy,
    pub(crate) max_entry_bytes: u64,
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

/// What an entry weighs against the capacity: its key and its size estimate.
fn weight(key: &str, entry: &CacheEntry) -> u64 {
    (key.len() + entry.approximate_size()) as u64
}

impl Store {
    /// A store with `config`; a zero capacity or entry limit is a `Config` error.
    pub(crate) fn open(config: MemoryConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be at least one byte",
            ));
        }
        if config.max_entry_bytes == Some(0) {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the largest entry must be allowed at least one byte",
            ));
        }
        // moka weighs an entry in a u32: nothing heavier can be weighed, so nothing
        // heavier is accepted.
        let max_entry_bytes = config
            .max_entry_bytes
            .unwrap_or(config.capacity_bytes)
            .min(config.capacity_bytes)
            .min(u64::from(u32::MAX));
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
        Ok(Self {
            cache,
            tags,
            counters,
            ttl_policy: config.ttl_policy,
            max_entry_bytes,
            next_id: AtomicU64::new(1),
        })
    }

    /// The live entry under `key`. moka enforces expiry on its monotonic clock (see
    /// `EXPIRY_SAFETY_MARGIN`), so a hit needs no wall-clock read.
    pub(crate) fn read(&self, key: &str) -> Option<Arc<CacheEntry>> {
        self.cache.get(key).map(|stored| stored.entry)
    }

    /// Inserts a built entry (its metadata says when it ends), registering its tags. An
    /// entry whose size estimate is over the limit (the measure the tiered stack uses, so
    /// that the stack and this store agree on what fits) is refused with `TooLarge`, and
    /// the key's previous version goes too: a refused put leaves no entry.
    pub(crate) fn write(&self, key: &str, entry: Arc<CacheEntry>) -> Result<()> {
        let size = entry.approximate_size() as u64;
        if size > self.max_entry_bytes {
            self.remove(key);
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry takes {size} bytes, more than the limit of {}",
                    self.max_entry_bytes
                ),
            )
            .with_key(key));
        }
        let stored = Stored {
            expires_at: entry.metadata.expires_at,
            entry,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        if stored.entry.metadata.tags.is_empty() {
            self.cache.insert(key.to_owned(), stored);
        } else {
            // Registering the tags and inserting happen under moka's per-key lock, so a
            // concurrent `delete_tag` sees either both or neither.
            let indexed_key: Arc<str> = Arc::from(key);
            self.cache.entry(key.to_owned()).and_compute_with(|_| {
                let mut index = lock(&self.tags);
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
        Ok(())
    }

    /// Removes whatever `key` holds.
    pub(crate) fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Removes `key` only while it still holds the put `id`; returns whether it did.
    fn remove_version(&self, key: &str, id: u64) -> bool {
        let result = self
            .cache
            .entry_by_ref(key)
            .and_compute_with(|current| match current {
                Some(current) if current.value().id == id => Op::Remove,
                _ => Op::Nop,
            });
        matches!(result, CompResult::Removed(_))
    }

    /// Removes the entries stored with `tag` (never a later version of their keys put
    /// without it) and returns how many went.
    pub(crate) fn remove_tagged(&self, tag: &str) -> u64 {
        let members = lock(&self.tags).members.remove(tag).unwrap_or_default();
        let mut removed = 0;
        for (id, key) in members {
            removed += u64::from(self.remove_version(&key, id));
        }
        removed
    }

    /// Removes the entries whose key matches `pattern` (never a version put after the
    /// scan) and returns how many went.
    pub(crate) fn remove_matching(&self, pattern: &KeyPattern) -> u64 {
        let prefix = pattern.literal_prefix();
        let matching: Vec<(Arc<String>, u64)> = self
            .cache
            .iter()
            .filter(|(key, _)| key.starts_with(prefix.as_str()) && pattern.matches(key))
            .map(|(key, stored)| (key, stored.id))
            .collect();
        let mut removed = 0;
        for (key, id) in matching {
            removed += u64::from(self.remove_version(&key, id));
        }
        removed
    }

    /// Removes every entry and returns how many were live.
    pub(crate) fn remove_all(&self) -> u64 {
        self.cache.run_pending_tasks();
        let live = self.cache.entry_count();
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        live
    }

    /// Runs moka's pending maintenance: expired and evicted entries are removed and the
    /// tag index shrinks accordingly.
    pub(crate) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// The number of live entries, exact after the pending maintenance it runs.
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// The bytes the entries weigh, exact after the pending maintenance it runs.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// How many (tag, entry) memberships the tag index holds.
    pub(crate) fn tag_index_len(&self) -> usize {
        lock(&self.tags).members.values().map(HashMap::len).sum()
    }

    /// Entries and weight as moka counts them now, without maintenance (for `Debug`).
    pub(crate) fn approximate_counts(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}
