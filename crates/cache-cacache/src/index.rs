//! The in-memory index: key to content hash, size, expiry, tags and recency.
//!
//! It is rebuilt from cacache's index at open, so a hit reads one content file and never
//! parses an index bucket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use cacache::Integrity;

/// The bytes an entry's index line and bucket take beyond its key, counted against the
/// capacity with its content (a line holds two hashes, the integrity, times, size, expiry
/// and tags as JSON).
pub(crate) const INDEX_LINE_OVERHEAD: u64 = 320;

/// A key's bucket is compacted to its last line once it holds more lines than this: an
/// overwrite appends a line (cheap), and every few overwrites one rewrite keeps the bucket
/// bounded however often the key is written.
pub(crate) const MAX_BUCKET_LINES: u32 = 4;

#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub(crate) integrity: Integrity,
    pub(crate) content_len: u64,
    pub(crate) expires_at: SystemTime,
    pub(crate) tags: Vec<String>,
    /// Lines in the key's bucket (an upper bound after a restart).
    pub(crate) bucket_lines: u32,
    recency: u64,
}

impl IndexEntry {
    pub(crate) fn new(
        integrity: Integrity,
        content_len: u64,
        expires_at: SystemTime,
        tags: Vec<String>,
    ) -> Self {
        Self {
            integrity,
            content_len,
            expires_at,
            tags,
            bucket_lines: 1,
            recency: 0,
        }
    }

    fn accounted_bytes(&self, key: &str) -> u64 {
        let tags: usize = self.tags.iter().map(String::len).sum();
        self.content_len + key.len() as u64 + tags as u64 + INDEX_LINE_OVERHEAD
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<String, IndexEntry>,
    by_recency: BTreeMap<u64, String>,
    tagged: HashMap<String, HashSet<String>>,
    next_recency: u64,
    total_bytes: u64,
}

impl Index {
    /// The content hash and expiry of the entry under `key`, marked as the most recently
    /// used. Only what a read needs is copied out (not the tags).
    pub(crate) fn touch(&mut self, key: &str) -> Option<(Integrity, SystemTime)> {
        let recency = self.next_recency;
        let entry = self.entries.get_mut(key)?;
        self.by_recency.remove(&entry.recency);
        entry.recency = recency;
        self.by_recency.insert(recency, key.to_owned());
        self.next_recency += 1;
        Some((entry.integrity.clone(), entry.expires_at))
    }

    pub(crate) fn peek(&self, key: &str) -> Option<&IndexEntry> {
        self.entries.get(key)
    }

    /// Inserts `entry` as the most recently used (replacing any entry under `key`) and
    /// removes least recently used entries until the total fits `capacity_bytes`. Returns
    /// the replaced entry and the evicted ones; their files are the caller's to remove.
    pub(crate) fn insert(
        &mut self,
        key: String,
        mut entry: IndexEntry,
        capacity_bytes: u64,
    ) -> (Option<IndexEntry>, Vec<(String, IndexEntry)>) {
        let replaced = self.remove(&key);
        entry.recency = self.next_recency;
        self.next_recency += 1;
        self.total_bytes += entry.accounted_bytes(&key);
        for tag in &entry.tags {
            self.tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_recency.insert(entry.recency, key.clone());
        self.entries.insert(key.clone(), entry);
        let evicted = self.evict_to(capacity_bytes, Some(&key));
        (replaced, evicted)
    }

    /// Removes least recently used entries (never `keep`) until the total fits.
    pub(crate) fn evict_to(
        &mut self,
        capacity_bytes: u64,
        keep: Option<&str>,
    ) -> Vec<(String, IndexEntry)> {
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
            if let Some(entry) = self.remove(&oldest) {
                evicted.push((oldest, entry));
            }
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<IndexEntry> {
        let entry = self.entries.remove(key)?;
        self.by_recency.remove(&entry.recency);
        self.total_bytes -= entry.accounted_bytes(key);
        for tag in &entry.tags {
            if let Some(keys) = self.tagged.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.tagged.remove(tag);
                }
            }
        }
        Some(entry)
    }

    /// Removes the entry under `key` only while it is the one with `integrity`.
    pub(crate) fn remove_version(
        &mut self,
        key: &str,
        integrity: &Integrity,
    ) -> Option<IndexEntry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.integrity == *integrity)
        {
            self.remove(key)
        } else {
            None
        }
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

    pub(crate) fn expired_keys(&self, now: SystemTime) -> Vec<(String, Integrity)> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.expires_at <= now)
            .map(|(key, entry)| (key.clone(), entry.integrity.clone()))
            .collect()
    }

    pub(crate) fn referenced_content(&self) -> HashSet<String> {
        self.entries
            .values()
            .map(|entry| entry.integrity.to_hex().1)
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub(crate) fn take_all(&mut self) -> Vec<(String, IndexEntry)> {
        self.by_recency.clear();
        self.tagged.clear();
        self.total_bytes = 0;
        self.entries.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(content: &[u8], len: u64, tags: &[&str]) -> IndexEntry {
        IndexEntry::new(
            Integrity::from(content),
            len,
            SystemTime::now() + Duration::from_secs(60),
            tags.iter().map(|tag| (*tag).to_owned()).collect(),
        )
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let mut index = Index::default();
        let per_entry = 1000 + 1 + INDEX_LINE_OVERHEAD;
        for key in ["a", "b", "c"] {
            let (_, evicted) =
                index.insert(key.into(), entry(key.as_bytes(), 1000, &[]), 3 * per_entry);
            assert!(evicted.is_empty());
        }
        index.touch("a");
        let (_, evicted) = index.insert("d".into(), entry(b"d", 1000, &[]), 3 * per_entry);
        assert_eq!(
            evicted
                .iter()
                .map(|(key, _)| key.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(index.total_bytes(), 3 * per_entry);
    }

    #[test]
    fn replacing_an_entry_drops_its_old_tags_and_size() {
        let mut index = Index::default();
        index.insert("k".into(), entry(b"1", 10, &["old"]), u64::MAX);
        let (replaced, _) = index.insert("k".into(), entry(b"2", 20, &["new"]), u64::MAX);
        assert_eq!(replaced.unwrap().content_len, 10);
        assert!(index.keys_tagged("old").is_empty());
        assert_eq!(index.keys_tagged("new"), ["k"]);
        assert_eq!(index.total_bytes(), 20 + 1 + 3 + INDEX_LINE_OVERHEAD);
    }
}
