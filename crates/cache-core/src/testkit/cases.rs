//! The conformance cases. Each takes the [`Suite`] and panics when the contract is broken.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;

use super::Suite;
use super::fixtures::{
    assert_entry, assert_same_response, policy, policy_for_request, random_bytes, response,
    unique_prefix,
};
use crate::body;
use crate::entry::CachedResponse;
use crate::error::{BoxError, ErrorKind};
use crate::key::{KeyPattern, MAX_KEY_LEN};
use crate::manager::CacheManager;
use crate::ttl::PutOptions;
use http_cache_semantics::CachePolicy;

const HOUR: Duration = Duration::from_secs(3600);

fn long_lived() -> PutOptions {
    PutOptions::new().with_ttl(HOUR)
}

fn url_for(key: &str) -> String {
    format!("https://conformance.example/{}", key.len())
}

/// Puts `response` with a fresh policy and returns that policy.
async fn put(
    manager: &dyn CacheManager,
    key: &str,
    response: &CachedResponse,
    options: PutOptions,
) -> CachePolicy {
    let policy = policy(response);
    manager
        .put(key, response.clone(), policy.clone(), options)
        .await
        .unwrap_or_else(|error| panic!("put {key:?} failed: {error}"));
    policy
}

async fn get_body(manager: &dyn CacheManager, key: &str) -> Option<Bytes> {
    manager
        .get(key)
        .await
        .unwrap_or_else(|error| panic!("get {key:?} failed: {error}"))
        .map(|entry| entry.response.body.clone())
}

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

/// Delete removes the entry; deleting a missing key succeeds.
pub async fn delete(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("delete");
    let key = format!("{prefix}entry");
    let other = format!("{prefix}other");
    let expected = response(&url_for(&key), Bytes::from_static(b"to be deleted"));
    put(manager, &key, &expected, long_lived()).await;
    put(manager, &other, &expected, long_lived()).await;
    manager.delete(&key).await.expect("delete");
    assert!(
        get_body(manager, &key).await.is_none(),
        "the deleted entry is still returned"
    );
    assert_eq!(
        get_body(manager, &other).await.as_deref(),
        Some(&b"to be deleted"[..]),
        "delete removed another key"
    );
    manager
        .delete(&key)
        .await
        .expect("deleting an already deleted key must succeed");
    manager
        .delete(&format!("{prefix}never-existed"))
        .await
        .expect("deleting a missing key must succeed");
}

/// A zero TTL stores nothing and removes what was there.
pub async fn zero_ttl_stores_nothing(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = format!("{}entry", unique_prefix("zero_ttl"));
    let expected = response(&url_for(&key), Bytes::from_static(b"short lived"));
    put(manager, &key, &expected, long_lived()).await;
    put(
        manager,
        &key,
        &expected,
        PutOptions::new().with_ttl(Duration::ZERO),
    )
    .await;
    assert!(
        get_body(manager, &key).await.is_none(),
        "a zero-ttl put left an entry"
    );
}

/// A response its policy says must not be stored (`no-store`) put without a TTL stores
/// nothing, and the key's previous entry goes too; an explicit TTL stores it anyway.
pub async fn responses_not_to_store_are_not_stored(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let key = format!("{}entry", unique_prefix("no_store"));
    let storable = response(&url_for(&key), Bytes::from_static(b"storable"));
    put(manager, &key, &storable, long_lived()).await;
    let mut refused = response(&url_for(&key), Bytes::from_static(b"no-store"));
    refused.headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    put(manager, &key, &refused, PutOptions::new()).await;
    assert!(
        get_body(manager, &key).await.is_none(),
        "a no-store response was stored, or the previous entry kept"
    );
    put(manager, &key, &refused, long_lived()).await;
    assert_eq!(
        get_body(manager, &key).await.as_deref(),
        Some(&b"no-store"[..]),
        "an explicit TTL stores it anyway"
    );
}

