//! Any cache of this workspace as the cache manager of the
//! [`http-cache`](https://docs.rs/http-cache) crate (its 1.0 line, on
//! http-cache-semantics 3): memory, disk, Redis or a whole tiered stack under
//! `http-cache-reqwest` or `http-cache-tower`, without glue code.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//!
//! use cache_cacache::{CacacheCache, CacacheConfig};
//! use cache_http_cache::HttpCacheAdapter;
//! use cache_memory::{MemoryCache, MemoryConfig};
//! use cache_tiered::{Tier, TieredCache};
//! use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
//!
//! // Memory over disk: hot responses from memory, the rest from disk, all kept by HTTP's
//! // caching rules (http-cache decides what may be stored and when to revalidate).
//! let disk = CacacheCache::open(CacacheConfig::new("/var/cache/my-client")).await?;
//! let stack = TieredCache::builder()
//!     .tier(Tier::new(Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20))?)))
//!     .tier(Tier::new(Arc::new(disk)))
//!     .build()
//!     .await?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(Cache(HttpCache {
//!         mode: CacheMode::Default,
//!         manager: HttpCacheAdapter::new(Arc::new(stack)),
//!         options: HttpCacheOptions::default(),
//!     }))
//!     .build();
//! let page = client.get("http://127.0.0.1:8080/").send().await?;
//! println!("x-cache: {:?}", page.headers().get("x-cache"));
//! # Ok(())
//! # }
//! ```
//!
//! # What the adapter does
//!
//! - **Keys** are http-cache's (`GET:http://host/path`), used as they are.
//! - **Headers**: every value http-cache hands over is stored, names with several values
//!   keep them all, in order. Values that are UTF-8 but not ASCII (which http-cache's own
//!   conversion from `http::HeaderMap` drops) round-trip too. A stored value that is not
//!   UTF-8 at all (put by another path than this adapter) cannot be expressed in
//!   http-cache's `String` headers and is left out of the response it gets, never altered.
//! - **Bodies**: a put takes one copy of the body (the backend keeps it while http-cache
//!   gets its `Vec<u8>` back), a hit one copy out of the backend's shared buffer; the
//!   codec of byte-storing backends adds none.
//! - **`HttpResponse::metadata`** (from http-cache's metadata provider) is kept, in a
//!   reserved header of the stored entry ([`METADATA_HEADER`]) that is taken out again on
//!   the way back. A response header of that name from upstream is stored marked as such
//!   and comes back as the header it was: an origin cannot forge the metadata.
//! - **Expiry**: the backend's [`TtlPolicy`](cache_core::TtlPolicy) turns each response's
//!   policy into a storage TTL (freshness plus a stale grace for responses that can be
//!   revalidated), unless [`HttpCacheAdapter::with_put_options`] sets one.
//! - **Failures**: by default ([`FailureMode::Degrade`]) a cache that fails (Redis down, a
//!   disk error, a response with a header the backend cannot store) does not fail the
//!   request: a failed lookup is a miss, a failed store returns the response uncached,
//!   and [`HttpCacheAdapter::errors`] counts them. [`FailureMode::Fail`] hands the error
//!   to http-cache instead, which fails the request.
//!
//! http-cache keeps one entry per key: two variants of a response that says
//! `Vary: Accept-Language` replace each other (each request still gets its own
//! language, the other variant is fetched again). To keep both, make the language part
//! of the key with [`key_with_request_headers`].

mod adapter;
mod convert;

pub use adapter::{FailureMode, HttpCacheAdapter, key_with_request_headers};
pub use convert::{METADATA_HEADER, from_http_cache_response, to_http_cache_response};
