//! The [`CacheManager`] implementation on cacache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cacache::{Integrity, Value, WriteOpts};
use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, KeyPattern, PutOptions, Result, StatsCounters, TtlPolicy, codec,
    validate_key,
};

use crate::config::CacacheConfig;
use crate::index::{INDEX_LINE_OVERHEAD, Index, IndexEntry, MAX_BUCKET_LINES};
use crate::layout::{
    bucket_path, content_path, content_root, index_root, is_sha256, remove_file_if_present,
};

const NAME: &str = "cacache";
/// Operations on one key are serialized by one of these locks, chosen by the key's hash.
const KEY_LOCK_STRIPES: usize = 64;
/// How old an unreferenced content file must be before an on-demand sweep removes it, so
/// that a sweep never races a write whose index line is not in yet.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// A disk cache in a cacache directory.
///
/// Entries are the core codec's envelopes, stored as cacache content; an in-memory index
/// (key to content hash, size, expiry, tags, recency), rebuilt from cacache's index at
/// open, lets a hit read the content file by hash without parsing an index bucket or
/// hashing the content again (the envelope's checksum guards it). Every file operation
/// runs on tokio's blocking pool. Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct CacacheCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    capacity_bytes: u64,
    ttl_policy: TtlPolicy,
    index: Mutex<Index>,
    key_locks: Vec<Mutex<()>>,
    counters: StatsCounters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the index consistent, so a panic elsewhere while it
    // was held does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_error(error: impl Into<cache_core::BoxError>, what: &str, path: &Path) -> Error {
    Error::new(ErrorKind::Io, NAME, format!("{what} {}", path.display())).with_source(error)
}

fn cacache_error(error: cacache::Error, what: &str, key: &str) -> Error {
    Error::new(ErrorKind::Io, NAME, what.to_owned())
        .with_key(key)
        .with_source(error)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

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

impl CacacheCache {
    /// Opens (or creates) the cache in `config`'s directory: rebuilds the index from disk,
    /// drops expired and unreadable entries, evicts down to the capacity, and removes
    /// orphaned content and temporary files.
    pub async fn open(config: CacacheConfig) -> Result<Self> {
        CacheFuture::blocking(NAME, move || Self::open_blocking(config)).await
    }

    fn open_blocking(config: CacacheConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        std::fs::create_dir_all(&config.path)
            .map_err(|error| io_error(error, "cannot create", &config.path))?;
        let cache = Self {
            inner: Arc::new(Inner {
                dir: config.path,
                capacity_bytes: config.capacity_bytes,
                ttl_policy: config.ttl_policy,
                index: Mutex::new(Index::default()),
                key_locks: (0..KEY_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                counters: StatsCounters::default(),
            }),
        };
        cache.inner.rebuild_index()?;
        cache.inner.sweep_blocking(Duration::ZERO)?;
        Ok(cache)
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Removes expired entries, and content, buckets and temporary files that no entry
    /// references and that are older than a minute. Runs on the blocking pool.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || inner.sweep_blocking(ORPHAN_GRACE)).await
    }

    /// Runs [`sweep`](Self::sweep) every `period` (at least 10 ms: a shorter one is taken
    /// as 10 ms) until the returned handle is dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> SweeperHandle {
        // tokio's interval panics on a zero period, which would end the task silently.
        let period = period.max(Duration::from_millis(10));
        let cache = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // A failed sweep is retried at the next tick; the errors are I/O errors
                // the next sweep meets again if they persist.
                let _ = cache.sweep().await;
            }
        });
        SweeperHandle { task }
    }
}

