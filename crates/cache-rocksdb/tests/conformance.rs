//! The RocksDB backend against the conformance suite.

use std::sync::Arc;

use cache_core::testkit::{RawStorageFns, Suite, run_all};
use cache_rocksdb::{RocksDbCache, RocksDbConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rocksdb_passes_every_conformance_case_it_supports() {
    let dir = tempfile::tempdir().unwrap();
    let cache =
        RocksDbCache::open(RocksDbConfig::new(dir.path()).with_capacity_bytes(512 * 1024 * 1024))
            .await
            .unwrap();
    let (reader, writer) = (cache.raw_access(), cache.raw_access());
    let raw = RawStorageFns::new(
        move |key| reader.read(key),
        move |key, bytes| writer.write(key, bytes),
    );
    let suite = Suite::new(Arc::new(cache.clone())).with_raw_storage(Arc::new(raw));
    let report = run_all(&suite).await;
    assert_eq!(
        report.skipped_names(),
        [
            "tags",
            "health",
            "stream_round_trip",
            "stream_body_error_leaves_no_entry",
            "stream_length_mismatch_leaves_no_entry",
            "stream_dropped_put_leaves_no_entry",
        ]
    );
    assert_eq!(report.passed.len(), 22);
}
