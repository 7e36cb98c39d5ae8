//! The Redis backend against the conformance suite on a real redis-server, one trial per
//! case, each in a namespace of its own (the `clear` case clears only its own).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::testkit::libtest_mimic::{self, Arguments};
use cache_core::testkit::{Conformance, Suite};
use cache_redis::RedisCache;
use cache_redis::testing::redis_tests_skipped;

fn main() -> std::process::ExitCode {
    let arguments = Arguments::from_args();
    let skipped = redis_tests_skipped();
    // `REDIS_URL`, or a server of this target's own (not just to list the trials),
    // stopped when the trials are done.
    let (url, server) = if skipped || arguments.list {
        (String::new(), None)
    } else {
        common::shared_or_own_server()
    };
    let conformance = Conformance::new("redis", move || {
        let url = url.clone();
        async move {
            let cache = RedisCache::connect(
                common::config(&url, "conformance").with_command_timeout(Duration::from_secs(5)),
            )
            .await
            .expect("connect to redis");
            let raw = common::RawRedis {
                cache: cache.clone(),
                connection: common::plain_connection(&url).await,
            };
            Suite::new(Arc::new(cache)).with_raw_storage(Arc::new(raw))
        }
    })
    // Redis accounts its memory itself (no size_bytes); bodies live in one value (no
    // streaming).
    .expect_skipped([
        "size_bytes",
        "stream_round_trip",
        "stream_body_error_leaves_no_entry",
        "stream_length_mismatch_leaves_no_entry",
        "stream_dropped_put_leaves_no_entry",
    ]);
    let trials = conformance
        .trials()
        .into_iter()
        // Without Redis (CACHE_SKIP_REDIS_TESTS=1) every trial is listed, and ignored.
        .map(|trial| trial.with_ignored_flag(skipped))
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    drop(server);
    conclusion.exit_code()
}
