//! An in-process HTTP response cache on [moka](https://docs.rs/moka).
//!
//! `cache-memory` keeps decoded entries in memory: a hit hands back the stored
//! `Arc<CacheEntry>` without decoding or copying anything, and a put stores the response
//! without serializing it. Capacity is counted in bytes (each entry weighs its body,
//! headers, URL, tags and a fixed allowance for its policy), and every entry expires at
//! its own storage TTL through moka's per-entry expiry.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//!
//! use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
//! use cache_memory::MemoryCache;
//! use http::StatusCode;
//!
//! let cache = MemoryCache::builder().with_capacity_bytes(64 * 1024 * 1024).build();
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
//! cache.put("GET:https://example.com/hello", cached, policy, PutOptions::new()).await.unwrap();
//! let entry = cache.get("GET:https://example.com/hello").await.unwrap().unwrap();
//! assert_eq!(entry.response.body, "hello, cache");
//! // The storage TTL comes from the policy: max-age=300 (measured from the response time).
//! assert_eq!(entry.metadata.storage_ttl().as_secs_f64().round(), 300.0);
//! # let _ = Duration::ZERO;
//! # });
//! ```
//!
//! # Capabilities
//!
//! Tags, pattern deletion, `clear`, entry count, size in bytes and statistics. Not
//! persistent, and not shared between processes: pair it with a shared tier through
//! `cache-tiered`.
//!
//! # Configuration
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

mod backend;
mod config;

pub use backend::MemoryCache;
pub use config::MemoryConfig;
