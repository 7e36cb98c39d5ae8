//! The stored bytes of backends that write them: corrupt bytes are misses, and no
//! credential is at rest.

use bytes::Bytes;

use super::support::{long_lived, put, url_for};
use crate::testkit::fixtures::{
    assert_same_response, policy_for_request, random_bytes, response, unique_prefix,
};
use crate::testkit::suite::Suite;

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
