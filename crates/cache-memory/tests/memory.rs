//! Behaviour specific to the memory backend: byte capacity, index shrinkage, hits that
//! share the stored entry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, ErrorKind, KeyPattern, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};

fn hour() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

#[tokio::test]
async fn a_hit_returns_the_stored_entry_itself() {
    let cache = MemoryCache::open(MemoryConfig::default()).unwrap();
    let cached = response("https://example.com/a", Bytes::from(vec![7u8; 16 * 1024]));
    let body_pointer = cached.body.as_ptr();
    cache
        .put("a", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    let first = cache.get("a").await.unwrap().unwrap();
    let second = cache.get("a").await.unwrap().unwrap();
    // Nothing was serialized on put nor decoded on get: the same allocation comes back.
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.response.body.as_ptr(), body_pointer);
}

#[tokio::test]
async fn capacity_is_counted_in_bytes() {
    let capacity = 4 * 1024 * 1024;
    let cache = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(capacity)).unwrap();
    for n in 0..40 {
        let cached = response(
            "https://example.com/big",
            Bytes::from(vec![n as u8; 256 * 1024]),
        );
        cache
            .put(&format!("big-{n}"), cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
    }
    cache.run_pending_tasks();
    let size = cache.size_bytes().await.unwrap();
    let count = cache.entry_count().await.unwrap();
    assert!(size <= capacity, "{size} bytes held, capacity {capacity}");
    // Each entry weighs its 256 KiB body plus a little: at most 15 of them fit in 4 MiB.
    assert!(count <= 15, "{count} entries of 256 KiB fit in 4 MiB");
    let stats = cache.stats().unwrap();
    assert_eq!(
        stats.evictions,
        40 - count,
        "every entry not held was evicted for size"
    );
}

#[tokio::test]
async fn an_entry_larger_than_the_limit_is_refused() {
    let cache = MemoryCache::open(
        MemoryConfig::default()
            .with_capacity_bytes(1024 * 1024)
            .with_max_entry_bytes(64 * 1024),
    )
    .unwrap();
    let cached = response(
        "https://example.com/huge",
        Bytes::from(vec![0u8; 100 * 1024]),
    );
    let error = cache
        .put("huge", cached.clone(), policy(&cached), hour())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    assert!(cache.get("huge").await.unwrap().is_none());
}

#[tokio::test]
async fn the_tag_index_shrinks_when_entries_expire_are_evicted_deleted_or_replaced() {
    let cache =
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(2 * 1024 * 1024)).unwrap();
    let small = response("https://example.com/t", Bytes::from_static(b"small"));

    // Expiry.
    for n in 0..10 {
        let options = PutOptions::new()
            .with_ttl(Duration::from_millis(150))
            .with_tags(["short", "both"]);
        cache
            .put(
                &format!("short-{n}"),
                small.clone(),
                policy(&small),
                options,
            )
            .await
            .unwrap();
    }
    assert_eq!(cache.tag_index_len(), 20);
    // moka's expiry wheel removes expired entries in its maintenance, in buckets of about a
    // second; reads stop returning them at once (the conformance suite's expiry case).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.tag_index_len() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.run_pending_tasks();
    }
    assert_eq!(cache.tag_index_len(), 0, "expired entries left the index");
    assert_eq!(cache.stats().unwrap().expirations, 10);

    // Replacement and deletion.
    cache
        .put(
            "r",
            small.clone(),
            policy(&small),
            hour().with_tags(["old"]),
        )
        .await
        .unwrap();
    cache
        .put(
            "r",
            small.clone(),
            policy(&small),
            hour().with_tags(["new"]),
        )
        .await
        .unwrap();
    cache
        .put(
            "d",
            small.clone(),
            policy(&small),
            hour().with_tags(["gone"]),
        )
        .await
        .unwrap();
    cache.delete("d").await.unwrap();
    cache.run_pending_tasks();
    assert_eq!(cache.tag_index_len(), 1, "only r's new tag remains");
    assert_eq!(cache.delete_tag("old").await.unwrap(), 0);
    assert_eq!(cache.delete_tag("new").await.unwrap(), 1);

    // Eviction for size: 64 tagged entries of 256 KiB into 2 MiB.
    for n in 0..64 {
        let big = response(
            "https://example.com/big",
            Bytes::from(vec![1u8; 256 * 1024]),
        );
        cache
            .put(
                &format!("big-{n}"),
                big.clone(),
                policy(&big),
                hour().with_tags(["big"]),
            )
            .await
            .unwrap();
    }
    cache.run_pending_tasks();
    let live = cache.entry_count().await.unwrap();
    assert_eq!(
        cache.tag_index_len() as u64,
        live,
        "one membership per live entry"
    );
    assert_eq!(cache.delete_tag("big").await.unwrap(), live);
    assert_eq!(cache.tag_index_len(), 0);
}

