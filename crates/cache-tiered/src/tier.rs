//! One tier of a stack: a backend and how the stack treats it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::{CacheManager, StreamingCacheManager};

/// What a failing tier does to the operation that met the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Count the error, treat the tier as a miss (or a skipped write) and carry on with
    /// the other tiers.
    #[default]
    Degrade,
    /// Fail the operation with the tier's error (after the other tiers were written, for
    /// puts and deletions).
    Fail,
}

/// A backend in a stack, with its settings.
///
/// ```
/// use std::sync::Arc;
/// use cache_memory::{MemoryCache, MemoryConfig};
/// use cache_tiered::{FailureMode, Tier};
///
/// let memory = Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20))?);
/// let tier = Tier::new(memory)
///     .with_ttl_scale(0.25)               // keep entries a quarter of their TTL here
///     .with_max_entry_bytes(1 << 20)      // nothing over 1 MiB
///     .with_failure_mode(FailureMode::Degrade);
/// # let _ = tier;
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Tier {
    pub(crate) manager: Arc<dyn CacheManager>,
    pub(crate) streaming: Option<Arc<dyn StreamingCacheManager>>,
    pub(crate) ttl_scale: f64,
    pub(crate) accepts_promotions: bool,
    pub(crate) max_entry_bytes: Option<u64>,
    pub(crate) failure_mode: FailureMode,
    pub(crate) shared: bool,
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("backend", &self.manager.name())
            .field("streaming", &self.streaming.is_some())
            .field("ttl_scale", &self.ttl_scale)
            .field("accepts_promotions", &self.accepts_promotions)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("failure_mode", &self.failure_mode)
            .field("shared", &self.shared)
            .finish()
    }
}

impl Tier {
    /// A tier over `manager` with the defaults below.
    pub fn new(manager: Arc<dyn CacheManager>) -> Self {
        Self {
            manager,
            streaming: None,
            ttl_scale: 1.0,
            accepts_promotions: true,
            max_entry_bytes: None,
            failure_mode: FailureMode::Degrade,
            shared: false,
        }
    }

    /// A tier over a streaming backend: the stack's `put_stream` streams bodies into it
    /// and its `get_stream` streams them out of it (a stack holds one such tier).
    pub fn streaming(manager: Arc<dyn StreamingCacheManager>) -> Self {
        let mut tier = Self::new(Arc::clone(&manager) as Arc<dyn CacheManager>);
        tier.streaming = Some(manager);
        tier
    }

    /// Multiplies the storage TTL of every entry written to this tier (a memory tier in
    /// front of Redis might keep entries for a tenth of their TTL). Values that are not
    /// finite or not above zero are taken as 1. Default: 1.
    pub fn with_ttl_scale(mut self, scale: f64) -> Self {
        self.ttl_scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        self
    }

    /// Whether hits in slower tiers are copied into this one. Default: true.
    pub fn with_promotions(mut self, accepts_promotions: bool) -> Self {
        self.accepts_promotions = accepts_promotions;
        self
    }

    /// Lowers the largest entry (by [`CacheEntry::approximate_size`](cache_core::CacheEntry::approximate_size),
    /// the one measure used for puts, promotions and streamed bodies) this tier stores;
    /// larger ones skip it (and the tier drops the key). The stack already takes the limit
    /// the backend declares in
    /// [`Capabilities::max_entry_bytes`](cache_core::Capabilities::max_entry_bytes): this
    /// only makes it smaller (a memory tier that keeps small entries only), and a value
    /// above the declared one is taken as the declared one. Default: the backend's
    /// declared limit, none if it declares none.
    pub fn with_max_entry_bytes(mut self, max_entry_bytes: u64) -> Self {
        self.max_entry_bytes = Some(max_entry_bytes);
        self
    }

    /// What a failure of this tier does. Default: [`FailureMode::Degrade`].
    pub fn with_failure_mode(mut self, failure_mode: FailureMode) -> Self {
        self.failure_mode = failure_mode;
        self
    }

    /// Marks the tier as shared between instances: invalidations received from the bus are
    /// not applied to it, since the instance that published them already did. A backend
    /// that declares [`Capabilities::shared`](cache_core::Capabilities::shared) (Redis) is
    /// shared without this; it is for a backend that does not declare it but is used by
    /// several stacks (one instance held by two stacks of a test, a custom backend).
    /// Default: what the backend declares.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// The tier as the stack uses it: the smaller of the tier's and the backend's entry
    /// limits, and shared when either says so. Read once, when the stack is built.
    pub(crate) fn with_declared_limits(mut self) -> Self {
        let declared = self.manager.capabilities();
        self.max_entry_bytes = match (self.max_entry_bytes, declared.max_entry_bytes) {
            (Some(set), Some(declared)) => Some(set.min(declared)),
            (set, declared) => set.or(declared),
        };
        self.shared |= declared.shared;
        self
    }

    pub(crate) fn admits(&self, size: usize) -> bool {
        self.max_entry_bytes
            .is_none_or(|max| u64::try_from(size).unwrap_or(u64::MAX) <= max)
    }
}

/// The counters of one tier, exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// The tier's backend name.
    pub name: &'static str,
    /// Gets this tier answered with an entry.
    pub hits: u64,
    /// Gets that reached this tier and found nothing.
    pub misses: u64,
    /// Entries copied into this tier from a slower one.
    pub promotions: u64,
    /// Entries written to this tier by `put` (promotions not included).
    pub puts: u64,
    /// Operations on this tier that failed.
    pub errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) puts: AtomicU64,
    pub(crate) errors: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl TierCounters {
    pub(crate) fn snapshot(&self, name: &'static str) -> TierStats {
        TierStats {
            name,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            promotions: self.promotions.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
