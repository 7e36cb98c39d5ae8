//! The stack: tiers in order, fastest first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use cache_core::{
    BackendStats, BoxBody, BoxError, BusMessage, CacheEntry, CacheFuture, CacheManager,
    CachePolicy, CachedResponse, Capabilities, EntryMetadata, Error, ErrorKind, Health,
    InvalidationBus, InvalidationEvent, KeyPattern, PutOptions, ResponseHead, Result, StoredBody,
    StreamedEntry, StreamingCacheManager, TtlPolicy, body, validate_key,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use tokio::task::JoinHandle;

use crate::promotion::{Promotion, PromotionTracker};
use crate::tier::{FailureMode, Tier, TierCounters, TierStats, bump};

const NAME: &str = "tiered";

/// Taken off a promoted entry's remaining life: the target tier reads its own clock a
/// moment after the remaining life was computed, and the copy must not outlive the
/// source's entry by that moment.
const PROMOTION_CLOCK_MARGIN: Duration = Duration::from_millis(5);

/// A response fetched from the origin by [`TieredCache::get_or_fetch`], to be stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched {
    /// The response.
    pub response: CachedResponse,
    /// Its cache policy.
    pub policy: CachePolicy,
    /// How to store it (TTL override, tags).
    pub options: PutOptions,
}

impl Fetched {
    /// A fetched response stored with default options.
    pub fn new(response: CachedResponse, policy: CachePolicy) -> Self {
        Self {
            response,
            policy,
            options: PutOptions::new(),
        }
    }

    /// Stores it with `options`.
    pub fn with_options(mut self, options: PutOptions) -> Self {
        self.options = options;
        self
    }
}

/// Why [`TieredCache::get_or_fetch`] failed; every caller waiting on the same fetch gets
/// the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The fetch function failed (nothing was cached).
    #[error("the fetch failed: {0}")]
    Fetch(Arc<BoxError>),
    /// The cache failed before the fetch (a tier in `Fail` mode, an invalid key).
    #[error(transparent)]
    Cache(Arc<Error>),
}

impl From<Error> for FetchError {
    fn from(error: Error) -> Self {
        Self::Cache(Arc::new(error))
    }
}

/// The stack's counters, exact, and each tier's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Gets answered by some tier.
    pub hits: u64,
    /// Gets no tier could answer.
    pub misses: u64,
    /// Entries copied into faster tiers (one per tier written).
    pub promotions: u64,
    /// `put` calls.
    pub puts: u64,
    /// Tier operations and bus publications that failed.
    pub errors: u64,
    /// Fetches `get_or_fetch` started.
    pub fetches: u64,
    /// Fetches running now.
    pub in_flight_fetches: u64,
    /// `get_or_fetch` callers that waited for a fetch another caller started.
    pub coalesced_waiters: u64,
    /// Invalidations received from the bus and applied to the local tiers.
    pub bus_events_applied: u64,
    /// `Resync` signals received from the bus (each flushed the local tiers).
    pub resyncs: u64,
    /// Each tier's counters, fastest first.
    pub tiers: Vec<TierStats>,
}

#[derive(Debug, Default)]
struct StackCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    promotions: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    fetches: AtomicU64,
    in_flight_fetches: AtomicU64,
    coalesced_waiters: AtomicU64,
    bus_events_applied: AtomicU64,
    resyncs: AtomicU64,
}

type FetchOutcome = std::result::Result<Arc<CacheEntry>, FetchError>;
type SharedFetch = Shared<BoxFuture<'static, FetchOutcome>>;

/// Frees a fetch's in-flight slot however its task ends (a panicking fetch included), so
/// no key is left joined to a finished fetch.
struct InFlightSlot {
    inner: Arc<StackInner>,
    key: String,
    fetch_id: u64,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.inner.in_flight);
        if in_flight
            .get(&self.key)
            .is_some_and(|(fetch_id, _)| *fetch_id == self.fetch_id)
        {
            in_flight.remove(&self.key);
        }
        drop(in_flight);
        self.inner
            .counters
            .in_flight_fetches
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Slots of the per-key invalidation generations (keys share slots by hash).
const GENERATION_SLOTS: usize = 4096;

