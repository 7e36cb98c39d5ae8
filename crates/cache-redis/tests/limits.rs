//! Limits on a real server: the longest storage TTL, the largest entry, tag sets larger
//! than one page of tag deletion.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, MAX_STORAGE_TTL, PutOptions};
use cache_redis::RedisCache;
use cache_redis::testing::redis_tests_skipped;
use redis::AsyncCommands;

async fn put_with(
    cache: &RedisCache,
    key: &str,
    body: Bytes,
    options: PutOptions,
) -> cache_core::Result<()> {
    let response = response(&format!("https://example.com/{key}"), body);
    let policy = policy(&response);
    cache.put(key, response, policy, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_override_past_the_storage_maximum_is_clamped_to_it() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(common::config(&url, "max-ttl"))
        .await
        .unwrap();
    let mut plain = common::plain_connection(&url).await;
    let forever = Duration::from_secs(10_000_000_000_000_000);
    put_with(
        &cache,
        "forever",
        Bytes::from_static(b"body"),
        PutOptions::new().with_ttl(forever).with_tags(["t"]),
    )
    .await
    .unwrap();
    put_with(
        &cache,
        "forever-untagged",
        Bytes::from_static(b"body"),
        PutOptions::new().with_ttl(forever),
    )
    .await
    .unwrap();

    let max_ms = i64::try_from(MAX_STORAGE_TTL.as_millis()).unwrap();
    for key in ["forever", "forever-untagged"] {
        let entry = cache.get(key).await.unwrap().expect("the entry is stored");
        assert_eq!(entry.response.body, "body");
        assert_eq!(entry.metadata.storage_ttl(), MAX_STORAGE_TTL);
        // Redis holds it for the clamp too, counted from the SET a moment ago.
        let pttl: i64 = plain.pttl(cache.entry_key(key)).await.unwrap();
        assert!(
            (max_ms - 60_000..=max_ms).contains(&pttl),
            "{pttl} ms left of {max_ms}"
        );
    }
    assert_eq!(cache.delete_tag("t").await.unwrap(), 1);
    cache.clear().await.unwrap();
}
