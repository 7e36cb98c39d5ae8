//! The store: opening and sweeping, commits, reads, and the [`CacheManager`] and
//! [`StreamingCacheManager`] implementations.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::{
    BackendStats, BoxBody, BoxError, CacheEntry, CacheFuture, CacheManager, CachePolicy,
    CachedResponse, Capabilities, Error, ErrorKind, KeyPattern, PutOptions, ResponseHead, Result,
    StatsCounters, StoredBody, StreamedEntry, StreamingCacheManager, TtlPolicy, body, codec,
    validate_key,
};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use tokio::sync::mpsc;

use crate::NAME;
use crate::config::{ReadVerification, StreamingConfig};
use crate::index::{ENTRY_OVERHEAD, Index, IndexEntry, Released};
use crate::layout::{
    BodyDigest, BodyFacts, Layout, StoredMetadata, decode_metadata, digest_from_hex,
    encode_metadata, fanned_out_files, remove_file_if_present, rename_into_place,
};
use crate::read::{FileBody, Verifier};
use crate::write::{BodyHasher, BodyWriter, TempFile, TempRegistry, io_error, lock};

/// Operations on one key are serialized by one of these locks, chosen by the key's hash.
const KEY_LOCK_STRIPES: usize = 64;
/// How many chunks a [`StreamingStore::tee`] body holds for a slow client before the
/// upstream body is read further.
const TEE_CHANNEL_CHUNKS: usize = 4;

/// A content-addressed store for large response bodies.
///
/// Every distinct body is stored once, in a file named by its SHA-256; each key has a
/// small metadata file (the response head, policy, times and tags, and the body's digest,
/// length and checksum). Bodies stream in through [`put_stream`] (or [`tee`], which hands
/// the bytes on as they are stored) and out through [`get_stream`], in bounded chunks.
/// Cloning is cheap and clones share the store.
///
/// [`put_stream`]: StreamingCacheManager::put_stream
/// [`get_stream`]: StreamingCacheManager::get_stream
/// [`tee`]: StreamingStore::tee
#[derive(Clone)]
pub struct StreamingStore {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    root: PathBuf,
    capacity_bytes: u64,
    ttl_policy: TtlPolicy,
    read_chunk_bytes: usize,
    write_batch_bytes: usize,
    durable_writes: bool,
    read_verification: ReadVerification,
    index: Mutex<Index>,
    key_locks: Vec<Mutex<()>>,
    temps: Arc<TempRegistry>,
    counters: StatsCounters,
    opened: Mutex<SweepReport>,
}

/// What a lookup under a key's lock found.
enum Lookup {
    Found(Box<StoredMetadata>, std::fs::File),
    Missing,
    /// Expired, and removed.
    Expired,
    /// The metadata file was unreadable, and was removed.
    Corrupt,
    /// The body file is missing or has the wrong length.
    CorruptBody(BodyDigest),
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Entries whose storage TTL had run out.
    pub expired: u64,
    /// Body files no entry references (left by a crash between a body's commit and its
    /// metadata's, or by an overwrite or delete interrupted before the body was removed).
    pub orphaned_bodies: u64,
    /// Metadata files that were unreadable or pointed at a missing body (at open only).
    pub broken_entries: u64,
    /// Temporary files of writes that no longer run.
    pub temporary_files: u64,
}

