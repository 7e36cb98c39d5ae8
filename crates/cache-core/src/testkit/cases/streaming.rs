//! Streaming backends: bodies in and out as streams, and nothing committed from a body
//! that failed, did not match its length or was dropped.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use super::support::{get_body, long_lived, put, url_for};
use crate::body;
use crate::error::{BoxError, ErrorKind};
use crate::manager::StreamingCacheManager;
use crate::testkit::fixtures::{
    assert_same_response, policy, random_bytes, response, unique_prefix,
};
use crate::testkit::suite::Suite;

fn streaming(suite: &Suite) -> &dyn StreamingCacheManager {
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
