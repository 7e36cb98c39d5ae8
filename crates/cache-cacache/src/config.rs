//! Configuration of the cacache backend.

use std::path::{Path, PathBuf};

use cache_core::TtlPolicy;

/// Configuration of a [`CacacheCache`](crate::CacacheCache).
///
/// ```
/// use cache_cacache::CacacheConfig;
///
/// let config = CacacheConfig::new("/var/cache/my-service/http")
///     .with_capacity_bytes(2 * 1024 * 1024 * 1024);
/// assert_eq!(config.capacity_bytes(), 2 * 1024 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacacheConfig {
    pub(crate) path: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) ttl_policy: TtlPolicy,
}

impl CacacheConfig {
    /// A cache stored in the directory `path` (created when missing), with the defaults.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            capacity_bytes: 1024 * 1024 * 1024,
            ttl_policy: TtlPolicy::default(),
        }
    }

    /// The most bytes the entries may occupy on disk (content plus an estimate of each
    /// entry's index line); the least recently used entries are removed past it, also
    /// at open after a restart. Default: 1 GiB.
    #[must_use]
    pub fn with_capacity_bytes(mut self, capacity_bytes: u64) -> Self {
        self.capacity_bytes = capacity_bytes;
        self
    }

    /// How storage TTLs are derived from cache policies. Default: [`TtlPolicy::default`].
    #[must_use]
    pub fn with_ttl_policy(mut self, ttl_policy: TtlPolicy) -> Self {
        self.ttl_policy = ttl_policy;
        self
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}
