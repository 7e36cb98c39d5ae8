//! The storage contract: [`CacheManager`] and [`StreamingCacheManager`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_cache_semantics::CachePolicy;

use crate::entry::{CacheEntry, CachedResponse, EntryMetadata, ResponseHead};
use crate::error::{BoxError, Error, Result};
use crate::future::CacheFuture;
use crate::key::KeyPattern;
use crate::ttl::PutOptions;

/// What a backend supports beyond the three required operations, and its limits.
///
/// The conformance suite selects its cases from this value, and every operation a backend
/// does not declare MUST return [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)
/// (the trait's defaults do). Limits ([`max_entry_bytes`](Self::max_entry_bytes),
/// [`shared`](Self::shared)) are declared here rather than repeated where the backend is
/// used: the tiered stack reads them.
///
/// ```
/// use cache_core::Capabilities;
///
/// let capabilities = Capabilities::none().with_tags().with_clear();
/// assert!(capabilities.tags && capabilities.clear && !capabilities.streaming);
///
/// // A shared tier that refuses entries over 64 MiB.
/// let redis_like = Capabilities::none().with_max_entry_bytes(64 << 20).with_shared();
/// assert_eq!((redis_like.max_entry_bytes, redis_like.shared), (Some(64 << 20), true));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`CacheManager::delete_tag`] removes exactly the entries stored with a tag.
    pub tags: bool,
    /// [`CacheManager::delete_pattern`] removes exactly the keys matching a glob.
    pub delete_pattern: bool,
    /// [`CacheManager::clear`] removes every entry of this cache.
    pub clear: bool,
    /// [`CacheManager::entry_count`] reports the exact number of live entries.
    pub entry_count: bool,
    /// [`CacheManager::size_bytes`] reports the bytes the entries occupy.
    pub size_bytes: bool,
    /// [`CacheManager::health`] checks that the backend answers.
    pub health: bool,
    /// [`CacheManager::stats`] reports hit, miss and put counts.
    pub stats: bool,
    /// The manager also implements [`StreamingCacheManager`]. The conformance suite then
    /// needs the streaming side ([`Suite::with_streaming`](crate::testkit::Suite::with_streaming))
    /// and fails the streaming cases without it.
    pub streaming: bool,
    /// The backend writes entries as bytes (disk, network) and so must keep credentials out
    /// of them and turn corrupt bytes into misses. The conformance suite then needs raw
    /// access to those bytes ([`Suite::with_raw_storage`](crate::testkit::Suite::with_raw_storage))
    /// and fails its corruption and credential cases without it.
    pub stores_bytes: bool,
    /// The largest entry the backend stores, in bytes as the backend counts them against
    /// the limit: its encoded entry for one that writes bytes, the
    /// [`CacheEntry::approximate_size`] estimate for one that keeps decoded entries. Every
    /// entry counts at least its body, so a put whose body alone is longer MUST fail with
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) and leave no entry under its key
    /// (see [`CacheManager::put`]). `None`: the backend declares no limit of its own.
    ///
    /// The tiered stack reads it: a tier is skipped (and drops the key) for an entry whose
    /// `approximate_size` is over its backend's limit, without the user repeating the
    /// limit on the tier. The conformance case `refused_put_leaves_no_entry` puts a body
    /// one byte over it (and is skipped without a declared limit).
    pub max_entry_bytes: Option<u64>,
    /// The backend is a tier that other instances use too (Redis): what one instance
    /// writes or removes there, every instance sees. The tiered stack does not apply the
    /// invalidations it hears from other instances to such a tier (the instance that
    /// published them already did).
    pub shared: bool,
}

impl Capabilities {
    /// No optional capability.
    pub const fn none() -> Self {
        Self {
            tags: false,
            delete_pattern: false,
            clear: false,
            entry_count: false,
            size_bytes: false,
            health: false,
            stats: false,
            streaming: false,
            stores_bytes: false,
            max_entry_bytes: None,
            shared: false,
        }
    }

    /// Declares tag deletion.
    #[must_use]
    pub const fn with_tags(mut self) -> Self {
        self.tags = true;
        self
    }

    /// Declares pattern deletion.
    #[must_use]
    pub const fn with_delete_pattern(mut self) -> Self {
        self.delete_pattern = true;
        self
    }

    /// Declares `clear`.
    #[must_use]
    pub const fn with_clear(mut self) -> Self {
        self.clear = true;
        self
    }

    /// Declares `entry_count`.
    #[must_use]
    pub const fn with_entry_count(mut self) -> Self {
        self.entry_count = true;
        self
    }

