//! The limits backends declare in their capabilities, as the stack reads them: entry
//! sizes (a tier is skipped for what its backend would refuse, without a limit set by
//! hand; a put no tier takes is refused and leaves the key in no tier) and shared tiers
//! (not invalidated by other instances' events).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::bus::InProcessHub;
use cache_core::testkit::chaos::ChaosTier;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheEntry, CacheManager, CachePolicy, CachedResponse, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};

fn memory_limited_to(max_entry_bytes: u64) -> Arc<MemoryCache> {
    let config = MemoryConfig::default()
        .with_capacity_bytes(64 << 20)
        .with_max_entry_bytes(max_entry_bytes);
    Arc::new(MemoryCache::open(config).unwrap())
}

fn memory() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20)).unwrap())
}

fn fixture(key: &str, body: impl Into<Bytes>) -> (CachedResponse, CachePolicy) {
    let response = response(&format!("https://example.com/{key}"), body);
    let policy = policy(&response);
    (response, policy)
}

fn ttl(seconds: u64) -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(seconds))
}

async fn put(stack: &TieredCache, key: &str, body_len: usize) {
    let (response, policy) = fixture(key, vec![7u8; body_len]);
    stack.put(key, response, policy, ttl(100)).await.unwrap();
}

/// A stack of `l1` over `l2`, nothing else set.
async fn two_tiers(l1: Tier, l2: Tier) -> TieredCache {
    TieredCache::builder()
        .tier(l1)
        .tier(l2)
        .build()
        .await
        .unwrap()
}

/// Puts a small and then a 16 KiB entry through a stack whose L1 takes at most 4 KiB:
/// the big one skips L1 (and drops its small version there), lands in L2, is served
/// from L2 and not promoted, with no error anywhere.
async fn large_entries_skip_the_limited_tier(
    stack: &TieredCache,
    l1: &MemoryCache,
    l2: &MemoryCache,
) {
    put(stack, "k", 100).await;
    assert!(l1.get_entry("k").unwrap().is_some());

    put(stack, "k", 16 * 1024).await;
    assert!(
        l1.get_entry("k").unwrap().is_none(),
        "the old small version is gone"
    );
    assert_eq!(
        l2.get_entry("k").unwrap().unwrap().response.body.len(),
        16 * 1024
    );
    // Served from L2, and not promoted into L1.
    assert_eq!(
        stack.get("k").await.unwrap().unwrap().response.body.len(),
        16 * 1024
    );
    assert!(l1.get_entry("k").unwrap().is_none());

    let stats = stack.stats();
    assert_eq!(stats.promotions, 0);
    // Skipped by the stack, not refused by the backend: no error anywhere.
    assert_eq!(stats.errors, 0);
    assert_eq!((stats.tiers[0].puts, stats.tiers[1].puts), (1, 2));
    assert_eq!((stats.tiers[0].errors, stats.tiers[1].errors), (0, 0));
    assert_eq!((stats.tiers[0].hits, stats.tiers[1].hits), (0, 1));
    // L1 saw the small put and one get (a miss); the big put never reached it.
    let l1_stats = l1.stats().unwrap();
    assert_eq!((l1_stats.puts, l1_stats.misses), (1, 3));
}

#[tokio::test]
async fn a_tier_is_skipped_for_entries_over_its_backends_declared_limit() {
    // L1 declares 4 KiB; nothing is set on the tier.
    let (l1, l2) = (memory_limited_to(4 * 1024), memory());
    assert_eq!(l1.capabilities().max_entry_bytes, Some(4 * 1024));
    let stack = two_tiers(Tier::new(l1.clone()), Tier::new(l2.clone())).await;
    large_entries_skip_the_limited_tier(&stack, &l1, &l2).await;
}

#[tokio::test]
async fn a_tier_is_skipped_for_entries_over_the_limit_set_on_it() {
    // L1 declares no limit of its own (beyond its capacity); the tier sets 4 KiB.
    let (l1, l2) = (memory(), memory());
    let stack = two_tiers(
        Tier::new(l1.clone()).with_max_entry_bytes(4 * 1024),
        Tier::new(l2.clone()),
    )
    .await;
    large_entries_skip_the_limited_tier(&stack, &l1, &l2).await;
}

