//! Invalidation of many keys: by tag and by pattern.

use bytes::Bytes;

use super::support::{get_body, long_lived, put, url_for};
use crate::key::KeyPattern;
use crate::testkit::fixtures::{response, unique_prefix};
use crate::testkit::suite::Suite;

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
