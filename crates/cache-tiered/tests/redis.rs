//! The stack over a real Redis: degraded mode while the server is down, and two stacks
//! kept coherent through the Redis bus.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response, unique_prefix};
use cache_core::{CacheManager, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_redis::testing::{RedisServer, redis_tests_skipped};
use cache_redis::{RedisCache, RedisConfig};
use cache_tiered::{Tier, TieredCache};

fn config(url: &str, namespace: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_namespace(namespace)
        .with_command_timeout(Duration::from_millis(400))
        .with_connect_timeout(Duration::from_millis(400))
        .with_reconnect_max_delay(Duration::from_millis(100))
}

async fn try_put(stack: &TieredCache, key: &str) -> cache_core::Result<()> {
    let stored = response(
        &format!("https://example.com/{key}"),
        Bytes::from_static(b"body"),
    );
    let policy = policy(&stored);
    stack
        .put(
            key,
            stored,
            policy,
            PutOptions::new().with_ttl(Duration::from_secs(300)),
        )
        .await
}

async fn put(stack: &TieredCache, key: &str) {
    try_put(stack, key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_tier_degrades_to_memory_and_is_used_again_after_a_restart() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = RedisServer::start().unwrap();
    let namespace = unique_prefix("degraded").trim_end_matches(':').to_owned();
    let redis = RedisCache::connect(config(&server.url(), &namespace))
        .await
        .unwrap();
    let memory = Arc::new(MemoryCache::open(MemoryConfig::default()).unwrap());
    let stack = TieredCache::builder()
        .tier(Tier::new(memory.clone()))
        .tier(Tier::new(Arc::new(redis.clone())))
        .build()
        .await
        .unwrap();
    put(&stack, "before").await;
    assert!(redis.get("before").await.unwrap().is_some());

    server.stop();
    // Reads answered by memory never touch Redis.
    assert!(stack.get("before").await.unwrap().is_some());
    // Misses still work. A put still reaches memory, but Redis may keep an older version
    // of the key (its put failed and so did removing the key), and a delete cannot reach
    // Redis at all: both say so, in degrade mode too, and every failed Redis operation
    // is counted.
    let failed = try_put(&stack, "during").await.unwrap_err();
    assert!(failed.kind().is_temporary(), "{failed}");
    assert!(failed.to_string().contains("may still hold"), "{failed}");
    assert!(memory.get_entry("during").unwrap().is_some());
    assert!(stack.get("missing").await.unwrap().is_none());
    let failed = stack.delete("before").await.unwrap_err();
    assert!(failed.kind().is_temporary(), "{failed}");
    assert!(memory.get_entry("before").unwrap().is_none());
    let stats = stack.stats();
    assert_eq!(stats.errors, 4, "put, the delete after it, get, delete");
    assert_eq!(stats.stale_tiers, 2);
    assert_eq!(stats.tiers[1].errors, 4);
    assert_eq!(stats.tiers[0].errors, 0);

    server.restart().unwrap();
    put(&stack, "after").await;
    assert!(
        redis.get("after").await.unwrap().is_some(),
        "Redis is written again"
    );
    memory.delete("after").await.unwrap();
    assert!(
        stack.get("after").await.unwrap().is_some(),
        "and read again"
    );
    assert_eq!(stack.stats().errors, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_stack_clears_the_other_stacks_memory_through_redis() {
    if redis_tests_skipped() {
        return;
    }
    let server = RedisServer::start().unwrap();
    let namespace = unique_prefix("coherent").trim_end_matches(':').to_owned();
    let mut stacks = Vec::new();
    let mut memories = Vec::new();
    for _ in 0..2 {
        let redis = RedisCache::connect(config(&server.url(), &namespace))
            .await
            .unwrap();
        let memory = Arc::new(MemoryCache::open(MemoryConfig::default()).unwrap());
        let stack = TieredCache::builder()
            .tier(Tier::new(memory.clone()))
            .tier(Tier::new(Arc::new(redis.clone())))
            .with_bus(Arc::new(redis.bus()))
            .build()
            .await
            .unwrap();
        stacks.push(stack);
        memories.push(memory);
    }
    let (a, b) = (&stacks[0], &stacks[1]);
    put(a, "k").await;
    // A's put tells the others to drop older versions: wait until B has applied it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.stats().bus_events_applied < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never applied the put"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.get("k").await.unwrap().is_some());
    assert!(
        memories[1].get_entry("k").unwrap().is_some(),
        "promoted into B's memory"
    );

    a.delete("k").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.stats().bus_events_applied < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never applied the delete"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(memories[1].get_entry("k").unwrap().is_none());
    assert!(b.get("k").await.unwrap().is_none());
    assert_eq!(a.stats().bus_events_applied, 0, "A skipped its own event");
}
