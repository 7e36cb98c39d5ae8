//! [`MemoryConfig`]: the settings of a memory cache and their defaults.

use cache_core::TtlPolicy;

/// The default of [`MemoryConfig::with_capacity_bytes`]: 256 MiB.
pub const DEFAULT_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;

/// The settings of a [`MemoryCache`](crate::MemoryCache), opened with
/// [`MemoryCache::open`](crate::MemoryCache::open).
///
/// ```
/// use cache_memory::{MemoryCache, MemoryConfig};
///
/// let config = MemoryConfig::default()
///     .with_capacity_bytes(64 * 1024 * 1024)
///     .with_max_entry_bytes(1024 * 1024);
/// let cache = MemoryCache::open(config)?;
/// # let _ = cache;
/// # Ok::<(), cache_core::Error>(())
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
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            max_entry_bytes: None,
            ttl_policy: TtlPolicy::default(),
        }
    }
}

impl MemoryConfig {
    /// The most bytes the entries may occupy, each weighing its key plus
    /// [`CacheEntry::approximate_size`](cache_core::CacheEntry::approximate_size); least
    /// recently and least frequently used entries are evicted past it. Zero is refused by
    /// [`MemoryCache::open`](crate::MemoryCache::open) (`ErrorKind::Config`).
    /// Default: 256 MiB ([`DEFAULT_CAPACITY_BYTES`]).
    #[must_use]
    pub fn with_capacity_bytes(mut self, capacity_bytes: u64) -> Self {
        self.capacity_bytes = capacity_bytes;
        self
    }

    /// The largest single entry accepted, by
    /// [`CacheEntry::approximate_size`](cache_core::CacheEntry::approximate_size) (the
    /// measure the tiered stack uses); a larger put fails with `TooLarge` and leaves no
    /// entry under its key (the previous version goes too). Values above
    /// the capacity (or above 4 GiB, the most one entry can weigh in moka) are taken as
    /// that bound; zero is refused by [`MemoryCache::open`](crate::MemoryCache::open)
    /// (`ErrorKind::Config`). The cache declares the limit in
    /// [`Capabilities::max_entry_bytes`](cache_core::Capabilities::max_entry_bytes), so a
    /// tiered stack skips this tier for larger entries without being told.
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
}
