//! An in-memory index of entries with recency, tags, expiry and byte accounting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

/// What [`LruIndex`] needs to know of an entry.
pub trait IndexedEntry {
    /// When the entry expires from storage.
    fn expires_at(&self) -> SystemTime;

    /// The entry's tags (each listed once).
    fn tags(&self) -> &[String];

    /// The bytes the entry takes against the store's capacity, its key included. Read once,
    /// when the entry is inserted.
    fn accounted_bytes(&self, key: &str) -> u64;
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    recency: u64,
    bytes: u64,
}

/// Key to entry, with the order of use (least recently used first), the keys of each tag
/// and the total of the entries' accounted bytes.
///
/// Every operation is O(log n) in the number of entries, or O(tags) for the tag table,
/// except the listings (`keys`, `expired_keys`), which walk every entry. The index holds
/// no lock of its own: a backend keeps it behind one mutex.
#[derive(Debug)]
pub struct LruIndex<V> {
    entries: HashMap<String, Slot<V>>,
    by_recency: BTreeMap<u64, String>,
    tagged: HashMap<String, HashSet<String>>,
    next_recency: u64,
    total_bytes: u64,
}

impl<V> Default for LruIndex<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_recency: BTreeMap::new(),
            tagged: HashMap::new(),
            next_recency: 0,
            total_bytes: 0,
        }
    }
}

