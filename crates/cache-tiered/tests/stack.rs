//! The stack's own behaviour, with exact assertions: promotion (TTL cap, strategies, size
//! limits), TTL scaling, statistics, coalescing and bus invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::bus::InProcessHub;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{
    CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, PutOptions, Result,
    TtlPolicy,
};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{FetchError, Fetched, Promotion, Tier, TieredCache};

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

async fn put_into(tier: &dyn CacheManager, key: &str, body: &'static [u8], options: PutOptions) {
    let (response, policy) = fixture(key, Bytes::from_static(body));
    tier.put(key, response, policy, options).await.unwrap();
}

/// A backend whose entries were all stored `age` ago: what a slower tier holds when an
/// entry has lived there for a while.
struct AgedBackend {
    age: Duration,
    entries: Mutex<HashMap<String, Arc<CacheEntry>>>,
}

impl CacheManager for AgedBackend {
    fn name(&self) -> &'static str {
        "aged"
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        let entry = self.entries.lock().unwrap().get(key).cloned();
        CacheFuture::ready(Ok(
            entry.filter(|entry| !entry.metadata.is_expired_at(SystemTime::now()))
        ))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        let stored_at = SystemTime::now() - self.age;
        let metadata =
            TtlPolicy::default().entry_metadata(&policy, &response.headers, &options, stored_at);
        let entry = Arc::new(CacheEntry::new(response, policy, metadata));
        self.entries.lock().unwrap().insert(key.to_owned(), entry);
        CacheFuture::ready(Ok(()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        self.entries.lock().unwrap().remove(key);
        CacheFuture::ready(Ok(()))
    }
}

#[tokio::test]
async fn a_promoted_copy_never_outlives_its_source() {
    let l1 = memory();
    // Stored 90 s ago for 100 s: 10 s left in the slower tier.
    let l2 = Arc::new(AgedBackend {
        age: Duration::from_secs(90),
        entries: Mutex::default(),
    });
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    put_into(l2.as_ref(), "k", b"aged", ttl(100)).await;
    let source = l2.get("k").await.unwrap().unwrap();

    let hit = stack.get("k").await.unwrap().unwrap();
    assert_eq!(hit.response.body, Bytes::from_static(b"aged"));
    let copy = l1.get_entry("k").unwrap().expect("promoted into L1");
    // The copy is the source's entry itself (the memory tier keeps the `Arc`): it ends
    // when the source's entry does, in 10 s.
    assert!(Arc::ptr_eq(&copy, &source));
    let left = copy.metadata.remaining_ttl(SystemTime::now());
    assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9));
    assert_eq!(stack.stats().promotions, 1);
}

#[tokio::test]
async fn a_scaled_tier_keeps_its_share_of_the_ttl_and_promotions_respect_it() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()).with_ttl_scale(0.1))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    put_into(&stack, "k", b"scaled", ttl(100)).await;
    assert_eq!(
        l1.get_entry("k").unwrap().unwrap().metadata.storage_ttl(),
        Duration::from_secs(10)
    );
    assert_eq!(
        l2.get_entry("k").unwrap().unwrap().metadata.storage_ttl(),
        Duration::from_secs(100)
    );

    // Promoted from L2: 0.1 of the entry's 100 s, well within its remaining life.
    l1.delete("k").await.unwrap();
    assert!(stack.get("k").await.unwrap().is_some());
    assert_eq!(
        l1.get_entry("k").unwrap().unwrap().metadata.storage_ttl(),
        Duration::from_secs(10)
    );
}