    /// Declares `size_bytes`.
    #[must_use]
    pub const fn with_size_bytes(mut self) -> Self {
        self.size_bytes = true;
        self
    }

    /// Declares `health`.
    #[must_use]
    pub const fn with_health(mut self) -> Self {
        self.health = true;
        self
    }

    /// Declares `stats`.
    #[must_use]
    pub const fn with_stats(mut self) -> Self {
        self.stats = true;
        self
    }

    /// Declares streaming.
    #[must_use]
    pub const fn with_streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    /// Declares that entries are written as bytes.
    #[must_use]
    pub const fn with_stores_bytes(mut self) -> Self {
        self.stores_bytes = true;
        self
    }

    /// Declares the largest entry the backend stores, in bytes as it counts them (see
    /// [`max_entry_bytes`](Self::max_entry_bytes)). Default: no limit.
    #[must_use]
    pub const fn with_max_entry_bytes(mut self, max_entry_bytes: u64) -> Self {
        self.max_entry_bytes = Some(max_entry_bytes);
        self
    }

    /// Declares that other instances use this backend too (see [`shared`](Self::shared)).
    /// Default: not shared.
    #[must_use]
    pub const fn with_shared(mut self) -> Self {
        self.shared = true;
        self
    }
}

/// The answer of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// How long the check took (for Redis, the `PING` round trip).
    pub latency: Duration,
}

impl Health {
    /// A healthy answer that took `latency`.
    pub fn new(latency: Duration) -> Self {
        Self { latency }
    }
}

/// Counters a backend keeps since it was created. Exact: every operation counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// `get` calls that returned an entry.
    pub hits: u64,
    /// `get` calls that returned nothing (including expired and corrupt entries).
    pub misses: u64,
    /// `put` calls that stored an entry.
    pub puts: u64,
    /// `delete` calls, plus entries removed by tag, pattern or `clear`.
    pub deletes: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Entries dropped because their storage TTL ran out.
    pub expirations: u64,
    /// Stored entries that could not be decoded and were removed.
    pub corrupt_entries: u64,
}

/// Exact, lock-free counters for a backend's [`BackendStats`]: every backend counts the
/// same way.
#[derive(Debug, Default)]
pub struct StatsCounters {
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    puts: std::sync::atomic::AtomicU64,
    deletes: std::sync::atomic::AtomicU64,
    evictions: std::sync::atomic::AtomicU64,
    expirations: std::sync::atomic::AtomicU64,
    corrupt_entries: std::sync::atomic::AtomicU64,
}

