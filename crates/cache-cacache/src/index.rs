//! The in-memory index: key to content hash, size, expiry, tags and recency.
//!
//! It is rebuilt from cacache's index at open, so a hit reads one content file and never
//! parses an index bucket. Recency, tags and byte accounting are `cache-kit`'s
//! [`LruIndex`]; what is cacache's own is the entry.

use std::collections::HashSet;
use std::time::SystemTime;

use cacache::Integrity;
use cache_kit::{IndexedEntry, LruIndex};

/// The bytes an entry's index line and bucket take beyond its key, counted against the
/// capacity with its content (a line holds two hashes, the integrity, times, size, expiry
/// and tags as JSON).
pub(crate) const INDEX_LINE_OVERHEAD: u64 = 320;

/// A key's bucket is compacted to its last line once it holds more lines than this: an
/// overwrite appends a line (cheap), and every few overwrites one rewrite keeps the bucket
/// bounded however often the key is written.
pub(crate) const MAX_BUCKET_LINES: u32 = 4;

/// The index of a cacache directory.
pub(crate) type Index = LruIndex<IndexEntry>;

#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub(crate) integrity: Integrity,
    pub(crate) content_len: u64,
    pub(crate) expires_at: SystemTime,
    pub(crate) tags: Vec<String>,
    /// Lines in the key's bucket (an upper bound after a restart).
    pub(crate) bucket_lines: u32,
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
        }
    }
}

/// What an entry of `envelope_len` bytes with `tags` counts against the capacity.
pub(crate) fn accounted_bytes(key: &str, envelope_len: u64, tags: &[String]) -> u64 {
    let tags: usize = tags.iter().map(String::len).sum();
    envelope_len + key.len() as u64 + tags as u64 + INDEX_LINE_OVERHEAD
}

impl IndexedEntry for IndexEntry {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn accounted_bytes(&self, key: &str) -> u64 {
        accounted_bytes(key, self.content_len, &self.tags)
    }
}

/// The hex digests of every content file the index references.
pub(crate) fn referenced_content(index: &Index) -> HashSet<String> {
    index
        .iter()
        .map(|(_, entry)| entry.integrity.to_hex().1)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_entry_counts_its_content_key_tags_and_index_line() {
        let mut index = Index::new();
        let entry = IndexEntry::new(
            Integrity::from(b"content"),
            1000,
            SystemTime::now() + Duration::from_secs(60),
            vec!["tag".to_owned()],
        );
        index.insert("key".to_owned(), entry);
        assert_eq!(index.total_bytes(), 1000 + 3 + 3 + INDEX_LINE_OVERHEAD);
        assert_eq!(referenced_content(&index).len(), 1);
    }
}
