//! The streaming store with a 64 MiB body: `put_stream` against a raw file write of the
//! same bytes and against SHA-256 of the same bytes alone (a content-addressed put must
//! do both); `get_stream` against a raw read of the same file in chunks of the same size.
//!
//! Throughput ratios: a contender's time divided by ours is our throughput relative to it.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cache_bench::{policy_for, response};
use cache_core::{BoxBody, BoxError, PutOptions, StreamingCacheManager, body};
use cache_streaming::{ReadVerification, StreamingCache, StreamingConfig};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

const BODY_BYTES: usize = 64 * 1024 * 1024;
/// The chunk size of the incoming body and of every read (the store's default).
const CHUNK_BYTES: usize = 256 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn chunks_of(bytes: &Bytes) -> BoxBody {
    let chunks: Vec<Result<Bytes, BoxError>> = (0..bytes.len())
        .step_by(CHUNK_BYTES)
        .map(|start| Ok(bytes.slice(start..(start + CHUNK_BYTES).min(bytes.len()))))
        .collect();
    body::from_chunks(chunks)
}

fn ttl() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn streaming_benches(c: &mut Criterion) {
    let rt = runtime();
    let root = tempfile::tempdir().expect("tempdir");
    let open = |name: &str, verification: ReadVerification| {
        rt.block_on(StreamingCache::open(
            StreamingConfig::new(root.path().join(name))
                .with_capacity_bytes(1 << 32)
                .with_read_verification(verification),
        ))
        .expect("open")
    };
    let store = Arc::new(open("ours", ReadVerification::Checksum));
    let sha256_store = Arc::new(open("ours-sha256", ReadVerification::Sha256));
    let (cached, _) = response();
    let policy = policy_for(&cached);
    let (mut head, _) = cached.into_head_and_body();
    head.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(BODY_BYTES),
    );
    let template: Bytes = (0..BODY_BYTES)
        .map(|n| (n % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let unique = AtomicU64::new(0);
    // Every put stores a new body (its first eight bytes differ), so every put hashes,
    // writes and commits, and releases the previous body of the key.
    let unique_body = || {
        let mut bytes = BytesMut::from(&template[..]);
        bytes[..8].copy_from_slice(&unique.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        bytes.freeze()
    };
    let raw_path = root.path().join("raw-file");

    let mut group = c.benchmark_group("streaming/put_64MiB");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("cache-streaming put_stream", |b| {
        b.to_async(&rt).iter_batched(
            unique_body,
            |bytes| {
                let (store, head, policy) = (Arc::clone(&store), head.clone(), policy.clone());
                async move {
                    let stored = store
                        .put_stream("large", head, policy, chunks_of(&bytes), ttl())
                        .await
                        .expect("put_stream");
                    assert_eq!(stored.len, BODY_BYTES as u64);
                }
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("raw file write (create, write, close)", |b| {
        b.to_async(&rt).iter_batched(
            unique_body,
            |bytes| {
                let path = raw_path.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        let mut file = std::fs::File::create(&path).expect("create");
                        for start in (0..bytes.len()).step_by(CHUNK_BYTES) {
                            file.write_all(&bytes[start..(start + CHUNK_BYTES).min(bytes.len())])
                                .expect("write");
                        }
                    })
                    .await
                    .expect("write task");
                }
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("SHA-256 alone (sha2)", |b| {
        b.iter_batched(
            unique_body,
            |bytes| black_box(Sha256::digest(&bytes)),
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // One stored body for the reads, and the same bytes in a plain file.
    let stored = unique_body();
    for store in [&store, &sha256_store] {
        rt.block_on(store.put_stream(
            "large",
            head.clone(),
            policy.clone(),
            chunks_of(&stored),
            ttl(),
        ))
        .expect("put_stream");
    }
    std::fs::write(&raw_path, &stored).expect("raw file");
    let read_all = |store: Arc<StreamingCache>| async move {
        let mut entry = store
            .get_stream("large")
            .await
            .expect("get_stream")
            .expect("a hit");
        let mut len = 0;
        while let Some(frame) = std::future::poll_fn(|cx| entry.body.as_mut().poll_frame(cx)).await
        {
            len += black_box(frame.expect("chunk").into_data().expect("data")).len();
        }
        assert_eq!(len, BODY_BYTES);
    };

    let mut group = c.benchmark_group("streaming/get_64MiB");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("cache-streaming get_stream", |b| {
        b.to_async(&rt).iter(|| read_all(Arc::clone(&store)));
    });
    group.bench_function("cache-streaming get_stream, SHA-256 verified", |b| {
        b.to_async(&rt).iter(|| read_all(Arc::clone(&sha256_store)));
    });
    group.bench_function("raw file read (256 KiB chunks)", |b| {
        b.to_async(&rt).iter(|| {
            let path = raw_path.clone();
            async move {
                let len = tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::File::open(&path).expect("open");
                    let mut buffer = vec![0u8; CHUNK_BYTES];
                    let mut len = 0;
                    loop {
                        let read = file.read(&mut buffer).expect("read");
                        if read == 0 {
                            break len;
                        }
                        len += black_box(&buffer[..read]).len();
                    }
                })
                .await
                .expect("read task");
                assert_eq!(len, BODY_BYTES);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, streaming_benches);
criterion_main!(benches);
