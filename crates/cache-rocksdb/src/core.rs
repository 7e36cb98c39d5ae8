//! The store's primitives: the shared state, reads, writes, removals and eviction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use cache_core::{
    CachePolicy, CachedResponse, Error, ErrorKind, PutOptions, Result, StatsCounters, TtlPolicy,
    codec,
};
use cache_kit::{KeyLocks, lock};
use rocksdb::{ColumnFamily, DB, IteratorMode, ReadOptions, WriteBatch};

pub(crate) const NAME: &str = "rocksdb";
pub(crate) const ENTRIES: &str = "entries";
pub(crate) const WRITE_ORDER: &str = "write_order";
pub(crate) const KEY_LOCK_STRIPES: usize = 64;
/// Every stored value starts with the write sequence number of its put (big endian).
pub(crate) const SEQUENCE_LEN: usize = 8;

/// The state every clone of a cache shares.
pub(crate) struct Inner {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) ttl_policy: TtlPolicy,
    /// The key stripes: each lock guards the writes of its keys and their slots.
    pub(crate) key_locks: KeyLocks<Slots>,
    pub(crate) accounting: Accounting,
    pub(crate) eviction: Mutex<()>,
    pub(crate) next_sequence: AtomicU64,
    pub(crate) counters: StatsCounters,
    /// Makes every removal fail, for the tests of what a failed removal leaves.
    #[cfg(test)]
    pub(crate) fail_removals: std::sync::atomic::AtomicBool,
    /// Pauses a recount's scan after its first entry, for the tests of what may run
    /// meanwhile: the scan says it paused on the first channel and waits on the second.
    #[cfg(test)]
    pub(crate) scan_pause: Mutex<Option<ScanPause>>,
}

/// See [`Inner::scan_pause`].
#[cfg(test)]
pub(crate) type ScanPause = (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);

/// What the backend knows of a stored key without reading it: the write sequence of its
/// value and the bytes it takes (key plus stored value).
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) sequence: u64,
    pub(crate) stored_bytes: u64,
}

/// A stored value as read, before decoding: the write sequence of its put and its
/// envelope (`None` when the value is too short to hold either).
pub(crate) struct StoredValue {
    pub(crate) sequence: Option<u64>,
    pub(crate) envelope: Option<Bytes>,
}

/// The slots of the keys of one lock stripe.
pub(crate) type Slots = HashMap<Box<[u8]>, Slot>;

/// Live entries and their bytes (key plus stored value), kept current by every write
/// and recounted by a scan at open, after `compact` and in `sweep`. They equal the sum of
/// the slots: an entry the compaction filter dropped stays counted (and keeps its slot)
/// until a recount or the next write of its key.
#[derive(Default)]
pub(crate) struct Accounting {
    pub(crate) entries: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

impl Accounting {
    pub(crate) fn add(&self, bytes: u64) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn subtract(&self, bytes: u64) {
        // Saturating: a compaction racing a delete of the same value must not wrap.
        let _ = self
            .entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }
}

pub(crate) fn db_error(error: rocksdb::Error, what: &str) -> Error {
    let kind = match error.kind() {
        rocksdb::ErrorKind::Corruption => ErrorKind::CorruptEntry,
        rocksdb::ErrorKind::TimedOut => ErrorKind::Timeout,
        rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TryAgain => ErrorKind::Unavailable,
        _ => ErrorKind::Io,
    };
    Error::new(kind, NAME, what.to_owned()).with_source(error)
}

pub(crate) fn is_expired(value: &[u8], now: SystemTime) -> bool {
    value
        .get(SEQUENCE_LEN..)
        .and_then(codec::peek_expires_at)
        .is_none_or(|expires_at| expires_at <= now)
}

pub(crate) fn sequence_of(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        value.get(..SEQUENCE_LEN)?.try_into().ok()?,
    ))
}

/// A stored key and the write sequence number of its value, when readable.
pub(crate) type StoredKey = (Box<[u8]>, Option<u64>);

/// Options for whole scans (accounting, sweeps, eviction, pattern deletion, clear): they
/// do not fill the block cache, and they do not stop at a damaged block (a damaged entry
/// is found and removed when it is read).
pub(crate) fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
    options.fill_cache(false);
    options.set_verify_checksums(false);
    options
}

impl Inner {
    pub(crate) fn entries(&self) -> &ColumnFamily {
        self.db
            .cf_handle(ENTRIES)
            .expect("the entries column family is created at open")
    }

    pub(crate) fn write_order(&self) -> &ColumnFamily {
        self.db
            .cf_handle(WRITE_ORDER)
            .expect("the write order column family is created at open")
    }