#[tokio::test]
async fn after_hits_promotes_on_the_nth_hit() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(l2.clone()))
        .with_promotion(Promotion::AfterHits(3))
        .build()
        .await
        .unwrap();
    put_into(l2.as_ref(), "k", b"warm", ttl(100)).await;
    for _ in 0..2 {
        assert!(stack.get("k").await.unwrap().is_some());
        assert!(l1.get_entry("k").unwrap().is_none());
    }
    assert!(stack.get("k").await.unwrap().is_some());
    assert!(l1.get_entry("k").unwrap().is_some());
    assert!(stack.get("k").await.unwrap().is_some());
    let stats = stack.stats();
    assert_eq!((stats.hits, stats.misses, stats.promotions), (4, 0, 1));
    assert_eq!(
        (
            stats.tiers[0].hits,
            stats.tiers[0].misses,
            stats.tiers[0].promotions
        ),
        (1, 3, 1)
    );
    assert_eq!((stats.tiers[1].hits, stats.tiers[1].misses), (3, 0));
    assert_eq!(stack.tracked_promotion_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn hit_rate_promotes_keys_hit_often_enough_and_not_others() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(l2.clone()))
        .with_promotion(Promotion::HitRate { per_minute: 3.0 })
        .build()
        .await
        .unwrap();
    put_into(l2.as_ref(), "slow", b"s", ttl(86_400)).await;
    put_into(l2.as_ref(), "hot", b"h", ttl(86_400)).await;
    // One hit every ten minutes never reaches three per minute.
    for _ in 0..6 {
        assert!(stack.get("slow").await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(600)).await;
    }
    assert!(l1.get_entry("slow").unwrap().is_none());
    // Three hits at once do.
    for _ in 0..3 {
        assert!(stack.get("hot").await.unwrap().is_some());
    }
    assert!(l1.get_entry("hot").unwrap().is_some());
    assert_eq!(stack.stats().promotions, 1);
}

#[tokio::test]
async fn puts_and_promotions_admit_by_the_same_size() {
    let (response, policy) = fixture("edge", Bytes::from_static(b"exactly at the limit"));
    let limit = CacheEntry::approximate_size_of(&response, &[]) as u64;
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()).with_max_entry_bytes(limit))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    stack.put("edge", response, policy, ttl(100)).await.unwrap();
    assert!(l1.get_entry("edge").unwrap().is_some(), "admitted by put");
    l1.delete("edge").await.unwrap();
    assert!(stack.get("edge").await.unwrap().is_some());
    assert!(l1.get_entry("edge").unwrap().is_some(), "and by promotion");
    assert_eq!(stack.stats().promotions, 1);
}

#[tokio::test]
async fn statistics_are_exact_after_a_scripted_sequence() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    put_into(&stack, "a", b"a", ttl(100)).await; // both tiers
    put_into(l2.as_ref(), "b", b"b", ttl(100)).await; // L2 only
    assert!(stack.get("a").await.unwrap().is_some()); // L1 hit
    assert!(stack.get("b").await.unwrap().is_some()); // L1 miss, L2 hit, promoted
    assert!(stack.get("b").await.unwrap().is_some()); // L1 hit
    assert!(stack.get("c").await.unwrap().is_none()); // miss in both
    stack.delete("a").await.unwrap();
    assert!(stack.get("a").await.unwrap().is_none()); // miss in both

    let stats = stack.stats();
    assert_eq!(stats.hits, 3);
    assert_eq!(stats.misses, 2);
    assert_eq!(stats.promotions, 1);
    assert_eq!(stats.puts, 1);
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.fetches, 0);
    assert_eq!(
        (
            stats.tiers[0].hits,
            stats.tiers[0].misses,
            stats.tiers[0].promotions,
            stats.tiers[0].puts
        ),
        (2, 3, 1, 1)
    );
    assert_eq!(
        (
            stats.tiers[1].hits,
            stats.tiers[1].misses,
            stats.tiers[1].promotions,
            stats.tiers[1].puts
        ),
        (1, 2, 0, 1)
    );
    let backend = stack.stats_as_backend();
    assert_eq!(
        (backend.hits, backend.misses, backend.puts, backend.deletes),
        (3, 2, 1, 1)
    );
}

trait BackendStatsOf {
    fn stats_as_backend(&self) -> cache_core::BackendStats;
}

impl BackendStatsOf for TieredCache {
    fn stats_as_backend(&self) -> cache_core::BackendStats {
        CacheManager::stats(self).unwrap()
    }
}