#[tokio::test]
async fn pattern_deletion_never_removes_a_newer_version_put_meanwhile() {
    let cache = MemoryCache::open(MemoryConfig::default()).unwrap();
    let cached = response("https://example.com/p", Bytes::from_static(b"v"));
    for n in 0..100 {
        cache
            .put(&format!("p:{n}"), cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
    }
    cache
        .put("q:1", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    let removed = cache
        .delete_pattern(&KeyPattern::new("p:*").unwrap())
        .await
        .unwrap();
    assert_eq!(removed, 100);
    assert_eq!(cache.entry_count().await.unwrap(), 1);
    let stats = cache.stats().unwrap();
    assert_eq!((stats.puts, stats.deletes), (101, 100));
}

#[test]
fn a_zero_capacity_or_entry_limit_is_a_config_error() {
    let zero_capacity = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(0));
    assert_eq!(zero_capacity.unwrap_err().kind(), ErrorKind::Config);
    let zero_limit = MemoryCache::open(MemoryConfig::default().with_max_entry_bytes(0));
    assert_eq!(zero_limit.unwrap_err().kind(), ErrorKind::Config);
    assert!(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(1)).is_ok());
}

#[test]
fn the_entry_limit_is_declared_in_the_capabilities() {
    let declared = |config: MemoryConfig| {
        MemoryCache::open(config)
            .unwrap()
            .capabilities()
            .max_entry_bytes
    };
    // The capacity by default, the setting when lower, never more than the capacity, and
    // never more than the 4 GiB moka can weigh.
    assert_eq!(declared(MemoryConfig::default()), Some(256 << 20));
    let small = MemoryConfig::default().with_capacity_bytes(1 << 20);
    assert_eq!(
        declared(small.clone().with_max_entry_bytes(64 << 10)),
        Some(64 << 10)
    );
    assert_eq!(declared(small.with_max_entry_bytes(8 << 20)), Some(1 << 20));
    let huge = MemoryConfig::default().with_capacity_bytes(16 << 30);
    assert_eq!(declared(huge), Some(u64::from(u32::MAX)));
    let capabilities = MemoryCache::open(MemoryConfig::default())
        .unwrap()
        .capabilities();
    assert!(!capabilities.shared && !capabilities.stores_bytes);
}

#[tokio::test]
async fn the_limit_is_measured_as_the_stack_measures_entries() {
    let cached = response(
        "https://example.com/edge",
        Bytes::from_static(b"at the limit"),
    );
    let limit = cache_core::CacheEntry::approximate_size_of(&cached, &[]) as u64;
    let cache = MemoryCache::open(MemoryConfig::default().with_max_entry_bytes(limit)).unwrap();
    cache
        .put("edge", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    assert!(cache.get("edge").await.unwrap().is_some());
    let over = response(
        "https://example.com/edge",
        Bytes::from_static(b"over the limit"),
    );
    let error = cache
        .put("other", over.clone(), policy(&over), hour())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge);
}

#[tokio::test]
async fn a_refused_put_removes_the_previous_version() {
    let cache = MemoryCache::open(MemoryConfig::default().with_max_entry_bytes(4 * 1024)).unwrap();
    let small = response("https://example.com/k", Bytes::from_static(b"small"));
    cache
        .put("k", small.clone(), policy(&small), hour())
        .await
        .unwrap();
    let big = response("https://example.com/k", Bytes::from(vec![0u8; 8 * 1024]));
    let error = cache
        .put("k", big.clone(), policy(&big), hour())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    assert!(
        cache.get("k").await.unwrap().is_none(),
        "the small version was kept"
    );
    let stats = cache.stats().unwrap();
    assert_eq!((stats.puts, stats.hits, stats.misses), (1, 0, 1));
}
