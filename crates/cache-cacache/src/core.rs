//! The store's primitives: open and rebuild the index, read, write, remove, sweep, clear.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cacache::{Integrity, Value, WriteOpts};
use cache_core::{
    CacheEntry, CachePolicy, CachedResponse, Error, ErrorKind, KeyPattern, PutOptions, Result,
    StatsCounters, TtlPolicy, codec,
};
use cache_kit::files::{files_under, remove_dir_all_if_present, remove_file_if_present};
use cache_kit::{KeyLocks, lock};

use crate::config::CacacheConfig;
use crate::index::{Index, IndexEntry, MAX_BUCKET_LINES, accounted_bytes, referenced_content};
use crate::layout::{bucket_path, content_path, content_root, index_root, is_sha256};

pub(crate) const NAME: &str = "cacache";
/// Operations on one key are serialized by one of these locks, chosen by the key's hash.
const KEY_LOCK_STRIPES: usize = 64;
/// How old an unreferenced content file must be before an on-demand sweep removes it, so
/// that a sweep never races a write whose index line is not in yet.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Entries whose storage TTL had run out.
    pub expired: u64,
    /// Content files no entry referenced (left by a crash between writing content and
    /// its index line, or by an index line that was torn).
    pub orphaned_content: u64,
    /// Index buckets no live entry owns (corrupt or emptied ones).
    pub orphaned_buckets: u64,
    /// Temporary files left by interrupted writes.
    pub temporary_files: u64,
}

/// The state every clone of a cache shares.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) capacity_bytes: u64,
    ttl_policy: TtlPolicy,
    pub(crate) index: Mutex<Index>,
    key_locks: KeyLocks,
    pub(crate) counters: StatsCounters,
}

pub(crate) fn io_error(error: impl Into<cache_core::BoxError>, what: &str, path: &Path) -> Error {
    Error::new(ErrorKind::Io, NAME, format!("{what} {}", path.display())).with_source(error)
}

fn cacache_error(error: cacache::Error, what: &str, key: &str) -> Error {
    Error::new(ErrorKind::Io, NAME, what.to_owned())
        .with_key(key)
        .with_source(error)
}