impl std::fmt::Debug for StreamingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingStore")
            .field("path", &self.inner.root)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl StreamingStore {
    /// Opens (or creates) the store in `config`'s directory: recounts every body's
    /// references from the metadata files, drops expired and broken entries, evicts down
    /// to the capacity, and removes orphaned bodies and temporary files.
    pub async fn open(config: StreamingConfig) -> Result<Self> {
        CacheFuture::blocking(NAME, move || Self::open_blocking(config)).await
    }

    fn open_blocking(config: StreamingConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        let layout = Layout::new(&config.path);
        layout
            .create_dirs()
            .map_err(|error| io_error(error, "cannot create the store in", &config.path))?;
        let store = Self {
            inner: Arc::new(Inner {
                layout,
                root: config.path,
                capacity_bytes: config.capacity_bytes,
                ttl_policy: config.ttl_policy,
                read_chunk_bytes: config.read_chunk_bytes,
                write_batch_bytes: config.write_batch_bytes,
                durable_writes: config.durable_writes,
                read_verification: config.read_verification,
                index: Mutex::new(Index::default()),
                key_locks: (0..KEY_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                temps: Arc::default(),
                counters: StatsCounters::default(),
                opened: Mutex::default(),
            }),
        };
        let broken_entries = store.inner.rebuild_index()?;
        let mut report = store.inner.sweep_blocking()?;
        report.broken_entries = broken_entries;
        *lock(&store.inner.opened) = report;
        Ok(store)
    }

    /// What opening the store removed: expired entries, broken metadata files, orphaned
    /// bodies and temporary files left by a crash.
    pub fn open_report(&self) -> SweepReport {
        *lock(&self.inner.opened)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Removes expired entries, body files no entry references and temporary files of
    /// writes that no longer run. Runs on the blocking pool.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || inner.sweep_blocking()).await
    }

    /// Runs [`sweep`](Self::sweep) every `period` (at least 10 ms: a shorter one is taken
    /// as 10 ms) until the returned handle is dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> SweeperHandle {
        // tokio's interval panics on a zero period, which would end the task silently.
        let period = period.max(Duration::from_millis(10));
        let store = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // A failed sweep is retried at the next tick; its errors are I/O errors
                // the next sweep meets again if they persist.
                let _ = store.sweep().await;
            }
        });
        SweeperHandle { task }
    }

    /// The number of distinct bodies stored (each stored once, however many keys use it).
    pub fn body_count(&self) -> usize {
        lock(&self.inner.index).body_count()
    }

    /// Stores `body` under `key` like [`put_stream`](StreamingCacheManager::put_stream)
    /// and hands its bytes on as they are stored: the returned body yields every chunk of
    /// `body` (and its error, or a length mismatch, as an error) once the chunk is on its
    /// way to disk, so a proxy serves its client while the response is cached.
    ///
    /// The returned [`PutHandle`] resolves when the entry is committed (or not). The copy
    /// runs in its own task: a client that goes away does not stop the entry from being
    /// stored, and a slow client slows the copy down (at most four chunks wait for it).
    /// A failure of the store (a full disk, an invalid key) does not reach the client:
    /// its body goes on, and the handle reports the error. Needs a tokio runtime.
    pub fn tee(
        &self,
        key: &str,
        head: ResponseHead,
        policy: CachePolicy,
        mut body: BoxBody,
        options: PutOptions,
    ) -> (BoxBody, PutHandle) {
        let (sender, receiver) = mpsc::channel(TEE_CHANNEL_CHUNKS);
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        let task = tokio::spawn(async move {
            let mut client = Some(sender);
            let stored = inner
                .put_streamed(&key, head, policy, &mut body, options, &mut client)
                .await;
            if stored.is_err() {
                // The store gave up; the client still gets the rest of its body.
                forward_rest(&mut body, &mut client).await;
            }
            stored
        });
        (body::from_receiver(receiver), PutHandle { task })
    }

    /// Raw access to the stored files (for corruption and credential tests).
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            store: self.clone(),
        }
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

/// The outcome of a [`StreamingStore::tee`]: resolves when the entry is committed, or
/// with the reason it was not. Dropping it does not cancel the copy.
#[derive(Debug)]
pub struct PutHandle {
    task: tokio::task::JoinHandle<Result<StoredBody>>,
}

impl Future for PutHandle {
    type Output = Result<StoredBody>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|error| {
                Err(Error::new(ErrorKind::Backend, NAME, "the tee task failed").with_source(error))
            })
        })
    }
}

/// Access to the files behind entries, for tests that corrupt or inspect them.
#[derive(Debug, Clone)]
pub struct RawAccess {
    store: StreamingStore,
}

impl RawAccess {
    /// The metadata file of `key` (whether or not it exists).
    pub fn metadata_file(&self, key: &str) -> PathBuf {
        self.store.inner.layout.entry_path(key)
    }

    /// The body file of `key`'s current entry.
    pub fn body_file(&self, key: &str) -> Option<PathBuf> {
        let inner = &self.store.inner;
        lock(&inner.index)
            .peek(key)
            .map(|entry| inner.layout.body_path(&entry.body.digest))
    }

