//! The backend's declared limits: a put over `max_entry_bytes` is refused and leaves no
//! entry.

use bytes::Bytes;

use super::support::{get_body, long_lived, put, url_for};
use crate::error::ErrorKind;
use crate::testkit::fixtures::{policy, response, unique_prefix};
use crate::testkit::suite::Suite;

/// A put of a body one byte over the declared
/// [`max_entry_bytes`](crate::Capabilities::max_entry_bytes) fails with `TooLarge` and
/// leaves no entry under the key: the small version put before is gone too, and a key
/// that held nothing still holds nothing.
pub async fn refused_put_leaves_no_entry(suite: &Suite) {
    let manager = suite.manager.as_ref();
    let limit = manager
        .capabilities()
        .max_entry_bytes
        .expect("the case needs a declared max_entry_bytes");
    let body_len = usize::try_from(limit.saturating_add(1))
        .expect("a body one byte over max_entry_bytes fits in memory");
    let prefix = unique_prefix("refused_put");
    let key = format!("{prefix}entry");
    let small = response(&url_for(&key), Bytes::from_static(b"small version"));
    put(manager, &key, &small, long_lived()).await;
    assert_eq!(
        get_body(manager, &key).await.as_deref(),
        Some(&b"small version"[..]),
        "the small version was not stored"
    );
    // Zeroed memory: the allocator hands it out without touching every page.
    let too_large = response(&url_for(&key), Bytes::from(vec![0u8; body_len]));
    let too_large_policy = policy(&too_large);
    let error = manager
        .put(
            &key,
            too_large.clone(),
            too_large_policy.clone(),
            long_lived(),
        )
        .await
        .expect_err("a put of a body one byte over max_entry_bytes must fail");
    assert_eq!(
        error.kind(),
        ErrorKind::TooLarge,
        "a put over max_entry_bytes must fail with TooLarge: {error}"
    );
    assert!(
        get_body(manager, &key).await.is_none(),
        "the previous version is still served after a refused put"
    );

    let fresh = format!("{prefix}fresh");
    let error = manager
        .put(&fresh, too_large, too_large_policy, long_lived())
        .await
        .expect_err("a put of a body one byte over max_entry_bytes must fail");
    assert_eq!(error.kind(), ErrorKind::TooLarge, "{error}");
    assert!(
        get_body(manager, &fresh).await.is_none(),
        "a refused put left an entry"
    );
}
