//! Request coalescing: `get_or_fetch` and the table of fetches in flight.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cache_core::{
    BoxError, CacheEntry, CachePolicy, CachedResponse, Error, ErrorKind, PutOptions, validate_key,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{Key, NAME, StackInner, TieredCache, lock};
use crate::tier::bump;

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
    /// The fetch did not finish within [`TieredBuilder::with_fetch_timeout`](crate::TieredBuilder::with_fetch_timeout)
    /// (nothing was cached; the key is free for the next call).
    #[error("the fetch did not finish within {0:?}")]
    Timeout(Duration),
    /// The cache failed (a tier in `Fail` mode, an invalid key, a store that could not be
    /// made coherent).
    #[error(transparent)]
    Cache(Arc<Error>),
}

impl From<Error> for FetchError {
    fn from(error: Error) -> Self {
        Self::Cache(Arc::new(error))
    }
}

pub(crate) type FetchOutcome = std::result::Result<Arc<CacheEntry>, FetchError>;
pub(crate) type SharedFetch = Shared<BoxFuture<'static, FetchOutcome>>;
/// The fetches in flight by key, each with its id.
pub(crate) type InFlightTable = std::collections::HashMap<String, (u64, SharedFetch)>;

/// Frees a fetch's in-flight slot however its task ends (a panicking fetch, or a task
/// dropped before it first ran, as when the runtime shuts down), so no key is left joined
/// to a fetch that will never finish. It exists before the task is spawned.
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

impl TieredCache {
    /// The entry under `key`, or the one `fetch` produces, stored in every tier.
    ///
    /// Concurrent calls for one key that all miss make exactly one fetch: the first
    /// caller starts it in a task of its own (so cancelling that caller does not cancel it
    /// for the others) and every caller receives its outcome. A call that finds the key's
    /// fetch already in flight joins it without reading the tiers (the fetch looked in
    /// them when it began; a write since would have detached it). A fetch error reaches every
    /// waiter and nothing is cached; the next call fetches again. With
    /// [`TieredBuilder::with_fetch_timeout`](crate::TieredBuilder::with_fetch_timeout), a
    /// fetch that runs longer gives every waiter [`FetchError::Timeout`] and frees the key.
    /// A fetched response too large for every tier is handed to every waiter and not
    /// stored.
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
        // A fetch of the key already in flight answers this call: its fill looked in every
        // tier when it began, and a write since then would have detached it. Reading the
        // tiers meanwhile would only wait on the slower ones for the same miss (1,000
        // callers of a cold key would send 1,000 reads to a shared tier).
        if let Some(shared) = self.inner.fetch_in_flight(key) {
            return shared.await;
        }
        if let Some(entry) = self.inner.lookup(&Key::new(key), true).await? {
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
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "get_or_fetch runs its fetch as a tokio task: call it inside a tokio runtime",
            )
            .into());
        };
        let inner = &self.inner;
        let (shared, started) = {
            let mut in_flight = lock(&inner.in_flight);
            if let Some(shared) = inner.join_fetch(&in_flight, key) {
                (shared, None)
            } else {
                let fetch_id = inner.next_fetch_id.fetch_add(1, Ordering::Relaxed);
                let (sender, receiver) = tokio::sync::oneshot::channel::<FetchOutcome>();
                let shared = async move {
                    receiver.await.unwrap_or_else(|_| {
                        Err(FetchError::Fetch(Arc::new(
                            "the fetch task failed (it panicked or was dropped before it finished)"
                                .into(),
                        )))
                    })
                }
                .boxed()
                .shared();
                in_flight.insert(key.to_owned(), (fetch_id, shared.clone()));
                inner
                    .counters
                    .in_flight_fetches
                    .fetch_add(1, Ordering::Relaxed);
                (shared, Some((fetch_id, sender)))
            }
        };
        if let Some((fetch_id, sender)) = started {
            // The slot's guard is made before the task, outside the table's lock: however
            // the task ends (or if it never runs), dropping the guard frees the key.
            let slot = InFlightSlot {
                inner: Arc::clone(inner),
                key: key.to_owned(),
                fetch_id,
            };
            runtime.spawn(async move {
                let inner = Arc::clone(&slot.inner);
                // The entry is in the tiers before the slot goes: a caller that finds no
                // slot finds the entry.
                let outcome = inner.fill(&Key::new(&slot.key), fetch).await;
                drop(slot);
                let _ = sender.send(outcome);
            });
        }
        shared.await
    }
}

impl StackInner {
    /// The fetch in flight for `key`, counted as joined and as a miss of the stack (no
    /// tier answered the call; none was read); `None` without one (and without taking
    /// the table's lock when no fetch at all is in flight).
    fn fetch_in_flight(&self, key: &str) -> Option<SharedFetch> {
        if self.counters.in_flight_fetches.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let shared = self.join_fetch(&lock(&self.in_flight), key)?;
        bump(&self.counters.misses);
        Some(shared)
    }

    /// Joins the fetch of `key` in `in_flight` (the table, locked), counting the waiter.
    fn join_fetch(&self, in_flight: &InFlightTable, key: &str) -> Option<SharedFetch> {
        let (_, shared) = in_flight.get(key)?;
        bump(&self.counters.coalesced_waiters);
        Some(shared.clone())
    }

    async fn fill<F, Fut, E>(self: &Arc<Self>, key: &Key<'_>, fetch: F) -> FetchOutcome
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
        let fetching = fetch();
        let fetched = match self.fetch_timeout {
            Some(limit) => match tokio::time::timeout(limit, fetching).await {
                Ok(fetched) => fetched,
                Err(_) => {
                    bump(&self.counters.fetch_timeouts);
                    return Err(FetchError::Timeout(limit));
                }
            },
            None => fetching.await,
        }
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
        // This task is never cancelled by a caller, so the put runs here, not detached.
        match self
            .put(key, fetched.response, fetched.policy, fetched.options)
            .await
        {
            // Too large for every tier: nothing is stored (the tiers dropped the key), and
            // the callers still get what was fetched.
            Err(error) if error.kind() == ErrorKind::TooLarge => Ok(entry),
            Err(error) => Err(error.into()),
            Ok(()) => Ok(entry),
        }
    }
}
