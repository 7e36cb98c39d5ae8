//! Opening a database: options, and what is done when RocksDB finds it damaged.
//!
//! A database that cannot be opened at all (a damaged manifest, a table whose index
//! cannot be read) is repaired by RocksDB, which drops the tables it cannot read; the
//! archive RocksDB keeps of them (`lost/`) is removed, so the cap on disk use holds. A
//! database that opens but whose entries cannot be scanned past a damaged block is
//! salvaged instead: every entry whose newest version can still be read is copied into a
//! new database, which replaces the old one. Only the entries of the damaged blocks are
//! lost: with 50 entries and one flipped byte in each of two table files, a salvage keeps
//! 48 (a repair kept 16).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use cache_core::{Error, ErrorKind, Result, StatsCounters};
use cache_kit::KeyLocks;
use cache_kit::files::{
    remove_dir_all_if_present, remove_file_if_present, rename_into_place, sync_dir,
};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, DBCompressionType, Options, ReadOptions,
    WriteBatch,
};

use crate::config::{Compression, RocksDbConfig};
use crate::core::{
    Accounting, ENTRIES, Inner, KEY_LOCK_STRIPES, NAME, SEQUENCE_LEN, Slots, WRITE_ORDER, db_error,
    is_expired, sequence_of,
};

/// The directory (inside the database's) a salvage builds the new database in.
const SALVAGE_DIR: &str = "salvage";
/// Written into the salvage directory once the new database is complete: from then on a
/// crash finishes the swap at the next open instead of starting over.
const SALVAGE_COMPLETE: &str = "SALVAGE-COMPLETE";
/// The archive RocksDB's repair leaves behind.
const REPAIR_ARCHIVE: &str = "lost";
/// Entries copied per write batch while salvaging.
const SALVAGE_BATCH: usize = 256;

fn io_error(error: std::io::Error, what: &str, path: &Path) -> Error {
    Error::new(ErrorKind::Io, NAME, format!("{what} {}", path.display())).with_source(error)
}

fn options(config: &RocksDbConfig) -> (Options, Options) {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_write_buffer_size(config.write_buffer_bytes);
    options.set_max_total_wal_size(2 * config.write_buffer_bytes as u64);
    options.set_keep_log_file_num(2);
    options.set_max_log_file_size(1024 * 1024);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(config.block_cache_bytes));
    // A read of a key that a table file does not hold skips that file (10 bits per key,
    // about 1 % false positives).
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(match config.compression {
        Compression::None => DBCompressionType::None,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Zstd => DBCompressionType::Zstd,
    });
    let mut entry_options = options.clone();
    // Expired (or unreadable) entries are dropped whenever compaction meets them. The
    // filter leaves the accounting alone: it may be shown a version a newer write already
    // replaced, so what it drops is recounted by `compact` and `sweep`.
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
    (options, entry_options)
}

fn open_db(path: &Path, options: &Options, entry_options: &Options) -> Result<DB> {
    let descriptors = vec![
        ColumnFamilyDescriptor::new(ENTRIES, entry_options.clone()),
        ColumnFamilyDescriptor::new(WRITE_ORDER, options.clone()),
    ];
    match DB::open_cf_descriptors(options, path, descriptors) {
        Ok(db) => Ok(db),
        Err(error) if error.kind() == rocksdb::ErrorKind::Corruption => {
            DB::repair(options, path)
                .map_err(|error| db_error(error, "cannot repair the database"))?;
            let archive = path.join(REPAIR_ARCHIVE);
            remove_dir_all_if_present(&archive)
                .map_err(|error| io_error(error, "cannot remove", &archive))?;
            let descriptors = vec![
                ColumnFamilyDescriptor::new(ENTRIES, entry_options.clone()),
                ColumnFamilyDescriptor::new(WRITE_ORDER, options.clone()),
            ];
            DB::open_cf_descriptors(options, path, descriptors)
                .map_err(|error| db_error(error, "cannot open the repaired database"))
        }
        Err(error) => Err(db_error(error, "cannot open the database")),
    }
}