struct TierState {
    tier: Tier,
    counters: TierCounters,
}

struct StackInner {
    tiers: Vec<TierState>,
    ttl_policy: TtlPolicy,
    stream_promotion_limit: u64,
    promotion: PromotionTracker,
    bus: Option<Arc<dyn InvalidationBus>>,
    counters: StackCounters,
    in_flight: Mutex<HashMap<String, (u64, SharedFetch)>>,
    next_fetch_id: AtomicU64,
    /// Bumped before a key is written or invalidated (per hash slot), and `epoch` before
    /// invalidations of many keys: a promotion that sees either change while it copies an
    /// entry drops its copy, so it never brings back what was just deleted or replaced.
    generations: Box<[AtomicU64]>,
    epoch: AtomicU64,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for StackInner {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.listener).take() {
            listener.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds a [`TieredCache`].
#[derive(Default)]
#[must_use]
pub struct TieredBuilder {
    tiers: Vec<Tier>,
    ttl_policy: TtlPolicy,
    promotion: Promotion,
    max_tracked_keys: usize,
    stream_promotion_limit: Option<u64>,
    bus: Option<Arc<dyn InvalidationBus>>,
}

impl std::fmt::Debug for TieredBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredBuilder")
            .field("tiers", &self.tiers)
            .field("ttl_policy", &self.ttl_policy)
            .field("promotion", &self.promotion)
            .field("max_tracked_keys", &self.max_tracked_keys)
            .field("stream_promotion_limit", &self.stream_promotion_limit)
            .field("bus", &self.bus.as_ref().map(|bus| bus.instance_id()))
            .finish()
    }
}

impl TieredBuilder {
    /// Adds a tier below the ones added before (add the fastest first).
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tiers.push(tier);
        self
    }

    /// The policy that turns a `CachePolicy` into the storage TTL that each tier's scale
    /// multiplies. Default: [`TtlPolicy::default()`].
    pub fn with_ttl_policy(mut self, ttl_policy: TtlPolicy) -> Self {
        self.ttl_policy = ttl_policy;
        self
    }

    /// When hits in slower tiers are promoted. Default: [`Promotion::Always`].
    pub fn with_promotion(mut self, promotion: Promotion) -> Self {
        self.promotion = promotion;
        self
    }

    /// How many keys the counting promotion strategies track at most. Default: 100,000.
    pub fn with_max_tracked_keys(mut self, max_tracked_keys: usize) -> Self {
        self.max_tracked_keys = max_tracked_keys;
        self
    }

    /// The largest body a streamed hit may have to be read whole and promoted into the
    /// faster tiers; larger ones are streamed from the tier that holds them. Default: 1 MiB.
    pub fn with_stream_promotion_limit(mut self, bytes: u64) -> Self {
        self.stream_promotion_limit = Some(bytes);
        self
    }

    /// Publishes this stack's invalidations on `bus` and applies the other instances'
    /// to the local (non-[`shared`](Tier::shared)) tiers; `Resync` clears them.
    pub fn with_bus(mut self, bus: Arc<dyn InvalidationBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Builds the stack (subscribing to the bus, if any, before it returns: every event
    /// published after this returns is applied). Fails with `Config` without tiers.
    pub async fn build(self) -> Result<TieredCache> {
        if self.tiers.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "a tiered cache needs at least one tier",
            ));
        }
        if self
            .tiers
            .iter()
            .filter(|tier| tier.streaming.is_some())
            .count()
            > 1
        {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "a tiered cache holds at most one streaming tier",
            ));
        }
        let max_tracked_keys = if self.max_tracked_keys == 0 {
            100_000
        } else {
            self.max_tracked_keys
        };
        let subscription = match &self.bus {
            Some(bus) => {
                // The bus listener is a tokio task; without a runtime it could not run.
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(Error::new(
                        ErrorKind::Config,
                        NAME,
                        "a tiered cache with a bus must be built inside a tokio runtime",
                    ));
                }
                Some(bus.subscribe().await?)
            }
            None => None,
        };
        let inner = Arc::new(StackInner {
            tiers: self
                .tiers
                .into_iter()
                .map(|tier| TierState {
                    tier,
                    counters: TierCounters::default(),
                })
                .collect(),
            ttl_policy: self.ttl_policy,
            stream_promotion_limit: self.stream_promotion_limit.unwrap_or(1 << 20),
            promotion: PromotionTracker::new(self.promotion, max_tracked_keys),
            bus: self.bus,
            counters: StackCounters::default(),
            in_flight: Mutex::new(HashMap::new()),
            next_fetch_id: AtomicU64::new(0),
            generations: (0..GENERATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            listener: Mutex::new(None),
        });
        if let Some(mut subscription) = subscription {
            let weak: Weak<StackInner> = Arc::downgrade(&inner);
            let listener = tokio::spawn(async move {
                while let Some(message) = subscription.recv().await {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    inner.apply_bus_message(message).await;
                }
                // The bus ended: invalidations will no longer arrive, so the local tiers
                // cannot be trusted to stay coherent. Flush them once and count it.
                if let Some(inner) = weak.upgrade() {
                    bump(&inner.counters.errors);
                    inner
                        .apply_bus_message(BusMessage::Resync {
                            reason: "the invalidation bus ended".to_owned(),
                        })
                        .await;
                }
            });
            *lock(&inner.listener) = Some(listener);
        }
        Ok(TieredCache { inner })
    }
}

