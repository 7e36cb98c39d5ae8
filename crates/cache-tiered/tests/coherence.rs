//! The stack's coherence promise, one interleaving or fault at a time: each test holds,
//! fails or drops an operation at the point where an earlier version of the stack served
//! a replaced or removed entry (or leaked a fetch slot, or buffered a huge body).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cache_core::bus::InProcessHub;
use cache_core::testkit::chaos::{ChaosTier, Operation, Point};
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, Capabilities, ErrorKind, PutOptions, StreamingCacheManager, body};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{FetchError, Fetched, Tier, TieredCache};

fn memory() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20)).unwrap())
}

fn chaos(inner: Arc<MemoryCache>) -> Arc<ChaosTier> {
    Arc::new(ChaosTier::new("chaos", inner))
}

/// A stack of `fast` over `slow`, with the defaults.
async fn stack_of(fast: Arc<dyn CacheManager>, slow: Arc<dyn CacheManager>) -> TieredCache {
    TieredCache::builder()
        .tier(Tier::new(fast))
        .tier(Tier::new(slow))
        .build()
        .await
        .unwrap()
}

/// One instance on `hub`: `local` over the `shared` tier.
async fn on_bus(
    hub: &InProcessHub,
    local: Arc<dyn CacheManager>,
    shared: Arc<dyn CacheManager>,
) -> TieredCache {
    TieredCache::builder()
        .tier(Tier::new(local))
        .tier(Tier::new(shared).shared())
        .with_bus(Arc::new(hub.bus()))
        .build()
        .await
        .unwrap()
}

async fn put(
    stack: &dyn CacheManager,
    key: &str,
    body: &str,
    options: PutOptions,
) -> cache_core::Result<()> {
    let stored = response(&format!("https://example.com/{key}"), body.to_owned());
    let stored_policy = policy(&stored);
    stack.put(key, stored, stored_policy, options).await
}

fn ttl(seconds: u64) -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(seconds))
}

async fn body_of(stack: &dyn CacheManager, key: &str) -> Option<Bytes> {
    stack
        .get(key)
        .await
        .unwrap()
        .map(|entry| entry.response.body.clone())
}

/// Waits (up to ten seconds) until `done` holds; for effects of tasks the test has no
/// handle on (a dropped caller's write, a bus delivery).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Defect 1: a tier that refuses a put must not keep the previous version.
#[tokio::test]
async fn a_tier_that_refuses_a_put_ends_up_without_the_key() {
    let (l1, shared) = (memory(), memory());
    let limited = Arc::new(ChaosTier::new("redis-like", shared.clone()).with_max_entry_bytes(4096));
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(limited.clone()).shared())
        .build()
        .await
        .unwrap();
    put(&stack, "k", "v1", ttl(100)).await.unwrap();
    // v2 is over the shared tier's limit: it refuses it, and the stack removes v1 there.
    let v2 = "2".repeat(8192);
    put(&stack, "k", &v2, ttl(100)).await.unwrap();
    assert!(
        shared.get_entry("k").unwrap().is_none(),
        "v1 left in the shared tier"
    );
    // Once L1 lets v2 go, the stack misses rather than serving v1.
    l1.delete("k").await.unwrap();
    assert_eq!(body_of(&stack, "k").await, None);
    let stats = stack.stats();
    assert_eq!((stats.errors, stats.stale_tiers), (1, 0));
}

/// Defect 1, when even removing the key fails: the call says so.
#[tokio::test]
async fn a_tier_that_fails_a_put_and_its_removal_makes_the_put_fail() {
    let (l1, l2) = (memory(), memory());
    let flaky = chaos(l2.clone());
    let stack = stack_of(l1.clone(), flaky.clone()).await;
    put(&stack, "k", "v1", ttl(100)).await.unwrap();
    flaky.fail_next(Operation::Put, Some("k"), ErrorKind::Timeout);
    flaky.fail_next(Operation::Delete, Some("k"), ErrorKind::Unavailable);
    let failed = put(&stack, "k", "v2", ttl(100)).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Unavailable);
    assert!(
        failed.to_string().contains("tier 1 (chaos) may still hold"),
        "{failed}"
    );
    assert_eq!(body_of(&l1, "k").await.as_deref(), Some(&b"v2"[..]));
    let stats = stack.stats();
    assert_eq!((stats.errors, stats.stale_tiers), (2, 1));
    // A later put that works makes the key coherent again.
    put(&stack, "k", "v3", ttl(100)).await.unwrap();
    assert_eq!(body_of(&l2, "k").await.as_deref(), Some(&b"v3"[..]));
}

