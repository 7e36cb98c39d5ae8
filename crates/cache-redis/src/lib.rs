//! Redis as the cache tier many instances of a service share, the invalidation bus that
//! keeps their local tiers coherent, and small capped streams.
//!
//! ```
//! # use cache_redis::testing::{RedisServer, redis_tests_skipped};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # if redis_tests_skipped() { return Ok(()); }
//! # let server = RedisServer::start()?;
//! # let redis_url = server.url();
//! use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
//! use cache_core::{InvalidationBus, InvalidationEvent};
//! use cache_redis::{RedisCache, RedisConfig};
//! use http::StatusCode;
//!
//! // `RedisConfig::from_env()` reads REDIS_URL (redis://127.0.0.1:6379 when it is unset).
//! let cache = RedisCache::connect(RedisConfig::new(redis_url).with_namespace("shop")).await?;
//!
//! let url = url::Url::parse("https://shop.example/")?;
//! let request = http::Request::get(url.as_str()).body(())?;
//! let head = http::Response::builder().header("cache-control", "max-age=300").body(())?;
//! let policy = CachePolicy::new(&request, &head);
//! let response = CachedResponse::new(url, StatusCode::OK).with_body("hello");
//! cache.put("GET:https://shop.example/", response, policy, PutOptions::new()).await?;
//!
//! let hit = cache.get("GET:https://shop.example/").await?;
//! assert_eq!(hit.map(|entry| entry.response.body.clone()), Some("hello".into()));
//! // Every key of the namespace starts with its prefix.
//! assert_eq!(cache.entry_key("GET:https://shop.example/"), "shop:e:GET:https://shop.example/");
//!
//! // Other instances' local tiers learn about the deletion through the bus.
//! cache.delete("GET:https://shop.example/").await?;
//! let key = "GET:https://shop.example/".to_owned();
//! cache.bus().publish(InvalidationEvent::Delete { key }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Storage
//!
//! - One multiplexed connection per [`RedisCache`] (redis-rs's `ConnectionManager`), which
//!   reconnects by itself: throughput comes from many requests in flight on it.
//! - Every key starts with the namespace, encoded so that it holds no `:` (`%` is
//!   written `%25` and `:` `%3A`; `shop` stays `shop`, `shop:eu` becomes `shop%3Aeu`), and
//!   a `:`. So no namespace's keys begin with another's prefix, whatever the names and
//!   the cache keys look like: two namespaces never read, count, clear or invalidate each
//!   other's keys. [`RedisCache::key_prefix`] tells the prefix.
//! - Entry `key` is the string `{ns}:e:{key}`: an 8-byte put id, then the core
//!   codec's envelope (credentials redacted, checksummed). Expiry is Redis's own (`PX`,
//!   milliseconds, rounded up) and every read also checks the entry's exact expiry.
//! - Tags are sets `{ns}:t:{tag}` of put id + key. An entry rewritten without a
//!   tag has a new put id, so deleting the tag spares it; such stale members are dropped
//!   when the tag is deleted, sampled away by later puts with the tag, and the set expires
//!   with its longest-lived entry.
//! - Pattern deletion and `clear` use `SCAN ... MATCH` inside the namespace (never `KEYS`)
//!   and `UNLINK`; nothing outside the namespace is touched.
//! - Deleting a tag takes [`TAG_DELETE_PAGE`] members of its set per script call
//!   (`SPOP`), in a loop, so a tag with a million entries never blocks the server for one
//!   long script; the loop runs as a task of its own and finishes when the caller stops
//!   waiting. A tagged put that runs while the tag is deleted may or may not be removed.
//! - Tagged puts and tag deletion are Lua scripts over several keys: a single server (or
//!   a replicated primary), not Redis Cluster.
//!
//! # Capabilities
//!
//! get / put / delete, tags, pattern deletion, `clear`, `entry_count` (a `SCAN` of the
//! namespace), `health` (`PING` and its latency), stats. No `size_bytes`: Redis accounts
//! memory itself (`maxmemory`).
//!
//! # Failures
//!
//! Every command finishes within the command timeout (pattern deletion, `clear` and
//! `entry_count` are one `SCAN` page and one `UNLINK` at a time, tag deletion one page of
//! the set at a time, each within it). A refused or dropped connection is
//! [`ErrorKind::Unavailable`](cache_core::ErrorKind::Unavailable), a server that does not
//! answer [`ErrorKind::Timeout`](cache_core::ErrorKind::Timeout); both are temporary, and
//! the connection comes back by itself when the server does. Passwords never appear in
//! `Debug` output or errors.
//!
//! A put refused after validation (an entry over the size limit:
//! [`ErrorKind::TooLarge`](cache_core::ErrorKind::TooLarge)) removes the entry the key
//! held: the key is left without one, never with the version the put would have replaced.
//!
//! # Configuration ([`RedisConfig`])
//!
//! | setting | default |
//! |---|---|
//! | URL | `REDIS_URL` with [`RedisConfig::from_env`], else `redis://127.0.0.1:6379` |
//! | namespace ([`RedisConfig::with_namespace`]) | `http-cache` |
//! | connect timeout | 2 s |
//! | command timeout | 1 s |
//! | TTL policy | [`TtlPolicy::default`](cache_core::TtlPolicy) |
//! | largest entry | 64 MiB |
//! | bus stream length | about 10,000 events |
//! | bus ping interval | 5 s |
//! | bus reconnect delay | 50 ms doubling to 2 s |
//! | lazy connect (`connect` does not wait for the server) | off |
//!
//! `rediss://` URLs need the `tls` feature (rustls, system roots). The `test-support`
//! feature adds [`testing`]: throwaway servers to stop, restart and pause.

mod backend;
mod bus;
mod config;
mod core;
mod error;
mod layout;
mod raw;
mod streams;
#[cfg(feature = "test-support")]
pub mod testing;

pub use crate::core::TAG_DELETE_PAGE;
pub use backend::RedisCache;
pub use bus::RedisBus;
pub use config::{DEFAULT_URL, RedisConfig};
pub use raw::RawAccess;
pub use streams::{RedisStream, StreamEntry, StreamId};
