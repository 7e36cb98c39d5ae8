//! The [`CacheManager`] and [`StreamingCacheManager`] implementations: validate, call the
//! core, count.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{
    BackendStats, BoxBody, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse,
    Capabilities, KeyPattern, PutOptions, ResponseHead, Result, StoredBody, StreamedEntry,
    StreamingCacheManager,
};
use cache_kit::{SweeperHandle, blocking, lock};
use tokio::sync::mpsc;

use crate::NAME;
use crate::config::StreamingConfig;
use crate::core::{Inner, SweepReport};
use crate::put::{PutHandle, TEE_CHANNEL_CHUNKS, forward_rest};

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
/// [`tee`]: StreamingCache::tee
#[derive(Clone)]
pub struct StreamingCache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingCache")
            .field("path", &self.inner.root)
            .field("capacity_bytes", &self.inner.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl StreamingCache {
    /// Opens (or creates) the store in `config`'s directory: recounts every body's
    /// references from the metadata files, drops expired and broken entries, evicts down
    /// to the capacity, and removes orphaned bodies and temporary files.
    pub async fn open(config: StreamingConfig) -> Result<Self> {
        let inner = CacheFuture::blocking(NAME, move || Inner::open(config)).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
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
        blocking::run(NAME, &self.inner, Inner::sweep).await
    }

    /// Runs [`sweep`](Self::sweep) every `period` (at least 10 ms: a shorter one is taken
    /// as 10 ms) until the returned handle is dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> SweeperHandle {
        let store = self.clone();
        SweeperHandle::spawn(period, move || {
            let store = store.clone();
            // A failed sweep is retried at the next tick; its errors are I/O errors the
            // next sweep meets again if they persist.
            async move { store.sweep().await }
        })
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
        (
            cache_core::body::from_receiver(receiver),
            PutHandle { task },
        )
    }
}

impl CacheManager for StreamingCache {
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
            // A body (with its metadata) larger than the whole capacity is refused.
            .with_max_entry_bytes(self.inner.capacity_bytes)
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        blocking::keyed(NAME, &self.inner, key, Inner::get)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        blocking::keyed(NAME, &self.inner, key, move |inner, key| {
            inner.put(key, response, &policy, &options)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        blocking::keyed(NAME, &self.inner, key, Inner::delete)
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        let tag = tag.to_owned();
        blocking::run(NAME, &self.inner, move |inner| inner.delete_tag(&tag))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let pattern = pattern.clone();
        blocking::run(NAME, &self.inner, move |inner| {
            inner.delete_where(|key, _| pattern.matches(key))
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        blocking::run(NAME, &self.inner, |inner| {
            inner.delete_where(|_, _| true).map(drop)
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        let now = SystemTime::now();
        let live = lock(&self.inner.index)
            .iter()
            .filter(|(_, entry)| entry.expires_at > now)
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

impl StreamingCacheManager for StreamingCache {
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
        let inner = Arc::clone(&self.inner);
        blocking::keyed(NAME, &self.inner, key, move |_, key| inner.get_stream(key))
    }
}