/// Defect 2: a promotion that read the slower tier before a `delete_tag` must not write
/// the deleted entry back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_racing_delete_tag_does_not_bring_the_entry_back() {
    let (l1, l2) = (memory(), memory());
    let slow = chaos(l2.clone());
    let stack = stack_of(l1.clone(), slow.clone()).await;
    put(l2.as_ref(), "k", "tagged", ttl(100).with_tags(["t"]))
        .await
        .unwrap();
    // The get has read L2 and holds the entry...
    let gate = slow.hold_next(Operation::Get, Some("k"), Point::After);
    let get = tokio::spawn({
        let stack = stack.clone();
        async move { stack.get("k").await.unwrap().is_some() }
    });
    gate.reached().await;
    // ...while the tag is deleted everywhere.
    assert_eq!(stack.delete_tag("t").await.unwrap(), 1);
    gate.open();
    assert!(
        get.await.unwrap(),
        "the get answers what it read before the delete"
    );
    assert!(
        l1.get_entry("k").unwrap().is_none(),
        "promoted after delete_tag returned"
    );
    assert_eq!(body_of(&stack, "k").await, None);
    assert_eq!(stack.stats().promotions, 0);
}

/// Defect 3: a reader that starts after a delete began, but reads the slower tier before
/// the delete has reached it, must not promote what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_inside_a_slow_delete_does_not_bring_the_entry_back() {
    let (l1, l2) = (memory(), memory());
    let slow = chaos(l2.clone());
    let stack = stack_of(l1.clone(), slow.clone()).await;
    put(l2.as_ref(), "k", "old", ttl(100)).await.unwrap();
    // The delete has removed L1's copy (there was none) and waits to reach L2 (a disk
    // delete queued on the blocking pool).
    let gate = slow.hold_next(Operation::Delete, Some("k"), Point::Before);
    let delete = tokio::spawn({
        let stack = stack.clone();
        async move { stack.delete("k").await }
    });
    gate.reached().await;
    // A get now reads L2's old entry.
    assert_eq!(body_of(&stack, "k").await.as_deref(), Some(&b"old"[..]));
    gate.open();
    delete.await.unwrap().unwrap();
    assert!(
        l1.get_entry("k").unwrap().is_none(),
        "promoted while the delete ran"
    );
    assert_eq!(body_of(&stack, "k").await, None);
}

/// Defect 4: a put whose caller is dropped finishes on every tier, and the bus hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_put_finishes_and_is_published() {
    let hub = InProcessHub::new(64);
    let shared = memory();
    let slow_shared = chaos(shared.clone());
    let (a_local, b_local) = (memory(), memory());
    let a = on_bus(&hub, a_local.clone(), slow_shared.clone()).await;
    let b = on_bus(&hub, b_local.clone(), shared.clone()).await;
    put(shared.as_ref(), "k", "v1", ttl(100)).await.unwrap();
    assert_eq!(body_of(&b, "k").await.as_deref(), Some(&b"v1"[..]));
    assert!(
        b_local.get_entry("k").unwrap().is_some(),
        "B holds v1 in memory"
    );

    // A's put of v2 waits to reach the shared tier, and its caller goes away.
    let gate = slow_shared.hold_next(Operation::Put, Some("k"), Point::Before);
    let caller = tokio::spawn({
        let a = a.clone();
        async move { put(&a, "k", "v2", ttl(100)).await }
    });
    gate.reached().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    gate.open();

    // The put finishes anyway: v2 reaches the shared tier and B drops its v1.
    eventually("v2 in the shared tier", || {
        shared
            .get_entry("k")
            .unwrap()
            .is_some_and(|entry| entry.response.body == "v2")
    })
    .await;
    eventually("B applied A's put", || b.stats().bus_events_applied == 1).await;
    assert_eq!(body_of(&b, "k").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(a.stats().puts, 1);
}

/// Defect 4, for deletions: a dropped delete finishes and is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delete_finishes_and_is_published() {
    let hub = InProcessHub::new(64);
    let shared = memory();
    let slow_shared = chaos(shared.clone());
    let b_local = memory();
    let a = on_bus(&hub, memory(), slow_shared.clone()).await;
    let b = on_bus(&hub, b_local.clone(), shared.clone()).await;
    put(shared.as_ref(), "k", "v1", ttl(100)).await.unwrap();
    assert!(b.get("k").await.unwrap().is_some());
    let gate = slow_shared.hold_next(Operation::Delete, Some("k"), Point::Before);
    let caller = tokio::spawn({
        let a = a.clone();
        async move { a.delete("k").await }
    });
    gate.reached().await;
    caller.abort();
    let _ = caller.await;
    gate.open();
    eventually("B applied A's delete", || b.stats().bus_events_applied == 1).await;
    assert!(shared.get_entry("k").unwrap().is_none());
    assert_eq!(body_of(&b, "k").await, None);
}

