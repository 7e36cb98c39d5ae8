//! Whole-database work: the count at open, recounts after compaction, sweeps, pattern
//! deletion and `clear`. Only the count at open and `clear` hold every key lock; sweeps
//! and recounts scan without one and take each key's lock only to change that key.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use cache_core::{KeyPattern, Result};
use cache_kit::{AllKeysGuard, lock};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::core::{
    Inner, KEY_LOCK_STRIPES, Slot, Slots, StoredKey, db_error, is_expired, scan_options,
    sequence_of,
};

impl Inner {
    /// Counts the live entries and bytes at open, deleting the expired entries it meets
    /// and giving every entry a write-order record (a repair may have lost some).
    pub(crate) fn rebuild_accounting(&self) -> Result<()> {
        let expired = {
            let mut all_keys = self.key_locks.lock_all();
            self.count_live(&mut all_keys)?
        };
        for (key, sequence) in expired {
            if self.remove(&key, sequence)?.is_some() {
                self.counters.add_expirations(1);
            }
        }
        Ok(())
    }

    /// Scans the entries with every key lock held (`all_keys`): rebuilds the slots, the
    /// count and bytes, the write-order records and the next write sequence, and returns
    /// the expired entries (counted until they are removed).
    fn count_live(&self, all_keys: &mut AllKeysGuard<'_, Slots>) -> Result<Vec<StoredKey>> {
        let now = SystemTime::now();
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut expired = Vec::new();
        for slots in all_keys.iter_mut() {
            slots.clear();
        }
        let mut recorded: HashMap<u64, Box<[u8]>> = HashMap::new();
        for item in self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::Start)
        {
            let (sequence, key) =
                item.map_err(|error| db_error(error, "cannot read the write order"))?;
            if let Some(sequence) = sequence_of(&sequence) {
                recorded.insert(sequence, key);
            }
        }
        let mut next_sequence = recorded.keys().max().map_or(0, |last| last + 1);
        let mut missing_records = WriteBatch::default();
        for item in self
            .db
            .iterator_cf_opt(self.entries(), scan_options(), IteratorMode::Start)
        {
            let (key, value) = item.map_err(|error| db_error(error, "cannot scan the entries"))?;
            let stored_bytes = (key.len() + value.len()) as u64;
            entries += 1;
            bytes += stored_bytes;
            let sequence = sequence_of(&value);
            if let Some(sequence) = sequence {
                // New writes must never reuse a live entry's number, whatever the write
                // order lost.
                next_sequence = next_sequence.max(sequence.saturating_add(1));
                if recorded.get(&sequence).is_none_or(|owner| *owner != key) {
                    missing_records.put_cf(self.write_order(), sequence.to_be_bytes(), &key);
                }
            }
            if is_expired(&value, now) {
                expired.push((key.clone(), sequence));
            }
            // A value too short to carry a sequence gets one no write uses, so only a
            // removal without a condition takes it.
            let slot = Slot {
                sequence: sequence.unwrap_or(u64::MAX),
                stored_bytes,
            };
            let stripe = self.key_locks.stripe_of(&key);
            all_keys.stripe_mut(stripe).insert(key, slot);
        }
        if !missing_records.is_empty() {
            self.db
                .write(missing_records)
                .map_err(|error| db_error(error, "cannot restore write order records"))?;
        }
        self.accounting.entries.store(entries, Ordering::Relaxed);
        self.accounting.bytes.store(bytes, Ordering::Relaxed);
        // Only ever raised: a put may hold a sequence number it has not written yet.
        self.next_sequence
            .fetch_max(next_sequence, Ordering::Relaxed);
        Ok(expired)
    }

    /// Brings the slots and the accounting back to what the database holds after the
    /// compaction filter dropped entries behind their back, without stopping writes: the
    /// entries are read from one snapshot with no lock held; then, one stripe at a time,
    /// a slot the snapshot does not show is looked up (it may have been written since)
    /// and dropped when the entry is gone. Expired entries the scan met are removed, each
    /// under its key's lock. Returns how many expired entries it removed.
    pub(crate) fn recount(&self) -> Result<u64> {
        let now = SystemTime::now();
        let mut seen: Vec<HashMap<Box<[u8]>, u64>> =
            (0..KEY_LOCK_STRIPES).map(|_| HashMap::new()).collect();
        let mut expired = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.entries(), scan_options(), IteratorMode::Start)
        {
            let (key, value) = item.map_err(|error| db_error(error, "cannot scan the entries"))?;
            let sequence = sequence_of(&value);
            if is_expired(&value, now) {
                expired.push((key.clone(), sequence));
            }
            let stripe = self.key_locks.stripe_of(&key);
            seen[stripe].insert(key, sequence.unwrap_or(u64::MAX));
            #[cfg(test)]
            if let Some((paused, resume)) = lock(&self.scan_pause).take() {
                let _ = paused.send(());
                let _ = resume.recv();
            }
        }
        for (stripe, seen) in seen.into_iter().enumerate() {
            let mut slots = self.key_locks.lock_stripe(stripe);
            let unseen: Vec<(Box<[u8]>, Slot)> = slots
                .iter()
                .filter(|(key, slot)| seen.get(*key) != Some(&slot.sequence))
                .map(|(key, slot)| (key.clone(), *slot))
                .collect();
            for (key, slot) in unseen {
                let gone = match self.db.get_pinned_cf(self.entries(), &key) {
                    Ok(stored) => stored.is_none(),
                    // Unreadable: the read path removes it when it meets it.
                    Err(_) => false,
                };
                if gone {
                    slots.remove(&key);
                    self.accounting.subtract(slot.stored_bytes);
                    self.db
                        .delete_cf(self.write_order(), slot.sequence.to_be_bytes())
                        .map_err(|error| db_error(error, "cannot delete a write order record"))?;
                }
            }
        }
        let mut removed = 0;
        for (key, sequence) in expired {
            if self.remove(&key, sequence)?.is_some() {
                removed += 1;
            }
        }
        self.counters.add_expirations(removed);
        Ok(removed)
    }

    /// Compacts both column families (the filter drops expired entries), then recounts.
    pub(crate) fn compact(&self) -> Result<()> {
        self.db
            .compact_range_cf(self.entries(), None::<&[u8]>, None::<&[u8]>);
        self.db
            .compact_range_cf(self.write_order(), None::<&[u8]>, None::<&[u8]>);
        self.recount().map(drop)
    }

    /// Removes expired entries and write-order records whose entry is gone; returns how
    /// many entries expired.
    pub(crate) fn sweep(&self) -> Result<u64> {
        let expired = self.recount()?;
        let mut stale = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::Start)
        {
            let (sequence, key) =
                item.map_err(|error| db_error(error, "cannot scan the write order"))?;
            let live = self.key_locks.lock(&key).get(&key).is_some_and(|slot| {
                sequence_of(&sequence).is_some_and(|sequence| sequence == slot.sequence)
            });
            if !live {
                stale.push(sequence);
            }
        }
        for sequence in stale {
            self.db
                .delete_cf(self.write_order(), sequence)
                .map_err(|error| db_error(error, "cannot delete a write order record"))?;
        }
        Ok(expired)
    }

    /// Removes the entries whose keys match `pattern`; keys are sorted, so only the range
    /// under the pattern's literal prefix is read.
    pub(crate) fn delete_pattern(&self, pattern: &KeyPattern) -> Result<u64> {
        let prefix = pattern.literal_prefix();
        let mut matching = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.entries(),
            scan_options(),
            IteratorMode::From(prefix.as_bytes(), Direction::Forward),
        ) {
            let (key, _) = item.map_err(|error| db_error(error, "cannot scan the entries"))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if std::str::from_utf8(&key).is_ok_and(|key| pattern.matches(key)) {
                matching.push(key);
            }
        }
        let mut removed = 0;
        for key in matching {
            removed += u64::from(self.remove(&key, None)?.is_some());
        }
        Ok(removed)
    }

    /// Removes every entry; returns how many there were.
    pub(crate) fn clear(&self) -> Result<u64> {
        // Every key lock, in stripe order, so no put lands between the two scans.
        let mut all_keys = self.key_locks.lock_all();
        let _eviction = lock(&self.eviction);
        let mut removed = 0;
        for column_family in [self.entries(), self.write_order()] {
            let mut batch = WriteBatch::default();
            for item in self
                .db
                .iterator_cf_opt(column_family, scan_options(), IteratorMode::Start)
            {
                let (key, _) = item.map_err(|error| db_error(error, "cannot scan for clear"))?;
                batch.delete_cf(column_family, key);
                removed += 1;
            }
            self.db
                .write(batch)
                .map_err(|error| db_error(error, "cannot clear"))?;
        }
        for slots in all_keys.iter_mut() {
            slots.clear();
        }
        self.accounting.entries.store(0, Ordering::Relaxed);
        self.accounting.bytes.store(0, Ordering::Relaxed);
        Ok(removed / 2)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use cache_core::testkit::fixtures::{policy, response};
    use cache_core::{CacheManager, PutOptions};

    use crate::{RocksDbCache, RocksDbConfig};

    fn hour() -> PutOptions {
        PutOptions::new().with_ttl(Duration::from_secs(3600))
    }

    async fn put(cache: &RocksDbCache, key: &str, body: &'static str) {
        let stored = response("https://rocks.example/maintenance", body);
        cache
            .put(key, stored.clone(), policy(&stored), hour())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_go_on_while_a_sweep_scans() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RocksDbCache::open(RocksDbConfig::new(dir.path()))
            .await
            .unwrap();
        for n in 0..10 {
            put(&cache, &format!("k{n}"), "before the sweep").await;
        }
        let (paused_sender, paused) = std::sync::mpsc::channel();
        let (resume, resume_receiver) = std::sync::mpsc::channel();
        *cache_kit::lock(&cache.inner.scan_pause) = Some((paused_sender, resume_receiver));
        let sweeping = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.sweep().await })
        };
        tokio::task::spawn_blocking(move || paused.recv().unwrap())
            .await
            .unwrap();
        // The scan holds no key lock: a write of any key completes while it is paused.
        // (The bound only detects a write that waits for the scan, which never ends
        // until it is resumed.)
        let written = tokio::time::timeout(Duration::from_secs(5), async {
            for n in 0..10 {
                put(&cache, &format!("k{n}"), "during the sweep").await;
            }
        })
        .await;
        resume.send(()).unwrap();
        assert!(written.is_ok(), "a write waited for the sweep's scan");
        assert_eq!(sweeping.await.unwrap().unwrap(), 0);
        assert_eq!(cache.entry_count().await.unwrap(), 10);
        let entry = cache.get("k3").await.unwrap().unwrap();
        assert_eq!(entry.response.body, "during the sweep");
    }

    #[tokio::test]
    async fn an_eviction_whose_removal_fails_keeps_the_entry_evictable() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RocksDbCache::open(RocksDbConfig::new(dir.path()))
            .await
            .unwrap();
        put(&cache, "oldest", "x").await;
        let one_entry = cache.size_bytes().await.unwrap();
        drop(cache);
        // Room for three entries of this size and not four. (The encoded policy holds
        // timestamps whose encoded length varies by a few bytes, so the slack is half an
        // entry rather than an exact fit.)
        let config =
            RocksDbConfig::new(dir.path()).with_capacity_bytes(3 * one_entry + one_entry / 2);
        let cache = Arc::new(RocksDbCache::open(config).await.unwrap());
        put(&cache, "second", "x").await;
        put(&cache, "third!", "x").await;
        cache.inner.fail_removals.store(true, Ordering::Relaxed);
        let stored = response("https://rocks.example/maintenance", "x");
        let failed = cache
            .put("fourth", stored.clone(), policy(&stored), hour())
            .await;
        assert!(failed.is_err(), "the eviction's removal failed");
        cache.inner.fail_removals.store(false, Ordering::Relaxed);
        // The next write evicts again, and the oldest entry is still the first to go.
        put(&cache, "fifth!", "x").await;
        assert!(cache.get("oldest").await.unwrap().is_none());
        assert!(cache.get("second").await.unwrap().is_none());
        for kept in ["third!", "fourth", "fifth!"] {
            assert!(cache.get(kept).await.unwrap().is_some(), "{kept}");
        }
        // The accounting is exact: the stored bytes of the three kept entries (key,
        // sequence prefix and envelope).
        let raw = cache.raw_access();
        let mut kept_bytes = 0;
        for kept in ["third!", "fourth", "fifth!"] {
            let envelope = raw.read(kept).unwrap().unwrap();
            kept_bytes += (kept.len() + crate::core::SEQUENCE_LEN + envelope.len()) as u64;
        }
        assert_eq!(cache.size_bytes().await.unwrap(), kept_bytes);
    }
}
