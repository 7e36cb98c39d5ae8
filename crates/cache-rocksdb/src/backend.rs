//! The [`CacheManager`] implementation on RocksDB.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, KeyPattern, PutOptions, Result, StatsCounters, TtlPolicy, codec,
    validate_key,
};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch,
};

use crate::config::{Compression, RocksDbConfig};

const NAME: &str = "rocksdb";
const ENTRIES: &str = "entries";
const WRITE_ORDER: &str = "write_order";
const KEY_LOCK_STRIPES: usize = 64;
/// Every stored value starts with the write sequence number of its put (big endian).
const SEQUENCE_LEN: usize = 8;

/// A disk cache in a RocksDB database.
///
/// Column family `entries` maps each key to its write sequence number and the core
/// codec's envelope; `write_order` maps sequence numbers to keys, oldest first, for
/// eviction. In memory, each stored key's write sequence and stored size (about the key's
/// length plus 48 bytes per entry, rebuilt by the scan at open), so a put or delete never
/// reads the old value from disk. Every RocksDB call runs on tokio's blocking pool.
/// Cloning is cheap.
#[derive(Clone)]
pub struct RocksDbCache {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    path: PathBuf,
    capacity_bytes: u64,
    ttl_policy: TtlPolicy,
    /// The key stripes: each lock guards the writes of its keys and their slots.
    key_locks: Vec<Mutex<Slots>>,
    accounting: Accounting,
    eviction: Mutex<()>,
    next_sequence: AtomicU64,
    counters: StatsCounters,
}

/// What the backend knows of a stored key without reading it: the write sequence of its
/// value and the bytes it takes (key plus stored value).
#[derive(Clone, Copy)]
struct Slot {
    sequence: u64,
    stored_bytes: u64,
}

/// A stored value as read, before decoding: the write sequence of its put and its
/// envelope (`None` when the value is too short to hold either).
struct StoredValue {
    sequence: Option<u64>,
    envelope: Option<Bytes>,
}

/// The slots of the keys of one lock stripe.
type Slots = HashMap<Box<[u8]>, Slot>;

/// Live entries and their bytes (key plus stored value), kept current by every write
/// and recounted by a scan at open, after `compact` and in `sweep`. They equal the sum of
/// the slots: an entry the compaction filter dropped stays counted (and keeps its slot)
/// until a recount or the next write of its key.
#[derive(Default)]
struct Accounting {
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Accounting {
    fn add(&self, bytes: u64) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn subtract(&self, bytes: u64) {
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn db_error(error: rocksdb::Error, what: &str) -> Error {
    let kind = match error.kind() {
        rocksdb::ErrorKind::Corruption => ErrorKind::CorruptEntry,
        rocksdb::ErrorKind::TimedOut => ErrorKind::Timeout,
        rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TryAgain => ErrorKind::Unavailable,
        _ => ErrorKind::Io,
    };
    Error::new(kind, NAME, what.to_owned()).with_source(error)
}

fn is_expired(value: &[u8], now: SystemTime) -> bool {
    value
        .get(SEQUENCE_LEN..)
        .and_then(codec::peek_expires_at)
        .is_none_or(|expires_at| expires_at <= now)
}

fn sequence_of(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        value.get(..SEQUENCE_LEN)?.try_into().ok()?,
    ))
}

/// The key lock stripe of `key`.
fn stripe_of(key: &[u8]) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (hash % KEY_LOCK_STRIPES as u64) as usize
}

/// A stored key and the write sequence number of its value, when readable.
type StoredKey = (Box<[u8]>, Option<u64>);

/// Options for whole scans (accounting, sweeps, eviction, pattern deletion, clear): they
/// do not fill the block cache, and they do not stop at a damaged block (a damaged entry
/// is found and removed when it is read).
fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
    options.fill_cache(false);
    options.set_verify_checksums(false);
    options
}

impl RocksDbCache {
    /// Opens (or creates) the database in `config`'s directory. A database RocksDB
    /// reports as corrupt is repaired (what cannot be recovered is dropped) and opened
    /// again. Then the accounting is rebuilt and the capacity enforced.
    pub async fn open(config: RocksDbConfig) -> Result<Self> {
        CacheFuture::blocking(NAME, move || Self::open_blocking(config)).await
    }

