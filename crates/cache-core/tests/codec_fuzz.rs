//! One million random and mutated inputs: the decoder never panics and never allocates
//! more than a bounded amount, whatever the length fields claim.

#![expect(
    unsafe_code,
    reason = "a counting global allocator must implement the unsafe GlobalAlloc trait"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::codec;
use cache_core::testkit::fixtures::{policy_for_request, response};
use cache_core::{CacheEntry, EntryMetadata};
use http::HeaderValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records the largest single allocation made while `RECORDING` is set.
struct CountingAllocator;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwards the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const INPUTS: usize = 1_000_000;
/// `HeaderMap`'s own ceiling (32,768 entries) is the largest allocation a hostile header
/// count may cause; everything else is bounded by the input's size.
const ALLOCATION_BOUND: usize = 8 * 1024 * 1024;

fn seeds() -> Vec<Vec<u8>> {
    let mut cached = response(
        "https://example.com/seed",
        Bytes::from_static(b"seed body with some length to it"),
    );
    cached
        .headers
        .append("x-multi", HeaderValue::from_static("fourth"));
    let request = http::Request::get("https://example.com/seed")
        .header("authorization", "Bearer x")
        .body(())
        .unwrap();
    let policy = policy_for_request(&request, &cached);
    let metadata = EntryMetadata::new(
        SystemTime::now(),
        Duration::from_secs(5),
        vec!["t1".into(), "t2".into()],
    );
    let entry = CacheEntry::new(cached.clone(), policy.clone(), metadata.clone());
    let empty = CacheEntry::new(
        cached.clone().with_body(Bytes::new()),
        policy.clone(),
        metadata.clone(),
    );
    let (head, _) = cached.into_head_and_body();
    vec![
        codec::encode("seed-key", &entry).unwrap(),
        codec::encode("", &empty).unwrap(),
        codec::encode_head("head", &head, &policy, &metadata, 1234).unwrap(),
    ]
}

fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() >= 16 {
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[16..]);
        bytes[8..16].copy_from_slice(&checksum.to_le_bytes());
    }
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..7) {
            0 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            2 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.truncate(at);
            }
            3 => {
                let extra = rng.random_range(1..64);
                bytes.extend((0..extra).map(|_| rng.random::<u8>()));
            }
            4 if bytes.len() > 32 => {
                // Overwrite a 4-byte word in the metadata with a hostile length.
                let at = rng.random_range(28..bytes.len() - 4);
                let hostile: u32 = *[u32::MAX, u32::MAX / 2, 65_535, 1 << 20, rng.random()]
                    .get(rng.random_range(0..5))
                    .unwrap();
                bytes[at..at + 4].copy_from_slice(&hostile.to_le_bytes());
            }
            5 if bytes.len() >= 28 => {
                // Lie in the fixed header's length fields.
                let field = if rng.random() { 16..20 } else { 20..28 };
                for byte in &mut bytes[field] {
                    *byte = rng.random();
                }
            }
            _ => {
                if !bytes.is_empty() {
                    let at = rng.random_range(0..bytes.len());
                    bytes.remove(at);
                }
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    // Most mutants get a valid checksum so the parser behind it is exercised.
    if rng.random_range(0..4) != 0 {
        fix_checksum(&mut bytes);
    }
    bytes
}

#[test]
fn a_million_random_and_mutated_inputs_never_panic_nor_allocate_unboundedly() {
    let seeds = seeds();
    for seed in &seeds {
        assert!(
            codec::decode(Bytes::from(seed.clone())).is_ok()
                || codec::decode_head(Bytes::from(seed.clone())).is_ok()
        );
    }
    let mut rng = StdRng::seed_from_u64(0x00c0_dec0_f022);
    let mut decoded_ok = 0usize;
    LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
    for round in 0..INPUTS {
        let input = if round % 5 == 0 {
            let len = rng.random_range(0..256);
            let mut random: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if round % 10 == 0 && random.len() >= 28 {
                random[..4].copy_from_slice(&codec::MAGIC);
                random[4] = codec::FORMAT_VERSION;
                random[5] = 0;
                random[6] = 0;
                random[7] = 0;
                fix_checksum(&mut random);
            }
            random
        } else {
            let seed = &seeds[round % seeds.len()];
            mutate(&mut rng, seed)
        };
        let input = Bytes::from(input);
        // The policy is decoded on first use: force it, so its decoder meets every input.
        decoded_ok += usize::from(
            codec::decode(input.clone()).is_ok_and(|decoded| decoded.entry.try_policy().is_ok()),
        );
        decoded_ok += usize::from(codec::decode_head(input).is_ok());
    }
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(
        largest <= ALLOCATION_BOUND,
        "an input made the decoder allocate {largest} bytes at once"
    );
    // Some mutants (a flipped byte inside a header value, say) are still valid envelopes;
    // the point is that none panicked.
    assert!(
        decoded_ok < INPUTS,
        "nearly every mutant must be rejected, {decoded_ok} decoded"
    );
}