/// Defect 5: a promoted copy lives its own tier's share of the TTL, not the share of the
/// share the source tier kept.
#[tokio::test]
async fn a_promoted_copy_lives_its_own_share_of_the_ttl() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()).with_ttl_scale(0.1))
        .tier(Tier::new(l2.clone()).with_ttl_scale(10.0))
        .build()
        .await
        .unwrap();
    put(&stack, "k", "v", ttl(100)).await.unwrap();
    let stored_ttl =
        |tier: &MemoryCache| tier.get_entry("k").unwrap().unwrap().metadata.storage_ttl();
    assert_eq!(stored_ttl(&l1), Duration::from_secs(10));
    assert_eq!(stored_ttl(&l2), Duration::from_secs(1000));
    l1.delete("k").await.unwrap();
    assert!(stack.get("k").await.unwrap().is_some());
    assert_eq!(stack.stats().promotions, 1);
    assert_eq!(stored_ttl(&l1), Duration::from_secs(10));
}

/// Defect 6: a bus `DeleteTag` reaching a local tier without tags clears that tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_delete_tag_clears_a_local_tier_without_tags() {
    let hub = InProcessHub::new(64);
    let shared = memory();
    let a = on_bus(&hub, memory(), shared.clone()).await;
    let no_tags = Capabilities::none().with_delete_pattern().with_clear();
    let b_local = memory();
    let b = TieredCache::builder()
        .tier(Tier::new(Arc::new(
            ChaosTier::new("no-tags", b_local.clone()).with_capabilities(no_tags),
        )))
        .tier(Tier::new(shared.clone()).shared())
        .with_bus(Arc::new(hub.bus()))
        .build()
        .await
        .unwrap();
    put(shared.as_ref(), "k", "tagged", ttl(100).with_tags(["t"]))
        .await
        .unwrap();
    assert!(b.get("k").await.unwrap().is_some());
    assert!(
        b_local.get_entry("k").unwrap().is_some(),
        "promoted into B's local tier"
    );
    assert_eq!(a.delete_tag("t").await.unwrap(), 1);
    eventually("B applied the delete_tag", || {
        b.stats().bus_events_applied == 1
    })
    .await;
    assert!(b_local.get_entry("k").unwrap().is_none());
    assert_eq!(body_of(&b, "k").await, None);
    assert_eq!(b.stats().stale_tiers, 0);
}

fn fetched(body: &'static str) -> Fetched {
    let stored = response("https://example.com/fetched", body);
    let stored_policy = policy(&stored);
    Fetched::new(stored, stored_policy).with_options(ttl(100))
}

/// Defect 7: a fetch task dropped before it first ran (its runtime shut down) frees its
/// key.
#[test]
fn a_fetch_dropped_before_it_ran_frees_its_key() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stack = first
        .block_on(TieredCache::builder().tier(Tier::new(memory())).build())
        .unwrap();
    first.block_on(async {
        let call = stack.get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("never")) });
        let mut call = std::pin::pin!(call);
        // One poll: the caller misses, takes the key and spawns the fetch, which has not
        // run when the runtime goes away.
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        assert!(matches!(call.as_mut().poll(&mut context), Poll::Pending));
        assert_eq!(stack.in_flight_fetches(), 1);
    });
    drop(first);
    assert_eq!(stack.in_flight_fetches(), 0);
    assert_eq!(stack.stats().in_flight_fetches, 0);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let entry = second
        .block_on(stack.get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("fetched")) }))
        .unwrap();
    assert_eq!(entry.response.body, "fetched");
}

/// Defect 7: a fetch that hangs gives its waiters `Timeout` after the fetch timeout and
/// frees its key.
#[tokio::test(start_paused = true)]
async fn a_hanging_fetch_times_out_and_frees_its_key() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .with_fetch_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let hang = || async {
        std::future::pending::<()>().await;
        Ok::<_, FetchError>(fetched("never"))
    };
    let (first, second) =
        tokio::join!(stack.get_or_fetch("k", hang), stack.get_or_fetch("k", hang));
    for outcome in [first, second] {
        assert!(
            matches!(outcome, Err(FetchError::Timeout(limit)) if limit == Duration::from_secs(5))
        );
    }
    let stats = stack.stats();
    assert_eq!(
        (
            stats.fetches,
            stats.fetch_timeouts,
            stats.coalesced_waiters,
            stats.in_flight_fetches
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(stack.in_flight_fetches(), 0);
    let entry = stack
        .get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("fetched")) })
        .await
        .unwrap();
    assert_eq!(entry.response.body, "fetched");
}