    fn open_blocking(config: RocksDbConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_write_buffer_size(config.write_buffer_bytes);
        options.set_max_total_wal_size(2 * config.write_buffer_bytes as u64);
        options.set_keep_log_file_num(2);
        options.set_max_log_file_size(1024 * 1024);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(config.block_cache_bytes));
        // A read of a key that a table file does not hold skips that file (10 bits per
        // key, about 1 % false positives).
        table.set_bloom_filter(10.0, false);
        options.set_block_based_table_factory(&table);
        options.set_compression_type(match config.compression {
            Compression::None => DBCompressionType::None,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
        });

        let mut entry_options = options.clone();
        // Expired (or unreadable) entries are dropped whenever compaction meets them. The
        // filter leaves the accounting alone: it may be shown a version a newer write
        // already replaced, so what it drops is recounted by `compact` and `sweep`.
        entry_options.set_compaction_filter(
            "cache-expiry",
            |_level: u32, _key: &[u8], value: &[u8]| {
                if is_expired(value, SystemTime::now()) {
                    Decision::Remove
                } else {
                    Decision::Keep
                }
            },
        );
        let descriptors = || {
            vec![
                ColumnFamilyDescriptor::new(ENTRIES, entry_options.clone()),
                ColumnFamilyDescriptor::new(WRITE_ORDER, options.clone()),
            ]
        };
        let open = || DB::open_cf_descriptors(&options, &config.path, descriptors());
        let repair = || {
            DB::repair(&options, &config.path)
                .map_err(|error| db_error(error, "cannot repair the database"))
        };
        let reopen =
            || open().map_err(|error| db_error(error, "cannot open the repaired database"));
        let db = match open() {
            Ok(db) => db,
            Err(error) if error.kind() == rocksdb::ErrorKind::Corruption => {
                repair()?;
                reopen()?
            }
            Err(error) => return Err(db_error(error, "cannot open the database")),
        };
        let mut cache = Self::from_db(db, &config);
        if let Err(error) = cache.inner.rebuild_accounting() {
            if error.kind() != ErrorKind::CorruptEntry {
                return Err(error);
            }
            // A damaged block the scan cannot read past: repair, then count again.
            drop(cache);
            repair()?;
            cache = Self::from_db(reopen()?, &config);
            cache.inner.rebuild_accounting()?;
        }
        cache.inner.evict_over_capacity()?;
        Ok(cache)
    }

    fn from_db(db: DB, config: &RocksDbConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                path: config.path.clone(),
                capacity_bytes: config.capacity_bytes,
                ttl_policy: config.ttl_policy,
                key_locks: (0..KEY_LOCK_STRIPES)
                    .map(|_| Mutex::new(Slots::new()))
                    .collect(),
                accounting: Accounting::default(),
                eviction: Mutex::new(()),
                next_sequence: AtomicU64::new(0),
                counters: StatsCounters::default(),
            }),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Compacts the whole database now: expired entries are dropped by the compaction
    /// filter and deleted data is reclaimed. RocksDB also compacts on its own.
    pub async fn compact(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || {
            inner
                .db
                .compact_range_cf(inner.entries(), None::<&[u8]>, None::<&[u8]>);
            inner
                .db
                .compact_range_cf(inner.write_order(), None::<&[u8]>, None::<&[u8]>);
            inner.recount()
        })
        .await
    }

    /// Removes expired entries and write-order records whose entry is gone; returns how
    /// many entries expired.
    pub async fn sweep(&self) -> Result<u64> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || inner.sweep_blocking()).await
    }

    /// Raw access to the stored values, for corruption and credential tests.
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            cache: self.clone(),
        }
    }
}

impl Inner {
    fn entries(&self) -> &ColumnFamily {
        self.db
            .cf_handle(ENTRIES)
            .expect("the entries column family is created at open")
    }

    fn write_order(&self) -> &ColumnFamily {
        self.db
            .cf_handle(WRITE_ORDER)
            .expect("the write order column family is created at open")
    }

