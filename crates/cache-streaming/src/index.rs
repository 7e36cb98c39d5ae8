//! The in-memory index: key to body, expiry, tags and recency; body to reference count.
//!
//! It is rebuilt from the metadata files at open, so the reference counts are recounted
//! from what is on disk after every restart or crash: there is no stored count a crash
//! could leave wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use crate::layout::{BodyDigest, BodyFacts};

/// Bytes counted per entry on top of its metadata file (directory entry, inode share).
pub(crate) const ENTRY_OVERHEAD: u64 = 256;

#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub(crate) body: BodyFacts,
    pub(crate) metadata_len: u64,
    pub(crate) expires_at: SystemTime,
    pub(crate) tags: Vec<String>,
    recency: u64,
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
            recency: 0,
        }
    }

    fn accounted_bytes(&self) -> u64 {
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

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<String, IndexEntry>,
    bodies: HashMap<BodyDigest, BodyRecord>,
    by_recency: BTreeMap<u64, String>,
    tagged: HashMap<String, HashSet<String>>,
    next_recency: u64,
    total_bytes: u64,
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
                self.total_bytes += body.len;
                false
            }
        }
    }

    /// Drops one reference on a body.
    pub(crate) fn release_body(&mut self, digest: &BodyDigest, released: &mut Released) {
        if let Some(record) = self.bodies.get_mut(digest) {
            record.references -= 1;
            if record.references == 0 {
                self.total_bytes -= record.len;
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
        let recency = self.next_recency;
        let entry = self.entries.get_mut(key)?;
        self.by_recency.remove(&entry.recency);
        entry.recency = recency;
        self.by_recency.insert(recency, key.to_owned());
        self.next_recency += 1;
        Some(entry)
    }

    pub(crate) fn peek(&self, key: &str) -> Option<&IndexEntry> {
        self.entries.get(key)
    }

    /// Inserts `entry` (whose body reference the caller acquired) as the most recently
    /// used, replacing any entry under `key`, then evicts least recently used entries
    /// (never `key`) until the total fits `capacity_bytes`. Returns the evicted keys; their
    /// metadata files are the caller's to remove.
    pub(crate) fn insert(
        &mut self,
        key: String,
        mut entry: IndexEntry,
        capacity_bytes: u64,
        released: &mut Released,
    ) -> Vec<String> {
        self.remove(&key, released);
        entry.recency = self.next_recency;
        self.next_recency += 1;
        self.total_bytes += entry.accounted_bytes();
        for tag in &entry.tags {
            self.tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_recency.insert(entry.recency, key.clone());
        self.entries.insert(key.clone(), entry);
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
        while self.total_bytes > capacity_bytes {
            let Some(oldest) = self
                .by_recency
                .values()
                .find(|key| Some(key.as_str()) != keep)
                .cloned()
            else {
                break;
            };
            self.remove(&oldest, released);
            evicted.push(oldest);
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &str, released: &mut Released) -> Option<IndexEntry> {
        let entry = self.entries.remove(key)?;
        self.by_recency.remove(&entry.recency);
        self.total_bytes -= entry.accounted_bytes();
        for tag in &entry.tags {
            if let Some(keys) = self.tagged.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.tagged.remove(tag);
                }
            }
        }
        self.release_body(&entry.body.digest, released);
        Some(entry)
    }

    pub(crate) fn keys_tagged(&self, tag: &str) -> Vec<String> {
        self.tagged
            .get(tag)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub(crate) fn keys_using(&self, digest: &BodyDigest) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.body.digest == *digest)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub(crate) fn expired_keys(&self, now: SystemTime) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.expires_at <= now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
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
