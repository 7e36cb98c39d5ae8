//! The stack against the conformance suite: memory over memory, memory over disk.

use std::sync::Arc;

use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::testkit::{Suite, run_all};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};

fn memory() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20)).unwrap())
}

/// What the stack does not do (it stores no bytes itself: corruption and credentials are
/// its tiers' business, tested there; counts and sizes belong to the tiers).
const SKIPPED: [&str; 9] = [
    "entry_count",
    "size_bytes",
    "health",
    "corrupt_entries_become_misses",
    "no_credentials_at_rest",
    "stream_round_trip",
    "stream_body_error_leaves_no_entry",
    "stream_length_mismatch_leaves_no_entry",
    "stream_dropped_put_leaves_no_entry",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_over_memory_passes_the_conformance_suite() {
    let stack = TieredCache::builder()
        .tier(Tier::new(memory()))
        .tier(Tier::new(memory()))
        .build()
        .await
        .unwrap();
    let report = run_all(&Suite::new(Arc::new(stack))).await;
    assert_eq!(report.skipped_names(), SKIPPED);
    assert_eq!(report.passed.len(), 28 - SKIPPED.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_over_disk_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let disk = CacacheCache::open(CacacheConfig::new(dir.path()).with_capacity_bytes(1 << 30))
        .await
        .unwrap();
    let stack = TieredCache::builder()
        // Scale 1: with another scale, a hit reports the expiry of the copy in the tier
        // that answered, not the one the put asked for (tested on its own).
        .tier(Tier::new(memory()))
        .tier(Tier::new(Arc::new(disk)))
        .build()
        .await
        .unwrap();
    let report = run_all(&Suite::new(Arc::new(stack))).await;
    assert_eq!(report.skipped_names(), SKIPPED);
    assert_eq!(report.passed.len(), 28 - SKIPPED.len());
}
