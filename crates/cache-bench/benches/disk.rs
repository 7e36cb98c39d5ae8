//! The cacache disk tier: get-hit and put of the 16 KiB response with 10 headers,
//! `cache-cacache` against raw `cacache` read/write of the same encoded bytes (its async
//! API, and its sync API inside `spawn_blocking`, which is what the backend does) and
//! against `http-cache`'s `CACacheManager`. RocksDB has a bench of its own (`rocksdb`,
//! behind the `rocksdb` feature).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_bench::{BODY_LEN, KeyCycle, encoded, http_cache_response, response};
use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::{CacheManager, PutOptions};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http_cache::{CACacheManager, CacheManager as _};

/// Fewer keys than the memory benchmarks: each put writes files.
const DISK_KEYS: usize = 2_000;

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

fn cacache_benches(c: &mut Criterion) {
    let rt = runtime();
    let keys = KeyCycle::new(DISK_KEYS);
    let (cached, policy) = response();
    let root = tempfile::tempdir().expect("tempdir");
    let ours_dir = root.path().join("ours");
    let raw_dir = root.path().join("raw");
    let peer_dir = root.path().join("peer");
    let ours = rt
        .block_on(CacacheCache::open(
            CacacheConfig::new(&ours_dir).with_capacity_bytes(1 << 32),
        ))
        .expect("open");
    let ours: Arc<dyn CacheManager> = Arc::new(ours);
    let peer = CACacheManager::new(peer_dir.clone(), true);
    let bytes = encoded(&keys.keys[0]);
    rt.block_on(async {
        for key in &keys.keys {
            ours.put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
            cacache::write(&raw_dir, key, &bytes)
                .await
                .expect("raw write");
            peer.put(key.clone(), http_cache_response(), policy.clone())
                .await
                .expect("peer put");
        }
        for key in &keys.keys {
            assert_eq!(
                ours.get(key).await.unwrap().unwrap().response.body.len(),
                BODY_LEN
            );
            assert_eq!(
                cacache::read(&raw_dir, key).await.unwrap().len(),
                bytes.len()
            );
            assert_eq!(peer.get(key).await.unwrap().unwrap().0.body.len(), BODY_LEN);
        }
    });

    let mut group = c.benchmark_group("cacache/get_hit");
    group.bench_function("cache-cacache", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours.get(keys.next()).await.unwrap()) });
    });
    group.bench_function("raw cacache::read (async)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cacache::read(&raw_dir, keys.next()).await.unwrap()) });
    });
    group.bench_function("raw cacache::read_sync in spawn_blocking", |b| {
        b.to_async(&rt).iter(|| async {
            let (dir, key) = (raw_dir.clone(), keys.next().to_owned());
            black_box(
                tokio::task::spawn_blocking(move || cacache::read_sync(&dir, &key).unwrap())
                    .await
                    .unwrap(),
            )
        });
    });
    group.bench_function("http-cache CACacheManager", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peer.get(keys.next()).await.unwrap()) });
    });
    group.finish();

    let mut group = c.benchmark_group("cacache/put");
    group.sample_size(30);
    group.bench_function("cache-cacache", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), cached.clone(), policy.clone()),
            |(key, response, policy)| {
                let ours = Arc::clone(&ours);
                async move { ours.put(&key, response, policy, ttl()).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw cacache::write (async)", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), bytes.clone()),
            |(key, bytes)| {
                let dir = raw_dir.clone();
                async move { black_box(cacache::write(&dir, key, bytes).await.unwrap()) }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw cacache::write_sync in spawn_blocking", |b| {
        b.to_async(&rt).iter_batched(
            || (keys.next().to_owned(), bytes.clone()),
            |(key, bytes)| {
                let dir = raw_dir.clone();
                async move {
                    black_box(
                        tokio::task::spawn_blocking(move || {
                            cacache::write_sync(&dir, key, bytes).unwrap()
                        })
                        .await
                        .unwrap(),
                    )
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("http-cache CACacheManager", |b| {
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

    // Real responses differ from one fetch to the next (`Date`, request ids), so a put
    // rarely rewrites identical content; here every contender writes content no put wrote
    // before. The unique inputs are built in the untimed setup.
    let unique = AtomicUsize::new(0);
    let next_unique = || unique.fetch_add(1, Ordering::Relaxed).to_string();
    let mut group = c.benchmark_group("cacache/put_unique_content");
    group.sample_size(30);
    group.bench_function("cache-cacache", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let mut response = cached.clone();
                response
                    .headers
                    .insert("x-request-id", next_unique().parse().unwrap());
                (keys.next().to_owned(), response, policy.clone())
            },
            |(key, response, policy)| {
                let ours = Arc::clone(&ours);
                async move { ours.put(&key, response, policy, ttl()).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw cacache::write_sync in spawn_blocking", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let mut unique_bytes = bytes.clone();
                let tail = unique_bytes.len() - 8;
                unique_bytes[tail..].copy_from_slice(
                    &(unique.fetch_add(1, Ordering::Relaxed) as u64).to_le_bytes(),
                );
                (keys.next().to_owned(), unique_bytes)
            },
            |(key, bytes)| {
                let dir = raw_dir.clone();
                async move {
                    black_box(
                        tokio::task::spawn_blocking(move || {
                            cacache::write_sync(&dir, key, bytes).unwrap()
                        })
                        .await
                        .unwrap(),
                    )
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("http-cache CACacheManager", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let mut response = http_cache_response();
                response
                    .headers
                    .insert("x-request-id".to_owned(), next_unique());
                (keys.next().to_owned(), response, policy.clone())
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
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = cacache_benches
}
criterion_main!(benches);