    fn key_lock(&self, key: &[u8]) -> MutexGuard<'_, Slots> {
        lock(&self.key_locks[stripe_of(key)])
    }

    /// Counts the live entries and bytes, deleting the expired entries it meets.
    fn rebuild_accounting(&self) -> Result<()> {
        let expired = {
            let mut all_keys: Vec<MutexGuard<'_, Slots>> =
                self.key_locks.iter().map(lock).collect();
            self.count_live(&mut all_keys)?
        };
        for (key, sequence) in expired {
            if self.remove(&key, sequence)?.is_some() {
                self.counters.add_expirations(1);
            }
        }
        Ok(())
    }

    /// Recounts while no write can run (every key lock held), then drops the expired
    /// entries the count met.
    fn recount(&self) -> Result<()> {
        let expired = {
            let mut all_keys: Vec<MutexGuard<'_, Slots>> =
                self.key_locks.iter().map(lock).collect();
            self.count_live(&mut all_keys)?
        };
        for (key, sequence) in expired {
            if self.remove(&key, sequence)?.is_some() {
                self.counters.add_expirations(1);
            }
        }
        Ok(())
    }

    /// Scans the entries with every key lock held (`all_keys`): rebuilds the slots,
    /// stores the count and bytes and the next write sequence, and returns the expired
    /// entries (counted until they are removed).
    fn count_live(&self, all_keys: &mut [MutexGuard<'_, Slots>]) -> Result<Vec<StoredKey>> {
        let now = SystemTime::now();
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut expired = Vec::new();
        for slots in all_keys.iter_mut() {
            slots.clear();
        }
        for item in self
            .db
            .iterator_cf_opt(self.entries(), scan_options(), IteratorMode::Start)
        {
            let (key, value) = item.map_err(|error| db_error(error, "cannot scan the entries"))?;
            let stored_bytes = (key.len() + value.len()) as u64;
            entries += 1;
            bytes += stored_bytes;
            let sequence = sequence_of(&value);
            if is_expired(&value, now) {
                expired.push((key.clone(), sequence));
            }
            // A value too short to carry a sequence gets one no write uses, so only a
            // removal without a condition takes it.
            let slot = Slot {
                sequence: sequence.unwrap_or(u64::MAX),
                stored_bytes,
            };
            all_keys[stripe_of(&key)].insert(key, slot);
        }
        self.accounting.entries.store(entries, Ordering::Relaxed);
        self.accounting.bytes.store(bytes, Ordering::Relaxed);
        let last = self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::End)
            .next()
            .transpose()
            .map_err(|error| db_error(error, "cannot read the write order"))?;
        let next = last
            .and_then(|(sequence, _)| sequence_of(&sequence))
            .map_or(0, |last| last + 1);
        // Only ever raised: a put may hold a sequence number it has not written yet.
        self.next_sequence.fetch_max(next, Ordering::Relaxed);
        Ok(expired)
    }

    /// Deletes `key` (only while its stored value has `sequence`, when given); returns
    /// the bytes removed. The key's slot says what is stored, so nothing is read.
    fn remove(&self, key: &[u8], sequence: Option<u64>) -> Result<Option<u64>> {
        let mut slots = self.key_lock(key);
        let Some(slot) = slots.get(key).copied() else {
            return Ok(None);
        };
        if sequence.is_some_and(|sequence| sequence != slot.sequence) {
            return Ok(None);
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
    fn read_blocking(&self, key: &str) -> Result<Option<StoredValue>> {
        let stored = match self.db.get_pinned_cf(self.entries(), key.as_bytes()) {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(None),
            // A damaged block: the entry is unreadable, which is a miss; delete it so the
            // key can be written again.
            Err(error) if error.kind() == rocksdb::ErrorKind::Corruption => {
                if self.remove(key.as_bytes(), None)?.is_some() {
                    self.counters.add_corrupt_entries(1);
                }
                return Ok(None);
            }
            Err(error) => return Err(db_error(error, "cannot read an entry").with_key(key)),
        };
        Ok(Some(StoredValue {
            sequence: sequence_of(&stored),
            envelope: stored.get(SEQUENCE_LEN..).map(Bytes::copy_from_slice),
        }))
    }

    fn remove_corrupt(&self, key: &[u8], sequence: Option<u64>) -> Result<()> {
        let removed = match sequence {
            Some(sequence) => self.remove(key, Some(sequence))?,
            None => self.remove(key, None)?,
        };
        if removed.is_some() {
            self.counters.add_corrupt_entries(1);
        }
        Ok(())
    }

    /// What a put stores, encoded on the caller's task (CPU work, no I/O): `None` when
    /// the entry must not be stored (its storage TTL is zero).
    fn prepare_put(
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
    fn write_blocking(&self, key: &str, sequence: u64, value: Vec<u8>) -> Result<()> {
        let stored_bytes = (key.len() + value.len()) as u64;
        let mut slots = self.key_lock(key.as_bytes());
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

    /// Removes the oldest-written entries until the live bytes fit the capacity.
    fn evict_over_capacity(&self) -> Result<()> {
        if self.accounting.bytes.load(Ordering::Relaxed) <= self.capacity_bytes {
            return Ok(());
        }
        let _eviction = lock(&self.eviction);
        let mut stale_order = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::Start)
        {
            if self.accounting.bytes.load(Ordering::Relaxed) <= self.capacity_bytes {
                break;
            }
            let (sequence, key) =
                item.map_err(|error| db_error(error, "cannot scan the write order"))?;
            match sequence_of(&sequence) {
                Some(sequence)
                    if self
                        .remove(&key, Some(sequence))
                        .is_ok_and(|removed| removed.is_some()) =>
                {
                    self.counters.add_evictions(1);
                }
                // The key was rewritten, deleted or expired since: the record is stale.
                _ => stale_order.push(sequence),
            }
        }
        for sequence in stale_order {
            self.db
                .delete_cf(self.write_order(), sequence)
                .map_err(|error| db_error(error, "cannot delete a write order record"))?;
        }
        Ok(())
    }

    fn sweep_blocking(&self) -> Result<u64> {
        let now = SystemTime::now();
        let mut expired = 0;
        let mut dead = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.entries(), scan_options(), IteratorMode::Start)
        {
            let (key, value) = item.map_err(|error| db_error(error, "cannot scan the entries"))?;
            if is_expired(&value, now) {
                dead.push((key, sequence_of(&value)));
            }
        }
        for (key, sequence) in dead {
            if self.remove(&key, sequence)?.is_some() {
                expired += 1;
            }
        }
        self.counters.add_expirations(expired);
        let mut stale = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.write_order(), scan_options(), IteratorMode::Start)
        {
            let (sequence, key) =
                item.map_err(|error| db_error(error, "cannot scan the write order"))?;
            let live = self.key_lock(&key).get(&key).is_some_and(|slot| {
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
        self.recount()?;
        Ok(expired)
    }
}

impl std::fmt::Debug for RocksDbCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbCache")
            .field("path", &self.inner.path)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheManager for RocksDbCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        // Tags are not supported: an index that stays correct when compaction drops
        // expired entries behind its back could not be kept bounded.
        Capabilities::none()
            .with_delete_pattern()
            .with_clear()
            .with_entry_count()
            .with_size_bytes()
            .with_stats()
            .with_stores_bytes()
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = &self.inner;
        CacheFuture::new(async move {
            // Only the read runs on the blocking pool; decoding is CPU work, done here.
            let (reader, owned_key) = (Arc::clone(inner), key.to_owned());
            let stored =
                CacheFuture::blocking(NAME, move || reader.read_blocking(&owned_key)).await?;
            let Some(StoredValue { sequence, envelope }) = stored else {
                inner.counters.add_misses(1);
                return Ok(None);
            };
            let now = SystemTime::now();
            let expired = match envelope.map(|envelope| codec::decode_for_key(envelope, key)) {
                Some(Ok(entry)) if entry.metadata.expires_at > now => {
                    inner.counters.add_hits(1);
                    return Ok(Some(Arc::new(entry)));
                }
                Some(Ok(_)) => true,
                Some(Err(_)) | None => false,
            };
            inner.counters.add_misses(1);
            let (inner, owned_key) = (Arc::clone(inner), key.to_owned());
            CacheFuture::blocking(NAME, move || {
                if expired {
                    if inner.remove(owned_key.as_bytes(), sequence)?.is_some() {
                        inner.counters.add_expirations(1);
                    }
                    Ok(())
                } else {
                    inner.remove_corrupt(owned_key.as_bytes(), sequence)
                }
            })
            .await?;
            Ok(None)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            // Encoding is CPU work, done here; only the write runs on the blocking pool.
            let prepared = self.inner.prepare_put(key, &response, &policy, &options)?;
            let (inner, owned_key) = (Arc::clone(&self.inner), key.to_owned());
            CacheFuture::blocking(NAME, move || match prepared {
                Some((sequence, value)) => inner.write_blocking(&owned_key, sequence, value),
                None => inner.remove(owned_key.as_bytes(), None).map(drop),
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let (inner, key) = (Arc::clone(&self.inner), key.to_owned());
        CacheFuture::blocking(NAME, move || {
            inner.remove(key.as_bytes(), None)?;
            inner.counters.add_deletes(1);
            Ok(())
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let (inner, pattern) = (Arc::clone(&self.inner), pattern.clone());
        CacheFuture::blocking(NAME, move || {
            // Keys are sorted: only the range under the pattern's literal prefix is read.
            let prefix = pattern.literal_prefix();
            let mut matching = Vec::new();
            for item in inner.db.iterator_cf_opt(
                inner.entries(),
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
                removed += u64::from(inner.remove(&key, None)?.is_some());
            }
            inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || {
            // Every key lock, in stripe order, so no put lands between the two scans.
            let mut all_keys: Vec<MutexGuard<'_, Slots>> =
                inner.key_locks.iter().map(lock).collect();
            let _eviction = lock(&inner.eviction);
            let mut removed = 0;
            for column_family in [inner.entries(), inner.write_order()] {
                let mut batch = WriteBatch::default();
                for item in
                    inner
                        .db
                        .iterator_cf_opt(column_family, scan_options(), IteratorMode::Start)
                {
                    let (key, _) =
                        item.map_err(|error| db_error(error, "cannot scan for clear"))?;
                    batch.delete_cf(column_family, key);
                    removed += 1;
                }
                inner
                    .db
                    .write(batch)
                    .map_err(|error| db_error(error, "cannot clear"))?;
            }
            for slots in &mut all_keys {
                slots.clear();
            }
            inner.accounting.entries.store(0, Ordering::Relaxed);
            inner.accounting.bytes.store(0, Ordering::Relaxed);
            inner.counters.add_deletes(removed / 2);
            Ok(())
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self.inner.accounting.entries.load(Ordering::Relaxed)))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(self.inner.accounting.bytes.load(Ordering::Relaxed)))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}

/// Direct access to the stored values, for tests that corrupt or inspect them.
#[derive(Debug, Clone)]
pub struct RawAccess {
    cache: RocksDbCache,
}

impl RawAccess {
    /// The stored envelope of `key` (without the sequence prefix).
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let inner = &self.cache.inner;
        let value = inner
            .db
            .get_cf(inner.entries(), key.as_bytes())
            .map_err(|error| db_error(error, "cannot read an entry"))?;
        Ok(value.map(|value| value.get(SEQUENCE_LEN..).unwrap_or_default().to_vec()))
    }

    /// Replaces the stored envelope of `key`, keeping its sequence prefix.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let inner = &self.cache.inner;
        let mut slots = inner.key_lock(key.as_bytes());
        let old = inner
            .db
            .get_cf(inner.entries(), key.as_bytes())
            .map_err(|error| db_error(error, "cannot read an entry"))?
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, NAME, "no entry to overwrite").with_key(key)
            })?;
        let mut value = old[..SEQUENCE_LEN.min(old.len())].to_vec();
        value.extend_from_slice(bytes);
        inner
            .db
            .put_cf(inner.entries(), key.as_bytes(), &value)
            .map_err(|error| db_error(error, "cannot write an entry"))?;
        if let Some(slot) = slots.get_mut(key.as_bytes()) {
            let stored_bytes = (key.len() + value.len()) as u64;
            inner.accounting.subtract(slot.stored_bytes);
            inner.accounting.add(stored_bytes);
            slot.stored_bytes = stored_bytes;
        }
        Ok(())
    }

    /// Flushes the memtables to table files (so tests can damage the files).
    pub fn flush(&self) -> Result<()> {
        let inner = &self.cache.inner;
        for column_family in [inner.entries(), inner.write_order()] {
            inner
                .db
                .flush_cf(column_family)
                .map_err(|error| db_error(error, "cannot flush"))?;
        }
        Ok(())
    }
}
