//! What a backend says about itself: counts, size, health, statistics, and `Unsupported`
//! for every operation it does not declare.

use std::time::Duration;

use bytes::Bytes;

use super::support::{get_body, long_lived, put, url_for};
use crate::error::ErrorKind;
use crate::key::KeyPattern;
use crate::testkit::fixtures::{random_bytes, response, unique_prefix};
use crate::testkit::suite::Suite;

/// Every optional operation the backend does not declare returns `Unsupported`.
pub async fn unsupported_operations_say_so(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let capabilities = manager.capabilities();
    let pattern = KeyPattern::new(&format!("{}*", unique_prefix("unsupported"))).expect("pattern");
    let kind_of = |result: Result<(), crate::Error>| result.err().map(|error| error.kind());
    let checks = [
        (
            capabilities.tags,
            "delete_tag",
            kind_of(manager.delete_tag("unsupported-tag").await.map(drop)),
        ),
        (
            capabilities.delete_pattern,
            "delete_pattern",
            kind_of(manager.delete_pattern(&pattern).await.map(drop)),
        ),
        (
            capabilities.entry_count,
            "entry_count",
            kind_of(manager.entry_count().await.map(drop)),
        ),
        (
            capabilities.size_bytes,
            "size_bytes",
            kind_of(manager.size_bytes().await.map(drop)),
        ),
        (
            capabilities.health,
            "health",
            kind_of(manager.health().await.map(drop)),
        ),
        (
            capabilities.stats,
            "stats",
            kind_of(manager.stats().map(drop)),
        ),
    ];
    for (declared, operation, error_kind) in checks {
        if !declared {
            assert_eq!(
                error_kind,
                Some(ErrorKind::Unsupported),
                "{operation} is not declared and must say unsupported"
            );
        }
    }
    // `clear` is checked last and only when undeclared: when declared it would wipe the cache.
    if !capabilities.clear {
        assert_eq!(
            kind_of(manager.clear().await),
            Some(ErrorKind::Unsupported),
            "clear is not declared"
        );
    }
}

/// `entry_count` counts exactly the live entries.
pub async fn entry_count(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("entry_count");
    let before = manager.entry_count().await.expect("entry_count");
    for n in 0..3 {
        let key = format!("{prefix}{n}");
        put(
            manager,
            &key,
            &response(&url_for(&key), Bytes::from_static(b"c")),
            long_lived(),
        )
        .await;
    }
    // Overwriting does not add an entry.
    let key = format!("{prefix}0");
    put(
        manager,
        &key,
        &response(&url_for(&key), Bytes::from_static(b"c2")),
        long_lived(),
    )
    .await;
    assert_eq!(
        manager.entry_count().await.expect("entry_count"),
        before + 3
    );
    manager.delete(&format!("{prefix}1")).await.expect("delete");
    assert_eq!(
        manager.entry_count().await.expect("entry_count"),
        before + 2
    );
}

/// `size_bytes` grows by at least the body put and returns to where it was after delete.
pub async fn size_bytes(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = format!("{}big", unique_prefix("size_bytes"));
    let before = manager.size_bytes().await.expect("size_bytes");
    let body_len = 1024 * 1024;
    put(
        manager,
        &key,
        &response(&url_for(&key), random_bytes(body_len)),
        long_lived(),
    )
    .await;
    let with_entry = manager.size_bytes().await.expect("size_bytes");
    assert!(
        with_entry >= before + body_len as u64,
        "size grew from {before} to {with_entry}, less than the {body_len}-byte body"
    );
    manager.delete(&key).await.expect("delete");
    assert_eq!(
        manager.size_bytes().await.expect("size_bytes"),
        before,
        "size after delete"
    );
}

/// `health` answers.
pub async fn health(suite: &Suite) {
    let health = suite.manager.health().await.expect("health");
    assert!(
        health.latency < Duration::from_secs(5),
        "health took {:?}",
        health.latency
    );
}

/// `stats` counts each get, put and delete exactly once.
pub async fn stats(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = format!("{}counted", unique_prefix("stats"));
    let before = manager.stats().expect("stats");
    assert!(get_body(manager, &key).await.is_none());
    put(
        manager,
        &key,
        &response(&url_for(&key), Bytes::from_static(b"s")),
        long_lived(),
    )
    .await;
    assert!(get_body(manager, &key).await.is_some());
    assert!(get_body(manager, &key).await.is_some());
    manager.delete(&key).await.expect("delete");
    let after = manager.stats().expect("stats");
    assert_eq!(after.misses - before.misses, 1, "misses");
    assert_eq!(after.hits - before.hits, 2, "hits");
    assert_eq!(after.puts - before.puts, 1, "puts");
    assert_eq!(after.deletes - before.deletes, 1, "deletes");
}