/// A stack of cache tiers, fastest first, that is itself a [`CacheManager`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::CacheManager;
/// use cache_memory::MemoryCache;
/// use cache_tiered::{Promotion, Tier, TieredCache};
///
/// let l1 = Arc::new(MemoryCache::builder().with_capacity_bytes(16 << 20).build());
/// let l2 = Arc::new(MemoryCache::builder().with_capacity_bytes(256 << 20).build());
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
        let counters = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TieredStats {
            hits: load(&counters.hits),
            misses: load(&counters.misses),
            promotions: load(&counters.promotions),
            puts: load(&counters.puts),
            errors: load(&counters.errors),
            fetches: load(&counters.fetches),
            in_flight_fetches: load(&counters.in_flight_fetches),
            coalesced_waiters: load(&counters.coalesced_waiters),
            bus_events_applied: load(&counters.bus_events_applied),
            resyncs: load(&counters.resyncs),
            tiers: self
                .inner
                .tiers
                .iter()
                .map(|state| state.counters.snapshot(state.tier.manager.name()))
                .collect(),
        }
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

    /// The entry under `key`, or the one `fetch` produces, stored in every tier.
    ///
    /// Concurrent calls for one key that all miss make exactly one fetch: the first
    /// caller starts it in a task of its own (so cancelling that caller does not cancel it
    /// for the others) and every caller receives its outcome. A fetch error reaches every
    /// waiter and nothing is cached; the next call fetches again.
    pub async fn get_or_fetch<F, Fut, E>(
        &self,
        key: &str,
        fetch: F,
    ) -> std::result::Result<Arc<CacheEntry>, FetchError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Fetched, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        validate_key(NAME, key)?;
        if let Some(entry) = self.inner.lookup(key, true).await? {
            return Ok(entry);
        }
        self.join_or_start_fetch(key, fetch).await
    }

    /// Waits for the fetch in flight for `key`, or starts one (which looks in the tiers
    /// once more before fetching).
    pub(crate) async fn join_or_start_fetch<F, Fut, E>(
        &self,
        key: &str,
        fetch: F,
    ) -> std::result::Result<Arc<CacheEntry>, FetchError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Fetched, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        // The fetch runs as a tokio task (so a cancelled caller cannot cancel it).
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "get_or_fetch runs its fetch as a tokio task: call it inside a tokio runtime",
            )
            .into());
        }
        let shared = {
            let mut in_flight = lock(&self.inner.in_flight);
            if let Some((_, shared)) = in_flight.get(key) {
                self.inner
                    .counters
                    .coalesced_waiters
                    .fetch_add(1, Ordering::Relaxed);
                shared.clone()
            } else {
                let fetch_id = self.inner.next_fetch_id.fetch_add(1, Ordering::Relaxed);
                // The task frees the slot, which it can only do after this lock is released
                // (so after the insert).
                let shared = self.start_fetch(key, fetch, fetch_id);
                in_flight.insert(key.to_owned(), (fetch_id, shared.clone()));
                shared
            }
        };
        shared.await
    }

    fn start_fetch<F, Fut, E>(&self, key: &str, fetch: F, fetch_id: u64) -> SharedFetch
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Fetched, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        inner
            .counters
            .in_flight_fetches
            .fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            let slot = InFlightSlot {
                inner: Arc::clone(&inner),
                key,
                fetch_id,
            };
            // The entry is in the tiers before the slot goes: a caller that finds no slot
            // finds the entry.
            let outcome = inner.fill(&slot.key, fetch).await;
            drop(slot);
            outcome
        });
        async move {
            task.await.unwrap_or_else(|error| {
                Err(FetchError::Fetch(Arc::new(
                    format!("the fetch task failed: {error}").into(),
                )))
            })
        }
        .boxed()
        .shared()
    }
}

