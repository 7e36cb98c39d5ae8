//! A local-disk HTTP response cache on [cacache](https://docs.rs/cacache) that survives
//! restarts, crashes and corruption, bounded in bytes.
//!
//! Each entry is the core codec's envelope (magic, version, checksum, metadata, body),
//! stored as cacache content. An in-memory index of key to content hash, size, expiry,
//! tags and recency is rebuilt from cacache's index when the cache opens; a hit reads one
//! content file by hash (no index bucket parse, no second hash of the content: the
//! envelope's checksum guards it) on tokio's blocking pool.
//!
//! ```no_run
//! # async fn example() -> cache_core::Result<()> {
//! use cache_cacache::{CacacheCache, CacacheConfig};
//! use cache_core::CacheManager;
//!
//! let cache = CacacheCache::open(
//!     CacacheConfig::new("/var/cache/my-service/http").with_capacity_bytes(512 * 1024 * 1024),
//! )
//! .await?;
//! let _sweeper = cache.spawn_sweeper(std::time::Duration::from_secs(300));
//! if let Some(entry) = cache.get("GET:https://example.com/").await? {
//!     println!("served from disk: {} bytes", entry.response.body.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Capabilities
//!
//! Tags, pattern deletion, `clear`, entry count, size in bytes, statistics; entries are
//! stored as bytes (credentials are redacted by the codec, corrupt bytes are misses).
//!
//! # Guarantees
//!
//! - **Expiry**: checked on every read; [`CacacheCache::sweep`] (or
//!   [`CacacheCache::spawn_sweeper`]) reclaims expired entries, and opening drops them.
//! - **Size cap**: content bytes plus an estimate of each entry's index line
//!   (key length + tags + 320 bytes) stay within the capacity; the least recently used
//!   entries go first, and the cap is applied again at open (recency after a restart
//!   follows write time). Directories are not counted.
//! - **Bounded index**: overwriting a key removes its old content and appends one line
//!   to cacache's append-only bucket; a write that finds four lines there removes the
//!   bucket first and starts a new one with its line, so a key written 10,000 times has
//!   a bucket of at most four lines (each one small JSON line; the size cap's margin
//!   covers them). Deleting a key removes its bucket and content.
//! - **Crashes**: content is written to a temporary file and renamed; an interrupted write
//!   leaves either the old state or orphans that the sweep at open removes (a crash
//!   while a full bucket is started anew loses that key: a miss). A torn or
//!   corrupt file is a miss (and is removed), never a panic. Power loss is not covered:
//!   cacache does not fsync.
//! - **No blocking on the executor**: every file operation runs in `spawn_blocking`.
//!
//! One process owns a cache directory at a time.
//!
//! # Configuration
//!
//! | setting | default |
//! |---|---|
//! | [`CacacheConfig::new`] | the directory (required) |
//! | [`CacacheConfig::with_capacity_bytes`] | 1 GiB |
//! | [`CacacheConfig::with_ttl_policy`] | [`TtlPolicy::default`](cache_core::TtlPolicy::default) |

mod backend;
mod config;
mod core;
mod index;
mod layout;
mod raw;

pub use backend::CacacheCache;
pub use cache_kit::SweeperHandle;
pub use config::CacacheConfig;
pub use raw::RawAccess;

pub use crate::core::SweepReport;
