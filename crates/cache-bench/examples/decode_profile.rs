//! Decodes the standard entry many times, for a profiler.
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_bench::response;
use cache_core::{EntryMetadata, codec};

fn main() {
    let (cached, policy) = response();
    let key = "GET:https://bench.example/item/0";
    let metadata = EntryMetadata::new(SystemTime::now(), Duration::from_secs(3600), vec![]);
    let encoded = Bytes::from(codec::encode_parts(key, &cached, &policy, &metadata).unwrap());
    for _ in 0..20_000 {
        std::hint::black_box(codec::decode_for_key(encoded.clone(), key).unwrap());
    }
}