impl StackInner {
    fn generation_slot(&self, key: &str) -> &AtomicU64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.generations[(hasher.finish() % GENERATION_SLOTS as u64) as usize]
    }

    /// The invalidation generation `key` is at (its slot's and the stack-wide one).
    fn generation(&self, key: &str) -> (u64, u64) {
        (
            self.generation_slot(key).load(Ordering::Acquire),
            self.epoch.load(Ordering::Acquire),
        )
    }

    /// Marks `key` as about to be written or invalidated.
    fn bump_key(&self, key: &str) {
        self.generation_slot(key).fetch_add(1, Ordering::AcqRel);
    }

    /// Marks every key as about to be invalidated.
    fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Walks the tiers for `key`, promoting a hit from a slower tier.
    async fn lookup(&self, key: &str, count: bool) -> Result<Option<Arc<CacheEntry>>> {
        let first = self.tiers[0].tier.manager.get(key).await;
        self.lookup_after_first(key, count, first).await
    }

    /// [`lookup`](Self::lookup) once the fastest tier has answered `first`.
    async fn lookup_after_first(
        &self,
        key: &str,
        count: bool,
        first: Result<Option<Arc<CacheEntry>>>,
    ) -> Result<Option<Arc<CacheEntry>>> {
        if let Some(entry) = self.answered(0, first, count)? {
            return Ok(Some(entry));
        }
        self.lookup_below_first(key, count).await
    }

    /// The rest of a lookup once the fastest tier missed (and was counted).
    async fn lookup_below_first(&self, key: &str, count: bool) -> Result<Option<Arc<CacheEntry>>> {
        let before = self.generation(key);
        for (index, state) in self.tiers.iter().enumerate().skip(1) {
            let result = state.tier.manager.get(key).await;
            if let Some(entry) = self.answered(index, result, count)? {
                if self.promotion.hit_says_promote(key) {
                    self.promote(key, &entry, index, SystemTime::now(), before)
                        .await;
                }
                return Ok(Some(entry));
            }
        }
        if count {
            bump(&self.counters.misses);
        }
        Ok(None)
    }

    /// Counts what tier `index` answered; a failure is an error only in `Fail` mode.
    /// Backends never return expired entries (the contract), so a hit is not re-checked.
    fn answered(
        &self,
        index: usize,
        result: Result<Option<Arc<CacheEntry>>>,
        count: bool,
    ) -> Result<Option<Arc<CacheEntry>>> {
        let state = &self.tiers[index];
        match result {
            Ok(Some(entry)) => {
                if count {
                    bump(&state.counters.hits);
                    bump(&self.counters.hits);
                }
                Ok(Some(entry))
            }
            Ok(None) => {
                if count {
                    bump(&state.counters.misses);
                }
                Ok(None)
            }
            Err(error) => {
                bump(&state.counters.errors);
                bump(&self.counters.errors);
                match state.tier.failure_mode {
                    FailureMode::Fail => Err(error),
                    FailureMode::Degrade => Ok(None),
                }
            }
        }
    }

    /// Copies `entry`, found in tier `source`, into the faster tiers that accept it, for
    /// no longer than it has left in `source`.
    /// `before` is the key's generation from before the source tier was read: when it moved
    /// (the key was written or invalidated meanwhile), nothing is copied, and a copy made
    /// while it moved is taken back.
    async fn promote(
        &self,
        key: &str,
        entry: &CacheEntry,
        source: usize,
        now: SystemTime,
        before: (u64, u64),
    ) {
        if self.generation(key) != before {
            return;
        }
        let remaining = entry
            .metadata
            .remaining_ttl(now)
            .saturating_sub(PROMOTION_CLOCK_MARGIN);
        if remaining.is_zero() {
            return;
        }
        // A policy that does not decode makes the entry unusable: it is not copied.
        let Ok(policy) = entry.try_policy() else {
            return;
        };
        let size = entry.approximate_size();
        let targets: Vec<&TierState> = self.tiers[..source]
            .iter()
            .filter(|state| state.tier.accepts_promotions && state.tier.admits(size))
            .collect();
        let writes = targets.iter().map(|state| {
            let ttl = scaled(entry.metadata.storage_ttl(), state.tier.ttl_scale).min(remaining);
            let options = PutOptions::new()
                .with_ttl(ttl)
                .with_tags(entry.metadata.tags.iter().cloned());
            let (response, policy) = (entry.response.clone(), policy.clone());
            async move {
                match state.tier.manager.put(key, response, policy, options).await {
                    Ok(()) => {
                        bump(&state.counters.promotions);
                        bump(&self.counters.promotions);
                    }
                    Err(_) => {
                        bump(&state.counters.errors);
                        bump(&self.counters.errors);
                    }
                }
            }
        });
        join_all(writes).await;
        if self.generation(key) != before {
            join_all(targets.iter().map(|state| state.tier.manager.delete(key))).await;
        }
    }

    async fn put(
        &self,
        key: &str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> Result<()> {
        self.bump_key(key);
        let base_ttl = options.ttl().unwrap_or_else(|| {
            self.ttl_policy
                .storage_ttl(&policy, &response.headers, SystemTime::now())
        });
        let size = CacheEntry::approximate_size_of(&response, options.tags());
        // One copy of the response per tier that takes it, the last taking the original.
        let admitted: Vec<bool> = self
            .tiers
            .iter()
            .map(|state| state.tier.admits(size))
            .collect();
        let copies = admitted.iter().filter(|&&admitted| admitted).count();
        let mut payloads: Vec<(CachedResponse, CachePolicy)> = (1..copies)
            .map(|_| (response.clone(), policy.clone()))
            .collect();
        payloads.push((response, policy));
        let mut payloads = payloads.into_iter();
        let writes = self.tiers.iter().zip(admitted).map(|(state, admitted)| {
            let options = options
                .clone()
                .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
            let payload = if admitted { payloads.next() } else { None };
            async move {
                // A tier that does not take the new version must not keep the old one.
                let result = match payload {
                    Some((response, policy)) => {
                        state.tier.manager.put(key, response, policy, options).await
                    }
                    None => state.tier.manager.delete(key).await,
                };
                if result.is_ok() && admitted && !base_ttl.is_zero() {
                    bump(&state.counters.puts);
                }
                self.settle(state, result)
            }
        });
        let outcomes = join_all(writes).await;
        bump(&self.counters.puts);
        // Other instances drop the older version from their local tiers.
        self.publish(InvalidationEvent::Delete {
            key: key.to_owned(),
        })
        .await;
        outcomes.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// Counts a tier's failure and decides, by its failure mode, whether it fails the
    /// operation.
    fn settle<T: Default>(&self, state: &TierState, result: Result<T>) -> Result<T> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                bump(&state.counters.errors);
                bump(&self.counters.errors);
                match state.tier.failure_mode {
                    FailureMode::Fail => Err(error),
                    FailureMode::Degrade => Ok(T::default()),
                }
            }
        }
    }

    /// Runs `operation` on every tier (or only the local ones) at once; returns the
    /// largest count a tier reported.
    async fn on_tiers<'a, F>(&'a self, local_only: bool, operation: F) -> Result<u64>
    where
        F: Fn(&'a dyn CacheManager) -> CacheFuture<'a, Result<u64>>,
    {
        let runs = self
            .tiers
            .iter()
            .filter(|state| !(local_only && state.tier.shared))
            .map(|state| {
                let run = operation(state.tier.manager.as_ref());
                async move { self.settle(state, run.await) }
            });
        let counts = join_all(runs)
            .await
            .into_iter()
            .collect::<Result<Vec<u64>>>()?;
        Ok(counts.into_iter().max().unwrap_or(0))
    }

    async fn publish(&self, event: InvalidationEvent) {
        // Not a let chain: the library builds with Rust 1.86.
        if let Some(bus) = &self.bus {
            if bus.publish(event).await.is_err() {
                bump(&self.counters.errors);
            }
        }
    }

    async fn fill<F, Fut, E>(&self, key: &str, fetch: F) -> FetchOutcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Fetched, E>>,
        E: Into<BoxError>,
    {
        // Filled while this caller looked and took the slot: no fetch.
        if let Some(entry) = self.lookup(key, false).await? {
            return Ok(entry);
        }
        bump(&self.counters.fetches);
        let fetched = fetch()
            .await
            .map_err(|error| FetchError::Fetch(Arc::new(error.into())))?;
        let metadata = self.ttl_policy.entry_metadata(
            &fetched.policy,
            &fetched.response.headers,
            &fetched.options,
            SystemTime::now(),
        );
        let entry = Arc::new(CacheEntry::new(
            fetched.response.clone(),
            fetched.policy.clone(),
            metadata,
        ));
        self.put(key, fetched.response, fetched.policy, fetched.options)
            .await?;
        Ok(entry)
    }

    async fn apply_bus_message(&self, message: BusMessage) {
        match message {
            BusMessage::Event { event, .. } => {
                match &event {
                    InvalidationEvent::Delete { key } => self.bump_key(key),
                    _ => self.bump_all(),
                }
                let applied = match &event {
                    InvalidationEvent::Delete { key } => {
                        self.on_tiers(true, |tier| {
                            CacheFuture::new(async move { tier.delete(key).await.map(|()| 1) })
                        })
                        .await
                    }
                    InvalidationEvent::DeleteTag { tag } => {
                        self.on_tiers(true, |tier| tier.delete_tag(tag)).await
                    }
                    InvalidationEvent::DeletePattern { pattern } => {
                        match KeyPattern::new(pattern) {
                            Ok(pattern) => {
                                let pattern = &pattern;
                                self.on_tiers(true, |tier| {
                                    CacheFuture::new(
                                        async move { tier.delete_pattern(pattern).await },
                                    )
                                })
                                .await
                            }
                            Err(error) => Err(error),
                        }
                    }
                    InvalidationEvent::Clear => {
                        self.on_tiers(true, |tier| {
                            CacheFuture::new(async move { tier.clear().await.map(|()| 0) })
                        })
                        .await
                    }
                    _ => Ok(0),
                };
                if applied.is_ok() {
                    bump(&self.counters.bus_events_applied);
                }
            }
            BusMessage::Resync { .. } => {
                self.bump_all();
                let _ = self
                    .on_tiers(true, |tier| {
                        CacheFuture::new(async move { tier.clear().await.map(|()| 0) })
                    })
                    .await;
                bump(&self.counters.resyncs);
            }
            _ => {}
        }
    }
}