#[tokio::test]
async fn the_declared_limit_admits_exactly_what_the_backend_stores() {
    let (response, policy) = fixture("edge", Bytes::from_static(b"exactly at the limit"));
    let limit = CacheEntry::approximate_size_of(&response, &[]) as u64;
    let (l1, l2) = (memory_limited_to(limit), memory());
    let stack = two_tiers(Tier::new(l1.clone()), Tier::new(l2.clone())).await;
    stack.put("edge", response, policy, ttl(100)).await.unwrap();
    assert!(
        l1.get_entry("edge").unwrap().is_some(),
        "admitted at the limit"
    );
    let (over, over_policy) = fixture("edge", Bytes::from_static(b"one byte over the limit"));
    stack
        .put("edge", over, over_policy, ttl(100))
        .await
        .unwrap();
    assert!(l1.get_entry("edge").unwrap().is_none(), "skipped one over");
    let stats = stack.stats();
    assert_eq!(
        (stats.errors, stats.tiers[0].puts, stats.tiers[1].puts),
        (0, 1, 2)
    );
}

#[tokio::test]
async fn a_tier_setting_lowers_the_declared_limit_and_never_raises_it() {
    // Declared 64 KiB, lowered to 4 KiB on the tier: a 16 KiB entry skips it.
    let (lowered, l2) = (memory_limited_to(64 * 1024), memory());
    let stack = two_tiers(
        Tier::new(lowered.clone()).with_max_entry_bytes(4 * 1024),
        Tier::new(l2.clone()),
    )
    .await;
    put(&stack, "k", 16 * 1024).await;
    assert!(lowered.get_entry("k").unwrap().is_none());
    assert_eq!(stack.stats().tiers[0].puts, 0);

    // Declared 4 KiB, "raised" to 1 MiB on the tier: the backend's limit holds, and the
    // stack still skips the tier instead of meeting a refusal.
    let (declared, l2) = (memory_limited_to(4 * 1024), memory());
    let stack = two_tiers(
        Tier::new(declared.clone()).with_max_entry_bytes(1 << 20),
        Tier::new(l2.clone()),
    )
    .await;
    put(&stack, "k", 16 * 1024).await;
    assert!(declared.get_entry("k").unwrap().is_none());
    let stats = stack.stats();
    assert_eq!(
        (stats.errors, stats.tiers[0].puts, stats.tiers[1].puts),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn the_stack_declares_its_largest_tier_limit() {
    let stack = two_tiers(
        Tier::new(memory_limited_to(4 * 1024)),
        Tier::new(memory_limited_to(64 * 1024)),
    )
    .await;
    assert_eq!(stack.capabilities().max_entry_bytes, Some(64 * 1024));

    // A tier setting counts as the tier's limit.
    let stack = two_tiers(
        Tier::new(memory_limited_to(4 * 1024)),
        Tier::new(memory()).with_max_entry_bytes(32 * 1024),
    )
    .await;
    assert_eq!(stack.capabilities().max_entry_bytes, Some(32 * 1024));

    // A tier without a limit makes the stack's none.
    let mut without_limit = memory().capabilities();
    without_limit.max_entry_bytes = None;
    let unlimited =
        Arc::new(ChaosTier::new("unlimited", memory()).with_capabilities(without_limit));
    let stack = two_tiers(Tier::new(memory_limited_to(4 * 1024)), Tier::new(unlimited)).await;
    assert_eq!(stack.capabilities().max_entry_bytes, None);
}

/// Two instances on one bus, each with a local memory tier over `shared`, which is marked
/// shared by hand when `by_hand`.
async fn two_instances(shared: Arc<dyn CacheManager>, by_hand: bool) -> (TieredCache, TieredCache) {
    let hub = InProcessHub::new(64);
    let instance = |local: Arc<MemoryCache>| {
        let shared_tier = Tier::new(Arc::clone(&shared));
        let shared_tier = if by_hand {
            shared_tier.shared()
        } else {
            shared_tier
        };
        TieredCache::builder()
            .tier(Tier::new(local))
            .tier(shared_tier)
            .with_bus(Arc::new(hub.bus()))
            .build()
    };
    let a = instance(memory()).await.unwrap();
    let b = instance(memory()).await.unwrap();
    (a, b)
}

async fn applied(stack: &TieredCache, events: u64) {
    while stack.stats().bus_events_applied < events {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_whose_backend_declares_shared_is_not_invalidated_by_other_instances() {
    // The shared backend says so in its capabilities; nothing is marked on the tiers.
    let backend = memory();
    let declared = backend.capabilities().with_shared();
    let shared: Arc<dyn CacheManager> =
        Arc::new(ChaosTier::new("shared", backend.clone()).with_capabilities(declared));
    let (a, b) = two_instances(shared, false).await;
    put(&a, "k", 10).await;
    // B applies A's "drop older versions of k" to its local tier only: the entry A just
    // wrote to the shared tier stays.
    applied(&b, 1).await;
    assert!(backend.get_entry("k").unwrap().is_some());
    assert!(b.get("k").await.unwrap().is_some());
    // A stack is shared only when all its tiers are.
    assert!(!a.capabilities().shared);
    let only_shared = TieredCache::builder()
        .tier(Tier::new(Arc::new(
            ChaosTier::new("shared", memory()).with_capabilities(declared),
        )))
        .build()
        .await
        .unwrap();
    assert!(only_shared.capabilities().shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_neither_declared_nor_marked_shared_is_invalidated_by_other_instances() {
    // The control: the same stacks over a shared memory that does not declare it.
    let backend = memory();
    let (a, b) = two_instances(backend.clone(), false).await;
    put(&a, "k", 10).await;
    applied(&b, 1).await;
    assert!(
        backend.get_entry("k").unwrap().is_none(),
        "B took the shared tier for its own and dropped the key there"
    );
    // Marked by hand, it is shared again.
    let backend = memory();
    let (a, b) = two_instances(backend.clone(), true).await;
    put(&a, "k", 10).await;
    applied(&b, 1).await;
    assert!(backend.get_entry("k").unwrap().is_some());
}

#[tokio::test]
async fn a_put_no_tier_takes_fails_too_large_and_leaves_the_key_in_no_tier() {
    let (l1, l2) = (memory_limited_to(4 * 1024), memory_limited_to(16 * 1024));
    let stack = two_tiers(Tier::new(l1.clone()), Tier::new(l2.clone())).await;
    assert_eq!(stack.capabilities().max_entry_bytes, Some(16 * 1024));
    put(&stack, "k", 100).await;
    let (big, big_policy) = fixture("k", vec![7u8; 32 * 1024]);
    let refused = stack.put("k", big, big_policy, ttl(100)).await.unwrap_err();
    assert_eq!(refused.kind(), cache_core::ErrorKind::TooLarge);
    assert!(
        refused.to_string().contains("no tier takes it"),
        "{refused}"
    );
    assert!(l1.get_entry("k").unwrap().is_none());
    assert!(l2.get_entry("k").unwrap().is_none());
    assert!(stack.get("k").await.unwrap().is_none());
    let stats = stack.stats();
    // Two puts asked; the small one reached both tiers; skipping is no error.
    assert_eq!((stats.puts, stats.errors), (2, 0));
    assert_eq!((stats.tiers[0].puts, stats.tiers[1].puts), (1, 1));
}

#[tokio::test]
async fn a_put_every_tier_refuses_as_too_large_fails_too_large() {
    // The backend refuses without declaring a limit: the stack meets the refusal, counts
    // it, removes the key from the tier, and the put fails as the tier's did.
    let backend = memory();
    let refusing = Arc::new(ChaosTier::new("refusing", backend.clone()).with_max_entry_bytes(4096));
    let stack = TieredCache::builder()
        .tier(Tier::new(refusing))
        .build()
        .await
        .unwrap();
    put(&stack, "k", 100).await;
    let (big, big_policy) = fixture("k", vec![7u8; 8 * 1024]);
    let refused = stack.put("k", big, big_policy, ttl(100)).await.unwrap_err();
    assert_eq!(refused.kind(), cache_core::ErrorKind::TooLarge);
    assert!(backend.get_entry("k").unwrap().is_none(), "v1 left behind");
    let stats = stack.stats();
    assert_eq!((stats.puts, stats.errors, stats.tiers[0].errors), (2, 1, 1));
    assert_eq!(stats.stale_tiers, 0);
}

#[tokio::test]
async fn a_fetched_response_too_large_for_every_tier_is_handed_over_and_not_stored() {
    let l1 = memory_limited_to(4 * 1024);
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .build()
        .await
        .unwrap();
    for fetches in 1..=2 {
        let entry = stack
            .get_or_fetch("big", || async {
                let (response, policy) = fixture("big", vec![1u8; 8 * 1024]);
                Ok::<_, std::io::Error>(cache_tiered::Fetched::new(response, policy))
            })
            .await
            .unwrap();
        assert_eq!(entry.response.body.len(), 8 * 1024);
        assert!(l1.get_entry("big").unwrap().is_none());
        // Not stored: the next call fetches again.
        assert_eq!(stack.stats().fetches, fetches);
    }
}
