//! Storage TTLs: a zero TTL stores nothing, responses not to store are not stored, and an
//! entry is never returned after its TTL.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use super::support::{get_body, long_lived, put, url_for};
use crate::testkit::fixtures::{response, unique_prefix};
use crate::testkit::suite::Suite;
use crate::ttl::PutOptions;

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
