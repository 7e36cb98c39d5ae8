//! The stack: tiers in order, fastest first.
//!
//! - `body`: a streamed body that fails once its caller is gone.
//! - `builder`: [`TieredBuilder`], the settings and the construction.
//! - `read`: one walk over the tiers shared by `get`, `get_stream` and `get_or_fetch`,
//!   and promotion.
//! - `write`: one fan-out writer and one settle rule shared by `put`, `put_stream` and
//!   the deletions, and the detached runner that lets a dropped call finish.
//! - `coherence`: the per-key stripes and the epoch that keep promotions from reviving
//!   what was replaced or removed, and the bus listener.
//! - `fetch`: request coalescing.
//! - `stats`: the counters.

mod body;
mod builder;
mod coherence;
mod fetch;
mod read;
mod stats;
mod write;

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::{
    BackendStats, BoxBody, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse,
    Capabilities, Error, Health, InvalidationBus, KeyPattern, PutOptions, ResponseHead, Result,
    StoredBody, StreamedEntry, StreamingCacheManager, TtlPolicy, validate_key,
};
use futures::future::join_all;
use tokio::task::JoinHandle;

pub use builder::{DEFAULT_MAX_BUFFERED_BODY, TieredBuilder};
pub use fetch::{FetchError, Fetched};
pub use stats::TieredStats;

use crate::promotion::PromotionTracker;
use crate::tier::{Tier, TierCounters};
use coherence::Coherence;
use fetch::InFlightTable;
use read::{Found, Want, streamed_from};
use stats::StackCounters;
use write::{Invalidation, detached};

const NAME: &str = "tiered";

/// A key and its hash, computed once per operation and carried through it (the stripes
/// and the promotion tracker use the hash).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) text: &'a str,
    pub(crate) hash: u64,
}

impl<'a> Key<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        Self {
            text,
            hash: hasher.finish(),
        }
    }
}

pub(crate) struct TierState {
    pub(crate) tier: Tier,
    pub(crate) counters: TierCounters,
}

pub(crate) struct StackInner {
    pub(crate) tiers: Vec<TierState>,
    pub(crate) ttl_policy: TtlPolicy,
    pub(crate) stream_promotion_limit: u64,
    pub(crate) max_buffered_body: u64,
    pub(crate) fetch_timeout: Option<Duration>,
    pub(crate) promotion: PromotionTracker,
    pub(crate) bus: Option<Arc<dyn InvalidationBus>>,
    pub(crate) counters: StackCounters,
    pub(crate) in_flight: Mutex<InFlightTable>,
    pub(crate) next_fetch_id: AtomicU64,
    pub(crate) coherence: Coherence,
    pub(crate) listener: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for StackInner {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.listener).take() {
            listener.abort();
        }
    }
}

impl StackInner {
    /// The streaming tier, with its position.
    pub(crate) fn streaming_tier(&self) -> Option<(usize, &Arc<dyn StreamingCacheManager>)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(index, state)| state.tier.streaming.as_ref().map(|tier| (index, tier)))
    }
}

/// The stack's mutexes guard state that every update leaves consistent, so a panic of
/// a holder does not make it unusable.
pub(crate) use cache_kit::lock;

/// A stack of cache tiers, fastest first, that is itself a [`CacheManager`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::CacheManager;
/// use cache_memory::{MemoryCache, MemoryConfig};
/// use cache_tiered::{Promotion, Tier, TieredCache};
///
/// let l1 = Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(16 << 20))?);
/// let l2 = Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20))?);
/// let stack = TieredCache::builder()
///     .tier(Tier::new(l1).with_ttl_scale(0.1).with_max_entry_bytes(1 << 20))
///     .tier(Tier::new(l2))
///     .with_promotion(Promotion::AfterHits(2))
///     .build()
///     .await?;
/// assert!(stack.get("GET:https://example.com/").await?.is_none());
/// assert_eq!(stack.stats().misses, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Coherence
///
/// Once a `put`, `put_stream`, `delete`, `delete_tag`, `delete_pattern` or `clear` has
/// returned `Ok`, no `get` of this stack returns what it replaced or removed; on another
/// instance on the same bus, the same holds once the bus event has been applied there (or
/// the `Resync` that replaces lost events). Writes run to the end when the caller's
/// future is dropped (in a task of their own, inside a tokio runtime), and the bus hears
/// of them. A tier whose write fails is made to drop the key; when even that fails, the
/// call returns an error saying that tier may still hold the older version (in either
/// [`FailureMode`](crate::FailureMode)), and [`TieredStats::stale_tiers`] counts it.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<StackInner>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field(
                "tiers",
                &self
                    .inner
                    .tiers
                    .iter()
                    .map(|state| &state.tier)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TieredCache {
    /// Starts building a stack.
    pub fn builder() -> TieredBuilder {
        TieredBuilder::default()
    }

    /// The counters of the stack and of each tier.
    pub fn stats(&self) -> TieredStats {
        self.inner.counters.snapshot(
            self.inner
                .tiers
                .iter()
                .map(|state| state.counters.snapshot(state.tier.manager.name()))
                .collect(),
        )
    }

    /// How many keys the promotion strategy tracks now (bounded by
    /// [`TieredBuilder::with_max_tracked_keys`]).
    pub fn tracked_promotion_keys(&self) -> usize {
        self.inner.promotion.tracked_keys()
    }

    /// How many fetches are in flight (the in-flight table's size).
    pub fn in_flight_fetches(&self) -> usize {
        lock(&self.inner.in_flight).len()
    }
}