impl StackInner {
    /// The streaming tier, with its position.
    fn streaming_tier(&self) -> Option<(usize, &Arc<dyn StreamingCacheManager>)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(index, state)| state.tier.streaming.as_ref().map(|tier| (index, tier)))
    }

    async fn put_stream(
        &self,
        key: &str,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> Result<StoredBody> {
        let Some((index, streaming)) = self.streaming_tier() else {
            return Err(Error::unsupported(NAME, "put_stream"));
        };
        self.bump_key(key);
        let base_ttl = options.ttl().unwrap_or_else(|| {
            self.ttl_policy
                .storage_ttl(&policy, &head.headers, SystemTime::now())
        });
        // The entry's size without its body: the body's length is known once it is stored.
        let size_without_body = CacheEntry::approximate_size_for(&head, 0, options.tags());
        let state = &self.tiers[index];
        let scaled_options = options
            .clone()
            .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
        // The body goes to one place only: when that tier fails, nothing is stored, in
        // either failure mode.
        let stored = match streaming
            .put_stream(key, head, policy, body, scaled_options)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                bump(&state.counters.errors);
                bump(&self.counters.errors);
                return Err(error);
            }
        };
        bump(&self.counters.puts);
        if !base_ttl.is_zero() {
            bump(&state.counters.puts);
        }
        // The other tiers get the entry buffered when it fits them, read back once from
        // the streaming tier; the rest drop any older version they hold.
        let size =
            size_without_body.saturating_add(usize::try_from(stored.len).unwrap_or(usize::MAX));
        let mut buffered: Option<Arc<CacheEntry>> = None;
        let mut outcomes = Vec::with_capacity(self.tiers.len());
        for (other, state) in self.tiers.iter().enumerate() {
            if other == index {
                continue;
            }
            let copy = if state.tier.admits(size) && stored.len <= self.stream_promotion_limit {
                if buffered.is_none() {
                    buffered = streaming.get(key).await.ok().flatten();
                }
                buffered.clone()
            } else {
                None
            };
            let result = match copy {
                Some(entry) => {
                    let options = options
                        .clone()
                        .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
                    let written = state
                        .tier
                        .manager
                        .put(key, entry.response.clone(), entry.policy().clone(), options)
                        .await;
                    if written.is_ok() && !base_ttl.is_zero() {
                        bump(&state.counters.puts);
                    }
                    written
                }
                None => state.tier.manager.delete(key).await,
            };
            // Every tier is written before a `Fail` tier's error is returned.
            outcomes.push(self.settle(state, result));
        }
        self.publish(InvalidationEvent::Delete {
            key: key.to_owned(),
        })
        .await;
        outcomes.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(stored)
    }

    async fn get_stream(&self, key: &str) -> Result<Option<StreamedEntry>> {
        let before = self.generation(key);
        for (index, state) in self.tiers.iter().enumerate() {
            let Some(streaming) = &state.tier.streaming else {
                let result = state.tier.manager.get(key).await;
                if let Some(entry) = self.answered(index, result, true)? {
                    if index > 0 && self.promotion.hit_says_promote(key) {
                        self.promote(key, &entry, index, SystemTime::now(), before)
                            .await;
                    }
                    return Ok(Some(streamed_from(&entry)));
                }
                continue;
            };
            let streamed = match streaming.get_stream(key).await {
                Ok(Some(streamed)) => streamed,
                other => {
                    self.answered(index, other.map(|_| None), true)?;
                    continue;
                }
            };
            bump(&state.counters.hits);
            bump(&self.counters.hits);
            let small = streamed.body_len <= self.stream_promotion_limit;
            let size = CacheEntry::approximate_size_for(
                &streamed.head,
                streamed.body_len,
                &streamed.metadata.tags,
            );
            let wanted = self.tiers[..index]
                .iter()
                .any(|faster| faster.tier.accepts_promotions && faster.tier.admits(size));
            if index == 0 || !small || !wanted || !self.promotion.hit_says_promote(key) {
                return Ok(Some(streamed));
            }
            // Small enough to hold: read it whole, promote it, and hand out the bytes.
            let StreamedEntry {
                head,
                policy,
                metadata,
                body_len,
                body: streamed_body,
                ..
            } = streamed;
            let limit = usize::try_from(body_len).unwrap_or(usize::MAX);
            let bytes = match body::collect(streamed_body, limit).await {
                Ok(bytes) => bytes,
                // The tier found its bytes bad (and removes the entry): a miss, or the
                // error for a tier that fails.
                Err(error) => {
                    bump(&state.counters.errors);
                    bump(&self.counters.errors);
                    return match state.tier.failure_mode {
                        FailureMode::Fail => Err(error),
                        FailureMode::Degrade => Ok(None),
                    };
                }
            };
            let entry = CacheEntry::new(
                CachedResponse::from_head_and_body(head, bytes),
                policy,
                metadata,
            );
            self.promote(key, &entry, index, SystemTime::now(), before)
                .await;
            return Ok(Some(streamed_from(&entry)));
        }
        bump(&self.counters.misses);
        Ok(None)
    }
}

