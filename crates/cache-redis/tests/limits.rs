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

/// How often the server ran `command` since its statistics were reset (commands that
/// scripts call included).
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_larger_than_a_page_is_deleted_page_by_page_with_the_exact_count() {
    if redis_tests_skipped() {
        return;
    }
    // A server of our own: its command statistics count only this test's commands.
    let server = common::own_server();
    let cache = RedisCache::connect(
        common::config(&server.url(), "big-tag").with_command_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let mut plain = common::plain_connection(&server.url()).await;
    let page = cache_redis::TAG_DELETE_PAGE;
    let tagged = 3 * page + 7;
    let body = || Bytes::from_static(b"body");
    let ten_minutes = || PutOptions::new().with_ttl(Duration::from_secs(600));

    // `rewritten` is put with the tag, then rewritten without it: a stale member.
    put_with(
        &cache,
        "rewritten",
        body(),
        ten_minutes().with_tags(["big"]),
    )
    .await
    .unwrap();
    let keys: Vec<String> = (0..tagged).map(|index| format!("big-{index}")).collect();
    for chunk in keys.chunks(64) {
        futures::future::try_join_all(chunk.iter().enumerate().map(|(index, key)| {
            // Some entries carry a second tag; deleting the first removes them too.
            let tags: &[&str] = if index == 0 {
                &["big", "other"]
            } else {
                &["big"]
            };
            put_with(
                &cache,
                key,
                body(),
                ten_minutes().with_tags(tags.iter().copied()),
            )
        }))
        .await
        .unwrap();
    }
    put_with(
        &cache,
        "rewritten",
        body(),
        ten_minutes().with_tags(["other"]),
    )
    .await
    .unwrap();
    for index in 0..5 {
        let key = format!("other-{index}");
        put_with(&cache, &key, body(), ten_minutes().with_tags(["other"]))
            .await
            .unwrap();
    }
    let members: u64 = plain.scard(cache.tag_key("big")).await.unwrap();
    assert_eq!(members, tagged as u64 + 1);

    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(cache.delete_tag("big").await.unwrap(), tagged as u64);
    // One script call per page of members (3 full pages and one of 8): none reads the
    // whole set at once.
    assert_eq!(command_calls(&mut plain, "spop").await, 4);
    assert_eq!(command_calls(&mut plain, "smembers").await, 0);
    let exists: bool = plain.exists(cache.tag_key("big")).await.unwrap();
    assert!(!exists, "the tag's set is gone");
    assert_eq!(cache.entry_count().await.unwrap(), 6);
    for key in &keys {
        assert!(cache.get(key).await.unwrap().is_none(), "{key}");
    }
    assert!(cache.get("rewritten").await.unwrap().is_some());
    assert_eq!(cache.delete_tag("other").await.unwrap(), 6);
    assert_eq!(cache.entry_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_refused_as_too_large_leaves_no_entry_under_the_key() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(common::config(&url, "too-large").with_max_entry_bytes(4096))
        .await
        .unwrap();
    // The limit is declared (the tiered stack reads it), and so is the tier's sharing.
    let capabilities = cache.capabilities();
    assert_eq!(capabilities.max_entry_bytes, Some(4096));
    assert!(capabilities.shared);
    let mut plain = common::plain_connection(&url).await;
    let small = || Bytes::from_static(b"small");
    let large = || Bytes::from(vec![b'x'; 8192]);
    let options = || PutOptions::new().with_ttl(Duration::from_secs(600));
    for (key, tags) in [("untagged", &[][..]), ("tagged", &["t"][..])] {
        put_with(
            &cache,
            key,
            small(),
            options().with_tags(tags.iter().copied()),
        )
        .await
        .unwrap();
        assert!(cache.get(key).await.unwrap().is_some());

        let error = put_with(
            &cache,
            key,
            large(),
            options().with_tags(tags.iter().copied()),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), cache_core::ErrorKind::TooLarge, "{error}");
        // Not the previous version either: the key has no entry at all.
        assert!(cache.get(key).await.unwrap().is_none(), "{key}");
        let exists: bool = plain.exists(cache.entry_key(key)).await.unwrap();
        assert!(!exists, "{key}");
    }
    assert_eq!(cache.delete_tag("t").await.unwrap(), 0);
    assert_eq!(cache.stats().unwrap().puts, 2);
}
