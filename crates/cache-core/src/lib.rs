//! The storage contract for HTTP response caches.
//!
//! `cache-core` is what every backend of this workspace implements and every user of one
//! programs against: the [`CacheManager`] and [`StreamingCacheManager`] traits, the stored
//! [`CacheEntry`], the [`TtlPolicy`] that turns a response's cache policy into a storage
//! TTL, the one [`Error`] type, the byte [`codec`] that disk and network backends write,
//! the [`bus`] that keeps instances coherent, and (feature `testkit`) the conformance
//! suite every backend must pass.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use cache_core::{CacheManager, CachedResponse, PutOptions, Result};
//! use http_cache_semantics::CachePolicy;
//!
//! /// Stores a response for a minute and returns the body that is now cached, whatever the
//! /// backend behind `cache` is.
//! async fn cache_for_a_minute(
//!     cache: Arc<dyn CacheManager>,
//!     key: &str,
//!     response: CachedResponse,
//!     policy: CachePolicy,
//! ) -> Result<Option<Bytes>> {
//!     let options = PutOptions::new().with_ttl(Duration::from_secs(60)).with_tags(["docs"]);
//!     cache.put(key, response, policy, options).await?;
//!     Ok(cache.get(key).await?.map(|entry| entry.response.body.clone()))
//! }
//! ```
//!
//! # Features
//!
//! - `testkit`: the conformance suite ([`testkit`]), for backends' tests.
//!
//! Writing a backend of your own: [`guide`].

pub mod body;
pub mod bus;
pub mod codec;
mod entry;
mod error;
mod future;
pub mod guide;
mod key;
mod manager;
#[cfg(feature = "testkit")]
pub mod testkit;
mod ttl;

pub use bus::{BusMessage, BusSubscription, InstanceId, InvalidationBus, InvalidationEvent};
pub use entry::{CacheEntry, CachedResponse, EntryMetadata, ResponseHead};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use future::CacheFuture;
pub use http_cache_semantics::CachePolicy;
pub use key::{KeyPattern, MAX_KEY_LEN, validate_key};
pub use manager::{
    BackendStats, BoxBody, CacheManager, Capabilities, Health, StatsCounters, StoredBody,
    StreamedEntry, StreamingCacheManager,
};
pub use ttl::{MAX_STORAGE_TTL, PutOptions, TtlPolicy};