    /// The bytes of `key`'s metadata file, or `None` when it has none.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.metadata_file(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error, "cannot read", &path)),
        }
    }

    /// Overwrites `key`'s metadata file with `bytes`.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.metadata_file(key);
        std::fs::write(&path, bytes).map_err(|error| io_error(error, "cannot write", &path))
    }
}

async fn forward_rest(
    body: &mut BoxBody,
    client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
) {
    while let Some(sender) = client.as_ref() {
        let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await else {
            return;
        };
        let message = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        if sender.send(Ok(message)).await.is_err() {
            return;
        }
    }
}

/// The body length the response declares, from every `Content-Length` value (a list of
/// equal values counts as one).
fn declared_length(headers: &HeaderMap) -> std::result::Result<Option<u64>, String> {
    let mut declared = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| "the Content-Length header is not text".to_owned())?;
        for part in text.split(',') {
            let length: u64 = part
                .trim()
                .parse()
                .map_err(|_| format!("the Content-Length {text:?} is not a number"))?;
            if declared.is_some_and(|earlier| earlier != length) {
                return Err("the response has conflicting Content-Length values".to_owned());
            }
            declared = Some(length);
        }
    }
    Ok(declared)
}

fn body_error(key: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Body, NAME, message).with_key(key)
}

/// Sends `message` to the tee's client, forgetting a client that went away.
async fn to_client(
    client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    message: Result<Bytes, BoxError>,
) {
    if let Some(sender) = client.as_ref() {
        if sender.send(message).await.is_err() {
            *client = None;
        }
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

impl Inner {
    fn key_lock(&self, key: &str) -> MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        lock(&self.key_locks[(hash % KEY_LOCK_STRIPES as u64) as usize])
    }

    /// Removes the files of bodies nobody references any more. Called with the index
    /// lock held (the guard is the proof), so no commit renames the same body into place
    /// meanwhile.
    fn remove_bodies(&self, _index: &mut MutexGuard<'_, Index>, released: Released) -> Result<()> {
        for digest in released.unreferenced_bodies {
            let path = self.layout.body_path(&digest);
            remove_file_if_present(&path)
                .map_err(|error| io_error(error, "cannot remove", &path))?;
        }
        Ok(())
    }

    /// Rebuilds the index from the metadata files; returns how many broken ones it
    /// removed.
    fn rebuild_index(&self) -> Result<u64> {
        let now = SystemTime::now();
        let entries_dir = self.layout.entries_dir();
        let files = fanned_out_files(entries_dir)
            .map_err(|error| io_error(error, "cannot list", entries_dir))?;
        let mut found: Vec<(SystemTime, String, IndexEntry)> = Vec::new();
        let mut broken = 0;
        for (path, _) in files {
            let Ok(bytes) = std::fs::read(&path) else {
                broken += 1;
                remove_file_if_present(&path)
                    .map_err(|error| io_error(error, "cannot remove", &path))?;
                continue;
            };
            let metadata_len = bytes.len() as u64;
            let usable = match decode_metadata(Bytes::from(bytes)) {
                Ok(stored) if self.layout.entry_path(&stored.head.key) == path => {
                    let body_len = std::fs::metadata(self.layout.body_path(&stored.body.digest))
                        .map(|file| file.len())
                        .ok();
                    if body_len != Some(stored.body.len) {
                        None
                    } else if stored.head.metadata.expires_at <= now {
                        self.counters.add_expirations(1);
                        remove_file_if_present(&path)
                            .map_err(|error| io_error(error, "cannot remove", &path))?;
                        continue;
                    } else {
                        Some(stored)
                    }
                }
                _ => None,
            };
            match usable {
                Some(stored) => {
                    let metadata = stored.head.metadata;
                    found.push((
                        metadata.stored_at,
                        stored.head.key,
                        IndexEntry::new(
                            stored.body,
                            metadata_len,
                            metadata.expires_at,
                            metadata.tags,
                        ),
                    ));
                }
                None => {
                    broken += 1;
                    self.counters.add_corrupt_entries(1);
                    remove_file_if_present(&path)
                        .map_err(|error| io_error(error, "cannot remove", &path))?;
                }
            }
        }
        // The oldest writes are the least recently used after a restart.
        found.sort_by_key(|(stored_at, _, _)| *stored_at);
        let evicted = {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            for (_, key, entry) in found {
                index.acquire_body(&entry.body);
                let _ = index.insert(key, entry, u64::MAX, &mut released);
            }
            let evicted = index.evict_to(self.capacity_bytes, None, &mut released);
            self.remove_bodies(&mut index, released)?;
            evicted
        };
        self.counters.add_evictions(evicted.len() as u64);
        for key in evicted {
            let path = self.layout.entry_path(&key);
            remove_file_if_present(&path)
                .map_err(|error| io_error(error, "cannot remove", &path))?;
        }
        Ok(broken)
    }

    fn sweep_blocking(&self) -> Result<SweepReport> {
        let now = SystemTime::now();
        let expired = lock(&self.index).expired_keys(now);
        let mut report = SweepReport {
            expired: self.remove_expired(expired, now)?,
            ..SweepReport::default()
        };
        self.counters.add_expirations(report.expired);

        let tmp = self.layout.tmp_dir();
        let temporaries =
            std::fs::read_dir(tmp).map_err(|error| io_error(error, "cannot list", tmp))?;
        for temporary in temporaries {
            let path = temporary
                .map_err(|error| io_error(error, "cannot list", tmp))?
                .path();
            if !self.temps.is_active(&path) {
                remove_file_if_present(&path)
                    .map_err(|error| io_error(error, "cannot remove", &path))?;
                report.temporary_files += 1;
            }
        }

        let bodies_dir = self.layout.bodies_dir();
        let bodies = fanned_out_files(bodies_dir)
            .map_err(|error| io_error(error, "cannot list", bodies_dir))?;
        for (path, name) in bodies {
            // Checked and removed under the index lock: a commit takes its reference and
            // renames its body into place under the same lock.
            let index = lock(&self.index);
            let referenced = digest_from_hex(&name).is_some_and(|digest| {
                index.is_body_referenced(&digest) && self.layout.body_path(&digest) == path
            });
            if !referenced {
                remove_file_if_present(&path)
                    .map_err(|error| io_error(error, "cannot remove", &path))?;
                report.orphaned_bodies += 1;
            }
            drop(index);
        }
        Ok(report)
    }

    /// Removes the entries of `keys` that are still expired at `now`, each checked under
    /// its key's lock: a key put again since it was listed (with the same body too, the
    /// common refresh of an unchanged resource) expires later and stays. Returns how many
    /// were removed.
    fn remove_expired(&self, keys: Vec<String>, now: SystemTime) -> Result<u64> {
        let mut removed = 0;
        for key in keys {
            if self.remove_entry_if(&key, |entry| entry.expires_at <= now)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `key`'s entry when `condition` holds for it (checked under the key's lock):
    /// the metadata file first, then the index entry and, with its last reference, the
    /// body. Returns whether an entry was removed.
    fn remove_entry_if(&self, key: &str, condition: impl Fn(&IndexEntry) -> bool) -> Result<bool> {
        let _key_guard = self.key_lock(key);
        if !lock(&self.index).peek(key).is_some_and(&condition) {
            return Ok(false);
        }
        self.remove_locked(key)
    }

    /// Removes `key`'s metadata file (whether or not the index knows it) and its index
    /// entry. The caller holds the key's lock.
    fn remove_locked(&self, key: &str) -> Result<bool> {
        let path = self.layout.entry_path(key);
        remove_file_if_present(&path).map_err(|error| io_error(error, "cannot remove", &path))?;
        let mut index = lock(&self.index);
        let mut released = Released::default();
        let removed = index.remove(key, &mut released).is_some();
        self.remove_bodies(&mut index, released)?;
        Ok(removed)
    }

    fn delete_blocking(&self, key: &str) -> Result<()> {
        let _key_guard = self.key_lock(key);
        // Every call counts, found or not, as `BackendStats::deletes` says and every other
        // backend counts.
        self.remove_locked(key)?;
        self.counters.add_deletes(1);
        Ok(())
    }

    /// Removes every entry that uses a body found corrupt, and so the body.
    fn remove_corrupt_body(&self, digest: &BodyDigest) {
        let keys = lock(&self.index).keys_using(digest);
        for key in keys {
            // A removal that fails leaves an entry whose next read fails the same way
            // and tries again.
            if let Ok(true) = self.remove_entry_if(&key, |entry| entry.body.digest == *digest) {
                self.counters.add_corrupt_entries(1);
            }
        }
    }

    /// Commits a body that is complete in its temporary file: the body (unless the same
    /// body is stored already), then the metadata, then the index.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one commit, passed once"
    )]
    fn commit_blocking(
        &self,
        key: &str,
        head: &ResponseHead,
        policy: &CachePolicy,
        options: &PutOptions,
        body_temp: TempFile,
        body_file: std::fs::File,
        facts: BodyFacts,
    ) -> Result<StoredBody> {
        let metadata =
            self.ttl_policy
                .entry_metadata(policy, &head.headers, options, SystemTime::now());
        if metadata.storage_ttl().is_zero() {
            drop(body_temp);
            self.delete_blocking(key)?;
            return Ok(StoredBody::new(facts.len));
        }
        let envelope = codec::encode_head(key, head, policy, &metadata, facts.len)?;
        let metadata_bytes = encode_metadata(&facts, &envelope);
        let needed = facts.len + metadata_bytes.len() as u64 + ENTRY_OVERHEAD;
        if needed > self.capacity_bytes {
            return Err(self.too_large(key, needed));
        }
        if self.durable_writes {
            body_file
                .sync_all()
                .map_err(|error| io_error(error, "cannot sync", body_temp.path()))?;
        }
        drop(body_file);
        let (metadata_temp, mut metadata_file) = TempFile::create(&self.layout, &self.temps)?;
        metadata_file
            .write_all(&metadata_bytes)
            .map_err(|error| io_error(error, "cannot write", metadata_temp.path()))?;
        if self.durable_writes {
            metadata_file
                .sync_all()
                .map_err(|error| io_error(error, "cannot sync", metadata_temp.path()))?;
        }
        drop(metadata_file);

        let body_path = self.layout.body_path(&facts.digest);
        let entry_path = self.layout.entry_path(key);
        let key_guard = self.key_lock(key);
        {
            let mut index = lock(&self.index);
            if index.acquire_body(&facts) {
                // Stored already: this copy goes.
                body_temp.remove_now();
            } else if let Err(error) = rename_into_place(body_temp.path(), &body_path) {
                let mut released = Released::default();
                index.release_body(&facts.digest, &mut released);
                return Err(io_error(error, "cannot commit the body to", &body_path).with_key(key));
            } else {
                body_temp.renamed();
            }
        }
        if let Err(error) = rename_into_place(metadata_temp.path(), &entry_path) {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            index.release_body(&facts.digest, &mut released);
            self.remove_bodies(&mut index, released)?;
            return Err(io_error(error, "cannot commit the entry to", &entry_path).with_key(key));
        }
        metadata_temp.renamed();
        if self.durable_writes {
            sync_dir(&body_path)
                .and_then(|()| sync_dir(&entry_path))
                .map_err(|error| io_error(error, "cannot sync the directory of", &entry_path))?;
        }
        let evicted = {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            let entry = IndexEntry::new(
                facts,
                metadata_bytes.len() as u64,
                metadata.expires_at,
                metadata.tags,
            );
            let evicted = index.insert(key.to_owned(), entry, self.capacity_bytes, &mut released);
            self.remove_bodies(&mut index, released)?;
            evicted
        };
        drop(key_guard);
        self.counters.add_puts(1);
        self.counters.add_evictions(evicted.len() as u64);
        for victim in evicted {
            let _victim_guard = self.key_lock(&victim);
            // The victim left the index already; if it was written again meanwhile, its
            // new metadata file stays.
            if lock(&self.index).peek(&victim).is_none() {
                let path = self.layout.entry_path(&victim);
                remove_file_if_present(&path)
                    .map_err(|error| io_error(error, "cannot remove", &path))?;
            }
        }
        Ok(StoredBody::new(facts.len))
    }

    fn too_large(&self, key: &str, needed: u64) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            NAME,
            format!(
                "the entry takes {needed} bytes, more than the whole capacity of {}",
                self.capacity_bytes
            ),
        )
        .with_key(key)
    }

    /// Finds `key`'s live entry and opens its body file. Counts a miss when there is
    /// none (and the expiry or corruption that made it one); the caller counts the hit.
    fn open_entry(&self, key: &str) -> Result<Option<(StoredMetadata, std::fs::File)>> {
        let outcome = {
            // Under the key's lock the index and the metadata file agree: a commit renames
            // the metadata and updates the index under the same lock.
            let _key_guard = self.key_lock(key);
            self.open_locked(key)?
        };
        match outcome {
            Lookup::Found(stored, file) => return Ok(Some((*stored, file))),
            Lookup::Missing => {}
            Lookup::Expired => self.counters.add_expirations(1),
            Lookup::Corrupt => self.counters.add_corrupt_entries(1),
            Lookup::CorruptBody(digest) => self.remove_corrupt_body(&digest),
        }
        self.counters.add_misses(1);
        Ok(None)
    }

    fn open_locked(&self, key: &str) -> Result<Lookup> {
        let now = SystemTime::now();
        let found = lock(&self.index)
            .touch(key)
            .map(|entry| (entry.body.digest, entry.expires_at));
        let Some((digest, expires_at)) = found else {
            return Ok(Lookup::Missing);
        };
        if expires_at <= now {
            self.remove_locked(key)?;
            return Ok(Lookup::Expired);
        }
        let entry_path = self.layout.entry_path(key);
        let bytes = match std::fs::read(&entry_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Removed behind the store's back: the index must not keep counting it.
                self.remove_locked(key)?;
                return Ok(Lookup::Missing);
            }
            Err(error) => return Err(io_error(error, "cannot read", &entry_path).with_key(key)),
        };
        let stored = match decode_metadata(Bytes::from(bytes)) {
            Ok(stored) if stored.head.key == key && stored.body.digest == digest => stored,
            _ => {
                self.remove_locked(key)?;
                return Ok(Lookup::Corrupt);
            }
        };
        let body_path = self.layout.body_path(&digest);
        // Opened under the index lock: the body cannot be removed before it is open, and
        // an open file stays readable after its removal.
        let opened = {
            let _index = lock(&self.index);
            std::fs::File::open(&body_path)
        };
        let file = match opened {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lookup::CorruptBody(digest));
            }
            Err(error) => return Err(io_error(error, "cannot open", &body_path).with_key(key)),
        };
        let file_len = file
            .metadata()
            .map_err(|error| io_error(error, "cannot inspect", &body_path).with_key(key))?
            .len();
        if file_len != stored.body.len {
            return Ok(Lookup::CorruptBody(digest));
        }
        Ok(Lookup::Found(Box::new(stored), file))
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        let Some((stored, mut file)) = self.open_entry(key)? else {
            return Ok(None);
        };
        let mut body = Vec::with_capacity(usize::try_from(stored.body.len).unwrap_or(0));
        let body_path = self.layout.body_path(&stored.body.digest);
        (&mut file)
            .take(stored.body.len)
            .read_to_end(&mut body)
            .map_err(|error| io_error(error, "cannot read", &body_path).with_key(key))?;
        let mut verifier = Verifier::new(self.read_verification);
        verifier.update(&body);
        if body.len() as u64 != stored.body.len || !verifier.matches(&stored.body) {
            self.counters.add_misses(1);
            self.remove_corrupt_body(&stored.body.digest);
            return Ok(None);
        }
        self.counters.add_hits(1);
        let head = stored.head;
        Ok(Some(Arc::new(CacheEntry::new(
            CachedResponse::from_head_and_body(head.head, Bytes::from(body)),
            head.policy,
            head.metadata,
        ))))
    }

    fn put_blocking(
        &self,
        key: &str,
        response: CachedResponse,
        policy: &CachePolicy,
        options: &PutOptions,
    ) -> Result<()> {
        let probe =
            self.ttl_policy
                .entry_metadata(policy, &response.headers, options, SystemTime::now());
        if probe.storage_ttl().is_zero() {
            return self.delete_blocking(key);
        }
        let (head, body) = response.into_head_and_body();
        let needed = body.len() as u64 + ENTRY_OVERHEAD;
        if needed > self.capacity_bytes {
            return Err(self.too_large(key, needed));
        }
        let (temp, mut file) = TempFile::create(&self.layout, &self.temps)?;
        file.write_all(&body)
            .map_err(|error| io_error(error, "cannot write", temp.path()).with_key(key))?;
        let mut hasher = BodyHasher::new();
        hasher.update(&body);
        self.commit_blocking(key, &head, policy, options, temp, file, hasher.finish())
            .map(drop)
    }

    /// Streams `body` into a temporary file and commits it. With a `client`, every chunk
    /// (and the body's end or failure) is handed on to it as well.
    async fn put_streamed(
        self: &Arc<Self>,
        key: &str,
        head: ResponseHead,
        policy: CachePolicy,
        body: &mut BoxBody,
        options: PutOptions,
        client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    ) -> Result<StoredBody> {
        validate_key(NAME, key)?;
        let declared =
            declared_length(&head.headers).map_err(|message| body_error(key, message))?;
        let probe =
            self.ttl_policy
                .entry_metadata(&policy, &head.headers, &options, SystemTime::now());
        if probe.storage_ttl().is_zero() {
            let inner = Arc::clone(self);
            let owned_key = key.to_owned();
            CacheFuture::blocking(NAME, move || inner.delete_blocking(&owned_key)).await?;
            if client.is_some() {
                forward_rest(body, client).await;
            }
            return Ok(StoredBody::new(0));
        }
        if let Some(declared) = declared {
            let needed = declared.saturating_add(ENTRY_OVERHEAD);
            if needed > self.capacity_bytes {
                return Err(self.too_large(key, needed));
            }
        }
        let (layout, temps) = (self.layout.clone(), Arc::clone(&self.temps));
        let (temp, file) =
            CacheFuture::blocking(NAME, move || TempFile::create(&layout, &temps)).await?;
        let mut writer = BodyWriter::new(file, temp.path(), self.write_batch_bytes);
        let mut received: u64 = 0;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers are not stored.
                    Err(_) => continue,
                },
                Err(error) => {
                    let stored_error = if client.is_some() {
                        let described = error.to_string();
                        to_client(client, Err(error)).await;
                        *client = None;
                        body_error(key, "the body failed").with_source(described)
                    } else {
                        body_error(key, "the body failed").with_source(error)
                    };
                    return Err(stored_error);
                }
            };
            received += data.len() as u64;
            if declared.is_some_and(|declared| received > declared) {
                let message = format!(
                    "the body is longer than its Content-Length of {} bytes",
                    declared.unwrap_or_default()
                );
                to_client(client, Err(Box::new(body_error(key, message.clone())))).await;
                *client = None;
                return Err(body_error(key, message));
            }
            // The client gets the chunk first, so a failure of the store below never
            // leaves a gap in what the client receives (the rest is forwarded by the tee).
            if client.is_some() {
                to_client(client, Ok(data.clone())).await;
            }
            if received.saturating_add(ENTRY_OVERHEAD) > self.capacity_bytes {
                return Err(self.too_large(key, received.saturating_add(ENTRY_OVERHEAD)));
            }
            writer
                .push(data)
                .await
                .map_err(|error| error.with_key(key))?;
        }
        if let Some(declared) = declared {
            if received != declared {
                let message = format!(
                    "the body ended after {received} bytes; its Content-Length is {declared}"
                );
                to_client(client, Err(Box::new(body_error(key, message.clone())))).await;
                *client = None;
                return Err(body_error(key, message));
            }
        }
        let (file, facts) = writer.finish().await.map_err(|error| error.with_key(key))?;
        let inner = Arc::clone(self);
        let key = key.to_owned();
        CacheFuture::blocking(NAME, move || {
            inner.commit_blocking(&key, &head, &policy, &options, temp, file, facts)
        })
        .await
    }

    fn get_stream_blocking(self: &Arc<Self>, key: &str) -> Result<Option<StreamedEntry>> {
        let Some((stored, file)) = self.open_entry(key)? else {
            return Ok(None);
        };
        self.counters.add_hits(1);
        let inner = Arc::clone(self);
        let digest = stored.body.digest;
        let on_corrupt = Arc::new(move || inner.remove_corrupt_body(&digest));
        let body = FileBody::new(
            file,
            stored.body,
            self.read_verification,
            self.read_chunk_bytes,
            on_corrupt,
        );
        let head = stored.head;
        Ok(Some(StreamedEntry::new(
            head.head,
            head.policy,
            head.metadata,
            stored.body.len,
            Box::pin(body),
        )))
    }

    fn delete_where(&self, condition: impl Fn(&str, &IndexEntry) -> bool) -> Result<u64> {
        let keys: Vec<String> = {
            let index = lock(&self.index);
            index
                .keys()
                .filter(|key| index.peek(key).is_some_and(|entry| condition(key, entry)))
                .cloned()
                .collect()
        };
        let mut removed = 0;
        for key in keys {
            if self.remove_entry_if(&key, |entry| condition(&key, entry))? {
                removed += 1;
            }
        }
        self.counters.add_deletes(removed);
        Ok(removed)
    }
}