/// Defect 8: a buffered get of a streamed body over the limit fails with `TooLarge`
/// instead of holding it whole, and nothing over the promotion limit is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_get_of_a_huge_streamed_body_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = cache_streaming::StreamingCache::open(
        cache_streaming::StreamingConfig::new(dir.path()).with_capacity_bytes(1 << 30),
    )
    .await
    .unwrap();
    let l1 = memory();
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::streaming(Arc::new(store)))
        .with_stream_promotion_limit(64 * 1024)
        .with_max_buffered_body(1 << 20)
        .build()
        .await
        .unwrap();
    for (key, len) in [("huge", 3 << 20), ("medium", 512 * 1024)] {
        let stored = response(&format!("https://example.com/{key}"), vec![7u8; len]);
        let stored_policy = policy(&stored);
        let (head, bytes) = stored.into_head_and_body();
        let chunks: Vec<_> = bytes
            .chunks(64 * 1024)
            .map(|chunk| Ok(bytes.slice_ref(chunk)))
            .collect();
        stack
            .put_stream(
                key,
                head,
                stored_policy,
                body::from_chunks(chunks),
                ttl(100),
            )
            .await
            .unwrap();
    }
    let failed = stack.get("huge").await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::TooLarge);
    assert!(failed.to_string().contains("get_stream"), "{failed}");
    // Streaming it works, from the streaming tier.
    let streamed = stack.get_stream("huge").await.unwrap().unwrap();
    assert_eq!(
        body::collect(streamed.body, 4 << 20).await.unwrap().len(),
        3 << 20
    );
    // A body under the buffered limit but over the promotion limit is read, not promoted.
    let medium = stack.get("medium").await.unwrap().unwrap();
    assert_eq!(medium.response.body.len(), 512 * 1024);
    assert!(l1.get_entry("huge").unwrap().is_none());
    assert!(l1.get_entry("medium").unwrap().is_none());
    assert_eq!(stack.stats().promotions, 0);
}

/// Defect 4, for streamed puts: once the body has been read to the end, a dropped caller's
/// `put_stream` still reaches every tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_put_stream_whose_body_ended_reaches_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let store = cache_streaming::StreamingCache::open(
        cache_streaming::StreamingConfig::new(dir.path()).with_capacity_bytes(1 << 30),
    )
    .await
    .unwrap();
    let l1 = memory();
    let slow_l1 = chaos(l1.clone());
    let stack = TieredCache::builder()
        .tier(Tier::new(slow_l1.clone()))
        .tier(Tier::streaming(Arc::new(store)))
        .build()
        .await
        .unwrap();
    put(&stack, "k", "v1", ttl(100)).await.unwrap();
    assert_eq!(body_of(&l1, "k").await.as_deref(), Some(&b"v1"[..]));
    // The body is stored; the copy into L1 waits, and the caller goes away.
    let gate = slow_l1.hold_next(Operation::Put, Some("k"), Point::Before);
    let caller = tokio::spawn({
        let stack = stack.clone();
        async move {
            let stored = response("https://example.com/k", "v2");
            let stored_policy = policy(&stored);
            let (head, bytes) = stored.into_head_and_body();
            stack
                .put_stream("k", head, stored_policy, body::full(bytes), ttl(100))
                .await
        }
    });
    gate.reached().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    gate.open();
    eventually("v2 in L1", || {
        l1.get_entry("k")
            .unwrap()
            .is_some_and(|entry| entry.response.body == "v2")
    })
    .await;
    assert_eq!(body_of(&stack, "k").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(stack.stats().puts, 2);
}