/// Stops the periodic sweep when dropped.
#[derive(Debug)]
pub struct SweeperHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn key_lock(&self, key: &str) -> MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        lock(&self.key_locks[(hash % KEY_LOCK_STRIPES as u64) as usize])
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
        let mut evicted = Vec::new();
        {
            let mut index = lock(&self.index);
            for (_, key, entry) in found {
                let (_, mut over) = index.insert(key, entry, u64::MAX);
                evicted.append(&mut over);
            }
            evicted.append(&mut index.evict_to(self.capacity_bytes, None));
        }
        self.counters.add_evictions(evicted.len() as u64);
        for (key, entry) in evicted {
            self.remove_files(&key, &entry.integrity)?;
        }
        Ok(())
    }

    /// Removes a key's bucket and a content file.
    fn remove_files(&self, key: &str, integrity: &Integrity) -> Result<()> {
        let bucket = bucket_path(&self.dir, key);
        remove_file_if_present(&bucket)
            .map_err(|error| io_error(error, "cannot remove", &bucket))?;
        let content = content_path(&self.dir, integrity);
        remove_file_if_present(&content).map_err(|error| io_error(error, "cannot remove", &content))
    }

    /// Removes the entry under `key` (only the version with `integrity`, when given) with
    /// its files; returns whether one was removed.
    fn remove_entry(&self, key: &str, integrity: Option<&Integrity>) -> Result<bool> {
        let _key_guard = self.key_lock(key);
        let removed = {
            let mut index = lock(&self.index);
            match integrity {
                Some(integrity) => index.remove_version(key, integrity),
                None => index.remove(key),
            }
        };
        match removed {
            Some(entry) => self.remove_files(key, &entry.integrity).map(|()| true),
            None => Ok(false),
        }
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        let now = SystemTime::now();
        let found = lock(&self.index).touch(key);
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
                Ok(Some(Arc::new(entry)))
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

    fn put_blocking(
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
        let tag_bytes: usize = metadata.tags.iter().map(String::len).sum();
        if (envelope.len() + key.len() + tag_bytes) as u64 + INDEX_LINE_OVERHEAD
            > self.capacity_bytes
        {
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

        let key_guard = self.key_lock(key);
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
                let bucket = bucket_path(&self.dir, key);
                remove_file_if_present(&bucket)
                    .map_err(|error| io_error(error, "cannot remove", &bucket))?;
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
        let (replaced, evicted) =
            lock(&self.index).insert(key.to_owned(), entry, self.capacity_bytes);
        if let Some(old) = replaced {
            if old.integrity != integrity {
                let content = content_path(&self.dir, &old.integrity);
                remove_file_if_present(&content)
                    .map_err(|error| io_error(error, "cannot remove", &content))?;
            }
        }
        drop(key_guard);
        self.counters.add_puts(1);
        self.counters.add_evictions(evicted.len() as u64);
        for (victim, entry) in evicted {
            let _victim_guard = self.key_lock(&victim);
            // The victim left the index already; if it was written again meanwhile, its
            // new bucket stays and only the evicted content goes.
            if lock(&self.index).peek(&victim).is_none() {
                self.remove_files(&victim, &entry.integrity)?;
            } else {
                let content = content_path(&self.dir, &entry.integrity);
                remove_file_if_present(&content)
                    .map_err(|error| io_error(error, "cannot remove", &content))?;
            }
        }
        Ok(())
    }

    fn sweep_blocking(&self, orphan_grace: Duration) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let expired = lock(&self.index).expired_keys(SystemTime::now());
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
            let buckets: std::collections::HashSet<PathBuf> = index
                .keys()
                .map(|key| bucket_path(&self.dir, key))
                .collect();
            (index.referenced_content(), buckets)
        };
        for file in files_under(&content_root(&self.dir)) {
            let hex = content_hex(&content_root(&self.dir), &file);
            if !hex.is_some_and(|hex| referenced.contains(&hex)) && old_enough(&file) {
                remove_file_if_present(&file)
                    .map_err(|error| io_error(error, "cannot remove", &file))?;
                report.orphaned_content += 1;
            }
        }
        for bucket in files_under(&index_root(&self.dir)) {
            if !live_buckets.contains(&bucket) && old_enough(&bucket) {
                remove_file_if_present(&bucket)
                    .map_err(|error| io_error(error, "cannot remove", &bucket))?;
                report.orphaned_buckets += 1;
            }
        }
        for temporary in files_under(&self.dir.join("tmp")) {
            if old_enough(&temporary) {
                remove_file_if_present(&temporary)
                    .map_err(|error| io_error(error, "cannot remove", &temporary))?;
                report.temporary_files += 1;
            }
        }
        Ok(report)
    }
}

