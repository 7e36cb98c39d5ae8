//! [`Suite`]: what the conformance cases run against, and [`RawStorage`], the access to
//! the stored bytes that the corruption and credential cases need.

use std::any::Any;
use std::sync::Arc;

use crate::error::Result;
use crate::future::CacheFuture;
use crate::manager::{CacheManager, StreamingCacheManager};

/// Access to the bytes a backend stored, for the cases that corrupt them or grep them.
pub trait RawStorage: Send + Sync {
    /// The bytes stored for `key`, exactly as the backend wrote them, or `None`.
    fn read_raw<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Vec<u8>>>>;

    /// Replaces the bytes stored for `key` with `bytes`, bypassing the codec.
    fn write_raw<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> CacheFuture<'a, Result<()>>;
}

/// [`RawStorage`] from two synchronous functions, for backends whose raw access is
/// synchronous.
pub struct RawStorageFns<R, W> {
    read: R,
    write: W,
}

impl<R, W> RawStorageFns<R, W>
where
    R: Fn(&str) -> Result<Option<Vec<u8>>> + Send + Sync,
    W: Fn(&str, &[u8]) -> Result<()> + Send + Sync,
{
    /// Raw storage that reads with `read` and writes with `write`.
    pub fn new(read: R, write: W) -> Self {
        Self { read, write }
    }
}

impl<R, W> RawStorage for RawStorageFns<R, W>
where
    R: Fn(&str) -> Result<Option<Vec<u8>>> + Send + Sync,
    W: Fn(&str, &[u8]) -> Result<()> + Send + Sync,
{
    fn read_raw<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Vec<u8>>>> {
        CacheFuture::ready((self.read)(key))
    }

    fn write_raw<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready((self.write)(key, &bytes))
    }
}

/// What the cases run against: the manager, its streaming side, raw access to its stored
/// bytes, and whatever must live as long as they do (a temporary directory, a server).
///
/// [`Conformance`](super::Conformance) builds one per trial through its factory, so that
/// no case sees another's entries (the `clear` case clears its own backend only).
#[derive(Clone)]
pub struct Suite {
    pub(crate) manager: Arc<dyn CacheManager>,
    pub(crate) streaming: Option<Arc<dyn StreamingCacheManager>>,
    pub(crate) raw: Option<Arc<dyn RawStorage>>,
    kept_alive: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Suite {
    /// A suite over `manager`.
    pub fn new(manager: Arc<dyn CacheManager>) -> Self {
        Self {
            manager,
            streaming: None,
            raw: None,
            kept_alive: Vec::new(),
        }
    }

    /// Adds the streaming cases, run against `streaming` (the same store as `manager`).
    #[must_use]
    pub fn with_streaming(mut self, streaming: Arc<dyn StreamingCacheManager>) -> Self {
        self.streaming = Some(streaming);
        self
    }

    /// Adds the cases that need the stored bytes (corruption, credentials at rest).
    #[must_use]
    pub fn with_raw_storage(mut self, raw: Arc<dyn RawStorage>) -> Self {
        self.raw = Some(raw);
        self
    }

    /// Keeps `value` alive as long as the suite (and its clones): the temporary
    /// directory of a disk backend, a server started for the suite. A trial drops it
    /// after its runtime has shut down, so the backend's background tasks have stopped
    /// by then.
    #[must_use]
    pub fn keep_alive(mut self, value: impl Any + Send + Sync) -> Self {
        self.kept_alive.push(Arc::new(value));
        self
    }

    /// The manager under test.
    pub fn manager(&self) -> &Arc<dyn CacheManager> {
        &self.manager
    }
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("manager", &self.manager.name())
            .field("streaming", &self.streaming.is_some())
            .field("raw", &self.raw.is_some())
            .field("kept_alive", &self.kept_alive.len())
            .finish()
    }
}
