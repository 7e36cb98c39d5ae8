//! Configuration of the RocksDB backend.

use std::path::{Path, PathBuf};

use cache_core::TtlPolicy;

/// How RocksDB compresses its data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    None,
    /// LZ4: fast, moderate ratio.
    Lz4,
    /// Zstandard: slower, better ratio.
    Zstd,
}

/// Configuration of a [`RocksDbCache`](crate::RocksDbCache).
///
/// ```
/// use cache_rocksdb::{Compression, RocksDbConfig};
///
/// let config = RocksDbConfig::new("/var/cache/my-service/rocks")
///     .with_capacity_bytes(4 * 1024 * 1024 * 1024)
///     .with_compression(Compression::Zstd);
/// assert_eq!(config.capacity_bytes(), 4 * 1024 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RocksDbConfig {
    pub(crate) path: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) block_cache_bytes: usize,
    pub(crate) write_buffer_bytes: usize,
    pub(crate) compression: Compression,
    pub(crate) ttl_policy: TtlPolicy,
}

impl RocksDbConfig {
    /// A database in the directory `path` (created when missing), with the defaults.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            capacity_bytes: 1024 * 1024 * 1024,
            block_cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: 16 * 1024 * 1024,
            compression: Compression::Lz4,
            ttl_policy: TtlPolicy::default(),
        }
    }

    /// The most bytes of live keys and values; the oldest-written entries are removed
    /// past it, also at open. Default: 1 GiB.
    #[must_use]
    pub fn with_capacity_bytes(mut self, capacity_bytes: u64) -> Self {
        self.capacity_bytes = capacity_bytes;
        self
    }

    /// The size of RocksDB's block cache (decompressed blocks in memory). Default: 64 MiB.
    #[must_use]
    pub fn with_block_cache_bytes(mut self, block_cache_bytes: usize) -> Self {
        self.block_cache_bytes = block_cache_bytes;
        self
    }

    /// The size of a memtable before it is flushed to a file; also bounds the write-ahead
    /// log. Default: 16 MiB.
    #[must_use]
    pub fn with_write_buffer_bytes(mut self, write_buffer_bytes: usize) -> Self {
        self.write_buffer_bytes = write_buffer_bytes;
        self
    }

    /// Block compression. Default: [`Compression::Lz4`].
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// How storage TTLs are derived from cache policies. Default: [`TtlPolicy::default`].
    #[must_use]
    pub fn with_ttl_policy(mut self, ttl_policy: TtlPolicy) -> Self {
        self.ttl_policy = ttl_policy;
        self
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}