/// 32 tasks each write and read their own keys at the same time.
pub async fn concurrent_distinct_keys(suite: &Suite) {
    let prefix = unique_prefix("concurrent_distinct");
    let mut tasks = Vec::new();
    for task in 0..32u32 {
        let manager = Arc::clone(&suite.manager);
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10u32 {
                let key = format!("{prefix}{task}-{round}");
                let body = Bytes::from(format!("task {task} round {round}").repeat(50));
                let expected = response(&url_for(&key), body.clone());
                put(manager.as_ref(), &key, &expected, long_lived()).await;
                assert_eq!(
                    get_body(manager.as_ref(), &key).await,
                    Some(body),
                    "task {task} round {round}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("a concurrent task panicked");
    }
}

/// 16 writers overwrite one key while 16 readers read it: every read is one whole
/// version, never a mix.
pub async fn concurrent_same_key(suite: &Suite) {
    let key = format!("{}shared", unique_prefix("concurrent_same"));
    let version = |writer: u8| {
        let mut expected = response(
            &url_for(&key),
            Bytes::from(vec![writer; 64 * 1024 + usize::from(writer)]),
        );
        expected
            .headers
            .insert("x-writer", HeaderValue::from(u16::from(writer)));
        expected
    };
    let mut tasks = Vec::new();
    for writer in 1..=16u8 {
        let manager = Arc::clone(&suite.manager);
        let (key, expected) = (key.clone(), version(writer));
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                put(manager.as_ref(), &key, &expected, long_lived()).await;
            }
        }));
    }
    for _ in 0..16 {
        let manager = Arc::clone(&suite.manager);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                if let Some(entry) = manager.get(&key).await.expect("concurrent get") {
                    assert_whole_version(&entry.response);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a concurrent task panicked");
    }
    let last = suite
        .manager
        .get(&key)
        .await
        .expect("get")
        .expect("the key after all writers");
    assert_whole_version(&last.response);
}