fn remove(path: &Path) -> Result<()> {
    remove_file_if_present(path).map_err(|error| io_error(error, "cannot remove", path))
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

impl Inner {
    /// Opens (or creates) the directory: rebuilds the index from disk, drops expired and
    /// unreadable entries, evicts down to the capacity, removes orphans.
    pub(crate) fn open(config: CacacheConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        std::fs::create_dir_all(&config.path)
            .map_err(|error| io_error(error, "cannot create", &config.path))?;
        let inner = Self {
            dir: config.path,
            capacity_bytes: config.capacity_bytes,
            ttl_policy: config.ttl_policy,
            index: Mutex::new(Index::new()),
            key_locks: KeyLocks::new(KEY_LOCK_STRIPES),
            counters: StatsCounters::default(),
        };
        inner.rebuild_index()?;
        inner.sweep(Duration::ZERO)?;
        Ok(inner)
    }

    fn rebuild_index(&self) -> Result<()> {
        let now = SystemTime::now();
        let mut found: Vec<(u128, String, IndexEntry)> = Vec::new();
        for metadata in cacache::index::ls(&self.dir) {
            // A bucket that cannot be read is left to the orphan sweep.
            let Ok(metadata) = metadata else { continue };
            if !is_sha256(&metadata.integrity) {
                // Not written by this backend; the orphan sweep removes the bucket.
                continue;
            }
            let expires_at = metadata
                .metadata
                .get("expires_at_ms")
                .and_then(Value::as_u64);
            let tags: Option<Vec<String>> = metadata
                .metadata
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
            let content = content_path(&self.dir, &metadata.integrity);
            let content_len = std::fs::metadata(&content).map(|file| file.len()).ok();
            match (expires_at, tags, content_len) {
                (Some(expires_at), Some(tags), Some(len)) if len == metadata.size as u64 => {
                    let expires_at = UNIX_EPOCH + Duration::from_millis(expires_at);
                    if expires_at <= now {
                        self.counters.add_expirations(1);
                        self.remove_files(&metadata.key, &metadata.integrity)?;
                    } else {
                        let mut entry = IndexEntry::new(metadata.integrity, len, expires_at, tags);
                        // Unknown after a restart: the next overwrite compacts.
                        entry.bucket_lines = MAX_BUCKET_LINES;
                        found.push((metadata.time, metadata.key, entry));
                    }
                }
                // Not written by this backend, or its content is missing or torn.
                _ => self.remove_files(&metadata.key, &metadata.integrity)?,
            }
        }
        // The oldest writes are the least recently used after a restart.
        found.sort_by_key(|(time, _, _)| *time);
        let evicted = {
            let mut index = lock(&self.index);
            for (_, key, entry) in found {
                index.insert(key, entry);
            }
            index.evict_to(self.capacity_bytes, None)
        };
        self.counters.add_evictions(evicted.len() as u64);
        for (key, entry) in evicted {
            self.remove_files(&key, &entry.integrity)?;
        }
        Ok(())
    }

    /// Removes a key's bucket and a content file.
    fn remove_files(&self, key: &str, integrity: &Integrity) -> Result<()> {
        remove(&bucket_path(&self.dir, key))?;
        remove(&content_path(&self.dir, integrity))
    }

    /// Removes the entry under `key` (only the version with `integrity`, when given) with
    /// its files; returns whether one was removed.
    pub(crate) fn remove_entry(&self, key: &str, integrity: Option<&Integrity>) -> Result<bool> {
        let _key_guard = self.key_locks.lock(key);
        let removed = {
            let mut index = lock(&self.index);
            match integrity {
                Some(integrity) => index.remove_if(key, |entry| entry.integrity == *integrity),
                None => index.remove(key),
            }
        };
        match removed {
            Some(entry) => self.remove_files(key, &entry.integrity).map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let now = SystemTime::now();
        let found = lock(&self.index)
            .touch(key)
            .map(|entry| (entry.integrity.clone(), entry.expires_at));
        let Some((integrity, expires_at)) = found else {
            self.counters.add_misses(1);
            return Ok(None);
        };
        if expires_at <= now {
            self.counters.add_misses(1);
            if self.remove_entry(key, Some(&integrity))? {
                self.counters.add_expirations(1);
            }
            return Ok(None);
        }
        let path = content_path(&self.dir, &integrity);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Replaced or removed while this read was on its way (then the removal
                // below finds another version and does nothing), or deleted behind the
                // cache's back: the index must not keep counting it.
                self.counters.add_misses(1);
                self.remove_entry(key, Some(&integrity))?;
                return Ok(None);
            }
            Err(error) => return Err(io_error(error, "cannot read", &path).with_key(key)),
        };
        match codec::decode_for_key(bytes, key) {
            Ok(entry) if entry.metadata.expires_at > now => {
                self.counters.add_hits(1);
                Ok(Some(entry))
            }
            Ok(_) => {
                self.counters.add_misses(1);
                self.remove_entry(key, Some(&integrity))?;
                Ok(None)
            }
            Err(_) => {
                self.counters.add_misses(1);
                if self.remove_entry(key, Some(&integrity))? {
                    self.counters.add_corrupt_entries(1);
                }
                Ok(None)
            }
        }
    }

    pub(crate) fn put(
        &self,
        key: &str,
        response: &CachedResponse,
        policy: &CachePolicy,
        options: &PutOptions,
    ) -> Result<()> {
        let metadata =
            self.ttl_policy
                .entry_metadata(policy, &response.headers, options, SystemTime::now());
        if metadata.storage_ttl().is_zero() {
            self.remove_entry(key, None)?;
            return Ok(());
        }
        let envelope = codec::encode_parts(key, response, policy, &metadata)?;
        if accounted_bytes(key, envelope.len() as u64, &metadata.tags) > self.capacity_bytes {
            // A refused put leaves no entry: the previous version is gone too.
            self.remove_entry(key, None)?;
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry takes {} bytes, more than the whole capacity of {}",
                    envelope.len(),
                    self.capacity_bytes
                ),
            )
            .with_key(key));
        }
        let index_metadata: Value = [
            (
                "expires_at_ms",
                Value::from(unix_millis(metadata.expires_at)),
            ),
            ("tags", Value::from(metadata.tags.clone())),
        ]
        .into_iter()
        .collect();

        let key_guard = self.key_locks.lock(key);
        // The new version is committed first: its content, then its index line in the
        // key's bucket; readers see the old version until the in-memory index switches.
        // Then the old content goes. The bucket is append-only in cacache; once it holds
        // `MAX_BUCKET_LINES` lines it is removed before the new line is written, so the
        // new line starts a fresh bucket and a key written any number of times keeps a
        // bucket of at most that many lines. A crash before the new line is written loses
        // the key (a miss; its content is an orphan the sweep removes), never tears it.
        //
        // The content is written without a declared size (with one, cacache built with
        // its `mmap` feature, which another crate of a build may switch on, preallocates
        // and maps the file: dearer than one plain write of a small entry); the index
        // line records the size.
        let mut writer = WriteOpts::new()
            .algorithm(cacache::Algorithm::Sha256)
            .open_hash_sync(&self.dir)
            .map_err(|error| cacache_error(error, "cannot open a content writer", key))?;
        writer.write_all(&envelope).map_err(|error| {
            Error::new(ErrorKind::Io, NAME, "cannot write content")
                .with_key(key)
                .with_source(error)
        })?;
        let integrity = writer
            .commit()
            .map_err(|error| cacache_error(error, "cannot commit the content", key))?;
        let old_lines = lock(&self.index).peek(key).map(|old| old.bucket_lines);
        let bucket_lines = match old_lines {
            Some(lines) if lines >= MAX_BUCKET_LINES => {
                remove(&bucket_path(&self.dir, key))?;
                1
            }
            Some(lines) => lines + 1,
            None => 1,
        };
        cacache::index::insert(
            &self.dir,
            key,
            WriteOpts::new()
                .integrity(integrity.clone())
                .size(envelope.len())
                .metadata(index_metadata),
        )
        .map_err(|error| cacache_error(error, "cannot commit the entry", key))?;
        let mut entry = IndexEntry::new(
            integrity.clone(),
            envelope.len() as u64,
            metadata.expires_at,
            metadata.tags,
        );
        entry.bucket_lines = bucket_lines;
        let (replaced, evicted) = {
            let mut index = lock(&self.index);
            let replaced = index.insert(key.to_owned(), entry);
            (replaced, index.evict_to(self.capacity_bytes, Some(key)))
        };
        if let Some(old) = replaced {
            if old.integrity != integrity {
                remove(&content_path(&self.dir, &old.integrity))?;
            }
        }
        drop(key_guard);
        self.counters.add_puts(1);
        self.counters.add_evictions(evicted.len() as u64);
        for (victim, entry) in evicted {
            let _victim_guard = self.key_locks.lock(&victim);
            // The victim left the index already; if it was written again meanwhile, its
            // new bucket stays and only the evicted content goes.
            if lock(&self.index).contains(&victim) {
                remove(&content_path(&self.dir, &entry.integrity))?;
            } else {
                self.remove_files(&victim, &entry.integrity)?;
            }
        }
        Ok(())
    }

    /// Removes the entries tagged `tag` (only versions that still carry it).
    pub(crate) fn delete_tag(&self, tag: &str) -> Result<u64> {
        let mut removed = 0;
        let tagged = lock(&self.index).keys_tagged(tag);
        for key in tagged {
            let integrity = lock(&self.index)
                .peek(&key)
                .filter(|entry| entry.tags.iter().any(|carried| carried == tag))
                .map(|entry| entry.integrity.clone());
            if let Some(integrity) = integrity {
                removed += u64::from(self.remove_entry(&key, Some(&integrity))?);
            }
        }
        Ok(removed)
    }

    /// Removes the entries whose keys match `pattern`.
    pub(crate) fn delete_pattern(&self, pattern: &KeyPattern) -> Result<u64> {
        let prefix = pattern.literal_prefix();
        let matching: Vec<String> = lock(&self.index)
            .keys()
            .filter(|key| key.starts_with(prefix.as_str()) && pattern.matches(key))
            .cloned()
            .collect();
        let mut removed = 0;
        for key in matching {
            removed += u64::from(self.remove_entry(&key, None)?);
        }
        Ok(removed)
    }

    /// Removes every entry; returns how many there were.
    pub(crate) fn clear(&self) -> Result<u64> {
        // Every key lock, so no put is between its write and its index insert while the
        // directories go.
        let _all_keys = self.key_locks.lock_all();
        let mut index = lock(&self.index);
        let removed = index.drain().len() as u64;
        for root in [
            content_root(&self.dir),
            index_root(&self.dir),
            self.dir.join("tmp"),
        ] {
            remove_dir_all_if_present(&root)
                .map_err(|error| io_error(error, "cannot remove", &root))?;
        }
        Ok(removed)
    }

    /// Removes expired entries, and content, buckets and temporary files that no entry
    /// references and that are older than `orphan_grace`.
    pub(crate) fn sweep(&self, orphan_grace: Duration) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let expired: Vec<(String, Integrity)> = {
            let index = lock(&self.index);
            index
                .expired_keys(SystemTime::now())
                .into_iter()
                .filter_map(|key| {
                    let integrity = index.peek(&key)?.integrity.clone();
                    Some((key, integrity))
                })
                .collect()
        };
        for (key, integrity) in expired {
            if self.remove_entry(&key, Some(&integrity))? {
                report.expired += 1;
            }
        }
        self.counters.add_expirations(report.expired);

        let cutoff = SystemTime::now() - orphan_grace;
        let old_enough = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified <= cutoff)
        };
        let (referenced, live_buckets) = {
            let index = lock(&self.index);
            let buckets: HashSet<PathBuf> = index
                .keys()
                .map(|key| bucket_path(&self.dir, key))
                .collect();
            (referenced_content(&index), buckets)
        };
        for file in files_under(&content_root(&self.dir)) {
            let hex = content_hex(&content_root(&self.dir), &file);
            if !hex.is_some_and(|hex| referenced.contains(&hex)) && old_enough(&file) {
                remove(&file)?;
                report.orphaned_content += 1;
            }
        }
        for bucket in files_under(&index_root(&self.dir)) {
            if !live_buckets.contains(&bucket) && old_enough(&bucket) {
                remove(&bucket)?;
                report.orphaned_buckets += 1;
            }
        }
        for temporary in files_under(&self.dir.join("tmp")) {
            if old_enough(&temporary) {
                remove(&temporary)?;
                report.temporary_files += 1;
            }
        }
        Ok(report)
    }
}

/// The hex digest a content file is named after: `{root}/{algorithm}/ab/cd/rest`.
fn content_hex(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let parts: Vec<&str> = relative
        .iter()
        .map(|part| part.to_str())
        .collect::<Option<_>>()?;
    match parts[..] {
        [_, first, second, rest] => Some(format!("{first}{second}{rest}")),
        _ => None,
    }
}
