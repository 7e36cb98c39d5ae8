//! Round trips: every part of a response survives a put and a get, whatever the body
//! and the key; a miss, an overwrite.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;

use super::support::{HOUR, get_body, long_lived, put, url_for};
use crate::error::ErrorKind;
use crate::key::MAX_KEY_LEN;
use crate::testkit::fixtures::{assert_entry, policy, random_bytes, response, unique_prefix};
use crate::testkit::suite::Suite;

async fn assert_round_trip(suite: &Suite, case: &str, body: Bytes) {
    let manager = suite.manager.as_ref();
    let key = format!("{}entry", unique_prefix(case));
    let expected = response(&url_for(&key), body);
    let before = SystemTime::now();
    let expected_policy = put(
        manager,
        &key,
        &expected,
        long_lived().with_tags(["alpha", "beta"]),
    )
    .await;
    let after = SystemTime::now();
    let entry = manager
        .get(&key)
        .await
        .expect("get after put")
        .unwrap_or_else(|| panic!("{case}: the entry just put is missing"));
    assert_entry(
        &entry,
        &expected,
        &expected_policy,
        &["alpha", "beta"],
        case,
    );
    let stored_at = entry.metadata.stored_at;
    assert!(
        stored_at >= before - Duration::from_millis(1)
            && stored_at <= after + Duration::from_millis(1),
        "{case}: stored_at {stored_at:?} is not the time of the put"
    );
    assert_eq!(entry.metadata.storage_ttl(), HOUR, "{case}: storage ttl");
}

/// Every part of a response with a 16 KiB body survives a put and a get.
pub async fn round_trip(suite: &Suite) {
    assert_round_trip(suite, "round_trip", random_bytes(16 * 1024)).await;
}

/// An empty body round-trips.
pub async fn round_trip_empty_body(suite: &Suite) {
    assert_round_trip(suite, "round_trip_empty_body", Bytes::new()).await;
}

/// A body with every byte value round-trips.
pub async fn round_trip_binary_body(suite: &Suite) {
    let body: Vec<u8> = (0..=255u8).cycle().take(256 * 40).collect();
    assert_round_trip(suite, "round_trip_binary_body", Bytes::from(body)).await;
}

/// A 4 MiB body round-trips.
pub async fn round_trip_large_body(suite: &Suite) {
    assert_round_trip(
        suite,
        "round_trip_large_body",
        random_bytes(4 * 1024 * 1024),
    )
    .await;
}

/// A key never put is a miss.
pub async fn miss(suite: &Suite) {
    let key = format!("{}never-put", unique_prefix("miss"));
    assert!(
        suite
            .manager
            .get(&key)
            .await
            .expect("get of a missing key")
            .is_none()
    );
}

/// A second put replaces body, headers and tags.
pub async fn overwrite(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = format!("{}entry", unique_prefix("overwrite"));
    let first = response(&url_for(&key), Bytes::from_static(b"first version"));
    put(manager, &key, &first, long_lived().with_tags(["old"])).await;
    let mut second = response(
        &url_for(&key),
        Bytes::from_static(b"second, longer version"),
    );
    second
        .headers
        .insert("etag", HeaderValue::from_static("\"v2\""));
    second.headers.remove("x-multi");
    let second_policy = put(manager, &key, &second, long_lived().with_tags(["new"])).await;
    let entry = manager
        .get(&key)
        .await
        .expect("get")
        .expect("the entry after overwrite");
    assert_entry(&entry, &second, &second_policy, &["new"], "overwrite");
}

/// Keys with path traversal, NUL, Unicode, glob characters, newlines and 4 KiB all work
/// and never collide.
pub async fn hostile_keys(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("hostile_keys");
    let suffixes = [
        "../../../../etc/passwd".to_owned(),
        "a/../../b".to_owned(),
        "nul\0byte".to_owned(),
        "nul\0".to_owned(),
        "nul".to_owned(),
        "ключ 🔑 鍵".to_owned(),
        "*?[a-z]\\{}".to_owned(),
        "line\nbreak\r\ttab".to_owned(),
        "k".repeat(4096),
        " ".to_owned(),
    ];
    for (index, suffix) in suffixes.iter().enumerate() {
        let key = format!("{prefix}{suffix}");
        let expected = response(
            "https://conformance.example/hostile",
            Bytes::from(format!("body number {index}")),
        );
        put(manager, &key, &expected, long_lived()).await;
    }
    for (index, suffix) in suffixes.iter().enumerate() {
        let key = format!("{prefix}{suffix}");
        assert_eq!(
            get_body(manager, &key).await,
            Some(Bytes::from(format!("body number {index}"))),
            "hostile key {suffix:?}"
        );
    }
}

/// A key longer than `MAX_KEY_LEN` fails with `InvalidKey` on put and get.
pub async fn key_too_long(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = "x".repeat(MAX_KEY_LEN + 1);
    let expected = response("https://conformance.example/long", Bytes::from_static(b"x"));
    let put_error = manager
        .put(&key, expected.clone(), policy(&expected), long_lived())
        .await
        .expect_err("a put with a key over the limit must fail");
    assert_eq!(put_error.kind(), ErrorKind::InvalidKey);
    let get_error = manager
        .get(&key)
        .await
        .expect_err("a get with a key over the limit must fail");
    assert_eq!(get_error.kind(), ErrorKind::InvalidKey);
}