impl<V: IndexedEntry> LruIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_recency(&mut self) -> u64 {
        let recency = self.next_recency;
        self.next_recency += 1;
        recency
    }

    /// The entry under `key`, marked as the most recently used.
    pub fn touch(&mut self, key: &str) -> Option<&V> {
        let recency = self.next_recency;
        let slot = self.entries.get_mut(key)?;
        self.next_recency += 1;
        let owned = self
            .by_recency
            .remove(&slot.recency)
            .unwrap_or_else(|| key.to_owned());
        slot.recency = recency;
        self.by_recency.insert(recency, owned);
        Some(&slot.value)
    }

    /// The entry under `key`, its recency unchanged.
    pub fn peek(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// Whether an entry is under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Inserts `value` under `key` as the most recently used, returning the entry it
    /// replaced. Evicts nothing: call [`evict_to`](Self::evict_to) after.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        let replaced = self.remove(&key);
        let recency = self.next_recency();
        let bytes = value.accounted_bytes(&key);
        self.total_bytes += bytes;
        for tag in value.tags() {
            self.tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_recency.insert(recency, key.clone());
        self.entries.insert(
            key,
            Slot {
                value,
                recency,
                bytes,
            },
        );
        replaced
    }

    /// Removes the entry under `key`.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let (key, slot) = self.entries.remove_entry(key)?;
        self.by_recency.remove(&slot.recency);
        self.total_bytes -= slot.bytes;
        for tag in slot.value.tags() {
            if let Some(keys) = self.tagged.get_mut(tag) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.tagged.remove(tag);
                }
            }
        }
        Some(slot.value)
    }

    /// Removes the entry under `key` only if `still` says it is the one the caller means
    /// (the version it read, say).
    pub fn remove_if(&mut self, key: &str, still: impl FnOnce(&V) -> bool) -> Option<V> {
        if self.peek(key).is_some_and(still) {
            self.remove(key)
        } else {
            None
        }
    }

    /// Removes and returns the least recently used entry that is not under `keep`.
    pub fn pop_least_recent_except(&mut self, keep: Option<&str>) -> Option<(String, V)> {
        let oldest = self
            .by_recency
            .values()
            .find(|key| Some(key.as_str()) != keep)?
            .clone();
        let value = self.remove(&oldest)?;
        Some((oldest, value))
    }

    /// Removes least recently used entries (never the one under `keep`) until the total
    /// fits `capacity_bytes`, and returns them: their storage is the caller's to free.
    pub fn evict_to(&mut self, capacity_bytes: u64, keep: Option<&str>) -> Vec<(String, V)> {
        let mut evicted = Vec::new();
        while self.total_bytes > capacity_bytes {
            match self.pop_least_recent_except(keep) {
                Some(victim) => evicted.push(victim),
                None => break,
            }
        }
        evicted
    }

    /// The keys of the entries that carry `tag`.
    pub fn keys_tagged(&self, tag: &str) -> Vec<String> {
        self.tagged
            .get(tag)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Every key and entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.entries.iter().map(|(key, slot)| (key, &slot.value))
    }

    /// The keys of the entries that expired at `now` or before.
    pub fn expired_keys(&self, now: SystemTime) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, slot)| slot.value.expires_at() <= now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of the entries' accounted bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Removes and returns every entry.
    pub fn drain(&mut self) -> Vec<(String, V)> {
        self.by_recency.clear();
        self.tagged.clear();
        self.total_bytes = 0;
        self.entries
            .drain()
            .map(|(key, slot)| (key, slot.value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Entry {
        len: u64,
        expires_at: SystemTime,
        tags: Vec<String>,
    }

    impl IndexedEntry for Entry {
        fn expires_at(&self) -> SystemTime {
            self.expires_at
        }
        fn tags(&self) -> &[String] {
            &self.tags
        }
        fn accounted_bytes(&self, key: &str) -> u64 {
            self.len + key.len() as u64
        }
    }

    fn entry(len: u64, tags: &[&str]) -> Entry {
        Entry {
            len,
            expires_at: SystemTime::now() + Duration::from_secs(60),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        }
    }

    fn keys(evicted: &[(String, Entry)]) -> Vec<&str> {
        evicted.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first_and_keep_is_spared() {
        let mut index = LruIndex::new();
        for key in ["a", "b", "c"] {
            assert_eq!(index.insert(key.into(), entry(99, &[])), None);
        }
        assert_eq!(index.total_bytes(), 300);
        index.touch("a");
        index.insert("d".into(), entry(99, &[]));
        assert_eq!(keys(&index.evict_to(300, Some("d"))), ["b"]);
        // "c" is the oldest now, but it is kept: "a" goes instead.
        assert_eq!(keys(&index.evict_to(200, Some("c"))), ["a"]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.total_bytes(), 200);
        // Nothing but `keep` left: eviction stops over the capacity.
        index.remove("d");
        assert!(index.evict_to(0, Some("c")).is_empty());
        assert_eq!(index.total_bytes(), 100);
    }

    #[test]
    fn replacing_an_entry_drops_its_old_tags_and_bytes() {
        let mut index = LruIndex::new();
        index.insert("k".into(), entry(10, &["old", "both"]));
        let replaced = index.insert("k".into(), entry(20, &["new", "both"]));
        assert_eq!(replaced.map(|old| old.len), Some(10));
        assert!(index.keys_tagged("old").is_empty());
        assert_eq!(index.keys_tagged("new"), ["k"]);
        assert_eq!(index.keys_tagged("both"), ["k"]);
        assert_eq!(index.total_bytes(), 21);
        assert_eq!(index.remove("k").map(|old| old.len), Some(20));
        assert!(index.keys_tagged("both").is_empty());
        assert_eq!(index.total_bytes(), 0);
        assert!(index.is_empty());
    }

    #[test]
    fn remove_if_removes_only_the_version_meant() {
        let mut index = LruIndex::new();
        index.insert("k".into(), entry(10, &[]));
        assert_eq!(index.remove_if("k", |found| found.len == 11), None);
        assert!(index.contains("k"));
        assert_eq!(
            index.remove_if("k", |found| found.len == 10).map(|e| e.len),
            Some(10)
        );
        assert_eq!(index.remove_if("missing", |_| true), None);
    }

    #[test]
    fn expired_keys_and_drain() {
        let mut index = LruIndex::new();
        let mut old = entry(1, &["t"]);
        old.expires_at = SystemTime::now() - Duration::from_secs(1);
        index.insert("old".into(), old);
        index.insert("new".into(), entry(1, &["t"]));
        assert_eq!(index.expired_keys(SystemTime::now()), ["old"]);
        let mut drained = keys(&index.drain())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        drained.sort();
        assert_eq!(drained, ["new", "old"]);
        assert_eq!((index.len(), index.total_bytes()), (0, 0));
        assert!(index.keys_tagged("t").is_empty());
        assert_eq!(index.pop_least_recent_except(None), None);
    }
}