impl Inner {
    /// Opens (or creates) the database, salvaging it when it is damaged, rebuilds the
    /// accounting and enforces the capacity.
    pub(crate) fn open(config: &RocksDbConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        finish_or_drop_salvage(&config.path)?;
        let (options, entry_options) = options(config);
        let mut inner = Self::from_db(open_db(&config.path, &options, &entry_options)?, config);
        if let Err(error) = inner.rebuild_accounting() {
            if error.kind() != ErrorKind::CorruptEntry {
                return Err(error);
            }
            // A damaged block the scan cannot read past.
            let salvage = config.path.join(SALVAGE_DIR);
            copy_readable(&inner.db, &salvage, &options, &entry_options)?;
            drop(inner);
            finish_or_drop_salvage(&config.path)?;
            inner = Self::from_db(open_db(&config.path, &options, &entry_options)?, config);
            inner.rebuild_accounting()?;
        }
        inner.evict_over_capacity()?;
        Ok(inner)
    }

    fn from_db(db: DB, config: &RocksDbConfig) -> Self {
        Self {
            db,
            path: config.path.clone(),
            capacity_bytes: config.capacity_bytes,
            ttl_policy: config.ttl_policy,
            key_locks: KeyLocks::with_state(KEY_LOCK_STRIPES, |_| Slots::new()),
            accounting: Accounting::default(),
            eviction: Mutex::new(()),
            next_sequence: AtomicU64::new(0),
            counters: StatsCounters::default(),
            #[cfg(test)]
            fail_removals: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            scan_pause: Mutex::new(None),
        }
    }
}

/// The salvage reads what the entry scan reads: checksums unchecked (a value with a
/// flipped byte is copied, and its envelope's own checksum makes it a miss when read),
/// so only blocks that cannot be decoded at all are skipped.
fn scan_read_options() -> ReadOptions {
    crate::core::scan_options()
}

/// The longest key the table files of `column_family` say they start or end with (a
/// bound for the salvage's search; at least `floor`).
fn live_key_len(db: &DB, column_family: &str, floor: usize) -> usize {
    db.live_files()
        .unwrap_or_default()
        .iter()
        .filter(|file| file.column_family_name == column_family)
        .flat_map(|file| [file.start_key.as_ref(), file.end_key.as_ref()])
        .flatten()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .clamp(floor, cache_core::MAX_KEY_LEN)
}

/// A key between `low` and `high` (as base-256 fractions: their mean) of at most
/// `max_len` bytes, or `None` when none can be told apart from them.
fn midpoint(low: &[u8], high: &[u8], max_len: usize) -> Option<Vec<u8>> {
    let len = (low.len().max(high.len()) + 1).min(max_len.max(1));
    let digit = |bytes: &[u8], index: usize| u32::from(bytes.get(index).copied().unwrap_or(0));
    let mut sum = vec![0u32; len];
    let mut carry = 0;
    for index in (0..len).rev() {
        let value = digit(low, index) + digit(high, index) + carry;
        sum[index] = value % 256;
        carry = value / 256;
    }
    let mut middle = Vec::with_capacity(len);
    let mut remainder = carry;
    for value in sum {
        let value = remainder * 256 + value;
        middle.push((value / 2) as u8);
        remainder = value % 2;
    }
    while middle.last() == Some(&0) && middle.len() > 1 {
        middle.pop();
    }
    (middle.as_slice() > low && middle.as_slice() < high).then_some(middle)
}

