//! Faults on a real server: stopped, restarted on the same port, paused.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, ErrorKind, KeyPattern, PutOptions};
use cache_redis::RedisCache;
use cache_redis::testing::redis_tests_skipped;

const TIMEOUT: Duration = Duration::from_millis(400);

/// Long enough for any scheduling hiccup, far shorter than a hang.
fn hang_guard() -> Duration {
    TIMEOUT * 5
}

async fn put(cache: &RedisCache, key: &str) -> cache_core::Result<()> {
    let response = response(
        &format!("https://example.com/{key}"),
        Bytes::from_static(b"body"),
    );
    let policy = policy(&response);
    cache
        .put(key, response, policy, PutOptions::new().with_tags(["t"]))
        .await
}

/// Runs every operation and returns what each one's error kind was and how long it took.
async fn every_operation(cache: &RedisCache) -> Vec<(&'static str, Option<ErrorKind>, Duration)> {
    let pattern = KeyPattern::new("k*").unwrap();
    let mut outcomes = Vec::new();
    macro_rules! time {
        ($name:literal, $operation:expr) => {{
            let started = Instant::now();
            let result = $operation.await;
            outcomes.push((
                $name,
                result.err().map(|error| error.kind()),
                started.elapsed(),
            ));
        }};
    }
    time!("get", cache.get("k1").map_ok_unit());
    time!("put", put(cache, "k2"));
    time!("delete", cache.delete("k1"));
    time!("delete_tag", cache.delete_tag("t").map_ok_unit());
    time!(
        "delete_pattern",
        cache.delete_pattern(&pattern).map_ok_unit()
    );
    time!("clear", cache.clear());
    time!("entry_count", cache.entry_count().map_ok_unit());
    time!("health", cache.health().map_ok_unit());
    outcomes
}

trait MapOkUnit {
    fn map_ok_unit(self) -> impl Future<Output = cache_core::Result<()>>;
}

impl<F, T> MapOkUnit for F
where
    F: Future<Output = cache_core::Result<T>>,
{
    async fn map_ok_unit(self) -> cache_core::Result<()> {
        self.await.map(|_| ())
    }
}

fn assert_all(
    outcomes: &[(&'static str, Option<ErrorKind>, Duration)],
    expected: Option<ErrorKind>,
) {
    for (name, kind, elapsed) in outcomes {
        assert_eq!(*kind, expected, "{name}");
        assert!(
            *elapsed < hang_guard(),
            "{name} took {elapsed:?} with a {TIMEOUT:?} timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_a_restarted_one_is_used_again() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = common::own_server();
    let cache = RedisCache::connect(
        common::config(&server.url(), "stopped")
            .with_command_timeout(TIMEOUT)
            .with_connect_timeout(TIMEOUT),
    )
    .await
    .unwrap();
    put(&cache, "k1").await.unwrap();
    assert!(cache.get("k1").await.unwrap().is_some());

    server.stop();
    let outcomes = every_operation(&cache).await;
    assert_all(&outcomes, Some(ErrorKind::Unavailable));
    assert!(cache.get("k1").await.unwrap_err().is_temporary());

    server.restart().unwrap();
    // The same manager, no rebuild: the first operation after the restart succeeds.
    put(&cache, "k3").await.unwrap();
    assert!(cache.get("k3").await.unwrap().is_some());
    let outcomes = every_operation(&cache).await;
    assert_all(&outcomes, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_times_out_and_answers_again_when_resumed() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = common::own_server();
    let cache = RedisCache::connect(
        common::config(&server.url(), "paused")
            .with_command_timeout(TIMEOUT)
            .with_connect_timeout(TIMEOUT),
    )
    .await
    .unwrap();
    put(&cache, "k1").await.unwrap();

    server.pause();
    let outcomes = every_operation(&cache).await;
    assert_all(&outcomes, Some(ErrorKind::Timeout));
    for (name, _, elapsed) in &outcomes {
        assert!(*elapsed >= TIMEOUT, "{name} gave up after {elapsed:?}");
    }

    server.resume();
    // Replies to the timed-out commands may still be in flight on the connection; the
    // manager matches replies to requests, so new operations get their own answers.
    put(&cache, "k4").await.unwrap();
    assert!(cache.get("k4").await.unwrap().is_some());
    let outcomes = every_operation(&cache).await;
    assert_all(&outcomes, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_built_while_the_server_is_down_works_once_it_is_up() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = common::own_server();
    server.stop();
    let config = common::config(&server.url(), "late")
        .with_command_timeout(TIMEOUT)
        .with_connect_timeout(TIMEOUT);
    assert_eq!(
        RedisCache::connect(config.clone())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unavailable
    );
    let cache = RedisCache::connect(config.with_lazy_connect(true))
        .await
        .unwrap();
    assert_eq!(
        cache.get("k").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    server.restart().unwrap();
    put(&cache, "k").await.unwrap();
    assert!(cache.get("k").await.unwrap().is_some());
}
