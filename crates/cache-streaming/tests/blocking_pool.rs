//! Slow streams do not hold tokio's blocking threads: with four of them in a runtime
//! whose blocking pool has four threads, another key's `get` is still answered.

use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, random_bytes, response};
use cache_core::{CacheManager, PutOptions, StreamingCacheManager, body};
use cache_streaming::{StreamingCache, StreamingConfig};

const URL: &str = "https://bodies.example/slow";
const HELD_STREAMS: usize = 4;

fn hour() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

/// A runtime whose blocking pool has as many threads as the test holds streams.
fn small_pool_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(HELD_STREAMS)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn open(dir: &std::path::Path) -> StreamingCache {
    let config = StreamingConfig::new(dir)
        .with_read_chunk_bytes(4 * 1024)
        .with_write_batch_bytes(4 * 1024);
    let store = StreamingCache::open(config).await.expect("open");
    let small = response(URL, "another key's small entry");
    store
        .put("other", small.clone(), policy(&small), hour())
        .await
        .expect("put");
    store
}

/// The bound below is a hang detector, not a timing measurement: the `get` takes
/// milliseconds when a blocking thread is free, and never completes when none is.
async fn other_key_is_answered(store: &StreamingCache) {
    let answered = tokio::time::timeout(Duration::from_secs(1), store.get("other")).await;
    let entry = answered
        .expect("another key's get waited for a blocking thread held by a slow stream")
        .expect("get")
        .expect("hit");
    assert_eq!(entry.response.body, "another key's small entry");
}

#[test]
fn slow_readers_leave_the_blocking_pool_free() {
    let runtime = small_pool_runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let large = random_bytes(1024 * 1024);
        let stored = response(URL, large.clone());
        store
            .put("large", stored.clone(), policy(&stored), hour())
            .await
            .unwrap();
        // Each reader takes one chunk, then its consumer stalls.
        let mut held = Vec::new();
        for _ in 0..HELD_STREAMS {
            let mut entry = store.get_stream("large").await.unwrap().expect("hit");
            let first = std::future::poll_fn(|cx| entry.body.as_mut().poll_frame(cx))
                .await
                .expect("a frame")
                .expect("data");
            assert_eq!(first.into_data().unwrap(), large.slice(..4 * 1024));
            held.push(entry.body);
        }
        other_key_is_answered(&store).await;
        // The held streams still deliver the rest, byte for byte.
        for body in held {
            let rest = body::collect(body, usize::MAX).await.expect("rest");
            assert_eq!(rest, large.slice(4 * 1024..));
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn slow_writers_leave_the_blocking_pool_free() {
    let runtime = small_pool_runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let mut senders = Vec::new();
        let mut puts = Vec::new();
        for index in 0..HELD_STREAMS {
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            let (store, key) = (store.clone(), format!("slow-{index}"));
            let head = response(URL, Bytes::new()).into_head_and_body().0;
            let put_policy = policy(&response(URL, Bytes::new()));
            puts.push(tokio::spawn(async move {
                store
                    .put_stream(
                        &key,
                        head,
                        put_policy,
                        body::from_receiver(receiver),
                        hour(),
                    )
                    .await
            }));
            // Two batches' worth, so the write of the first has begun; the second send
            // returns once the put took the first chunk. Then the upstream stalls.
            for part in 0..2u8 {
                let sent = tokio::time::timeout(
                    Duration::from_secs(1),
                    sender.send(Ok(Bytes::from(vec![part; 8 * 1024]))),
                )
                .await;
                sent.unwrap_or_else(|_| {
                    panic!("put {index} does not read its body: no blocking thread is free")
                })
                .expect("the put reads its body");
            }
            senders.push(sender);
        }
        other_key_is_answered(&store).await;
        // The stalled uploads finish once their bodies do.
        drop(senders);
        for put in puts {
            assert_eq!(put.await.unwrap().expect("put_stream").len, 16 * 1024);
        }
        assert_eq!(store.entry_count().await.unwrap(), HELD_STREAMS as u64 + 1);
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}