impl CacheManager for StreamingStore {
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
            .with_streaming()
            .with_stores_bytes()
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
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
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        CacheFuture::blocking(NAME, move || {
            inner.put_blocking(&key, response, &policy, &options)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        CacheFuture::blocking(NAME, move || inner.delete_blocking(&key))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        let inner = Arc::clone(&self.inner);
        let tag = tag.to_owned();
        CacheFuture::blocking(NAME, move || {
            let keys = lock(&inner.index).keys_tagged(&tag);
            let mut removed = 0;
            for key in keys {
                // Only while the entry still carries the tag: an overwrite without it
                // survives.
                if inner.remove_entry_if(&key, |entry| entry.tags.contains(&tag))? {
                    removed += 1;
                }
            }
            inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let inner = Arc::clone(&self.inner);
        let pattern = pattern.clone();
        CacheFuture::blocking(NAME, move || {
            inner.delete_where(|key, _| pattern.matches(key))
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        let inner = Arc::clone(&self.inner);
        CacheFuture::blocking(NAME, move || inner.delete_where(|_, _| true).map(drop))
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        let now = SystemTime::now();
        let index = lock(&self.inner.index);
        let live = index
            .keys()
            .filter(|key| index.peek(key).is_some_and(|entry| entry.expires_at > now))
            .count();
        CacheFuture::ready(Ok(live as u64))
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Ok(lock(&self.inner.index).total_bytes()))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}

impl StreamingCacheManager for StreamingStore {
    fn put_stream<'a>(
        &'a self,
        key: &'a str,
        head: ResponseHead,
        policy: CachePolicy,
        mut body: BoxBody,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<StoredBody>> {
        CacheFuture::new(async move {
            self.inner
                .put_streamed(key, head, policy, &mut body, options, &mut None)
                .await
        })
    }

    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        CacheFuture::blocking(NAME, move || inner.get_stream_blocking(&key))
    }
}

#[cfg(test)]
mod tests {
    use cache_core::testkit::fixtures::{policy, response};

    use super::*;

    /// The sweep lists the expired keys, then removes them one by one: a key put again in
    /// between, even with the same body, must stay.
    #[tokio::test]
    async fn a_key_put_again_after_the_sweep_listed_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = StreamingStore::open(StreamingConfig::new(dir.path()))
            .await
            .unwrap();
        let stored = response("https://example.com/refreshed", "unchanged body");
        let short = PutOptions::new().with_ttl(Duration::from_millis(20));
        store
            .put("k", stored.clone(), policy(&stored), short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = SystemTime::now();
        let listed = lock(&store.inner.index).expired_keys(now);
        assert_eq!(listed, ["k"]);
        // Refreshed with the same body before the sweep gets to it.
        let hour = PutOptions::new().with_ttl(Duration::from_secs(3600));
        store
            .put("k", stored.clone(), policy(&stored), hour)
            .await
            .unwrap();
        assert_eq!(store.inner.remove_expired(listed, now).unwrap(), 0);
        assert!(store.get("k").await.unwrap().is_some());
    }
}
