//! The Redis backend against the conformance suite, on a real redis-server.

mod common;

use std::sync::Arc;

use cache_core::testkit::{Suite, run_all};
use cache_redis::RedisCache;
use cache_redis::testing::redis_tests_skipped;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_passes_every_conformance_case_it_supports() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(
        common::config(&url, "conformance").with_command_timeout(std::time::Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let raw = common::RawRedis {
        cache: cache.clone(),
        connection: common::plain_connection(&url).await,
    };
    let suite = Suite::new(Arc::new(cache)).with_raw_storage(Arc::new(raw));
    let report = run_all(&suite).await;
    // Redis accounts its memory itself (no size_bytes); bodies live in one value (no
    // streaming).
    assert_eq!(
        report.skipped_names(),
        [
            "size_bytes",
            "stream_round_trip",
            "stream_body_error_leaves_no_entry",
            "stream_length_mismatch_leaves_no_entry",
            "stream_dropped_put_leaves_no_entry",
        ]
    );
    assert_eq!(report.passed.len(), 23);
}
