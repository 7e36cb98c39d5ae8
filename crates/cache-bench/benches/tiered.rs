//! The tiered stack: a get answered by L1 against the memory backend alone; a get
//! answered by L2 and promoted into L1 against the L2 backend alone; 1,000 concurrent
//! `get_or_fetch` calls on one cold key. Both tiers are `cache-memory`, so what is
//! measured is the stack's own work.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_bench::{BODY_LEN, KEY_COUNT, KeyCycle, response};
use cache_core::{CacheManager, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{FetchError, Fetched, Tier, TieredCache};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn ttl() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn memory() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(1 << 30)).unwrap())
}

fn tiered_benches(c: &mut Criterion) {
    let rt = runtime();
    let keys = KeyCycle::new(KEY_COUNT);
    let (cached, policy) = response();
    let (l1, l2) = (memory(), memory());
    let alone = memory();
    let stack = rt
        .block_on(
            TieredCache::builder()
                .tier(Tier::new(l1.clone()))
                .tier(Tier::new(l2.clone()))
                .build(),
        )
        .expect("stack");
    rt.block_on(async {
        for key in &keys.keys {
            stack
                .put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
            alone
                .put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
        }
        for key in &keys.keys {
            assert_eq!(
                l1.get_entry(key).unwrap().unwrap().response.body.len(),
                BODY_LEN
            );
            assert_eq!(
                alone.get(key).await.unwrap().unwrap().response.body.len(),
                BODY_LEN
            );
        }
        for cache in [&l1, &l2, &alone] {
            cache.run_pending_tasks();
        }
    });
    let stack_dyn: Arc<dyn CacheManager> = Arc::new(stack.clone());
    let alone_dyn: Arc<dyn CacheManager> = alone.clone();
    let l2_dyn: Arc<dyn CacheManager> = l2.clone();

    let mut group = c.benchmark_group("tiered/get_l1_hit");
    group.bench_function("cache-memory alone", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(alone_dyn.get(keys.next()).await.unwrap().unwrap()) });
    });
    group.bench_function("cache-tiered (L1 hit)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(stack_dyn.get(keys.next()).await.unwrap().unwrap()) });
    });
    group.finish();

    // Each measured get finds the key only in L2: the setup (not timed) removes it from
    // L1 first.
    let mut group = c.benchmark_group("tiered/get_l2_hit_and_promotion");
    group.bench_function("cache-memory alone (the L2)", |b| {
        b.to_async(&rt).iter_batched(
            || keys.next().to_owned(),
            |key| {
                let l2 = Arc::clone(&l2_dyn);
                async move { black_box(l2.get(&key).await.unwrap().unwrap()) }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("cache-tiered (L2 hit, promoted into L1)", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let key = keys.next().to_owned();
                futures::executor::block_on(l1.delete(&key)).expect("delete from L1");
                key
            },
            |key| {
                let stack = Arc::clone(&stack_dyn);
                async move { black_box(stack.get(&key).await.unwrap().unwrap()) }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // 1,000 callers of one key that no tier holds; each iteration a new key.
    let cold = AtomicU64::new(0);
    let mut group = c.benchmark_group("tiered/get_or_fetch_1000_callers_cold_key");
    group.sample_size(20);
    group.bench_function("cache-tiered", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let stack = stack.clone();
            // Only the one fetch that runs clones the response.
            let fetched =
                Arc::new(Fetched::new(cached.clone(), policy.clone()).with_options(ttl()));
            let cold = &cold;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let key = format!("cold-{}", cold.fetch_add(1, Ordering::Relaxed));
                    let started = Instant::now();
                    let callers: Vec<_> = (0..1_000)
                        .map(|_| {
                            let (stack, key) = (stack.clone(), key.clone());
                            let fetched = Arc::clone(&fetched);
                            tokio::spawn(async move {
                                stack
                                    .get_or_fetch(&key, move || async move {
                                        Ok::<_, FetchError>((*fetched).clone())
                                    })
                                    .await
                                    .unwrap()
                            })
                        })
                        .collect();
                    for caller in callers {
                        black_box(caller.await.unwrap());
                    }
                    total += started.elapsed();
                }
                total
            }
        });
    });
    group.finish();
}

criterion_group!(benches, tiered_benches);
criterion_main!(benches);
