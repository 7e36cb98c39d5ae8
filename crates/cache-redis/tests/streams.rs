//! The small streams API on a real server.

mod common;

use std::time::Duration;

use cache_core::{CacheManager, ErrorKind};
use cache_redis::testing::redis_tests_skipped;
use cache_redis::{RedisCache, StreamId};

async fn cache(url: &str, label: &str) -> RedisCache {
    RedisCache::connect(common::config(url, label).with_command_timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_read_the_latest_in_order() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = cache(&url, "streams").await;
    let stream = cache.stream("audit");
    assert_eq!(
        stream.key(),
        format!("{}:s:audit", cache.config().namespace())
    );
    assert!(stream.latest(5).await.unwrap().is_empty());

    let mut ids = Vec::new();
    for index in 0..5u8 {
        ids.push(
            stream
                .publish([("n", &[index][..]), ("kind", &b"purge"[..])])
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    let latest = stream.latest(2).await.unwrap();
    assert_eq!(
        latest.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        ids[3..]
    );
    assert_eq!(latest[1].field("n").unwrap().as_ref(), [4]);
    assert_eq!(latest[1].field("kind").unwrap().as_ref(), b"purge");
    assert_eq!(latest[1].fields.len(), 2);
    assert_eq!(stream.len().await.unwrap(), 5);

    // Reading after an id returns the later entries at once, without blocking.
    let after = stream
        .read_after(ids[1], 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        ids[2..]
    );
    let all = stream
        .read_after(StreamId::ZERO, 3, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        ids[..3]
    );

    let empty: [(&str, &[u8]); 0] = [];
    assert_eq!(
        stream.publish(empty).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_waits_for_the_next_entry_without_stalling_the_cache() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = cache(&url, "blocking").await;
    let stream = cache.stream("events");
    let first = stream.publish([("n", &b"1"[..])]).await.unwrap();

    let reader = tokio::spawn({
        let stream = stream.clone();
        async move { stream.read_after(first, 10, Duration::from_secs(30)).await }
    });
    // The blocked read holds a connection of its own: the cache keeps answering.
    for _ in 0..10 {
        assert!(cache.get("nothing").await.unwrap().is_none());
    }
    assert!(
        !reader.is_finished(),
        "the read returned before anything was published"
    );
    let second = stream.publish([("n", &b"2"[..])]).await.unwrap();
    let read = reader.await.unwrap().unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, second);
    assert_eq!(read[0].field("n").unwrap().as_ref(), b"2");

    // Nothing arrives: the read returns empty after its block time.
    let none = stream
        .read_after(second, 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_capped() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = cache(&url, "capped").await;
    let stream = cache.stream("capped").with_max_len(50);
    for index in 0..1_000u32 {
        stream
            .publish([("n", &index.to_le_bytes()[..])])
            .await
            .unwrap();
    }
    // Approximate trimming drops whole internal nodes (100 entries by default), so the
    // stream keeps between the cap and the cap plus one node.
    let len = stream.len().await.unwrap();
    assert!((50..=150).contains(&len), "{len} entries");
    let newest = stream.latest(1).await.unwrap();
    assert_eq!(newest[0].field("n").unwrap().as_ref(), 999u32.to_le_bytes());
}

/// A blocking read keeps its own connection; a read that blocks longer than the first one
/// did waits its whole block time, not the first one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_block_after_a_shorter_one_waits_its_own_time() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(
        common::config(&url, "blocks").with_command_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let stream = cache.stream("blocks");
    let first = stream.publish([("n", &b"1"[..])]).await.unwrap();
    // The first blocking read sets up the connection: 100 ms of block, 200 ms of timeout.
    assert!(
        stream
            .read_after(first, 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    // Three times the first read's budget, then nothing: an empty answer, not a timeout.
    let waited = stream
        .read_after(first, 10, Duration::from_millis(900))
        .await;
    assert!(waited.as_ref().is_ok_and(Vec::is_empty), "{waited:?}");
}