/// Every file below `root` (none when it does not exist).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
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

impl std::fmt::Debug for CacacheCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacacheCache")
            .field("dir", &self.inner.dir)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheManager for CacacheCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_tags()
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
        let (inner, key) = (Arc::clone(&self.inner), key.to_owned());
        CacheFuture::blocking(NAME, move || inner.get_blocking(&key))
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
        let (inner, key) = (Arc::clone(&self.inner), key.to_owned());
        CacheFuture::blocking(NAME, move || {
            inner.put_blocking(&key, &response, &policy, &options)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let (inner, key) = (Arc::clone(&self.inner), key.to_owned());
        CacheFuture::blocking(NAME, move || {
            inner.remove_entry(&key, None)?;
            inner.counters.add_deletes(1);
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        let (inner, tag) = (Arc::clone(&self.inner), tag.to_owned());
        CacheFuture::blocking(NAME, move || {
            let mut removed = 0;
            let tagged = lock(&inner.index).keys_tagged(&tag);
            for key in tagged {
                // Only the version that still carries the tag.
                let integrity = lock(&inner.index)
                    .peek(&key)
                    .filter(|entry| entry.tags.contains(&tag))
                    .map(|entry| entry.integrity.clone());
                if let Some(integrity) = integrity {
                    removed += u64::from(inner.remove_entry(&key, Some(&integrity))?);
                }
            }
            inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let (inner, pattern) = (Arc::clone(&self.inner), pattern.clone());
        CacheFuture::blocking(NAME, move || {
            let prefix = pattern.literal_prefix();
            let matching: Vec<String> = lock(&inner.index)
                .keys()
                .filter(|key| key.starts_with(prefix.as_str()) && pattern.matches(key))
                .cloned()
                .collect();
            let mut removed = 0;
            for key in matching {
                removed += u64::from(inner.remove_entry(&key, None)?);
            }
            inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || {
            // Every key lock, in stripe order, so no put is between its write and its
            // index insert while the directories go.
            let _all_keys: Vec<MutexGuard<'_, ()>> = inner.key_locks.iter().map(lock).collect();
            let mut index = lock(&inner.index);
            let removed = index.take_all();
            inner.counters.add_deletes(removed.len() as u64);
            for root in [
                content_root(&inner.dir),
                index_root(&inner.dir),
                inner.dir.join("tmp"),
            ] {
                match std::fs::remove_dir_all(&root) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_error(error, "cannot remove", &root));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(lock(&self.inner.index).len() as u64))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(lock(&self.inner.index).total_bytes()))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}

/// Direct access to the stored bytes, for tests that corrupt or inspect them.
///
/// `read_raw` returns the content file of the key's current entry; `write_raw` replaces
/// that file's bytes in place, as disk corruption would.
#[derive(Debug, Clone)]
pub struct RawAccess {
    cache: CacacheCache,
}

impl CacacheCache {
    /// Raw access to the stored bytes (for corruption and credential tests).
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            cache: self.clone(),
        }
    }
}

impl RawAccess {
    /// The path of the content file of `key`'s current entry.
    pub fn content_file(&self, key: &str) -> Option<PathBuf> {
        let inner = &self.cache.inner;
        lock(&inner.index)
            .peek(key)
            .map(|entry| content_path(&inner.dir, &entry.integrity))
    }

    /// The path of `key`'s index bucket.
    pub fn bucket_file(&self, key: &str) -> PathBuf {
        bucket_path(&self.cache.inner.dir, key)
    }

    /// The stored bytes of `key`'s current entry.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.content_file(key) {
            Some(path) => std::fs::read(&path)
                .map(Some)
                .map_err(|error| io_error(error, "cannot read", &path)),
            None => Ok(None),
        }
    }

    /// Overwrites the stored bytes of `key`'s current entry.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.content_file(key).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, NAME, "no entry to overwrite").with_key(key)
        })?;
        std::fs::write(&path, bytes).map_err(|error| io_error(error, "cannot write", &path))
    }
}