impl StreamingCacheManager for TieredCache {
    fn put_stream<'a>(
        &'a self,
        key: &'a str,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<StoredBody>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        // The write finishes when the caller goes away, except for the body: a body not
        // read to the end by then fails, so nothing is stored (the streaming contract).
        let (body, caller) = body::until_dropped(body);
        let write = detached(async move {
            inner
                .put_stream(&Key::new(&key), head, policy, body, options)
                .await
        });
        CacheFuture::new(async move {
            let _caller = caller;
            write.await
        })
    }

    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        if self.inner.streaming_tier().is_none() {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "get_stream")));
        }
        CacheFuture::new(async move {
            let key = Key::new(key);
            Ok(
                match self.inner.walk(&key, 0, true, Want::Streamed).await? {
                    Some(Found::Stream(streamed)) => Some(*streamed),
                    Some(Found::Entry(entry)) => Some(streamed_from(&entry)),
                    None => None,
                },
            )
        })
    }
}

impl CacheManager for TieredCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let all = |has: fn(&Capabilities) -> bool| {
            self.inner
                .tiers
                .iter()
                .all(|state| has(&state.tier.manager.capabilities()))
        };
        let mut capabilities = Capabilities::none().with_stats();
        if all(|caps| caps.tags) {
            capabilities = capabilities.with_tags();
        }
        if all(|caps| caps.delete_pattern) {
            capabilities = capabilities.with_delete_pattern();
        }
        if all(|caps| caps.clear) {
            capabilities = capabilities.with_clear();
        }
        if all(|caps| caps.health) {
            capabilities = capabilities.with_health();
        }
        if self.inner.streaming_tier().is_some() {
            capabilities = capabilities.with_streaming();
        }
        // An entry is stored when one tier takes it: the stack's limit is the largest of
        // its tiers', none when one tier has none.
        let limits: Option<Vec<u64>> = self
            .inner
            .tiers
            .iter()
            .map(|state| state.tier.max_entry_bytes)
            .collect();
        if let Some(largest) = limits.and_then(|limits| limits.into_iter().max()) {
            capabilities = capabilities.with_max_entry_bytes(largest);
        }
        // Shared only when every tier is: a stack with a local tier holds what other
        // instances' invalidations must still reach.
        if self.inner.tiers.iter().all(|state| state.tier.shared) {
            capabilities = capabilities.with_shared();
        }
        capabilities
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = &self.inner;
        let first = &inner.tiers[0].tier;
        let lookup = |from: usize| {
            CacheFuture::new(async move {
                match inner
                    .walk(&Key::new(key), from, true, Want::Buffered)
                    .await?
                {
                    Some(Found::Entry(entry)) => Ok(Some(entry)),
                    Some(Found::Stream(_)) | None => Ok(None),
                }
            })
        };
        if first.streaming.is_some() {
            return lookup(0);
        }
        // A fastest tier that answers at once (memory) is answered at once: no future of
        // the stack's own is boxed for an L1 hit.
        match first.manager.get(key).into_ready() {
            Ok(answer) => match inner.answered(0, answer, true) {
                Ok(Some(entry)) => CacheFuture::ready(Ok(Some(entry))),
                Err(error) => CacheFuture::ready(Err(error)),
                Ok(None) => lookup(1),
            },
            Err(pending) => CacheFuture::new(async move {
                let answer = pending.await;
                if let Some(entry) = inner.answered(0, answer, true)? {
                    return Ok(Some(entry));
                }
                match inner.walk(&Key::new(key), 1, true, Want::Buffered).await? {
                    Some(Found::Entry(entry)) => Ok(Some(entry)),
                    Some(Found::Stream(_)) | None => Ok(None),
                }
            }),
        }
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
        detached(async move { inner.put(&Key::new(&key), response, policy, options).await })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        detached(async move { inner.delete(&Key::new(&key)).await })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        if !self.capabilities().tags {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "delete_tag")));
        }
        let inner = Arc::clone(&self.inner);
        let tag = tag.to_owned();
        detached(async move { inner.invalidate_many(Invalidation::Tag(&tag)).await })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        if !self.capabilities().delete_pattern {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "delete_pattern")));
        }
        let inner = Arc::clone(&self.inner);
        let pattern = pattern.clone();
        detached(async move { inner.invalidate_many(Invalidation::Pattern(&pattern)).await })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        if !self.capabilities().clear {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "clear")));
        }
        let inner = Arc::clone(&self.inner);
        detached(async move { inner.invalidate_many(Invalidation::Clear).await.map(|_| ()) })
    }

    fn health(&self) -> CacheFuture<'_, Result<Health>> {
        if !self.capabilities().health {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "health")));
        }
        CacheFuture::new(async move {
            let checks = join_all(
                self.inner
                    .tiers
                    .iter()
                    .map(|state| state.tier.manager.health()),
            )
            .await;
            let mut slowest = Duration::ZERO;
            for check in checks {
                slowest = slowest.max(check?.latency);
            }
            Ok(Health::new(slowest))
        })
    }

    fn stats(&self) -> Result<BackendStats> {
        use std::sync::atomic::Ordering;
        let counters = &self.inner.counters;
        let mut stats = BackendStats::default();
        stats.hits = counters.hits.load(Ordering::Relaxed);
        stats.misses = counters.misses.load(Ordering::Relaxed);
        stats.puts = counters.puts.load(Ordering::Relaxed);
        stats.deletes = counters.deletes.load(Ordering::Relaxed);
        Ok(stats)
    }
}
