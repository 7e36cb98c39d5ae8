//! Namespaces side by side on one server: none of them reaches another's keys, even when
//! one namespace's name begins with another's and its keys look like another's layout.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, KeyPattern, PutOptions};
use cache_redis::testing::redis_tests_skipped;
use cache_redis::{RedisCache, RedisConfig};

async fn put(cache: &RedisCache, key: &str, tags: &[&str]) {
    let response = response(
        &format!("https://example.com/{key}"),
        Bytes::from_static(b"body"),
    );
    let policy = policy(&response);
    let options = PutOptions::new()
        .with_ttl(Duration::from_secs(600))
        .with_tags(tags.iter().copied());
    cache.put(key, response, policy, options).await.unwrap();
}

async fn cache(url: &str, namespace: &str) -> RedisCache {
    RedisCache::connect(
        RedisConfig::new(url)
            .with_namespace(namespace)
            .with_command_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap()
}

/// Which of `keys` `cache` has an entry for.
async fn present(cache: &RedisCache, keys: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for key in keys {
        if cache.get(key).await.unwrap().is_some() {
            found.push((*key).to_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_whose_names_extend_each_other_never_touch_each_others_keys() {
    if redis_tests_skipped() {
        return;
    }
    let (url, _server) = common::shared_or_own_server();
    let base = common::unique_namespace("prefix-free");
    // `ns`, `ns:e` and `ns:t`: the second and third begin with the first's entry and tag
    // prefixes as they were once laid out (`ns:e:` and `ns:t:`).
    let ns = cache(&url, &base).await;
    let ns_e = cache(&url, &format!("{base}:e")).await;
    let ns_t = cache(&url, &format!("{base}:t")).await;
    let prefixes = [ns.key_prefix(), ns_e.key_prefix(), ns_t.key_prefix()];
    for (index, prefix) in prefixes.iter().enumerate() {
        for (other, other_prefix) in prefixes.iter().enumerate() {
            assert!(
                index == other || !other_prefix.starts_with(prefix),
                "{other_prefix:?} begins with {prefix:?}"
            );
        }
    }

    // Keys that spell another namespace's layout inside this one's.
    let ns_keys = ["own", "e:k", "sub:e:k", "t:g", "s:x"];
    for key in ns_keys {
        put(&ns, key, &["g", "t:g"]).await;
    }
    let other_keys = ["k", "sub:e:k", "e:k", "x"];
    for key in other_keys {
        put(&ns_e, key, &["g"]).await;
        put(&ns_t, key, &["g"]).await;
    }

    // Reads of look-alike keys find each namespace's own entries (a foreign entry would
    // read as corrupt and be removed).
    assert_eq!(present(&ns, &ns_keys).await, ns_keys);
    assert_eq!(present(&ns_e, &other_keys).await, other_keys);
    assert_eq!(present(&ns_t, &other_keys).await, other_keys);
    assert_eq!(ns.stats().unwrap().corrupt_entries, 0);
    assert_eq!(ns_e.stats().unwrap().corrupt_entries, 0);
    assert_eq!(ns_t.stats().unwrap().corrupt_entries, 0);
    assert_eq!(ns.entry_count().await.unwrap(), 5);
    assert_eq!(ns_e.entry_count().await.unwrap(), 4);
    assert_eq!(ns_t.entry_count().await.unwrap(), 4);

    // Tag deletion: `t:g` in `ns` is not `g` in `ns:t`, and `g` stays per namespace.
    assert_eq!(ns.delete_tag("t:g").await.unwrap(), 5);
    assert_eq!(ns_t.entry_count().await.unwrap(), 4);
    assert_eq!(ns_e.entry_count().await.unwrap(), 4);
    for key in ns_keys {
        put(&ns, key, &["g"]).await;
    }
    assert_eq!(ns_t.delete_tag("g").await.unwrap(), 4);
    assert_eq!(ns.entry_count().await.unwrap(), 5);
    assert_eq!(ns_e.entry_count().await.unwrap(), 4);
    for key in other_keys {
        put(&ns_t, key, &["g"]).await;
    }

    // Pattern deletion matches keys of this namespace only.
    let everything = KeyPattern::new("*").unwrap();
    assert_eq!(
        ns.delete_pattern(&KeyPattern::new("e:*").unwrap())
            .await
            .unwrap(),
        1
    );
    assert_eq!(ns.delete_pattern(&everything).await.unwrap(), 4);
    assert_eq!(present(&ns_e, &other_keys).await, other_keys);
    assert_eq!(present(&ns_t, &other_keys).await, other_keys);

    // `clear` empties its own namespace and nothing else, in both directions.
    for key in ns_keys {
        put(&ns, key, &["g"]).await;
    }
    ns.clear().await.unwrap();
    assert_eq!(ns.entry_count().await.unwrap(), 0);
    assert_eq!(ns_e.entry_count().await.unwrap(), 4);
    assert_eq!(ns_t.entry_count().await.unwrap(), 4);
    assert_eq!(ns_t.delete_tag("g").await.unwrap(), 4);
    for key in ns_keys {
        put(&ns, key, &["g"]).await;
    }
    ns_e.clear().await.unwrap();
    ns_t.clear().await.unwrap();
    assert_eq!(present(&ns, &ns_keys).await, ns_keys);
    assert_eq!(ns.delete_tag("g").await.unwrap(), 5);
    assert_eq!(ns.entry_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_is_escaped_only_where_it_must_be() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let url = server.url();
    let plain = cache(&url, "shop").await;
    assert_eq!(plain.key_prefix(), "shop:");
    assert_eq!(plain.entry_key("GET:/a"), "shop:e:GET:/a");
    assert_eq!(plain.tag_key("user:1"), "shop:t:user:1");
    assert_eq!(plain.stream("audit").key(), "shop:s:audit");
    assert_eq!(plain.bus().channel(), "shop:bus");
    assert_eq!(plain.bus().stream_key(), "shop:bus:log");
    let colons = cache(&url, "app:cache%1").await;
    assert_eq!(colons.key_prefix(), "app%3Acache%251:");
    assert_eq!(colons.entry_key("k"), "app%3Acache%251:e:k");
}
