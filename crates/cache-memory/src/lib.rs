//! An in-process HTTP response cache on [moka](https://docs.rs/moka).
//!
//! `cache-memory` keeps decoded entries in memory: a hit hands back the stored
//! `Arc<CacheEntry>` without decoding or copying anything, and a put stores the response
//! without serializing it. Capacity is counted in bytes (each entry weighs its key, body,
//! headers, URL, tags and a fixed allowance for its policy), and every entry expires at
//! its own storage TTL through moka's per-entry expiry.
//!
//! ```
//! # fn main() -> Result<(), cache_core::Error> {
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
//! use cache_memory::{MemoryCache, MemoryConfig};
//! use http::StatusCode;
//!
//! let cache = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 * 1024 * 1024))?;
//!
//! let url = url::Url::parse("https://example.com/hello").unwrap();
//! let request = http::Request::get(url.as_str()).body(()).unwrap();
//! let response = http::Response::builder()
//!     .header("cache-control", "max-age=300")
//!     .body(())
//!     .unwrap();
//! let policy = CachePolicy::new(&request, &response);
//! let cached = CachedResponse::new(url, StatusCode::OK).with_body("hello, cache");
//!
//! cache.put("GET:https://example.com/hello", cached, policy, PutOptions::new()).await?;
//! let entry = cache.get("GET:https://example.com/hello").await?.unwrap();
//! assert_eq!(entry.response.body, "hello, cache");
//! // The storage TTL comes from the policy: max-age=300 (measured from the response time).
//! assert_eq!(entry.metadata.storage_ttl().as_secs_f64().round(), 300.0);
//! # Ok(())
//! # })
//! # }
//! ```
//!
//! # Capabilities
//!
//! Tags, pattern deletion, `clear`, entry count, size in bytes and statistics, and the
//! entry limit ([`MemoryConfig::with_max_entry_bytes`], at most the capacity) as
//! `Capabilities::max_entry_bytes`. Not persistent, and not shared between processes
//! (not `Capabilities::shared`): pair it with a shared tier through `cache-tiered`. Entries are kept decoded, never as bytes: there is no raw storage for
//! the conformance suite to corrupt or grep (no `raw` module, no `stores_bytes`), and no
//! streaming.
//!
//! # Configuration
//!
//! [`MemoryConfig`] holds the settings and [`MemoryCache::open`] opens a cache with them
//! (a zero capacity or entry limit is an `ErrorKind::Config` error).
//!
//! | setting | default |
//! |---|---|
//! | [`MemoryConfig::with_capacity_bytes`] | 256 MiB |
//! | [`MemoryConfig::with_max_entry_bytes`] | the capacity |
//! | [`MemoryConfig::with_ttl_policy`] | [`TtlPolicy::default`](cache_core::TtlPolicy::default): freshness + 1 h grace for revalidatable responses, clamped to 60 s ..= 7 days |
//!
//! Tags are indexed in memory; an entry leaves the index when it is deleted, replaced,
//! evicted or expires, so the index never outgrows the live entries. Pattern deletion
//! scans the keys. Eviction and expiry bookkeeping runs in moka's maintenance, which
//! [`MemoryCache::run_pending_tasks`] runs on demand.
//!
//! # Layout
//!
//! `config` (the settings and their defaults), `core` (the store's primitives on moka and
//! the tag index), `backend` (the thin [`CacheManager`](cache_core::CacheManager)
//! implementation).

mod backend;
mod config;
mod core;

pub use backend::MemoryCache;
pub use config::{DEFAULT_CAPACITY_BYTES, MemoryConfig};
