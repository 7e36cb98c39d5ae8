//! The memory backend against the conformance suite, one trial per case.

use std::sync::Arc;

use cache_core::testkit::{Conformance, Suite};
use cache_memory::{MemoryCache, MemoryConfig};

fn main() {
    Conformance::new("memory", || async {
        let config = MemoryConfig::default().with_capacity_bytes(64 << 20);
        Suite::new(Arc::new(
            MemoryCache::open(config).expect("open a memory cache"),
        ))
    })
    // Decoded entries live in process memory: there are no stored bytes to corrupt or to
    // leak credentials into, and the store is not a streaming one.
    .expect_skipped([
        "health",
        "corrupt_entries_become_misses",
        "no_credentials_at_rest",
        "stream_round_trip",
        "stream_body_error_leaves_no_entry",
        "stream_length_mismatch_leaves_no_entry",
        "stream_dropped_put_leaves_no_entry",
    ])
    .run()
    .exit()
}