/// Found by the soak (seed 1796195438885389981): a `get_or_fetch` that joins a fetch in
/// flight must not receive what that fetch read before a delete that has since returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_after_a_delete_does_not_join_a_fetch_that_read_before_it() {
    let (l1, l2) = (memory(), memory());
    let slow = chaos(l2.clone());
    let stack = stack_of(l1.clone(), slow.clone()).await;
    put(l2.as_ref(), "k", "old", ttl(100)).await.unwrap();
    // The first caller's own look misses (L2 fails once); its fill looks again, reads the
    // old entry and is held there with it.
    slow.fail_next(Operation::Get, Some("k"), ErrorKind::Unavailable);
    let gate = slow.hold_next(Operation::Get, Some("k"), Point::After);
    let first = tokio::spawn({
        let stack = stack.clone();
        async move {
            stack
                .get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("fetched")) })
                .await
        }
    });
    gate.reached().await;
    stack.delete("k").await.unwrap();
    // A caller after the delete starts a fetch of its own (joining the held one, it would
    // wait for the gate and then get the old entry).
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        stack.get_or_fetch("k", || async {
            Ok::<_, FetchError>(fetched("after the delete"))
        }),
    )
    .await;
    gate.open();
    let second = second.expect("the caller after the delete joined the fetch that read before it");
    assert_eq!(second.unwrap().response.body, "after the delete");
    // The first caller started before the delete returned: the old entry is its answer.
    assert_eq!(first.await.unwrap().unwrap().response.body, "old");
    assert_eq!(stack.stats().coalesced_waiters, 0);
}

/// Found in review: a promoted copy kept as it is would carry its source's (larger) share
/// as its storage TTL, and a promotion out of it would then give a faster tier more than
/// its share.
#[tokio::test]
async fn a_copy_promoted_through_a_middle_tier_keeps_every_tier_within_its_share() {
    let (l1, l2, l3) = (memory(), memory(), memory());
    let (fast, middle) = (chaos(l1.clone()), chaos(l2.clone()));
    let stack = TieredCache::builder()
        .tier(Tier::new(fast.clone()).with_ttl_scale(0.1))
        .tier(Tier::new(middle.clone()))
        .tier(Tier::new(l3.clone()).with_ttl_scale(10.0))
        .build()
        .await
        .unwrap();
    // The slowest tier's copy: a 1000 s entry there for 10 times that, 9500 s ago.
    let stored = response("https://example.com/k", "aged");
    let stored_policy = policy(&stored);
    let stored_at = std::time::SystemTime::now() - Duration::from_secs(9500);
    let metadata =
        cache_core::EntryMetadata::new(stored_at, Duration::from_secs(10_000), Vec::new());
    let aged = Arc::new(cache_core::CacheEntry::new(stored, stored_policy, metadata));
    l3.put_shared_entry("k", aged, None).unwrap();

    assert!(stack.get("k").await.unwrap().is_some());
    let given = |tier: &ChaosTier| tier.last_put_ttl("k").flatten().unwrap();
    assert_eq!(
        given(&fast),
        Duration::from_secs(100),
        "L1's share of 1000 s"
    );
    assert!(
        given(&middle) <= Duration::from_secs(500),
        "no more than the entry has left"
    );
    // Promoted again out of the middle tier: L1 still gets no more than its share.
    l1.delete("k").await.unwrap();
    assert!(stack.get("k").await.unwrap().is_some());
    assert!(
        given(&fast) <= Duration::from_secs(100),
        "{:?}",
        given(&fast)
    );
    assert_eq!(stack.stats().promotions, 3);
}

/// A bus that accepts subscribers but cannot publish.
struct DeadBus(cache_core::InstanceId);

impl cache_core::InvalidationBus for DeadBus {
    fn instance_id(&self) -> cache_core::InstanceId {
        self.0
    }

    fn publish(
        &self,
        _event: cache_core::InvalidationEvent,
    ) -> cache_core::CacheFuture<'_, cache_core::Result<()>> {
        cache_core::CacheFuture::ready(Err(cache_core::Error::new(
            ErrorKind::Unavailable,
            "dead-bus",
            "the bus is down",
        )))
    }

    fn subscribe(
        &self,
    ) -> cache_core::CacheFuture<'_, cache_core::Result<cache_core::BusSubscription>> {
        cache_core::CacheFuture::ready(Ok(cache_core::BusSubscription::new(
            futures::stream::pending(),
        )))
    }
}

/// Found in review: a write whose bus publication fails tells its caller that the other
/// instances did not hear of it.
#[tokio::test]
async fn a_write_the_bus_did_not_carry_says_so() {
    let l1 = memory();
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .with_bus(Arc::new(DeadBus(cache_core::InstanceId::random())))
        .build()
        .await
        .unwrap();
    let failed = put(&stack, "k", "v", ttl(100)).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Unavailable);
    assert!(failed.to_string().contains("bus did not carry"), "{failed}");
    assert!(
        l1.get_entry("k").unwrap().is_some(),
        "the local tiers are written"
    );
    let failed = stack.delete("k").await.unwrap_err();
    assert!(failed.to_string().contains("bus did not carry"), "{failed}");
    assert!(l1.get_entry("k").unwrap().is_none());
    assert_eq!(stack.stats().errors, 2);
}