    /// Deletes `key` (only while its stored value has `sequence`, when given); returns
    /// the bytes removed. The key's slot says what is stored, so nothing is read.
    pub(crate) fn remove(&self, key: &[u8], sequence: Option<u64>) -> Result<Option<u64>> {
        let mut slots = self.key_locks.lock(key);
        let Some(slot) = slots.get(key).copied() else {
            return Ok(None);
        };
        if sequence.is_some_and(|sequence| sequence != slot.sequence) {
            return Ok(None);
        }
        #[cfg(test)]
        if self.fail_removals.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Io, NAME, "removals fail (test)"));
        }
        let mut batch = WriteBatch::with_capacity_bytes(2 * key.len() + 64);
        batch.delete_cf(self.entries(), key);
        batch.delete_cf(self.write_order(), slot.sequence.to_be_bytes());
        self.db
            .write(batch)
            .map_err(|error| db_error(error, "cannot delete an entry"))?;
        slots.remove(key);
        self.accounting.subtract(slot.stored_bytes);
        Ok(Some(slot.stored_bytes))
    }

    /// Reads a key's stored value: its write sequence and its envelope, not yet decoded
    /// (decoding is CPU work, done on the caller's task). A damaged block is removed and
    /// reads as nothing.
    pub(crate) fn read(&self, key: &str) -> Result<Option<StoredValue>> {
        let stored = match self.db.get_pinned_cf(self.entries(), key.as_bytes()) {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(None),
            // A damaged block: the entry is unreadable, which is a miss; delete it so the
            // key can be written again.
            Err(error) if error.kind() == rocksdb::ErrorKind::Corruption => {
                self.remove_corrupt(key.as_bytes(), None)?;
                return Ok(None);
            }
            Err(error) => return Err(db_error(error, "cannot read an entry").with_key(key)),
        };
        Ok(Some(StoredValue {
            sequence: sequence_of(&stored),
            envelope: stored.get(SEQUENCE_LEN..).map(Bytes::copy_from_slice),
        }))
    }

    /// Removes an entry found unreadable (only the version with `sequence`, when given)
    /// and counts it.
    pub(crate) fn remove_corrupt(&self, key: &[u8], sequence: Option<u64>) -> Result<()> {
        if self.remove(key, sequence)?.is_some() {
            self.counters.add_corrupt_entries(1);
        }
        Ok(())
    }

    /// What a put stores, encoded on the caller's task (CPU work, no I/O): `None` when
    /// the entry must not be stored (its storage TTL is zero), `Err` of kind `TooLarge`
    /// when it cannot fit (then the caller removes the previous version).
    pub(crate) fn prepare_put(
        &self,
        key: &str,
        response: &CachedResponse,
        policy: &CachePolicy,
        options: &PutOptions,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let metadata =
            self.ttl_policy
                .entry_metadata(policy, &response.headers, options, SystemTime::now());
        if metadata.storage_ttl().is_zero() {
            return Ok(None);
        }
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        // The stored value is the sequence then the envelope, encoded in one buffer.
        let value = codec::encode_parts_with_prefix(
            &sequence.to_be_bytes(),
            key,
            response,
            policy,
            &metadata,
        )?;
        if (key.len() + value.len()) as u64 > self.capacity_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry takes {} bytes, more than the whole capacity of {}",
                    value.len() - SEQUENCE_LEN,
                    self.capacity_bytes
                ),
            )
            .with_key(key));
        }
        Ok(Some((sequence, value)))
    }

    /// Writes a value `prepare_put` encoded, replacing the key's old one, and evicts
    /// what no longer fits.
    pub(crate) fn write(&self, key: &str, sequence: u64, value: Vec<u8>) -> Result<()> {
        let stored_bytes = (key.len() + value.len()) as u64;
        let mut slots = self.key_locks.lock(key);
        let old = slots.get(key.as_bytes()).copied();
        // Room for the three records and their framing, so the batch never grows (which
        // would copy the value again).
        let mut batch = WriteBatch::with_capacity_bytes(value.len() + 3 * key.len() + 128);
        batch.put_cf(self.entries(), key.as_bytes(), &value);
        batch.put_cf(self.write_order(), sequence.to_be_bytes(), key.as_bytes());
        if let Some(old) = old {
            batch.delete_cf(self.write_order(), old.sequence.to_be_bytes());
        }
        self.db
            .write(batch)
            .map_err(|error| db_error(error, "cannot write an entry").with_key(key))?;
        drop(value);
        let slot = Slot {
            sequence,
            stored_bytes,
        };
        match slots.get_mut(key.as_bytes()) {
            Some(existing) => *existing = slot,
            None => {
                slots.insert(key.as_bytes().into(), slot);
            }
        }
        if let Some(old) = old {
            self.accounting.subtract(old.stored_bytes);
        }
        self.accounting.add(stored_bytes);
        drop(slots);
        self.counters.add_puts(1);
        self.evict_over_capacity()
    }

    /// Removes the oldest-written entries until the live bytes fit the capacity. A
    /// removal that fails ends the eviction with its error and keeps the entry's
    /// write-order record, so the entry is evicted by a later one.
    pub(crate) fn evict_over_capacity(&self) -> Result<()> {
        if self.accounting.bytes.load(Ordering::Relaxed) <= self.capacity_bytes {
            return Ok(());
        }
        let _eviction = lock(&self.eviction);
        let mut stale_order = Vec::new();
        let mut outcome = Ok(());
        for item in self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::Start)
        {
            if self.accounting.bytes.load(Ordering::Relaxed) <= self.capacity_bytes {
                break;
            }
            let (sequence, key) =
                item.map_err(|error| db_error(error, "cannot scan the write order"))?;
            let Some(number) = sequence_of(&sequence) else {
                stale_order.push(sequence);
                continue;
            };
            match self.remove(&key, Some(number)) {
                Ok(Some(_)) => self.counters.add_evictions(1),
                // The key was rewritten, deleted or expired since: the record is stale.
                Ok(None) => stale_order.push(sequence),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        for sequence in stale_order {
            self.db
                .delete_cf(self.write_order(), sequence)
                .map_err(|error| db_error(error, "cannot delete a write order record"))?;
        }
        outcome
    }
}