macro_rules! stats_counter {
    ($($(#[$doc:meta])* $method:ident => $field:ident),+ $(,)?) => {$(
        $(#[$doc])*
        pub fn $method(&self, count: u64) {
            self.$field.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        }
    )+};
}

impl StatsCounters {
    stats_counter! {
        /// Counts `count` gets that returned an entry.
        add_hits => hits,
        /// Counts `count` gets that returned nothing.
        add_misses => misses,
        /// Counts `count` stored entries.
        add_puts => puts,
        /// Counts `count` deletions.
        add_deletes => deletes,
        /// Counts `count` entries evicted for capacity.
        add_evictions => evictions,
        /// Counts `count` entries dropped at expiry.
        add_expirations => expirations,
        /// Counts `count` corrupt entries removed.
        add_corrupt_entries => corrupt_entries,
    }

    /// The counts now.
    pub fn snapshot(&self) -> BackendStats {
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        BackendStats {
            hits: load(&self.hits),
            misses: load(&self.misses),
            puts: load(&self.puts),
            deletes: load(&self.deletes),
            evictions: load(&self.evictions),
            expirations: load(&self.expirations),
            corrupt_entries: load(&self.corrupt_entries),
        }
    }
}

/// The storage contract of an HTTP response cache.
///
/// Three operations are required (`get`, `put`, `delete`); every other one is an optional
/// capability whose default returns [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
/// The trait is object safe: `Arc<dyn CacheManager>` is how stacks hold mixed backends.
/// Methods return a [`CacheFuture`]: `CacheFuture::ready(..)` when the answer is at hand
/// (no allocation), `CacheFuture::new(async move { .. })` when the backend must wait.
///
/// # Contract
///
/// - `get` MUST return the entry exactly as it was put: status, version, every header value
///   in order (non-UTF-8 values byte for byte), URL, body, and a policy equivalent to the one
///   put; its metadata MUST carry the stored-at time, the storage expiry and the tags.
/// - An entry MUST NOT be returned at or after its `expires_at`. The storage TTL is the
///   [`PutOptions::with_ttl`] override when set, otherwise the backend's
///   [`TtlPolicy`](crate::TtlPolicy). A zero TTL MUST store nothing and remove the key.
/// - `put` on an existing key MUST replace the entry (body, headers, tags) atomically:
///   a concurrent `get` returns the old or the new entry, never a mix.
/// - A put the backend refuses after validating it (an entry over its
///   [`Capabilities::max_entry_bytes`] or its capacity, `ErrorKind::TooLarge`) MUST leave
///   no entry under the key: not the new version, and never the previous one, which a
///   caller would otherwise be served as if the refused put had not happened.
/// - Deleting a missing key MUST succeed.
/// - Keys are arbitrary strings up to [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes (`../`,
///   NUL and any Unicode included); longer keys MUST fail with `InvalidKey`. Distinct keys
///   MUST NOT collide.
/// - Stored bytes that cannot be decoded (corrupt, truncated, another format version, another
///   key) MUST be a miss: the entry is removed and counted, never a panic, never an error.
/// - A backend that writes bytes MUST NOT write the request's `Authorization`,
///   `Proxy-Authorization` or `Cookie` values, nor the userinfo of the URL (the
///   [`codec`](crate::codec) redacts them; such an entry comes back with the URL without
///   its userinfo). Keys are stored as given: callers build them without credentials.
/// - An optional operation a backend does not declare in [`capabilities`](Self::capabilities)
///   MUST return `Unsupported`, never silently do nothing.
/// - Temporary failures (server down, timeout) SHOULD be reported with the `Unavailable` or
///   `Timeout` kinds so callers can degrade.
pub trait CacheManager: Send + Sync {
    /// A short name for errors and statistics, such as `"memory"` or `"redis"`.
    fn name(&self) -> &'static str;

    /// The optional operations this backend supports. Default: none.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    /// Returns the live entry stored under `key`, or `None`.
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>>;

    /// Stores `response` and its `policy` under `key`, replacing any entry there.
    ///
    /// # Contract
    ///
    /// - The entry MUST replace the key's previous one atomically (see the trait's
    ///   contract), for the storage TTL of `options` or of the backend's
    ///   [`TtlPolicy`](crate::TtlPolicy); a zero TTL MUST store nothing and remove the key.
    /// - A put refused after validation (`ErrorKind::TooLarge`: the entry is over
    ///   [`Capabilities::max_entry_bytes`] or the capacity) MUST leave no entry under the
    ///   key, never the previous version. A key that is not valid (`InvalidKey`) is
    ///   refused before anything is touched.
    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>>;

    /// Removes the entry under `key`; succeeds when there is none.
    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>>;

    /// Stores `entry`, read from another cache (a stack promoting a hit into a faster
    /// tier), under `key` for at most the TTL in `options`.
    ///
    /// The copy MUST NOT outlive `options`' TTL from now nor the entry's own
    /// `expires_at`; it keeps the entry's tags (`options`' tags are not used). A backend
    /// that keeps decoded entries SHOULD store the `Arc` as it is when its metadata already
    /// says when the copy ends, so a promotion copies nothing. The default takes the entry
    /// apart (cloning it when the `Arc` is shared) and calls [`put`](Self::put) with the
    /// shorter of the two lifetimes.
    fn put_entry<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CacheEntry>,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        // `put` reads the clock again a moment later: the margin keeps the copy from
        // outliving the entry by that moment.
        const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_millis(5);
        let remaining = entry
            .metadata
            .remaining_ttl(std::time::SystemTime::now())
            .saturating_sub(CLOCK_MARGIN);
        let ttl = options.ttl().map_or(remaining, |ttl| ttl.min(remaining));
        let (response, policy, metadata) = Arc::unwrap_or_clone(entry).into_parts();
        let options = PutOptions::new().with_ttl(ttl).with_tags(metadata.tags);
        self.put(key, response, policy, options)
    }

    /// Removes every entry stored with `tag` and returns how many were removed.
    /// An entry overwritten without the tag MUST NOT be removed.
    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        let _ = tag;
        CacheFuture::ready(Err(Error::unsupported(self.name(), "delete_tag")))
    }

    /// Removes every entry whose key matches `pattern` and returns how many were removed.
    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let _ = pattern;
        CacheFuture::ready(Err(Error::unsupported(self.name(), "delete_pattern")))
    }

    /// Removes every entry of this cache (and nothing outside it, such as other namespaces).
    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        CacheFuture::ready(Err(Error::unsupported(self.name(), "clear")))
    }

    /// The number of live entries.
    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Err(Error::unsupported(self.name(), "entry_count")))
    }

    /// The bytes the entries occupy, as the backend accounts them against its capacity.
    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::ready(Err(Error::unsupported(self.name(), "size_bytes")))
    }

    /// Checks that the backend answers and how fast.
    fn health(&self) -> CacheFuture<'_, Result<Health>> {
        CacheFuture::ready(Err(Error::unsupported(self.name(), "health")))
    }

    /// Counters since the backend was created.
    fn stats(&self) -> Result<BackendStats> {
        Err(Error::unsupported(self.name(), "stats"))
    }
}

