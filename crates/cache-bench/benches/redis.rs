//! Redis: get-hit and put of the 16 KiB response with 10 headers, one at a time and 64
//! concurrent tasks, `cache-redis` against raw redis-rs `GET`/`SET` of the same encoded
//! bytes on the same kind of connection (redis-rs's `ConnectionManager`, one multiplexed
//! connection).
//!
//! Uses `REDIS_URL` when set, otherwise starts a throwaway `redis-server`. Every second
//! round of `cargo xtask bench` runs each group's contenders in reverse order.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_bench::{BODY_LEN, KeyCycle, in_round_order, response};
use cache_core::{CacheManager, PutOptions, codec};
use cache_redis::testing::RedisServer;
use cache_redis::{RedisCache, RedisConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

const REDIS_KEYS: usize = 1_000;
const CONCURRENT_TASKS: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    // The runtime `#[tokio::main]` gives an application: one worker per core (2 here,
    // shared with redis-server).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One operation of a contender, callable from any task.
type Operation = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

fn ttl() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

const TTL_MS: u64 = 3_600_000;

/// Runs `iters` operations spread over 64 spawned tasks in flight at once; returns the
/// time of all.
async fn concurrently(iters: u64, operation: Operation) -> Duration {
    let per_task = iters.div_ceil(CONCURRENT_TASKS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|_| {
            let operation = Arc::clone(&operation);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    operation().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    // Per operation: the total over the operations actually run, scaled to `iters`.
    started
        .elapsed()
        .mul_f64(iters as f64 / (per_task * CONCURRENT_TASKS) as f64)
}

fn redis_benches(c: &mut Criterion) {
    let rt = runtime();
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = RedisServer::start().expect("start redis-server for the benchmark");
            (server.url(), Some(server))
        }
    };
    let keys = Arc::new(KeyCycle::new(REDIS_KEYS));
    let (cached, policy) = response();
    let namespace = format!("bench-{}", std::process::id());
    let ours = rt
        .block_on(RedisCache::connect(
            RedisConfig::new(&url)
                .with_namespace(&namespace)
                .with_command_timeout(Duration::from_secs(10)),
        ))
        .expect("connect");
    let ours: Arc<dyn CacheManager> = Arc::new(ours);
    let raw: ConnectionManager = rt
        .block_on(async {
            ConnectionManager::new(redis::Client::open(url.as_str()).unwrap()).await
        })
        .expect("raw connection");
    let raw_key = |key: &str| format!("{namespace}:raw:{key}");
    // The raw contender stores what the backend stores: the encoded entry.
    let metadata = cache_core::EntryMetadata::new(
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
        vec![],
    );
    let bytes = codec::encode_parts(&keys.keys[0], &cached, &policy, &metadata).expect("encode");

    rt.block_on(async {
        let mut conn = raw.clone();
        for key in &keys.keys {
            ours.put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
            let () = redis::cmd("SET")
                .arg(raw_key(key))
                .arg(&bytes)
                .arg("PX")
                .arg(TTL_MS)
                .query_async(&mut conn)
                .await
                .expect("raw set");
        }
        for key in &keys.keys {
            let hit = ours.get(key).await.unwrap().expect("a hit");
            assert_eq!(hit.response.body.len(), BODY_LEN);
            let raw_hit: Option<Vec<u8>> = redis::cmd("GET")
                .arg(raw_key(key))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(raw_hit.map(|value| value.len()), Some(bytes.len()));
        }
    });

    let ours_get: Operation = {
        let (ours, keys) = (Arc::clone(&ours), Arc::clone(&keys));
        Arc::new(move || {
            let (ours, keys) = (Arc::clone(&ours), Arc::clone(&keys));
            Box::pin(async move {
                let entry = ours.get(keys.next()).await.unwrap();
                black_box(entry.expect("a hit"));
            })
        })
    };
    let raw_get: Operation = {
        let (raw, keys, namespace) = (raw.clone(), Arc::clone(&keys), namespace.clone());
        Arc::new(move || {
            let mut conn = raw.clone();
            let key = format!("{namespace}:raw:{}", keys.next());
            Box::pin(async move {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                black_box(value.expect("a hit"));
            })
        })
    };
    let ours_put: Operation = {
        let (ours, keys) = (Arc::clone(&ours), Arc::clone(&keys));
        let (cached, policy) = (cached.clone(), policy.clone());
        Arc::new(move || {
            let (ours, keys) = (Arc::clone(&ours), Arc::clone(&keys));
            let (cached, policy) = (cached.clone(), policy.clone());
            Box::pin(async move {
                ours.put(keys.next(), cached, policy, ttl()).await.unwrap();
            })
        })
    };
    let raw_put: Operation = {
        let (raw, keys, namespace) = (raw.clone(), Arc::clone(&keys), namespace.clone());
        let bytes = Arc::new(bytes);
        Arc::new(move || {
            let mut conn = raw.clone();
            let key = format!("{namespace}:raw:{}", keys.next());
            let bytes = Arc::clone(&bytes);
            Box::pin(async move {
                let () = redis::cmd("SET")
                    .arg(key)
                    .arg(&bytes[..])
                    .arg("PX")
                    .arg(TTL_MS)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            })
        })
    };

    // Each group's contenders, in this round's order (see `in_round_order`).
    let mut one_task = |group: &str, ours: &Operation, raw: &Operation, raw_name: &str| {
        let mut group = c.benchmark_group(group);
        for (name, operation) in in_round_order(vec![("cache-redis", ours), (raw_name, raw)]) {
            group.bench_function(name, |b| b.to_async(&rt).iter(|| operation()));
        }
        group.finish();
    };
    one_task("redis/get_hit", &ours_get, &raw_get, "raw redis-rs GET");
    one_task("redis/put", &ours_put, &raw_put, "raw redis-rs SET");
    let mut many_tasks = |group: &str, ours: &Operation, raw: &Operation, raw_name: &str| {
        let mut group = c.benchmark_group(group);
        for (name, operation) in in_round_order(vec![("cache-redis", ours), (raw_name, raw)]) {
            group.bench_function(name, |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| concurrently(iters, Arc::clone(operation)));
            });
        }
        group.finish();
    };
    many_tasks(
        "redis/get_hit_64_tasks",
        &ours_get,
        &raw_get,
        "raw redis-rs GET",
    );
    many_tasks(
        "redis/put_64_tasks",
        &ours_put,
        &raw_put,
        "raw redis-rs SET",
    );

    // Leave nothing behind on a shared server.
    rt.block_on(async {
        ours.clear().await.expect("clear");
        let mut conn = raw.clone();
        for key in &keys.keys {
            let _: u64 = redis::cmd("DEL")
                .arg(raw_key(key))
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
}

criterion_group!(benches, redis_benches);
criterion_main!(benches);
