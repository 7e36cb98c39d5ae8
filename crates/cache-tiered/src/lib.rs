//! An N-tier HTTP response cache over any [`CacheManager`](cache_core::CacheManager)s:
//! memory over disk, memory over Redis, or deeper.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cache_core::{CachePolicy, CachedResponse};
//! use cache_memory::{MemoryCache, MemoryConfig};
//! use cache_tiered::{Fetched, Tier, TieredCache};
//!
//! let stack = TieredCache::builder()
//!     .tier(Tier::new(Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(16 << 20))?)))
//!     .tier(Tier::new(Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20))?)))
//!     .build()
//!     .await?;
//!
//! // Many concurrent callers of one missing key make one fetch.
//! let entry = stack
//!     .get_or_fetch("GET:https://example.com/", || async {
//!         let url = url::Url::parse("https://example.com/")?;
//!         let response = CachedResponse::new(url.clone(), http::StatusCode::OK).with_body("hi");
//!         let request = http::Request::get(url.as_str()).body(())?;
//!         let policy = CachePolicy::new(&request, &http::Response::new(()));
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Fetched::new(response, policy))
//!     })
//!     .await?;
//! assert_eq!(entry.response.body, "hi");
//! assert_eq!(stack.stats().fetches, 1);
//! # Ok(())
//! # }
//! ```
//!
//! - **get** walks the tiers, fastest first. A hit in a slower tier is promoted into the
//!   faster tiers that accept promotions (per [`Promotion`]: always, after N hits, or
//!   above a hit rate), with a TTL that never outlives the entry's remaining life in the
//!   tier it came from.
//! - **put** writes every tier at once, each with the storage TTL times its
//!   [`Tier::with_ttl_scale`]; a tier whose entry limit is too small drops the key
//!   instead of keeping an older version. The limit is the one its backend declares in
//!   [`Capabilities::max_entry_bytes`](cache_core::Capabilities::max_entry_bytes), or the
//!   lower one of [`Tier::with_max_entry_bytes`]. A put that no tier takes for its size
//!   fails with `TooLarge` (and leaves the key in no tier), as a single backend refuses an
//!   entry over its limit. A failing tier does not keep the
//!   others from being written. A hit reports the metadata of the copy that answered, so
//!   with a scale other than 1 its expiry is that tier's (a copy promoted into memory
//!   that ends with its source is the source's entry itself, metadata included).
//! - **Failures**: a tier in [`FailureMode::Degrade`] (the default) is counted and
//!   skipped; in [`FailureMode::Fail`] its error fails the operation.
//! - **Invalidation**: `delete`, `delete_tag`, `delete_pattern` and `clear` reach every
//!   tier and are published on the bus given to [`TieredBuilder::with_bus`], and so is a
//!   delete of the key after every `put` (other instances drop their older copies);
//!   events from other instances are applied to the local tiers only (not to shared
//!   ones: a backend declaring
//!   [`Capabilities::shared`](cache_core::Capabilities::shared), such as Redis, or a tier
//!   marked [`Tier::shared`]), `Resync` clears the local tiers, and so does the bus ending.
//!   An event a local tier cannot apply (a tag deletion on a tier without tags) clears it.
//! - **Coherence**: once a write or an invalidation has returned `Ok`, no `get` returns
//!   what it replaced or removed (on other instances: once its bus event is applied). A
//!   promotion copies only what it read while no write of its key ran; writes finish
//!   when their caller's future is dropped; a tier whose write fails has the key removed,
//!   and when that fails too the call says so. See [`TieredCache`] for the details.
//! - **Coalescing**: [`TieredCache::get_or_fetch`], bounded by
//!   [`TieredBuilder::with_fetch_timeout`]; typed values (any serde type, stored
//!   as JSON) with [`TieredCache::get_or_compute_typed`] and [`TtlPreset`]s.
//! - **Streaming**: a stack with a [`Tier::streaming`] tier is a
//!   [`StreamingCacheManager`](cache_core::StreamingCacheManager): `put_stream` streams the
//!   body into that tier and copies it into the other tiers only when it fits them and the
//!   [stream promotion limit](TieredBuilder::with_stream_promotion_limit); `get_stream`
//!   promotes small bodies into the faster tiers and streams large ones from the tier that
//!   holds them.
//! - **Statistics**: [`TieredCache::stats`], exact, per tier and overall.
//! - **Capabilities**: the stack declares tags, pattern deletion, `clear` and health when
//!   every tier does, streaming with a streaming tier, statistics always; its
//!   `max_entry_bytes` is the largest of its tiers' limits (none when a tier has none),
//!   and it is `shared` only when every tier is, so a stack nests as a tier of another.

mod promotion;
mod stack;
mod tier;
mod typed;

pub use promotion::Promotion;
pub use stack::{
    DEFAULT_MAX_BUFFERED_BODY, FetchError, Fetched, TieredBuilder, TieredCache, TieredStats,
};
pub use tier::{FailureMode, Tier, TierStats};
pub use typed::TtlPreset;
