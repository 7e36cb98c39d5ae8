//! A local-disk HTTP response cache on [RocksDB](https://docs.rs/rocksdb).
//!
//! Each entry is the core codec's envelope, stored under its key in the `entries`
//! column family; a `write_order` column family lists keys by write sequence for
//! eviction. Every RocksDB call runs on tokio's blocking pool. The C++ build of RocksDB
//! happens only for users of this crate.
//!
//! In memory the backend keeps, per stored key, the write sequence and size of its value
//! (about the key's length plus 48 bytes; rebuilt by the scan at open), so a put or a
//! delete never reads the old value back from disk. Table files carry bloom filters
//! (10 bits per key), so a read skips the files that do not hold its key.
//!
//! ```no_run
//! # async fn example() -> cache_core::Result<()> {
//! use cache_core::CacheManager;
//! use cache_rocksdb::{RocksDbCache, RocksDbConfig};
//!
//! let cache = RocksDbCache::open(RocksDbConfig::new("/var/cache/my-service/rocks")).await?;
//! if let Some(entry) = cache.get("GET:https://example.com/").await? {
//!     println!("served from RocksDB: {} bytes", entry.response.body.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Capabilities
//!
//! Pattern deletion (a range scan under the pattern's literal prefix), `clear`, entry
//! count, size in bytes, statistics; entries are stored as bytes. Tags are not supported.
//!
//! # Expiry
//!
//! Checked on every read. A compaction filter drops expired entries whenever RocksDB
//! compacts the files that hold them; [`RocksDbCache::compact`] compacts now and
//! [`RocksDbCache::sweep`] deletes expired entries without waiting for compaction.
//!
//! # Size bound, and its trade-off
//!
//! The live keys and values are counted (by a scan at open, on every write, and again by
//! a scan in [`RocksDbCache::compact`] and [`RocksDbCache::sweep`], since entries the
//! compaction filter drops stay counted until then, which errs towards evicting early)
//! and, past the capacity, the
//! **oldest-written** entries are deleted: eviction follows write order, not recency,
//! because recording every read would turn reads into writes. The files on disk follow
//! the live bytes with a lag: deleted and overwritten values occupy space until
//! compaction reclaims them, the write-ahead log holds up to two write buffers, and
//! compression makes data smaller. Documented margin: two write buffers plus 1 MiB of
//! metadata and logs above the capacity, after a compaction.
//!
//! # Configuration
//!
//! | setting | default |
//! |---|---|
//! | [`RocksDbConfig::new`] | the directory (required) |
//! | [`RocksDbConfig::with_capacity_bytes`] | 1 GiB |
//! | [`RocksDbConfig::with_block_cache_bytes`] | 64 MiB |
//! | [`RocksDbConfig::with_write_buffer_bytes`] | 16 MiB |
//! | [`RocksDbConfig::with_compression`] | LZ4 |
//! | [`RocksDbConfig::with_ttl_policy`] | [`TtlPolicy::default`](cache_core::TtlPolicy::default) |
//!
//! # Damage
//!
//! An entry in a damaged block is a miss, deleted when it is read; a damaged entry is
//! never served. A database whose entries cannot be scanned past a damaged block is
//! salvaged at open: every entry whose block can still be read is copied into a new
//! database that replaces the old one, so only the entries of the damaged blocks are
//! lost (with 50 entries and one flipped byte in each of two table files, 48 are kept,
//! where a RocksDB repair kept 16), and no deleted entry comes back. A database
//! RocksDB cannot open at all (a
//! damaged manifest, or a table whose index cannot be read) is repaired by RocksDB,
//! which drops the tables it cannot read; its archive of them (`lost/`) is removed, so
//! the disk use stays within the documented margin.

mod backend;
mod config;
mod core;
mod maintenance;
mod open;
mod raw;

pub use backend::RocksDbCache;
pub use config::{Compression, RocksDbConfig};
pub use raw::RawAccess;
