//! The codec on the 16 KiB response: what a byte-storing backend pays per hit and per put
//! on top of its storage, and the parts of it.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_bench::response;
use cache_core::{EntryMetadata, codec};
use criterion::{Criterion, criterion_group, criterion_main};

fn codec_benches(c: &mut Criterion) {
    let (cached, policy) = response();
    let key = "GET:https://bench.example/item/0";
    let metadata = EntryMetadata::new(SystemTime::now(), Duration::from_secs(3600), vec![]);
    let encoded = Bytes::from(codec::encode_parts(key, &cached, &policy, &metadata).unwrap());
    let policy_bytes = codec::encode_policy(&policy).unwrap();

    let mut group = c.benchmark_group("codec");
    group.bench_function("decode_for_key (whole entry)", |b| {
        b.iter(|| black_box(codec::decode_for_key(encoded.clone(), key).unwrap()));
    });
    group.bench_function("decode_policy (part)", |b| {
        b.iter(|| black_box(codec::decode_policy(&policy_bytes).unwrap()));
    });
    group.bench_function(
        "xxh3 of the envelope (part; twox-hash, what the codec uses)",
        |b| {
            b.iter(|| black_box(twox_hash::XxHash3_64::oneshot(&encoded[16..])));
        },
    );
    group.bench_function("xxh3 of the envelope (xxhash-rust, the same value)", |b| {
        b.iter(|| black_box(xxhash_rust::xxh3::xxh3_64(&encoded[16..])));
    });
    // The alternative to decoding a serialized policy: rebuilding it from the request and
    // response heads it was made from (what a cheaper stored form would hold).
    let (request_parts, ()) = http::Request::get(cached.url.as_str())
        .body(())
        .unwrap()
        .into_parts();
    let mut response_head = http::Response::new(());
    *response_head.headers_mut() = cached.headers.clone();
    let (response_parts, ()) = response_head.into_parts();
    let response_time = SystemTime::now();
    group.bench_function("CachePolicy::new_options from heads (part)", |b| {
        b.iter(|| {
            black_box(http_cache_semantics::CachePolicy::new_options(
                &request_parts,
                &response_parts,
                response_time,
                http_cache_semantics::CacheOptions::default(),
            ))
        });
    });
    group.bench_function("encode_parts (whole entry)", |b| {
        b.iter(|| black_box(codec::encode_parts(key, &cached, &policy, &metadata).unwrap()));
    });
    group.bench_function("encode_policy (part)", |b| {
        b.iter(|| black_box(codec::encode_policy(&policy).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
