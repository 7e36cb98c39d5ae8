//! Memory tier: get-hit and put of a 16 KiB response with 10 headers.
//!
//! Contenders, in one run: `cache-memory` through `Arc<dyn CacheManager>` (how stacks and
//! users hold it), raw moka `sync::Cache` and `future::Cache` with `Arc<Vec<u8>>` values,
//! and the `http-cache` crate's `MokaManager`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cache_bench::{BODY_LEN, KEY_COUNT, KeyCycle, http_cache_response, response};
use cache_core::{CacheManager, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http_cache::{CacheManager as _, MokaManager};

const CAPACITY_BYTES: u64 = 1024 * 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn ttl() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn get_hit(c: &mut Criterion) {
    let rt = runtime();
    let keys = KeyCycle::new(KEY_COUNT);
    let (cached, policy) = response();

    let memory =
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(CAPACITY_BYTES)).unwrap();
    let raw_sync: moka::sync::Cache<String, Arc<Vec<u8>>> =
        moka::sync::Cache::new(KEY_COUNT as u64 * 2);
    let raw_future: moka::future::Cache<String, Arc<Vec<u8>>> =
        moka::future::Cache::new(KEY_COUNT as u64 * 2);
    let peer = MokaManager::new(moka::future::Cache::new(KEY_COUNT as u64 * 2));
    let raw_value = Arc::new(cached.body.to_vec());
    rt.block_on(async {
        for key in &keys.keys {
            memory
                .put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
            raw_sync.insert(key.clone(), Arc::clone(&raw_value));
            raw_future.insert(key.clone(), Arc::clone(&raw_value)).await;
            peer.put(key.clone(), http_cache_response(), policy.clone())
                .await
                .expect("put");
        }
        // Every contender really hits, with the whole body.
        for key in &keys.keys {
            assert_eq!(
                memory.get(key).await.unwrap().unwrap().response.body.len(),
                BODY_LEN
            );
            assert_eq!(raw_sync.get(key).unwrap().len(), BODY_LEN);
            assert_eq!(raw_future.get(key).await.unwrap().len(), BODY_LEN);
            assert_eq!(peer.get(key).await.unwrap().unwrap().0.body.len(), BODY_LEN);
        }
        // Settle moka's maintenance after the bulk insert, so that the first contender
        // measured does not pay for everyone's pending housekeeping.
        memory.run_pending_tasks();
        raw_sync.run_pending_tasks();
        raw_future.run_pending_tasks().await;
        peer.cache.run_pending_tasks().await;
    });
    let memory_dyn: Arc<dyn CacheManager> = Arc::new(memory.clone());

    let mut group = c.benchmark_group("memory/get_hit");
    group.bench_function("cache-memory (dyn CacheManager)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(memory_dyn.get(keys.next()).await.unwrap()) });
    });
    group.bench_function("cache-memory (get_entry, no async)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(memory.get_entry(keys.next()).unwrap()) });
    });
    group.bench_function("raw moka sync::Cache", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(raw_sync.get(keys.next())) });
    });
    group.bench_function("raw moka future::Cache", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(raw_future.get(keys.next()).await) });
    });
    group.bench_function("http-cache MokaManager", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peer.get(keys.next()).await.unwrap()) });
    });
    group.finish();
}

fn put(c: &mut Criterion) {
    let rt = runtime();
    let keys = KeyCycle::new(KEY_COUNT);
    let (cached, policy) = response();

    let memory: Arc<dyn CacheManager> = Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(CAPACITY_BYTES)).unwrap(),
    );
    let raw_sync: moka::sync::Cache<String, Arc<Vec<u8>>> =
        moka::sync::Cache::new(KEY_COUNT as u64 * 2);
    let raw_future: moka::future::Cache<String, Arc<Vec<u8>>> =
        moka::future::Cache::new(KEY_COUNT as u64 * 2);
    let peer = MokaManager::new(moka::future::Cache::new(KEY_COUNT as u64 * 2));

    // Each contender receives its input by value, built outside the measurement: the
    // response and policy for the managers, the key and an `Arc<Vec<u8>>` for raw moka.
    let mut group = c.benchmark_group("memory/put");
    group.bench_function("cache-memory (dyn CacheManager)", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), cached.clone(), policy.clone()),
            |(key, response, policy)| {
                let memory = Arc::clone(&memory);
                async move { memory.put(&key, response, policy, ttl()).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw moka sync::Cache", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), Arc::new(cached.body.to_vec())),
            |(key, value)| {
                raw_sync.insert(key, value);
                async {}
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw moka future::Cache", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), Arc::new(cached.body.to_vec())),
            |(key, value)| raw_future.insert(key, value),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("http-cache MokaManager", |b| {
        b.to_async(&rt).iter_batched(
            || {
                (
                    keys.next().to_owned(),
                    http_cache_response(),
                    policy.clone(),
                )
            },
            |(key, response, policy)| {
                let peer = peer.clone();
                async move { black_box(peer.put(key, response, policy).await.unwrap()) }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = get_hit, put
}
criterion_main!(benches);