/// A boxed HTTP body of `Bytes` chunks, as streaming backends take and return it.
pub type BoxBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>;

/// An entry whose body is read from storage as it is consumed.
#[non_exhaustive]
pub struct StreamedEntry {
    /// The response head as it was stored.
    pub head: ResponseHead,
    /// The cache policy.
    pub policy: CachePolicy,
    /// When it was stored, when it expires, its tags.
    pub metadata: EntryMetadata,
    /// The length of the body in bytes.
    pub body_len: u64,
    /// The body, read in bounded chunks.
    pub body: BoxBody,
}

impl StreamedEntry {
    /// Assembles a streamed entry.
    pub fn new(
        head: ResponseHead,
        policy: CachePolicy,
        metadata: EntryMetadata,
        body_len: u64,
        body: BoxBody,
    ) -> Self {
        Self {
            head,
            policy,
            metadata,
            body_len,
            body,
        }
    }
}

impl std::fmt::Debug for StreamedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedEntry")
            .field("head", &self.head)
            .field("metadata", &self.metadata)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

/// What a completed [`StreamingCacheManager::put_stream`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredBody {
    /// The body length in bytes.
    pub len: u64,
}

impl StoredBody {
    /// A stored body of `len` bytes.
    pub fn new(len: u64) -> Self {
        Self { len }
    }
}

/// A cache manager that moves bodies as streams, never holding a whole body in memory.
///
/// # Contract
///
/// - Everything [`CacheManager`] requires, for streamed entries too: an entry put with
///   `put_stream` is returned by `get` (buffered) and `get_stream`, and the reverse.
/// - `put_stream` MUST commit the entry only after the body ended without error and its
///   length matched the response's `Content-Length`, when it has one. A body error, a
///   length mismatch or a dropped future MUST leave no entry (and the previous entry under
///   the key, if any, untouched).
/// - `get_stream` MUST yield exactly the stored bytes; when the stored bytes turn out to be
///   corrupt while streaming, the body MUST end with an error and the entry be removed.
/// - Memory use MUST stay bounded by a constant independent of the body size.
pub trait StreamingCacheManager: CacheManager {
    /// Stores the body as it arrives and commits the entry when it completes.
    fn put_stream<'a>(
        &'a self,
        key: &'a str,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<StoredBody>>;

    /// Returns the entry with a body that reads from storage in chunks, or `None`.
    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>>;
}

macro_rules! forward_cache_manager {
    ($($pointer:ident),+) => {$(
        #[deny(clippy::missing_trait_methods)]
        impl<T: CacheManager + ?Sized> CacheManager for $pointer<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }

            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }

            fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
                (**self).get(key)
            }

            fn put<'a>(
                &'a self,
                key: &'a str,
                response: CachedResponse,
                policy: CachePolicy,
                options: PutOptions,
            ) -> CacheFuture<'a, Result<()>> {
                (**self).put(key, response, policy, options)
            }

            fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
                (**self).delete(key)
            }

            fn put_entry<'a>(
                &'a self,
                key: &'a str,
                entry: Arc<CacheEntry>,
                options: PutOptions,
            ) -> CacheFuture<'a, Result<()>> {
                (**self).put_entry(key, entry, options)
            }

            fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
                (**self).delete_tag(tag)
            }

            fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
                (**self).delete_pattern(pattern)
            }

            fn clear(&self) -> CacheFuture<'_, Result<()>> {
                (**self).clear()
            }

            fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
                (**self).entry_count()
            }

            fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
                (**self).size_bytes()
            }

            fn health(&self) -> CacheFuture<'_, Result<Health>> {
                (**self).health()
            }

            fn stats(&self) -> Result<BackendStats> {
                (**self).stats()
            }
        }

        #[deny(clippy::missing_trait_methods)]
        impl<T: StreamingCacheManager + ?Sized> StreamingCacheManager for $pointer<T> {
            fn put_stream<'a>(
                &'a self,
                key: &'a str,
                head: ResponseHead,
                policy: CachePolicy,
                body: BoxBody,
                options: PutOptions,
            ) -> CacheFuture<'a, Result<StoredBody>> {
                (**self).put_stream(key, head, policy, body, options)
            }

            fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
                (**self).get_stream(key)
            }
        }
    )+};
}

forward_cache_manager!(Arc, Box);
