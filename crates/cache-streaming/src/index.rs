//! The in-memory index: key to body, expiry, tags and recency (`cache-kit`'s
//! [`LruIndex`]); body to reference count.
//!
//! It is rebuilt from the metadata files at open, so the reference counts are recounted
//! from what is on disk after every restart or crash: there is no stored count a crash
//! could leave wrong.

use std::collections::HashMap;
use std::time::SystemTime;

use cache_kit::{IndexedEntry, LruIndex};

use crate::layout::{BodyDigest, BodyFacts};

/// Bytes counted per entry on top of its metadata file (directory entry, inode share).
pub(crate) const ENTRY_OVERHEAD: u64 = 256;

#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub(crate) body: BodyFacts,
    pub(crate) metadata_len: u64,
    pub(crate) expires_at: SystemTime,
    pub(crate) tags: Vec<String>,
}

impl IndexEntry {
    pub(crate) fn new(
        body: BodyFacts,
        metadata_len: u64,
        expires_at: SystemTime,
        tags: Vec<String>,
    ) -> Self {
        Self {
            body,
            metadata_len,
            expires_at,
            tags,
        }
    }
}

impl IndexedEntry for IndexEntry {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The metadata file and overhead; the body is counted once, in the body table.
    fn accounted_bytes(&self, _key: &str) -> u64 {
        self.metadata_len + ENTRY_OVERHEAD
    }
}

#[derive(Debug)]
struct BodyRecord {
    len: u64,
    /// Entries in the index that use the body, plus commits that are about to.
    references: u64,
}

/// What removing entries did to the bodies: the ones nobody references any more, whose
/// files the caller removes while it still holds the index lock (so a concurrent put of
/// the same body cannot have renamed a new file into place in between).
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Released {
    pub(crate) unreferenced_bodies: Vec<BodyDigest>,
}

/// The entries (recency, tags and their metadata bytes, from `cache-kit`) and the bodies
/// they reference, each body counted once however many entries use it.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: LruIndex<IndexEntry>,
    bodies: HashMap<BodyDigest, BodyRecord>,
    body_bytes: u64,
}

impl Index {
    /// Takes a reference on a body for a commit that is about to use it. Returns whether
    /// the body was already stored (then the caller's copy is redundant); otherwise the
    /// caller must put the file in place before it releases the index lock.
    pub(crate) fn acquire_body(&mut self, body: &BodyFacts) -> bool {
        match self.bodies.get_mut(&body.digest) {
            Some(record) => {
                record.references += 1;
                true
            }
            None => {
                self.bodies.insert(
                    body.digest,
                    BodyRecord {
                        len: body.len,
                        references: 1,
                    },
                );
                self.body_bytes += body.len;
                false
            }
        }
    }

    /// Drops one reference on a body.
    pub(crate) fn release_body(&mut self, digest: &BodyDigest, released: &mut Released) {
        if let Some(record) = self.bodies.get_mut(digest) {
            record.references -= 1;
            if record.references == 0 {
                self.body_bytes -= record.len;
                self.bodies.remove(digest);
                released.unreferenced_bodies.push(*digest);
            }
        }
    }

    pub(crate) fn is_body_referenced(&self, digest: &BodyDigest) -> bool {
        self.bodies.contains_key(digest)
    }

    /// The entry under `key`, marked as the most recently used.
    pub(crate) fn touch(&mut self, key: &str) -> Option<&IndexEntry> {
        self.entries.touch(key)
    }

    pub(crate) fn peek(&self, key: &str) -> Option<&IndexEntry> {
        self.entries.peek(key)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains(key)
    }

    /// Inserts `entry` (whose body reference the caller acquired) as the most recently
    /// used, replacing any entry under `key`, then evicts least recently used entries
    /// (never `key`) until the total fits `capacity_bytes`. Returns the evicted keys; their
    /// metadata files are the caller's to remove.
    pub(crate) fn insert(
        &mut self,
        key: String,
        entry: IndexEntry,
        capacity_bytes: u64,
        released: &mut Released,
    ) -> Vec<String> {
        if let Some(replaced) = self.entries.insert(key.clone(), entry) {
            self.release_body(&replaced.body.digest, released);
        }
        self.evict_to(capacity_bytes, Some(&key), released)
    }

    /// Removes least recently used entries (never `keep`) until the total fits.
    pub(crate) fn evict_to(
        &mut self,
        capacity_bytes: u64,
        keep: Option<&str>,
        released: &mut Released,
    ) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.total_bytes() > capacity_bytes {
            let Some((victim, entry)) = self.entries.pop_least_recent_except(keep) else {
                break;
            };
            self.release_body(&entry.body.digest, released);
            evicted.push(victim);
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &str, released: &mut Released) -> Option<IndexEntry> {
        let entry = self.entries.remove(key)?;
        self.release_body(&entry.body.digest, released);
        Some(entry)
    }

    pub(crate) fn keys_tagged(&self, tag: &str) -> Vec<String> {
        self.entries.keys_tagged(tag)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &IndexEntry)> {
        self.entries.iter()
    }

    pub(crate) fn keys_using(&self, digest: &BodyDigest) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.body.digest == *digest)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub(crate) fn expired_keys(&self, now: SystemTime) -> Vec<String> {
        self.entries.expired_keys(now)
    }

    /// The bytes counted against the capacity: every entry's metadata and overhead, and
    /// every distinct body once.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.entries.total_bytes() + self.body_bytes
    }

    pub(crate) fn body_count(&self) -> usize {
        self.bodies.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn facts(byte: u8, len: u64) -> BodyFacts {
        BodyFacts {
            digest: [byte; 32],
            xxh3: u64::from(byte),
            len,
        }
    }

    fn put(index: &mut Index, key: &str, body: BodyFacts, capacity: u64) -> Vec<String> {
        // Bodies freed by evictions are not looked at here; the eviction test checks the
        // reference table directly.
        let mut released = Released::default();
        index.acquire_body(&body);
        let entry = IndexEntry::new(
            body,
            100,
            SystemTime::now() + Duration::from_secs(60),
            Vec::new(),
        );
        index.insert(key.to_owned(), entry, capacity, &mut released)
    }

    #[test]
    fn a_shared_body_is_counted_once_and_freed_by_its_last_entry() {
        let mut index = Index::default();
        let body = facts(1, 10_000);
        put(&mut index, "a", body, u64::MAX);
        put(&mut index, "b", body, u64::MAX);
        assert_eq!(index.body_count(), 1);
        assert_eq!(index.total_bytes(), 10_000 + 2 * (100 + ENTRY_OVERHEAD));
        let mut released = Released::default();
        index.remove("a", &mut released);
        assert!(released.unreferenced_bodies.is_empty());
        index.remove("b", &mut released);
        assert_eq!(released.unreferenced_bodies, [[1; 32]]);
        assert_eq!(index.total_bytes(), 0);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_spares_the_new_key() {
        let mut index = Index::default();
        let per_entry = 1000 + 100 + ENTRY_OVERHEAD;
        for (byte, key) in [(1, "a"), (2, "b"), (3, "c")] {
            assert!(put(&mut index, key, facts(byte, 1000), 3 * per_entry).is_empty());
        }
        index.touch("a");
        assert_eq!(put(&mut index, "d", facts(4, 1000), 3 * per_entry), ["b"]);
        assert_eq!(index.total_bytes(), 3 * per_entry);
        assert!(!index.is_body_referenced(&[2; 32]));
    }
}