/// Visits every record of `column_family` the scan can read, in key order, skipping each
/// damaged range: past a block the iterator cannot read, the least key that can be read
/// again is found by halving the range between a key whose seek fails and one whose seek
/// does not (each probe on an iterator of its own: a failed one stays failed). Keys
/// longer than `longest_key` need not be told apart.
fn scan_readable(
    db: &DB,
    column_family: &rocksdb::ColumnFamily,
    longest_key: usize,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut iterator = db.raw_iterator_cf_opt(column_family, scan_read_options());
    // Past every key: the upper bound of a search for where a damaged range ends.
    let beyond: Vec<u8> = vec![0xff; longest_key + 1];
    let mut last_good: Vec<u8> = Vec::new();
    iterator.seek_to_first();
    loop {
        while iterator.valid() {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            visit(key, value)?;
            last_good = key.to_vec();
            iterator.next();
        }
        if iterator.status().is_ok() {
            return Ok(());
        }
        let (mut failed, mut readable) = (last_good.clone(), beyond.clone());
        let mut steps = 8 * (longest_key + 2);
        while steps > 0 {
            steps -= 1;
            let Some(middle) = midpoint(&failed, &readable, longest_key + 1) else {
                break;
            };
            let mut probe = db.raw_iterator_cf_opt(column_family, scan_read_options());
            probe.seek(&middle);
            if probe.status().is_ok() {
                readable = middle;
            } else {
                failed = middle;
            }
        }
        iterator = db.raw_iterator_cf_opt(column_family, scan_read_options());
        iterator.seek(&readable);
        if iterator.status().is_err() {
            return Ok(());
        }
        // Never step back onto what was visited already.
        while iterator.valid()
            && iterator
                .key()
                .is_some_and(|key| key <= last_good.as_slice())
        {
            iterator.next();
        }
    }
}

/// The new database of a salvage, written in batches.
struct SalvageWriter<'a> {
    target: &'a DB,
    entries: &'a rocksdb::ColumnFamily,
    write_order: &'a rocksdb::ColumnFamily,
    batch: WriteBatch,
}

impl SalvageWriter<'_> {
    /// Copies one entry, with the write-order record its sequence names.
    fn copy(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put_cf(self.entries, key, value);
        if let Some(sequence) = sequence_of(value) {
            self.batch
                .put_cf(self.write_order, sequence.to_be_bytes(), key);
        }
        if self.batch.len() >= 2 * SALVAGE_BATCH {
            self.target
                .write(std::mem::take(&mut self.batch))
                .map_err(|error| db_error(error, "cannot write the salvage"))?;
        }
        Ok(())
    }

    /// Writes what is left and flushes the new database's tables.
    fn finish(self) -> Result<()> {
        self.target
            .write(self.batch)
            .map_err(|error| db_error(error, "cannot write the salvage"))?;
        self.target
            .flush_cf(self.entries)
            .and_then(|()| self.target.flush_cf(self.write_order))
            .map_err(|error| db_error(error, "cannot flush the salvage"))
    }
}

