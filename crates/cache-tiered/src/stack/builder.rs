//! [`TieredBuilder`]: the stack's settings and its construction.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use cache_core::{Error, ErrorKind, InvalidationBus, Result, TtlPolicy};

use super::coherence::{Coherence, listen};
use super::stats::StackCounters;
use super::{NAME, StackInner, TierState, TieredCache, lock};
use crate::promotion::{Promotion, PromotionTracker};
use crate::tier::{Tier, TierCounters};

/// Builds a [`TieredCache`].
#[derive(Default)]
#[must_use]
pub struct TieredBuilder {
    tiers: Vec<Tier>,
    ttl_policy: TtlPolicy,
    promotion: Promotion,
    max_tracked_keys: usize,
    stream_promotion_limit: Option<u64>,
    max_buffered_body: Option<u64>,
    fetch_timeout: Option<Duration>,
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
            .field("max_buffered_body", &self.max_buffered_body)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("bus", &self.bus.as_ref().map(|bus| bus.instance_id()))
            .finish()
    }
}

/// The default of [`TieredBuilder::with_max_buffered_body`]: 64 MiB.
pub const DEFAULT_MAX_BUFFERED_BODY: u64 = 64 << 20;

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
    /// faster tiers; larger ones are streamed from the tier that holds them (and a
    /// buffered `get` of them is not promoted). Default: 1 MiB.
    pub fn with_stream_promotion_limit(mut self, bytes: u64) -> Self {
        self.stream_promotion_limit = Some(bytes);
        self
    }

    /// The largest body a buffered [`get`](cache_core::CacheManager::get) reads whole out
    /// of the streaming tier; a larger one fails with `TooLarge` (read it with
    /// [`get_stream`](cache_core::StreamingCacheManager::get_stream)), so no call holds a
    /// body past this in memory. Default: 64 MiB.
    pub fn with_max_buffered_body(mut self, bytes: u64) -> Self {
        self.max_buffered_body = Some(bytes);
        self
    }

    /// How long a fetch of [`TieredCache::get_or_fetch`] may run: past it, every caller
    /// waiting on it gets [`FetchError::Timeout`](crate::FetchError::Timeout), nothing is
    /// stored and the key is free for the next call. Default: no limit.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = Some(timeout);
        self
    }

    /// Publishes this stack's invalidations on `bus` and applies the other instances'
    /// to the local tiers (not to shared ones: a backend that declares
    /// [`Capabilities::shared`](cache_core::Capabilities::shared), or a tier marked
    /// [`Tier::shared`]); `Resync` clears them.
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
                    tier: tier.with_declared_limits(),
                    counters: TierCounters::default(),
                })
                .collect(),
            ttl_policy: self.ttl_policy,
            stream_promotion_limit: self.stream_promotion_limit.unwrap_or(1 << 20),
            max_buffered_body: self.max_buffered_body.unwrap_or(DEFAULT_MAX_BUFFERED_BODY),
            fetch_timeout: self.fetch_timeout,
            promotion: PromotionTracker::new(self.promotion, max_tracked_keys),
            bus: self.bus,
            counters: StackCounters::default(),
            in_flight: Mutex::new(HashMap::new()),
            next_fetch_id: AtomicU64::new(0),
            coherence: Coherence::new(),
            listener: Mutex::new(None),
        });
        if let Some(subscription) = subscription {
            let weak: Weak<StackInner> = Arc::downgrade(&inner);
            *lock(&inner.listener) = Some(tokio::spawn(listen(weak, subscription)));
        }
        Ok(TieredCache { inner })
    }
}
