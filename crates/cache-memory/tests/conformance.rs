//! The memory backend against the whole conformance suite.

use std::sync::Arc;

use cache_core::testkit::{Suite, run_all};
use cache_memory::{MemoryCache, MemoryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_passes_every_conformance_case_it_supports() {
    let cache =
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 * 1024 * 1024)).unwrap();
    let report = run_all(&Suite::new(Arc::new(cache))).await;
    // Decoded entries live in process memory: there are no stored bytes to corrupt or
    // to leak credentials into, and the store is not a streaming one.
    assert_eq!(
        report.skipped_names(),
        [
            "health",
            "corrupt_entries_become_misses",
            "no_credentials_at_rest",
            "stream_round_trip",
            "stream_body_error_leaves_no_entry",
            "stream_length_mismatch_leaves_no_entry",
            "stream_dropped_put_leaves_no_entry",
        ]
    );
    assert_eq!(report.passed.len(), 21);
}
