//! Configuration of the streaming store.

use std::path::{Path, PathBuf};

use cache_core::TtlPolicy;

/// How a read checks the body it returns against what was stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadVerification {
    /// The body's xxh3-64 checksum, recorded when it was stored: catches every torn,
    /// truncated or bit-flipped body at about 20 GB/s, so reads run at file speed.
    /// It is not a defence against someone who can write the cache directory on purpose
    /// (they could rewrite the metadata as well).
    #[default]
    Checksum,
    /// The body's SHA-256 digest, the name it is stored under: the same guarantee as
    /// the content address itself, at SHA-256 speed (about 1.7 GB/s with SHA-NI).
    Sha256,
}

/// Configuration of a [`StreamingCache`](crate::StreamingCache).
///
/// ```
/// use cache_streaming::{ReadVerification, StreamingConfig};
///
/// let config = StreamingConfig::new("/var/cache/my-service/bodies")
///     .with_capacity_bytes(50 * 1024 * 1024 * 1024)
///     .with_read_verification(ReadVerification::Sha256);
/// assert_eq!(config.capacity_bytes(), 50 * 1024 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamingConfig {
    pub(crate) path: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) ttl_policy: TtlPolicy,
    pub(crate) read_chunk_bytes: usize,
    pub(crate) write_batch_bytes: usize,
    pub(crate) durable_writes: bool,
    pub(crate) read_verification: ReadVerification,
}

impl StreamingConfig {
    /// A store in the directory `path` (created when missing), with the defaults.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            capacity_bytes: 10 * 1024 * 1024 * 1024,
            ttl_policy: TtlPolicy::default(),
            read_chunk_bytes: 256 * 1024,
            write_batch_bytes: 1024 * 1024,
            durable_writes: false,
            read_verification: ReadVerification::Checksum,
        }
    }

    /// The most bytes the store may occupy: every distinct body once, plus each entry's
    /// metadata file. Least recently used entries are removed past it (a body goes when
    /// the last entry that uses it goes), also at open after a restart. Default: 10 GiB.
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

    /// The size of the chunks a streamed body is read in; a reading stream reads up to
    /// three chunks ahead of its consumer and keeps five buffers (1.25 MiB at the default).
    /// Clamped to 4 KiB ..= 16 MiB. Default: 256 KiB.
    #[must_use]
    pub fn with_read_chunk_bytes(mut self, read_chunk_bytes: usize) -> Self {
        self.read_chunk_bytes = read_chunk_bytes.clamp(4 * 1024, 16 * 1024 * 1024);
        self
    }

    /// How many bytes of an incoming body are gathered before they are hashed and written
    /// (batches are written and hashed while the next ones are gathered, so a put holds
    /// about four).
    /// Clamped to 4 KiB ..= 64 MiB. Default: 1 MiB.
    #[must_use]
    pub fn with_write_batch_bytes(mut self, write_batch_bytes: usize) -> Self {
        self.write_batch_bytes = write_batch_bytes.clamp(4 * 1024, 64 * 1024 * 1024);
        self
    }

    /// Whether bodies and metadata are flushed to the disk (`fsync`) before they are
    /// committed. Without it a killed process never leaves a torn entry (every commit is
    /// a rename of a complete file), but a power loss may: such an entry is then detected
    /// by its checksum when read. Default: `false`.
    #[must_use]
    pub fn with_durable_writes(mut self, durable_writes: bool) -> Self {
        self.durable_writes = durable_writes;
        self
    }

    /// How reads verify bodies. Default: [`ReadVerification::Checksum`].
    #[must_use]
    pub fn with_read_verification(mut self, read_verification: ReadVerification) -> Self {
        self.read_verification = read_verification;
        self
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}