fn assert_whole_version(response: &CachedResponse) {
    let writer: u8 = response.headers["x-writer"]
        .to_str()
        .expect("x-writer")
        .parse()
        .expect("x-writer is a number");
    assert_eq!(
        response.body.len(),
        64 * 1024 + usize::from(writer),
        "a torn body length"
    );
    assert!(
        response.body.iter().all(|byte| *byte == writer),
        "a body mixes two writers"
    );
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

/// `delete_tag` removes exactly the entries currently stored with the tag.
pub async fn tags(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("tags");
    let (red, blue) = (format!("{prefix}red"), format!("{prefix}blue"));
    let body = Bytes::from_static(b"tagged");
    let entry = |key: &str| response(&url_for(key), body.clone());
    let keys: Vec<String> = (1..=4).map(|n| format!("{prefix}k{n}")).collect();
    put(
        manager,
        &keys[0],
        &entry(&keys[0]),
        long_lived().with_tags([red.as_str()]),
    )
    .await;
    put(
        manager,
        &keys[1],
        &entry(&keys[1]),
        long_lived().with_tags([red.as_str(), blue.as_str()]),
    )
    .await;
    put(
        manager,
        &keys[2],
        &entry(&keys[2]),
        long_lived().with_tags([blue.as_str()]),
    )
    .await;
    // k4 was red, then overwritten without tags: the red tag no longer applies to it.
    put(
        manager,
        &keys[3],
        &entry(&keys[3]),
        long_lived().with_tags([red.as_str()]),
    )
    .await;
    put(manager, &keys[3], &entry(&keys[3]), long_lived()).await;

    assert_eq!(
        manager.delete_tag(&red).await.expect("delete_tag"),
        2,
        "entries removed by the red tag"
    );
    assert!(get_body(manager, &keys[0]).await.is_none(), "k1 was red");
    assert!(get_body(manager, &keys[1]).await.is_none(), "k2 was red");
    assert_eq!(
        get_body(manager, &keys[2]).await,
        Some(body.clone()),
        "k3 was only blue"
    );
    assert_eq!(
        get_body(manager, &keys[3]).await,
        Some(body.clone()),
        "k4 lost its red tag when overwritten"
    );
    assert_eq!(
        manager.delete_tag(&blue).await.expect("delete_tag"),
        1,
        "k2 is gone, k3 remains blue"
    );
    assert!(get_body(manager, &keys[2]).await.is_none(), "k3 was blue");
    assert_eq!(
        manager
            .delete_tag(&format!("{prefix}unused"))
            .await
            .expect("delete_tag"),
        0
    );
}

/// `delete_pattern` removes exactly the matching keys.
pub async fn delete_pattern(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("delete_pattern");
    let keys = ["users/1", "users/2", "users/10", "orders/1", "users"];
    for key in keys {
        let key = format!("{prefix}{key}");
        put(
            manager,
            &key,
            &response(&url_for(&key), Bytes::from_static(b"p")),
            long_lived(),
        )
        .await;
    }
    let one_char = KeyPattern::new(&format!("{prefix}users/?")).expect("pattern");
    assert_eq!(
        manager
            .delete_pattern(&one_char)
            .await
            .expect("delete_pattern"),
        2,
        "users/? matches users/1 and users/2"
    );
    let star = KeyPattern::new(&format!("{prefix}users*")).expect("pattern");
    assert_eq!(
        manager.delete_pattern(&star).await.expect("delete_pattern"),
        2,
        "users* matches users/10 and users"
    );
    for key in ["users/1", "users/2", "users/10", "users"] {
        assert!(
            get_body(manager, &format!("{prefix}{key}")).await.is_none(),
            "{key} matched and must be gone"
        );
    }
    assert!(
        get_body(manager, &format!("{prefix}orders/1"))
            .await
            .is_some(),
        "orders/1 did not match"
    );
    assert_eq!(
        manager.delete_pattern(&star).await.expect("delete_pattern"),
        0
    );
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

/// Flipped, truncated, foreign and misplaced stored bytes are misses, and the entry is
/// removed.
pub async fn corrupt_entries_become_misses(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let raw = suite
        .raw
        .as_ref()
        .expect("the corruption case needs raw storage access");
    let prefix = unique_prefix("corrupt");
    let source = format!("{prefix}source");
    let expected = response(&url_for(&source), random_bytes(8 * 1024));
    put(manager, &source, &expected, long_lived()).await;
    let stored = raw
        .read_raw(&source)
        .await
        .expect("read_raw")
        .expect("the stored bytes");
    let stats_before = manager
        .capabilities()
        .stats
        .then(|| manager.stats().expect("stats"));

    let mut flipped = stored.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let mut flipped_header = stored.clone();
    flipped_header[30] ^= 0x01;
    let truncated = stored[..stored.len() / 2].to_vec();
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("flipped body byte", flipped),
        ("flipped metadata byte", flipped_header),
        ("truncated", truncated),
        ("empty", Vec::new()),
        ("foreign bytes", b"definitely not an envelope".to_vec()),
        ("another key's entry", stored.clone()),
    ];
    let count = variants.len() as u64;
    for (index, (what, bytes)) in variants.into_iter().enumerate() {
        let key = format!("{prefix}victim-{index}");
        put(
            manager,
            &key,
            &response(&url_for(&key), Bytes::from_static(b"victim")),
            long_lived(),
        )
        .await;
        raw.write_raw(&key, bytes).await.expect("write_raw");
        let got = manager
            .get(&key)
            .await
            .unwrap_or_else(|error| panic!("{what}: get must be a miss, not an error: {error}"));
        assert!(got.is_none(), "{what}: a corrupt entry was returned");
        assert!(
            raw.read_raw(&key).await.expect("read_raw").is_none(),
            "{what}: the corrupt entry was not removed"
        );
        assert!(
            manager.get(&key).await.expect("get").is_none(),
            "{what}: second get"
        );
    }
    let entry = manager
        .get(&source)
        .await
        .expect("get")
        .expect("the source entry is untouched");
    assert_same_response(&entry.response, &expected, "source entry");
    if let Some(before) = stats_before {
        let after = manager.stats().expect("stats");
        assert_eq!(
            after.corrupt_entries - before.corrupt_entries,
            count,
            "corrupt entries counted"
        );
    }
}

/// The request's `Authorization`, `Proxy-Authorization` and `Cookie` values and the URL's
/// userinfo (`user:password@`) never reach the stored bytes.
pub async fn no_credentials_at_rest(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let raw = suite
        .raw
        .as_ref()
        .expect("the credentials case needs raw storage access");
    let key = format!("{}private", unique_prefix("credentials"));
    let secrets = [
        "bearer-secret-4f9a2c",
        "cookie-secret-77e1b0",
        "proxy-secret-90cd3e",
        "userinfo-secret-3b1c",
    ];
    // The URL's userinfo is a credential too: it is not stored (the entry comes back with
    // the URL without it).
    let url = url_for(&key).replacen("https://", "https://user:userinfo-secret-3b1c@", 1);
    let put_response = response(&url, Bytes::from_static(b"personal data"));
    let mut expected = put_response.clone();
    expected.url = url::Url::parse(&url_for(&key)).expect("url");
    let request = http::Request::get(put_response.url.as_str())
        .header("authorization", format!("Bearer {}", secrets[0]))
        .header("cookie", format!("session={}", secrets[1]))
        .header("proxy-authorization", format!("Basic {}", secrets[2]))
        .body(())
        .expect("request");
    let policy = policy_for_request(&request, &put_response);
    manager
        .put(&key, put_response, policy, long_lived())
        .await
        .expect("put");
    let stored = raw
        .read_raw(&key)
        .await
        .expect("read_raw")
        .expect("the stored bytes");
    for secret in secrets {
        assert!(
            !stored
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "the secret {secret:?} is in the stored bytes"
        );
    }
    let entry = manager.get(&key).await.expect("get").expect("the entry");
    assert_same_response(&entry.response, &expected, "credentials entry");
}

fn streaming(suite: &Suite) -> &dyn crate::manager::StreamingCacheManager {
    suite
        .streaming
        .as_deref()
        .expect("the streaming cases need a streaming manager")
}

/// A body streamed in three chunks comes back whole from `get_stream` and `get`, and a
/// buffered put comes back from `get_stream`.
pub async fn stream_round_trip(suite: &Suite) {
    let store = streaming(suite);
    let prefix = unique_prefix("stream_round_trip");
    let key = format!("{prefix}streamed");
    let chunks = [
        random_bytes(100_000),
        random_bytes(1),
        random_bytes(300_000),
    ];
    let whole: Vec<u8> = chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    let expected = response(&url_for(&key), Bytes::from(whole.clone()));
    let (head, _) = expected.clone().into_head_and_body();
    let stored = store
        .put_stream(
            &key,
            head,
            policy(&expected),
            body::from_chunks(chunks.map(Ok)),
            long_lived(),
        )
        .await
        .expect("put_stream");
    assert_eq!(stored.len, whole.len() as u64);
    let streamed = store
        .get_stream(&key)
        .await
        .expect("get_stream")
        .expect("the streamed entry");
    assert_eq!(streamed.body_len, whole.len() as u64);
    let streamed_body = body::collect(streamed.body, usize::MAX)
        .await
        .expect("the streamed body");
    assert!(streamed_body == whole, "the streamed body differs");
    let buffered = store
        .get(&key)
        .await
        .expect("get")
        .expect("the entry via get");
    assert_same_response(&buffered.response, &expected, "streamed then buffered");

    let buffered_key = format!("{prefix}buffered");
    put(store, &buffered_key, &expected, long_lived()).await;
    let streamed = store
        .get_stream(&buffered_key)
        .await
        .expect("get_stream")
        .expect("entry");
    let streamed_body = body::collect(streamed.body, usize::MAX)
        .await
        .expect("body");
    assert!(
        streamed_body == whole,
        "buffered then streamed body differs"
    );
}

/// A body that fails half-way leaves no entry and keeps the previous one.
pub async fn stream_body_error_leaves_no_entry(suite: &Suite) {
    let store = streaming(suite);
    let prefix = unique_prefix("stream_body_error");
    let key = format!("{prefix}failing");
    let previous = response(&url_for(&key), Bytes::from_static(b"previous version"));
    put(store, &key, &previous, long_lived()).await;
    let (head, _) = response(&url_for(&key), Bytes::new()).into_head_and_body();
    let failing: Vec<Result<Bytes, BoxError>> = vec![
        Ok(random_bytes(64 * 1024)),
        Err("the origin hung up".into()),
    ];
    let error = store
        .put_stream(
            &key,
            head.clone(),
            policy(&previous),
            body::from_chunks(failing),
            long_lived(),
        )
        .await
        .expect_err("a failing body must fail the put");
    assert_eq!(error.kind(), ErrorKind::Body);
    assert_eq!(
        get_body(store, &key).await.as_deref(),
        Some(&b"previous version"[..]),
        "the previous entry must stay"
    );

    let fresh_key = format!("{prefix}fresh");
    let failing: Vec<Result<Bytes, BoxError>> = vec![Ok(random_bytes(10)), Err("boom".into())];
    let _ = store
        .put_stream(
            &fresh_key,
            head,
            policy(&previous),
            body::from_chunks(failing),
            long_lived(),
        )
        .await
        .expect_err("a failing body must fail the put");
    assert!(
        store.get(&fresh_key).await.expect("get").is_none(),
        "a failed put left an entry"
    );
}

/// A body shorter or longer than its `Content-Length` leaves no entry.
pub async fn stream_length_mismatch_leaves_no_entry(suite: &Suite) {
    let store = streaming(suite);
    let prefix = unique_prefix("stream_length");
    for (what, actual) in [("short", 50usize), ("long", 150)] {
        let key = format!("{prefix}{what}");
        let mut expected = response(&url_for(&key), Bytes::new());
        expected
            .headers
            .insert("content-length", HeaderValue::from(100u32));
        let (head, _) = expected.clone().into_head_and_body();
        let error = store
            .put_stream(
                &key,
                head,
                policy(&expected),
                body::full(random_bytes(actual)),
                long_lived(),
            )
            .await
            .expect_err("a length mismatch must fail the put");
        assert_eq!(error.kind(), ErrorKind::Body, "{what}");
        assert!(
            store.get(&key).await.expect("get").is_none(),
            "{what}: a mismatched body left an entry"
        );
    }
}

/// A `put_stream` future dropped half-way leaves no entry.
pub async fn stream_dropped_put_leaves_no_entry(suite: &Suite) {
    let store = streaming(suite);
    let key = format!("{}dropped", unique_prefix("stream_dropped"));
    let expected = response(&url_for(&key), Bytes::new());
    let (head, _) = expected.clone().into_head_and_body();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(1);
    sender
        .send(Ok(random_bytes(32 * 1024)))
        .await
        .expect("send");
    let stalled = body::from_receiver(receiver);
    let put = store.put_stream(&key, head, policy(&expected), stalled, long_lived());
    let outcome = tokio::time::timeout(Duration::from_millis(200), put).await;
    assert!(
        outcome.is_err(),
        "the put cannot finish while the body is stalled"
    );
    drop(sender);
    assert!(
        store.get(&key).await.expect("get").is_none(),
        "a dropped put left an entry"
    );
}

/// `clear` removes every entry.
pub async fn clear(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("clear");
    for n in 0..5 {
        let key = format!("{prefix}{n}");
        put(
            manager,
            &key,
            &response(&url_for(&key), Bytes::from_static(b"c")),
            long_lived().with_tags(["cleared"]),
        )
        .await;
    }
    manager.clear().await.expect("clear");
    for n in 0..5 {
        assert!(
            get_body(manager, &format!("{prefix}{n}")).await.is_none(),
            "entry {n} survived clear"
        );
    }
    if manager.capabilities().entry_count {
        assert_eq!(
            manager.entry_count().await.expect("entry_count"),
            0,
            "entry count after clear"
        );
    }
    if manager.capabilities().tags {
        assert_eq!(
            manager.delete_tag("cleared").await.expect("delete_tag"),
            0,
            "tags survived clear"
        );
    }
}

/// An entry is returned before its TTL runs out and never after.
pub async fn expiry(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let prefix = unique_prefix("expiry");
    let short = format!("{prefix}short");
    let long = format!("{prefix}long");
    let expected = response(&url_for(&short), Bytes::from_static(b"expiring"));
    put(
        manager,
        &short,
        &expected,
        PutOptions::new().with_ttl(Duration::from_millis(400)),
    )
    .await;
    put(manager, &long, &expected, long_lived()).await;
    let entry = manager
        .get(&short)
        .await
        .expect("get")
        .expect("the entry before its ttl");
    assert_eq!(entry.metadata.storage_ttl(), Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        manager.get(&short).await.expect("get").is_none(),
        "an expired entry was returned"
    );
    assert!(
        manager.get(&long).await.expect("get").is_some(),
        "a live entry expired with its neighbour"
    );
}
