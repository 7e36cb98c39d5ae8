//! The stack with a streaming tier: small bodies promoted into memory, large ones
//! streamed from the tier that holds them. (The conformance suite's streaming cases run
//! against such stacks in `tests/conformance.rs`.)

mod spooling;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, PutOptions, StreamingCacheManager, body};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};
use spooling::SpoolingStore;

async fn stack(limit: u64) -> (TieredCache, Arc<MemoryCache>, Arc<SpoolingStore>) {
    let memory = Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20)).unwrap(),
    );
    let store = Arc::new(SpoolingStore::default());
    let stack = TieredCache::builder()
        .tier(Tier::new(memory.clone()).with_max_entry_bytes(64 * 1024))
        .tier(Tier::streaming(store.clone()))
        .with_stream_promotion_limit(limit)
        .build()
        .await
        .unwrap();
    (stack, memory, store)
}

async fn put_streamed(stack: &TieredCache, key: &str, len: usize) {
    let stored = response(&format!("https://example.com/{key}"), vec![3u8; len]);
    let policy = policy(&stored);
    let (head, bytes) = stored.into_head_and_body();
    let chunks: Vec<_> = bytes
        .chunks(1000)
        .map(|chunk| Ok(bytes.slice_ref(chunk)))
        .collect();
    let written = stack
        .put_stream(
            key,
            head,
            policy,
            body::from_chunks(chunks),
            PutOptions::new().with_ttl(Duration::from_secs(100)),
        )
        .await
        .unwrap();
    assert_eq!(written.len, len as u64);
}

#[tokio::test]
async fn small_bodies_reach_memory_and_large_ones_stay_in_the_streaming_tier() {
    let (stack, memory, store) = stack(32 * 1024).await;
    put_streamed(&stack, "small", 10_000).await;
    put_streamed(&stack, "large", 200_000).await;
    assert_eq!(
        memory
            .get_entry("small")
            .unwrap()
            .unwrap()
            .response
            .body
            .len(),
        10_000
    );
    assert!(memory.get_entry("large").unwrap().is_none());
    assert!(store.get("large").await.unwrap().is_some());

    // The small one is promoted back into memory after memory lost it.
    memory.delete("small").await.unwrap();
    let streamed = stack.get_stream("small").await.unwrap().unwrap();
    assert_eq!(
        body::collect(streamed.body, usize::MAX)
            .await
            .unwrap()
            .len(),
        10_000
    );
    assert!(memory.get_entry("small").unwrap().is_some());

    // The large one streams from the store in its chunks, and is never held in memory.
    let streamed = stack.get_stream("large").await.unwrap().unwrap();
    assert_eq!(streamed.body_len, 200_000);
    assert_eq!(
        body::collect(streamed.body, usize::MAX).await.unwrap(),
        Bytes::from(vec![3u8; 200_000])
    );
    assert!(memory.get_entry("large").unwrap().is_none());

    // Rewritten large: the small copy memory held under that key goes.
    put_streamed(&stack, "small", 100_000).await;
    assert!(memory.get_entry("small").unwrap().is_none());
    let stats = stack.stats();
    assert_eq!(stats.promotions, 1);
    assert_eq!((stats.tiers[0].puts, stats.tiers[1].puts), (1, 3));
}
