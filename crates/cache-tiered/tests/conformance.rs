//! The stack against the conformance suite, one trial per case, each on stacks of its
//! own: memory over memory, memory over disk, memory over a streaming tier (a spooling
//! test store, and the content-addressed store).

mod spooling;

use std::sync::Arc;

use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::testkit::libtest_mimic::{self, Arguments};
use cache_core::testkit::{Conformance, Suite};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_streaming::{StreamingCache, StreamingConfig};
use cache_tiered::{Tier, TieredCache};
use spooling::SpoolingStore;

fn memory() -> Arc<MemoryCache> {
    Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20))
            .expect("open a memory cache"),
    )
}

/// What the stack does not do over any tiers (it stores no bytes itself: corruption and
/// credentials are its tiers' business, tested there; counts and sizes belong to the
/// tiers).
const NOT_THE_STACKS: [&str; 5] = [
    "entry_count",
    "size_bytes",
    "health",
    "corrupt_entries_become_misses",
    "no_credentials_at_rest",
];

/// The streaming cases, skipped by a stack without a streaming tier.
const STREAMING: [&str; 4] = [
    "stream_round_trip",
    "stream_body_error_leaves_no_entry",
    "stream_length_mismatch_leaves_no_entry",
    "stream_dropped_put_leaves_no_entry",
];

fn memory_over_memory() -> Conformance {
    Conformance::new("memory_over_memory", || async {
        let stack = TieredCache::builder()
            .tier(Tier::new(memory()))
            .tier(Tier::new(memory()))
            .build()
            .await
            .expect("build the stack");
        Suite::new(Arc::new(stack))
    })
    .expect_skipped(NOT_THE_STACKS.into_iter().chain(STREAMING))
}

fn memory_over_disk() -> Conformance {
    Conformance::new("memory_over_disk", || async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let disk =
            CacacheCache::open(CacacheConfig::new(dir.path()).with_capacity_bytes(256 << 20))
                .await
                .expect("open the disk tier");
        let stack = TieredCache::builder()
            // Scale 1: with another scale, a hit reports the expiry of the copy in the
            // tier that answered, not the one the put asked for (tested on its own).
            .tier(Tier::new(memory()))
            // A limit of the stack's own, whatever the disk backend declares: the
            // refused-put case runs against the stack with a 64 MiB limit.
            .tier(Tier::new(Arc::new(disk)).with_max_entry_bytes(64 << 20))
            .build()
            .await
            .expect("build the stack");
        Suite::new(Arc::new(stack)).keep_alive(dir)
    })
    .expect_skipped(NOT_THE_STACKS.into_iter().chain(STREAMING))
}

fn memory_over_a_spooling_store() -> Conformance {
    Conformance::new("memory_over_a_spooling_store", || async {
        let stack = TieredCache::builder()
            .tier(Tier::new(memory()).with_max_entry_bytes(64 * 1024))
            .tier(
                Tier::streaming(Arc::new(SpoolingStore::default())).with_max_entry_bytes(64 << 20),
            )
            .with_stream_promotion_limit(1 << 20)
            .build()
            .await
            .expect("build the stack");
        let stack = Arc::new(stack);
        Suite::new(stack.clone()).with_streaming(stack)
    })
    // The stack supports what all its tiers do: the test store has no tags, patterns,
    // clear, counts or health.
    .expect_skipped(
        NOT_THE_STACKS
            .into_iter()
            .chain(["tags", "delete_pattern", "clear"]),
    )
}

fn memory_over_the_content_addressed_store() -> Conformance {
    Conformance::new("memory_over_the_content_addressed_store", || async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store =
            StreamingCache::open(StreamingConfig::new(dir.path()).with_capacity_bytes(256 << 20))
                .await
                .expect("open the streaming tier");
        let stack = TieredCache::builder()
            .tier(Tier::new(memory()).with_max_entry_bytes(64 * 1024))
            .tier(Tier::streaming(Arc::new(store)).with_max_entry_bytes(64 << 20))
            .build()
            .await
            .expect("build the stack");
        let stack = Arc::new(stack);
        Suite::new(stack.clone())
            .with_streaming(stack)
            .keep_alive(dir)
    })
    // Both tiers support tags, patterns, clear and stats.
    .expect_skipped(NOT_THE_STACKS)
}

fn main() {
    let trials = [
        memory_over_memory().trials(),
        memory_over_disk().trials(),
        memory_over_a_spooling_store().trials(),
        memory_over_the_content_addressed_store().trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}
