//! The conformance suite every backend runs from its own tests (feature `testkit`).
//!
//! Each case is a public async function that panics with a precise message when the
//! backend breaks the [`CacheManager`] contract. [`run_all`] runs every case the backend's
//! [`Capabilities`](crate::Capabilities) allow and returns a [`Report`] naming what ran and what was skipped,
//! so a backend's test can assert the exact set.
//!
//! ```no_run
//! # async fn example(manager: std::sync::Arc<dyn cache_core::CacheManager>) {
//! use cache_core::testkit::{Suite, run_all};
//!
//! let report = run_all(&Suite::new(manager)).await;
//! assert_eq!(report.skipped_names(), ["corrupt_entries_become_misses", "no_credentials_at_rest"]);
//! # }
//! ```
//!
//! Every case uses its own random key prefix, so suites can share one server. The suite
//! needs a manager of its own (the `clear` case clears it) with room for a few dozen
//! MiB.

mod cases;
pub mod chaos;
pub mod crash;
pub mod fixtures;

use std::sync::Arc;

pub use cases::*;

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

/// What the suite runs against: the manager, its streaming side and raw access.
#[derive(Clone)]
pub struct Suite {
    pub(crate) manager: Arc<dyn CacheManager>,
    pub(crate) streaming: Option<Arc<dyn StreamingCacheManager>>,
    pub(crate) raw: Option<Arc<dyn RawStorage>>,
}

impl Suite {
    /// A suite over `manager`.
    pub fn new(manager: Arc<dyn CacheManager>) -> Self {
        Self {
            manager,
            streaming: None,
            raw: None,
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
            .finish()
    }
}

/// What [`run_all`] ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The cases that ran and passed, in order.
    pub passed: Vec<&'static str>,
    /// The cases not run, with the reason.
    pub skipped: Vec<(&'static str, &'static str)>,
}

impl Report {
    /// The names of the skipped cases, in order.
    pub fn skipped_names(&self) -> Vec<&'static str> {
        self.skipped.iter().map(|(name, _)| *name).collect()
    }
}

/// Runs every case `suite`'s capabilities allow, in a fixed order, and reports.
/// Panics at the first case that fails.
pub async fn run_all(suite: &Suite) -> Report {
    let capabilities = suite.manager.capabilities();
    let mut report = Report::default();
    macro_rules! case {
        ($name:ident) => {{
            $name(suite).await;
            report.passed.push(stringify!($name));
        }};
        ($name:ident if $condition:expr, else $reason:expr) => {{
            if $condition {
                $name(suite).await;
                report.passed.push(stringify!($name));
            } else {
                report.skipped.push((stringify!($name), $reason));
            }
        }};
    }
    let raw = suite.raw.is_some();
    let streaming = capabilities.streaming && suite.streaming.is_some();

    case!(round_trip);
    case!(round_trip_empty_body);
    case!(round_trip_binary_body);
    case!(round_trip_large_body);
    case!(miss);
    case!(overwrite);
    case!(delete);
    case!(zero_ttl_stores_nothing);
    case!(responses_not_to_store_are_not_stored);
    case!(concurrent_distinct_keys);
    case!(concurrent_same_key);
    case!(hostile_keys);
    case!(key_too_long);
    case!(unsupported_operations_say_so);
    case!(tags if capabilities.tags, else "no tag support");
    case!(delete_pattern if capabilities.delete_pattern, else "no pattern deletion");
    case!(entry_count if capabilities.entry_count, else "no entry count");
    case!(size_bytes if capabilities.size_bytes, else "no size");
    case!(health if capabilities.health, else "no health check");
    case!(stats if capabilities.stats, else "no statistics");
    case!(corrupt_entries_become_misses if raw, else "no raw storage access (entries are not stored as bytes)");
    case!(no_credentials_at_rest if raw, else "no raw storage access (entries are not stored as bytes)");
    case!(stream_round_trip if streaming, else "not a streaming backend");
    case!(stream_body_error_leaves_no_entry if streaming, else "not a streaming backend");
    case!(stream_length_mismatch_leaves_no_entry if streaming, else "not a streaming backend");
    case!(stream_dropped_put_leaves_no_entry if streaming, else "not a streaming backend");
    case!(clear if capabilities.clear, else "no clear");
    case!(expiry);
    report
}
