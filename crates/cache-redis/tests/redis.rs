//! Backend behaviour specific to Redis: namespaces, tag sets, credentials, health.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, policy_for_request, request_for, response};
use cache_core::{CacheManager, ErrorKind, KeyPattern, PutOptions};
use cache_redis::testing::{RedisServer, redis_tests_skipped};
use cache_redis::{RedisCache, RedisConfig};
use redis::AsyncCommands;

async fn put_tagged(cache: &RedisCache, key: &str, tags: &[&str]) {
    let response = response(
        &format!("https://example.com/{key}"),
        Bytes::from_static(b"body"),
    );
    let policy = policy(&response);
    cache
        .put(
            key,
            response,
            policy,
            PutOptions::new()
                .with_ttl(Duration::from_secs(600))
                .with_tags(tags.iter().copied()),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_deletion_and_clear_stay_inside_the_namespace() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let namespace = common::unique_namespace("inside");
    let cache = RedisCache::connect(RedisConfig::new(&url).with_namespace(&namespace))
        .await
        .unwrap();
    // A neighbour namespace whose name starts like ours, and plain keys around it.
    let neighbour =
        RedisCache::connect(RedisConfig::new(&url).with_namespace(format!("{namespace}x")))
            .await
            .unwrap();
    let mut plain = common::plain_connection(&url).await;
    let outside = [
        namespace.clone(),
        format!("{namespace}:other"),
        format!("{namespace}-e:a1"),
        format!("unrelated:{namespace}:e:a1"),
    ];
    for key in &outside {
        let () = plain.set(key, "keep me").await.unwrap();
    }
    for key in ["a1", "a2", "b1", "a*literal"] {
        put_tagged(&cache, key, &["tag"]).await;
        put_tagged(&neighbour, key, &["tag"]).await;
    }

    let removed = cache
        .delete_pattern(&KeyPattern::new("a*").unwrap())
        .await
        .unwrap();
    assert_eq!(removed, 3);
    assert!(cache.get("b1").await.unwrap().is_some());
    assert_eq!(cache.entry_count().await.unwrap(), 1);

    // A literal star in a pattern is escaped for Redis too.
    put_tagged(&cache, "a*literal", &[]).await;
    put_tagged(&cache, "aXliteral", &[]).await;
    let removed = cache
        .delete_pattern(&KeyPattern::new("a\\*literal").unwrap())
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(cache.get("aXliteral").await.unwrap().is_some());

    cache.clear().await.unwrap();
    assert_eq!(cache.entry_count().await.unwrap(), 0);
    let mut left: Vec<String> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{namespace}:*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async::<(u64, Vec<String>)>(&mut plain)
        .await
        .unwrap()
        .1;
    left.sort();
    assert_eq!(left, [format!("{namespace}:other")]);

    for key in &outside {
        let value: Option<String> = plain.get(key).await.unwrap();
        assert_eq!(value.as_deref(), Some("keep me"), "{key}");
    }
    assert_eq!(neighbour.entry_count().await.unwrap(), 4);
    for key in ["a1", "a2", "b1", "a*literal"] {
        assert!(neighbour.get(key).await.unwrap().is_some(), "{key}");
    }
    neighbour.clear().await.unwrap();
    let _: u64 = plain.del(&outside).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_sets_spare_rewritten_entries_shed_stale_members_and_expire() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(
        common::config(&url, "tagsets").with_command_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let mut plain = common::plain_connection(&url).await;
    let tag_key = cache.tag_key("hot");

    // Rewriting one key 200 times with the tag leaves few members: each put drops the
    // stale ones it samples.
    for _ in 0..200 {
        put_tagged(&cache, "rewritten", &["hot"]).await;
    }
    let members: u64 = plain.scard(&tag_key).await.unwrap();
    assert!(members < 20, "{members} members for one live entry");
    // The set lives as long as its longest-lived entry, and no longer than 600 s.
    let ttl_ms: i64 = plain.pttl(&tag_key).await.unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "{ttl_ms}");

    // Rewritten without the tag: deleting the tag spares it.
    put_tagged(&cache, "kept", &["hot"]).await;
    put_tagged(&cache, "kept", &["cold"]).await;
    assert_eq!(cache.delete_tag("hot").await.unwrap(), 1);
    assert!(cache.get("rewritten").await.unwrap().is_none());
    assert!(cache.get("kept").await.unwrap().is_some());
    let exists: bool = plain.exists(&tag_key).await.unwrap();
    assert!(!exists, "the tag's set is removed with it");
    assert_eq!(cache.delete_tag("cold").await.unwrap(), 1);
    assert_eq!(cache.delete_tag("never-used").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_secret_reaches_redis() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(common::config(&url, "secrets"))
        .await
        .unwrap();
    let mut plain = common::plain_connection(&url).await;

    let stored = response("https://example.com/me", Bytes::from_static(b"private"));
    let mut request = request_for(&stored.url);
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        "Bearer sk-live-0123456789".parse().unwrap(),
    );
    headers.insert(
        "proxy-authorization",
        "Basic cHJveHk6c2VjcmV0LXByb3h5".parse().unwrap(),
    );
    headers.insert("cookie", "session=cookie-secret-42".parse().unwrap());
    let policy = policy_for_request(&request, &stored);
    cache
        .put(
            "me",
            stored,
            policy,
            PutOptions::new().with_tags(["user:1"]),
        )
        .await
        .unwrap();
    assert!(cache.get("me").await.unwrap().is_some());

    // Every key the cache wrote, read back with a plain client.
    let keys: Vec<String> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{}:*", cache.config().namespace()))
        .arg("COUNT")
        .arg(100_000)
        .query_async::<(u64, Vec<String>)>(&mut plain)
        .await
        .unwrap()
        .1;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut stored_bytes = Vec::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut plain)
            .await
            .unwrap();
        match kind.as_str() {
            "string" => stored_bytes.extend(plain.get::<_, Vec<u8>>(key).await.unwrap()),
            "set" => {
                for member in plain.smembers::<_, Vec<Vec<u8>>>(key).await.unwrap() {
                    stored_bytes.extend(member);
                }
            }
            other => panic!("unexpected {other} at {key}"),
        }
    }
    for secret in [
        "sk-live-0123456789",
        "cHJveHk6c2VjcmV0LXByb3h5",
        "cookie-secret-42",
    ] {
        assert!(
            !stored_bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret} was stored"
        );
    }
    cache.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_out_of_debug_output_and_errors() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = RedisServer::start_with_args(&["--requirepass", "pw-hunter2"]).unwrap();
    let url = format!("redis://:pw-hunter2@127.0.0.1:{}", server.port());
    let cache = RedisCache::connect(common::config(&url, "password"))
        .await
        .unwrap();
    put_tagged(&cache, "k", &[]).await;
    assert!(cache.get("k").await.unwrap().is_some());
    assert!(!format!("{cache:?}").contains("pw-hunter2"));
    assert!(!format!("{:?}", cache.config()).contains("pw-hunter2"));

    let wrong = format!("redis://:wrong-hunter3@127.0.0.1:{}", server.port());
    let error = RedisCache::connect(common::config(&wrong, "password"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let rendered = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert!(!rendered.contains("wrong-hunter3"), "{rendered}");

    server.stop();
    let error = cache.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let rendered = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert!(!rendered.contains("pw-hunter2"), "{rendered}");

    let error = RedisCache::connect(RedisConfig::new("redis://:pw-hunter2@[broken"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let rendered = format!("{error} {error:?}");
    assert!(!rendered.contains("pw-hunter2"), "{rendered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_pings_and_stats_count_exactly() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(common::config(&url, "health"))
        .await
        .unwrap();
    let health = cache.health().await.unwrap();
    assert!(health.latency < Duration::from_secs(1));
    put_tagged(&cache, "a", &[]).await;
    assert!(cache.get("a").await.unwrap().is_some());
    assert!(cache.get("b").await.unwrap().is_none());
    cache.delete("a").await.unwrap();
    let stats = cache.stats().unwrap();
    assert_eq!(
        (stats.hits, stats.misses, stats.puts, stats.deletes),
        (1, 1, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_access_reads_the_stored_value_and_a_corrupted_one_becomes_a_miss() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let cache = RedisCache::connect(common::config(&url, "raw"))
        .await
        .unwrap();
    let mut plain = common::plain_connection(&url).await;
    let raw = cache.raw_access();
    assert_eq!(raw.read("k").await.unwrap(), None);
    put_tagged(&cache, "k", &[]).await;
    let stored = raw.read("k").await.unwrap().expect("a stored value");
    let direct: Vec<u8> = plain.get(cache.entry_key("k")).await.unwrap();
    assert_eq!(stored, direct);

    // Flipping one byte of the envelope (past the 8-byte put id) breaks its checksum.
    let mut corrupted = stored.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0xff;
    raw.write("k", &corrupted).await.unwrap();
    let ttl_ms: i64 = plain.pttl(cache.entry_key("k")).await.unwrap();
    assert!(ttl_ms > 0, "the write kept the expiry: {ttl_ms}");
    assert!(cache.get("k").await.unwrap().is_none());
    assert_eq!(cache.stats().unwrap().corrupt_entries, 1);
    assert_eq!(raw.read("k").await.unwrap(), None);
}