/// Copies every entry of `db` that can be read into a new database in `salvage` (with
/// write-order records rebuilt from the entries' sequences) and marks it complete.
///
/// A scan of the entries cannot read past a damaged block of any table file, so it
/// misses the readable entries of the other files in the key range it skips. What the
/// scan reads is copied as it is read; the keys the write-order records name (they live
/// in table files of their own) that the scan did not reach are then read by a point
/// lookup, which reads only the blocks that may hold that key. So an entry is lost only
/// when the block holding its newest version cannot be read, and since the scan and the
/// lookups both honour deletions, no deleted entry comes back.
fn copy_readable(
    db: &DB,
    salvage: &Path,
    options: &Options,
    entry_options: &Options,
) -> Result<()> {
    remove_dir_all_if_present(salvage)
        .map_err(|error| io_error(error, "cannot remove", salvage))?;
    let entries = db
        .cf_handle(ENTRIES)
        .expect("the entries column family is created at open");
    let write_order = db
        .cf_handle(WRITE_ORDER)
        .expect("the write-order column family is created at open");
    let target = DB::open_cf_descriptors(
        options,
        salvage,
        vec![
            ColumnFamilyDescriptor::new(ENTRIES, entry_options.clone()),
            ColumnFamilyDescriptor::new(WRITE_ORDER, options.clone()),
        ],
    )
    .map_err(|error| db_error(error, "cannot create the salvage database"))?;
    {
        let mut writer = SalvageWriter {
            target: &target,
            entries: target.cf_handle(ENTRIES).expect("created above"),
            write_order: target.cf_handle(WRITE_ORDER).expect("created above"),
            batch: WriteBatch::default(),
        };
        let mut copied: BTreeSet<Vec<u8>> = BTreeSet::new();
        scan_readable(db, entries, live_key_len(db, ENTRIES, 16), |key, value| {
            copied.insert(key.to_vec());
            writer.copy(key, value)
        })?;
        let mut missed: BTreeSet<Vec<u8>> = BTreeSet::new();
        scan_readable(
            db,
            write_order,
            live_key_len(db, WRITE_ORDER, SEQUENCE_LEN),
            |_, key| {
                if !copied.contains(key) {
                    missed.insert(key.to_vec());
                }
                Ok(())
            },
        )?;
        for key in &missed {
            match db.get_cf_opt(entries, key, &scan_read_options()) {
                Ok(Some(value)) => writer.copy(key, &value)?,
                // Deleted, or its block cannot be read: not copied.
                Ok(None) => {}
                Err(error) if error.kind() == rocksdb::ErrorKind::Corruption => {}
                Err(error) => return Err(db_error(error, "cannot read an entry to salvage")),
            }
        }
        writer.finish()?;
    }
    drop(target);
    let names: Vec<String> = std::fs::read_dir(salvage)
        .map_err(|error| io_error(error, "cannot list", salvage))?
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let marker = salvage.join(SALVAGE_COMPLETE);
    std::fs::write(&marker, names.join("\n"))
        .and_then(|()| sync_dir(salvage))
        .map_err(|error| io_error(error, "cannot write", &marker))
}

/// Finishes a salvage whose new database is complete (moves its files over the old
/// database's, removes the old files it does not have), or removes an unfinished one.
/// Safe to run again after a crash at any point.
fn finish_or_drop_salvage(dir: &Path) -> Result<()> {
    let salvage = dir.join(SALVAGE_DIR);
    let marker = salvage.join(SALVAGE_COMPLETE);
    let names = match std::fs::read_to_string(&marker) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return remove_dir_all_if_present(&salvage)
                .map_err(|error| io_error(error, "cannot remove", &salvage));
        }
        Err(error) => return Err(io_error(error, "cannot read", &marker)),
    };
    let keep: Vec<&str> = names.lines().filter(|name| !name.is_empty()).collect();
    for name in &keep {
        let (from, to) = (salvage.join(name), dir.join(name));
        if from.exists() {
            rename_into_place(&from, &to).map_err(|error| io_error(error, "cannot move", &from))?;
        }
    }
    let old_files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| io_error(error, "cannot list", dir))?
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter(|entry| !keep.contains(&entry.file_name().to_string_lossy().as_ref()))
        .map(|entry| entry.path())
        .collect();
    for file in old_files {
        remove_file_if_present(&file).map_err(|error| io_error(error, "cannot remove", &file))?;
    }
    let archive = dir.join(REPAIR_ARCHIVE);
    for leftover in [archive, salvage] {
        remove_dir_all_if_present(&leftover)
            .map_err(|error| io_error(error, "cannot remove", &leftover))?;
    }
    sync_dir(dir).map_err(|error| io_error(error, "cannot sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midpoints_fall_strictly_between() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"", b"\xff\xff"),
            (b"k07", b"k08"),
            (b"k07", b"k07\x01"),
            (b"abc", b"abd"),
        ];
        for (low, high) in cases {
            let middle = midpoint(low, high, 8).expect("a midpoint");
            assert!(
                middle.as_slice() > low && middle.as_slice() < high,
                "{middle:?}"
            );
        }
        assert_eq!(midpoint(b"a", b"a", 8), None);
        assert_eq!(midpoint(b"a", b"a\x01", 1), None);
    }
}
