//! Helpers the cases share: puts with a fresh policy, bodies of gets, long TTLs.

use std::time::Duration;

use bytes::Bytes;
use http_cache_semantics::CachePolicy;

use crate::entry::CachedResponse;
use crate::manager::CacheManager;
use crate::testkit::fixtures::policy;
use crate::ttl::PutOptions;

/// The TTL of the cases' long-lived entries.
pub(super) const HOUR: Duration = Duration::from_secs(3600);

/// Put options with a TTL of an hour: the entry outlives the case.
pub(super) fn long_lived() -> PutOptions {
    PutOptions::new().with_ttl(HOUR)
}

/// The URL of the response the cases store under `key`.
pub(super) fn url_for(key: &str) -> String {
    format!("https://conformance.example/{}", key.len())
}

/// Puts `response` with a fresh policy and returns that policy.
pub(super) async fn put(
    manager: &dyn CacheManager,
    key: &str,
    response: &CachedResponse,
    options: PutOptions,
) -> CachePolicy {
    let policy = policy(response);
    manager
        .put(key, response.clone(), policy.clone(), options)
        .await
        .unwrap_or_else(|error| panic!("put {key:?} failed: {error}"));
    policy
}

/// The body of the entry under `key`, or `None`; a failed get fails the case.
pub(super) async fn get_body(manager: &dyn CacheManager, key: &str) -> Option<Bytes> {
    manager
        .get(key)
        .await
        .unwrap_or_else(|error| panic!("get {key:?} failed: {error}"))
        .map(|entry| entry.response.body.clone())
}