/// A buffered entry as a streamed one (one chunk, no copy of the body).
fn streamed_from(entry: &CacheEntry) -> StreamedEntry {
    let (head, body_bytes) = entry.response.clone().into_head_and_body();
    StreamedEntry::new(
        head,
        entry.policy().clone(),
        EntryMetadata::clone(&entry.metadata),
        body_bytes.len() as u64,
        body::full(body_bytes),
    )
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
        CacheFuture::new(self.inner.put_stream(key, head, policy, body, options))
    }

    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        if self.inner.streaming_tier().is_none() {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "get_stream")));
        }
        CacheFuture::new(self.inner.get_stream(key))
    }
}

/// `ttl` times `scale`, never rounded down to nothing when `ttl` is not nothing.
fn scaled(ttl: Duration, scale: f64) -> Duration {
    if ttl.is_zero() {
        return ttl;
    }
    // Past about a century a TTL means "as long as the tier keeps anything"; the cap also
    // keeps the multiplication from overflowing.
    const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    Duration::try_from_secs_f64(ttl.min(LONGEST).as_secs_f64() * scale)
        .unwrap_or(LONGEST)
        .min(LONGEST)
        .max(Duration::from_millis(1))
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
        capabilities
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let inner = &*self.inner;
        // A fastest tier that answers at once (memory) is answered at once: no future of
        // the stack's own is boxed for an L1 hit.
        match inner.tiers[0].tier.manager.get(key).into_ready() {
            Ok(first) => match inner.answered(0, first, true) {
                Ok(Some(entry)) => CacheFuture::ready(Ok(Some(entry))),
                Err(error) => CacheFuture::ready(Err(error)),
                Ok(None) => CacheFuture::new(inner.lookup_below_first(key, true)),
            },
            Err(pending) => CacheFuture::new(async move {
                let first = pending.await;
                inner.lookup_after_first(key, true, first).await
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
        CacheFuture::new(self.inner.put(key, response, policy, options))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            self.inner.bump_key(key);
            let result = self
                .inner
                .on_tiers(false, |tier| {
                    CacheFuture::new(async move { tier.delete(key).await.map(|()| 1) })
                })
                .await;
            self.inner.counters.deletes.fetch_add(1, Ordering::Relaxed);
            self.inner
                .publish(InvalidationEvent::Delete {
                    key: key.to_owned(),
                })
                .await;
            result.map(|_| ())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        if !self.capabilities().tags {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "delete_tag")));
        }
        CacheFuture::new(async move {
            let removed = self
                .inner
                .on_tiers(false, |tier| tier.delete_tag(tag))
                .await;
            self.inner
                .publish(InvalidationEvent::DeleteTag {
                    tag: tag.to_owned(),
                })
                .await;
            if let Ok(removed) = removed {
                self.inner
                    .counters
                    .deletes
                    .fetch_add(removed, Ordering::Relaxed);
            }
            removed
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        if !self.capabilities().delete_pattern {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "delete_pattern")));
        }
        CacheFuture::new(async move {
            self.inner.bump_all();
            let removed = self
                .inner
                .on_tiers(false, |tier| tier.delete_pattern(pattern))
                .await;
            self.inner
                .publish(InvalidationEvent::DeletePattern {
                    pattern: pattern.as_str().to_owned(),
                })
                .await;
            if let Ok(removed) = removed {
                self.inner
                    .counters
                    .deletes
                    .fetch_add(removed, Ordering::Relaxed);
            }
            removed
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        if !self.capabilities().clear {
            return CacheFuture::ready(Err(Error::unsupported(NAME, "clear")));
        }
        CacheFuture::new(async move {
            self.inner.bump_all();
            let result = self
                .inner
                .on_tiers(false, |tier| {
                    CacheFuture::new(async move { tier.clear().await.map(|()| 0) })
                })
                .await;
            self.inner.publish(InvalidationEvent::Clear).await;
            result.map(|_| ())
        })
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
        let counters = &self.inner.counters;
        let mut stats = BackendStats::default();
        stats.hits = counters.hits.load(Ordering::Relaxed);
        stats.misses = counters.misses.load(Ordering::Relaxed);
        stats.puts = counters.puts.load(Ordering::Relaxed);
        stats.deletes = counters.deletes.load(Ordering::Relaxed);
        Ok(stats)
    }
}
