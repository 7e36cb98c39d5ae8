//! Removal: `delete` of one key (present or not) and `clear` of everything.

use bytes::Bytes;

use super::support::{get_body, long_lived, put, url_for};
use crate::testkit::fixtures::{response, unique_prefix};
use crate::testkit::suite::Suite;

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
