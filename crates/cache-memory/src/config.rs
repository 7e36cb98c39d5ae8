//! Configuration of the memory backend.

use cache_core::TtlPolicy;

use crate::backend::MemoryCache;

/// Configuration of a [`MemoryCache`].
///
/// ```
/// use cache_memory::{MemoryCache, MemoryConfig};
///
/// let cache = MemoryCache::new(MemoryConfig::default().with_capacity_bytes(64 * 1024 * 1024));
/// # let _ = cache;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    pub(crate) capacity_bytes: u64,
    pub(crate) max_entry_bytes: Option<u64>,
    pub(crate) ttl_policy: TtlPolicy,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 256 * 1024 * 1024,
            max_entry_bytes: None,
            ttl_policy: TtlPolicy::default(),
        }
    }
}

impl MemoryConfig {
    /// The most bytes the entries may occupy, as estimated by
    /// [`CacheEntry::approximate_size`](cache_core::CacheEntry::approximate_size) plus the
    /// key; least recently and least frequently used entries are evicted past it.
    /// Default: 256 MiB.
    #[must_use]
    pub fn with_capacity_bytes(mut self, capacity_bytes: u64) -> Self {
        self.capacity_bytes = capacity_bytes;
        self
    }

    /// The largest single entry accepted; a larger put fails with `TooLarge`.
    /// Default: the capacity.
    #[must_use]
    pub fn with_max_entry_bytes(mut self, max_entry_bytes: u64) -> Self {
        self.max_entry_bytes = Some(max_entry_bytes);
        self
    }

    /// How storage TTLs are derived from cache policies. Default: [`TtlPolicy::default`].
    #[must_use]
    pub fn with_ttl_policy(mut self, ttl_policy: TtlPolicy) -> Self {
        self.ttl_policy = ttl_policy;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> MemoryCache {
        MemoryCache::new(self)
    }

    pub(crate) fn effective_max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
            .unwrap_or(self.capacity_bytes)
            .min(self.capacity_bytes)
            .min(u64::from(u32::MAX))
    }
}