fn fetched(body: &'static str) -> Fetched {
    let (response, policy) = fixture("fetched", body);
    Fetched::new(response, policy).with_options(ttl(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_fetch() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let callers: Vec<_> = (0..1_000)
        .map(|_| {
            let (stack, fetches, release) = (stack.clone(), fetches.clone(), release.clone());
            tokio::spawn(async move {
                stack
                    .get_or_fetch("one", move || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok::<_, FetchError>(fetched("fetched once"))
                    })
                    .await
            })
        })
        .collect();
    // Every caller but the first is waiting on the first one's fetch.
    while stack.stats().coalesced_waiters < 999 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stack.in_flight_fetches(), 1);
    release.notify_one();
    for caller in callers {
        let entry = caller.await.unwrap().unwrap();
        assert_eq!(entry.response.body, Bytes::from_static(b"fetched once"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let stats = stack.stats();
    assert_eq!(
        (
            stats.fetches,
            stats.coalesced_waiters,
            stats.in_flight_fetches
        ),
        (1, 999, 0)
    );
    assert_eq!(stack.in_flight_fetches(), 0);
    // Stored: the next call is a hit without a fetch.
    let again = stack
        .get_or_fetch("one", || async { Err::<Fetched, _>("must not be called") })
        .await
        .unwrap();
    assert_eq!(again.response.body, Bytes::from_static(b"fetched once"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_find_the_fetch_in_flight_join_it_without_reading_the_tiers() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let first = {
        let (stack, release) = (stack.clone(), release.clone());
        tokio::spawn(async move {
            stack
                .get_or_fetch("cold", move || async move {
                    release.notified().await;
                    Ok::<_, FetchError>(fetched("fetched once"))
                })
                .await
        })
    };
    while stack.in_flight_fetches() < 1 {
        tokio::task::yield_now().await;
    }
    let joiners: Vec<_> = (0..10)
        .map(|_| {
            let stack = stack.clone();
            tokio::spawn(async move {
                stack
                    .get_or_fetch("cold", || async {
                        Err::<Fetched, _>("a joiner must not fetch")
                    })
                    .await
            })
        })
        .collect();
    while stack.stats().coalesced_waiters < 10 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for caller in std::iter::once(first).chain(joiners) {
        let entry = caller.await.unwrap().unwrap();
        assert_eq!(entry.response.body, Bytes::from_static(b"fetched once"));
    }
    let stats = stack.stats();
    // Only the first caller read the tiers; all eleven calls are misses of the stack.
    assert_eq!(
        (
            stats.misses,
            stats.fetches,
            stats.coalesced_waiters,
            stats.tiers[0].misses,
            stats.tiers[1].misses
        ),
        (11, 1, 10, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_first_caller_still_delivers_to_the_others() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let first = tokio::spawn({
        let (stack, started, release) = (stack.clone(), started.clone(), release.clone());
        async move {
            stack
                .get_or_fetch("k", move || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, FetchError>(fetched("survived"))
                })
                .await
        }
    });
    started.notified().await;
    let second = tokio::spawn({
        let stack = stack.clone();
        async move {
            stack
                .get_or_fetch("k", || async {
                    Err::<Fetched, _>("second caller must not fetch")
                })
                .await
        }
    });
    while stack.stats().coalesced_waiters < 1 {
        tokio::task::yield_now().await;
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    release.notify_one();
    let entry = second.await.unwrap().unwrap();
    assert_eq!(entry.response.body, Bytes::from_static(b"survived"));
    assert_eq!(stack.stats().fetches, 1);
    assert_eq!(stack.in_flight_fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_error_reaches_every_waiter_and_is_not_cached() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (stack, release) = (stack.clone(), release.clone());
            tokio::spawn(async move {
                stack
                    .get_or_fetch("k", move || async move {
                        release.notified().await;
                        Err::<Fetched, _>("origin is down")
                    })
                    .await
            })
        })
        .collect();
    while stack.stats().coalesced_waiters < 9 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for caller in callers {
        match caller.await.unwrap() {
            Err(FetchError::Fetch(error)) => assert_eq!(error.to_string(), "origin is down"),
            other => panic!("expected the fetch error, got {other:?}"),
        }
    }
    assert!(stack.get("k").await.unwrap().is_none());
    // The next call fetches again.
    let entry = stack
        .get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("second try")) })
        .await
        .unwrap();
    assert_eq!(entry.response.body, Bytes::from_static(b"second try"));
    assert_eq!(stack.stats().fetches, 2);
    assert_eq!(stack.in_flight_fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_other_stacks_local_tiers_through_the_bus() {
    let hub = InProcessHub::new(64);
    let shared = memory();
    let (a_local, b_local) = (memory(), memory());
    let a = TieredCache::builder()
        .tier(Tier::new(a_local.clone()))
        .tier(Tier::new(shared.clone()).shared())
        .with_bus(Arc::new(hub.bus()))
        .build()
        .await
        .unwrap();
    let b = TieredCache::builder()
        .tier(Tier::new(b_local.clone()))
        .tier(Tier::new(shared.clone()).shared())
        .with_bus(Arc::new(hub.bus()))
        .build()
        .await
        .unwrap();
    put_into(&a, "k", b"shared", ttl(100)).await;
    // A's put tells the others to drop older versions: B applies it first.
    while b.stats().bus_events_applied < 1 {
        tokio::task::yield_now().await;
    }
    assert!(b.get("k").await.unwrap().is_some());
    assert!(
        b_local.get_entry("k").unwrap().is_some(),
        "promoted into B's memory"
    );

    a.delete("k").await.unwrap();
    while b.stats().bus_events_applied < 2 {
        tokio::task::yield_now().await;
    }
    assert!(b_local.get_entry("k").unwrap().is_none());
    assert!(shared.get_entry("k").unwrap().is_none());
    assert!(b.get("k").await.unwrap().is_none());
    // A did not apply its own event.
    assert_eq!(a.stats().bus_events_applied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_fetch_frees_its_slot_and_the_next_call_fetches_again() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let failed = stack
        .get_or_fetch("k", || async {
            if true {
                panic!("the origin client panicked");
            }
            Ok::<_, FetchError>(fetched("unreachable"))
        })
        .await
        .unwrap_err();
    assert!(
        failed.to_string().contains("the fetch task failed"),
        "{failed}"
    );
    assert_eq!(stack.in_flight_fetches(), 0);
    assert_eq!(stack.stats().in_flight_fetches, 0);
    let entry = stack
        .get_or_fetch("k", || async { Ok::<_, FetchError>(fetched("recovered")) })
        .await
        .unwrap();
    assert_eq!(entry.response.body, Bytes::from_static(b"recovered"));
}

#[tokio::test]
async fn the_longest_ttls_are_capped_not_a_panic() {
    let (l1, l2) = (memory(), memory());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()).with_ttl_scale(0.5))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    let (response, policy) = fixture("forever", Bytes::from_static(b"forever"));
    stack
        .put(
            "forever",
            response,
            policy,
            PutOptions::new().with_ttl(Duration::MAX),
        )
        .await
        .unwrap();
    assert!(l1.get_entry("forever").unwrap().is_some());
    assert!(l2.get_entry("forever").unwrap().is_some());
}

/// A slower tier whose gets wait until the test lets them answer.
struct GatedBackend {
    inner: Arc<MemoryCache>,
    reading: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl CacheManager for GatedBackend {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        CacheFuture::new(async move {
            // The answer is read first: what the slower tier held when it was asked.
            let answer = self.inner.get(key).await;
            self.reading.notify_one();
            self.release.notified().await;
            answer
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        self.inner.put(key, response, policy, options)
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        self.inner.delete(key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_racing_a_delete_does_not_bring_the_entry_back() {
    let l1 = memory();
    let reading = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let l2 = Arc::new(GatedBackend {
        inner: memory(),
        reading: reading.clone(),
        release: release.clone(),
    });
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(l2.clone()))
        .build()
        .await
        .unwrap();
    put_into(l2.inner.as_ref(), "k", b"old", ttl(100)).await;

    // A get finds "k" in L2 and is held there, with the old entry in hand...
    let get = tokio::spawn({
        let stack = stack.clone();
        async move { stack.get("k").await }
    });
    reading.notified().await;
    // ...while the key is deleted everywhere.
    let delete = tokio::spawn({
        let stack = stack.clone();
        async move { stack.delete("k").await }
    });
    // Deleting does not read, so it is not held; once it is through, the get goes on.
    delete.await.unwrap().unwrap();
    release.notify_one();
    let answered = get.await.unwrap().unwrap();
    assert!(
        answered.is_some(),
        "the get answers what it read before the delete"
    );
    // But it did not copy the deleted entry into L1.
    assert!(l1.get_entry("k").unwrap().is_none());
    assert_eq!(stack.stats().promotions, 0);
}
