//! The RocksDB disk tier: get-hit and put of the 16 KiB response with 10 headers,
//! `cache-rocksdb` against raw `rocksdb` get/put of the same encoded bytes, inside
//! `spawn_blocking` (the fair comparison: a RocksDB call must not block the executor) and
//! inline, with RocksDB's defaults and with cache-rocksdb's settings. Every second round of
//! `cargo xtask bench` runs each group's contenders in reverse order.
//!
//! Behind the `rocksdb` feature (the C++ build of RocksDB takes about 16 minutes cold):
//! `cargo bench -p cache-bench --features rocksdb --bench rocksdb`, or `cargo xtask bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_bench::{BODY_LEN, KeyCycle, encoded, in_round_order, response};
use cache_core::{CacheManager, PutOptions};
use cache_rocksdb::{RocksDbCache, RocksDbConfig};
use criterion::{BatchSize, Bencher, Criterion, criterion_group, criterion_main};

/// Fewer keys than the memory benchmarks: the data set lives in table files.
const DISK_KEYS: usize = 2_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A contender of a group: its name and its routine.
type Contender<'a> = (&'static str, Box<dyn FnMut(&mut Bencher<'_>) + 'a>);

/// Raw `get` of the next key on tokio's blocking pool.
fn raw_get_in_blocking<'a>(
    rt: &'a tokio::runtime::Runtime,
    keys: &'a KeyCycle,
    db: &Arc<rocksdb::DB>,
) -> Box<dyn FnMut(&mut Bencher<'_>) + 'a> {
    let db = Arc::clone(db);
    Box::new(move |b| {
        b.to_async(rt).iter(|| async {
            let (raw, key) = (Arc::clone(&db), keys.next().to_owned());
            black_box(
                tokio::task::spawn_blocking(move || raw.get(key).unwrap())
                    .await
                    .unwrap(),
            )
        });
    })
}

/// Raw `put` of `bytes` under the next key on tokio's blocking pool.
fn raw_put_in_blocking<'a>(
    rt: &'a tokio::runtime::Runtime,
    keys: &'a KeyCycle,
    db: &Arc<rocksdb::DB>,
    bytes: &Bytes,
) -> Box<dyn FnMut(&mut Bencher<'_>) + 'a> {
    let (db, bytes) = (Arc::clone(db), bytes.clone());
    Box::new(move |b| {
        b.to_async(rt).iter_batched(
            || (keys.next().to_owned(), bytes.clone()),
            |(key, bytes)| {
                let raw = Arc::clone(&db);
                async move {
                    tokio::task::spawn_blocking(move || raw.put(key, bytes).unwrap())
                        .await
                        .unwrap();
                }
            },
            BatchSize::SmallInput,
        );
    })
}

fn ttl() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn rocksdb_benches(c: &mut Criterion) {
    let rt = runtime();
    let keys = KeyCycle::new(DISK_KEYS);
    let (cached, policy) = response();
    let root = tempfile::tempdir().expect("tempdir");
    let ours_db = Arc::new(
        rt.block_on(RocksDbCache::open(
            RocksDbConfig::new(root.path().join("ours")).with_capacity_bytes(1 << 32),
        ))
        .expect("open"),
    );
    let ours: Arc<dyn CacheManager> = ours_db.clone();
    let raw = Arc::new(rocksdb::DB::open_default(root.path().join("raw")).expect("raw open"));
    // The same settings as cache-rocksdb's defaults (a 16 MiB write buffer, so the data
    // set lives in SST files as it does under the backend, a 64 MiB block cache, bloom
    // filters, LZ4): the difference to this contender is the backend's own work.
    let raw_alike = {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(16 * 1024 * 1024);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 * 1024 * 1024));
        table.set_bloom_filter(10.0, false);
        options.set_block_based_table_factory(&table);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        Arc::new(rocksdb::DB::open(&options, root.path().join("raw-alike")).expect("raw open"))
    };
    let bytes = Bytes::from(encoded(&keys.keys[0]));
    rt.block_on(async {
        for key in &keys.keys {
            ours.put(key, cached.clone(), policy.clone(), ttl())
                .await
                .expect("put");
            raw.put(key, &bytes).expect("raw put");
            raw_alike.put(key, &bytes).expect("raw put");
        }
        for key in &keys.keys {
            assert_eq!(
                ours.get(key).await.unwrap().unwrap().response.body.len(),
                BODY_LEN
            );
            assert_eq!(raw.get(key).unwrap().unwrap().len(), bytes.len());
        }
        // Every database settles before the first measurement: the flushes and
        // compactions the loading started would otherwise run during whichever contender
        // happens to come first.
        ours_db.compact().await.expect("compact");
    });
    for db in [&raw, &raw_alike] {
        db.compact_range(None::<&[u8]>, None::<&[u8]>);
    }

    let mut group = c.benchmark_group("rocksdb/get_hit");
    let contenders: Vec<Contender<'_>> = vec![
        (
            "cache-rocksdb",
            Box::new(|b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(ours.get(keys.next()).await.unwrap()) });
            }),
        ),
        (
            "raw rocksdb get in spawn_blocking",
            raw_get_in_blocking(&rt, &keys, &raw),
        ),
        (
            "raw rocksdb get in spawn_blocking, cache-rocksdb's settings",
            raw_get_in_blocking(&rt, &keys, &raw_alike),
        ),
        (
            "raw rocksdb get inline",
            Box::new(|b| {
                b.iter(|| black_box(raw.get(keys.next()).unwrap()));
            }),
        ),
    ];
    for (name, mut routine) in in_round_order(contenders) {
        group.bench_function(name, |b| routine(b));
    }
    group.finish();

    let mut group = c.benchmark_group("rocksdb/put");
    let contenders: Vec<Contender<'_>> = vec![
        (
            "cache-rocksdb",
            Box::new(|b| {
                b.to_async(&rt).iter_batched(
                    || (keys.next().to_owned(), cached.clone(), policy.clone()),
                    |(key, response, policy)| {
                        let ours = Arc::clone(&ours);
                        async move { ours.put(&key, response, policy, ttl()).await.unwrap() }
                    },
                    BatchSize::SmallInput,
                );
            }),
        ),
        (
            "raw rocksdb put in spawn_blocking",
            raw_put_in_blocking(&rt, &keys, &raw, &bytes),
        ),
        (
            "raw rocksdb put in spawn_blocking, cache-rocksdb's settings",
            raw_put_in_blocking(&rt, &keys, &raw_alike, &bytes),
        ),
        (
            "raw rocksdb put inline",
            Box::new(|b| {
                b.iter_batched(
                    || (keys.next().to_owned(), bytes.clone()),
                    |(key, bytes)| raw.put(key, bytes).unwrap(),
                    BatchSize::SmallInput,
                );
            }),
        ),
    ];
    for (name, mut routine) in in_round_order(contenders) {
        group.bench_function(name, |b| routine(b));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = rocksdb_benches
}
criterion_main!(benches);
