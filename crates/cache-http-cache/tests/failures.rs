//! A cache that fails: by default requests go on without it (and the failures are
//! counted); with `FailureMode::Fail` they fail.

use std::sync::Arc;

use cache_core::{
    CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Error, ErrorKind,
    PutOptions, Result,
};
use cache_http_cache::{FailureMode, HttpCacheAdapter};
use http_cache::CacheManager as _;

/// A backend whose server is down.
struct Down;

fn down() -> Error {
    Error::new(ErrorKind::Unavailable, "down", "the server does not answer")
}

impl CacheManager for Down {
    fn name(&self) -> &'static str {
        "down"
    }

    fn get<'a>(&'a self, _key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        CacheFuture::ready(Err(down()))
    }

    fn put<'a>(
        &'a self,
        _key: &'a str,
        _response: CachedResponse,
        _policy: CachePolicy,
        _options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready(Err(down()))
    }

    fn delete<'a>(&'a self, _key: &'a str) -> CacheFuture<'a, Result<()>> {
        CacheFuture::ready(Err(down()))
    }
}

fn response() -> (http_cache::HttpResponse, CachePolicy) {
    let request = http::Request::get("http://example.com/").body(()).unwrap();
    let head = http::Response::builder()
        .header("cache-control", "max-age=60")
        .body(())
        .unwrap();
    let policy = CachePolicy::new(&request, &head);
    let mut headers = http_cache::HttpHeaders::new();
    headers.append("cache-control".into(), "max-age=60".into());
    let response = http_cache::HttpResponse {
        body: b"body".to_vec(),
        headers,
        status: 200,
        url: "http://example.com/".parse().unwrap(),
        version: http_cache::HttpVersion::Http11,
        metadata: None,
    };
    (response, policy)
}

#[tokio::test]
async fn a_failing_cache_degrades_to_no_cache_and_is_counted() {
    let adapter = HttpCacheAdapter::new(Arc::new(Down));
    assert!(
        adapter
            .get("GET:http://example.com/")
            .await
            .unwrap()
            .is_none()
    );
    let (response, policy) = response();
    let returned = adapter
        .put("GET:http://example.com/".into(), response, policy)
        .await
        .unwrap();
    assert_eq!(returned.body, b"body");
    adapter.delete("GET:http://example.com/").await.unwrap();
    assert_eq!(adapter.errors(), 3);
}

#[tokio::test]
async fn with_fail_the_error_reaches_http_cache() {
    let adapter = HttpCacheAdapter::new(Arc::new(Down)).with_failure_mode(FailureMode::Fail);
    let error = adapter.get("GET:http://example.com/").await.unwrap_err();
    let error = error.downcast::<Error>().expect("the backend's error");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let (response, policy) = response();
    assert!(
        adapter
            .put("GET:http://example.com/".into(), response, policy)
            .await
            .is_err()
    );
    assert_eq!(adapter.errors(), 0);
}
