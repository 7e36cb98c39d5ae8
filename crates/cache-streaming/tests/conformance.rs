//! The streaming store against the conformance suite, buffered and streaming cases.

use std::sync::Arc;

use cache_core::testkit::{RawStorageFns, Suite, run_all};
use cache_streaming::{ReadVerification, StreamingCache, StreamingConfig};

async fn run_suite(verification: ReadVerification) {
    let dir = tempfile::tempdir().unwrap();
    let store = StreamingCache::open(
        StreamingConfig::new(dir.path())
            .with_capacity_bytes(512 * 1024 * 1024)
            .with_read_verification(verification),
    )
    .await
    .unwrap();
    let (reader, writer) = (store.raw_access(), store.raw_access());
    let raw = RawStorageFns::new(
        move |key| reader.read(key),
        move |key, bytes| writer.write(key, bytes),
    );
    let suite = Suite::new(Arc::new(store.clone()))
        .with_streaming(Arc::new(store.clone()))
        .with_raw_storage(Arc::new(raw));
    let report = run_all(&suite).await;
    assert_eq!(report.skipped_names(), ["health"]);
    assert_eq!(report.passed.len(), 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_passes_every_conformance_case_it_supports() {
    run_suite(ReadVerification::Checksum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_passes_them_verifying_reads_with_sha256() {
    run_suite(ReadVerification::Sha256).await;
}
