//! Many tasks at once, on distinct keys and on one key.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::support::{get_body, long_lived, put, url_for};
use crate::entry::CachedResponse;
use crate::testkit::fixtures::{response, unique_prefix};
use crate::testkit::suite::Suite;

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
