//! Responses, policies and keys the conformance cases use; backends' own tests may use
//! them too.

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Version};
use http_cache_semantics::{BeforeRequest, CachePolicy};
use rand::Rng;
use url::Url;

use crate::entry::{CacheEntry, CachedResponse};

/// A key prefix unique to one case run: `"{case}-{random hex}:"`.
pub fn unique_prefix(case: &str) -> String {
    format!("{case}-{:016x}:", rand::rng().random::<u64>())
}

/// The request a fixture response answers.
pub fn request_for(url: &Url) -> Request<()> {
    Request::get(url.as_str())
        .header("accept", "text/html")
        .header("accept-encoding", "gzip")
        .body(())
        .expect("a valid request")
}

/// A 200 response with 10 headers, among them a name with three values in order and a
/// value that is not UTF-8, and `body`.
pub fn response(url: &str, body: impl Into<Bytes>) -> CachedResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert("etag", HeaderValue::from_static("\"v1-fixture\""));
    headers.insert("vary", HeaderValue::from_static("accept-encoding"));
    headers.insert("server", HeaderValue::from_static("conformance"));
    headers.append("x-multi", HeaderValue::from_static("first"));
    headers.append("x-multi", HeaderValue::from_static("second"));
    headers.append("x-multi", HeaderValue::from_static("third"));
    headers.insert(
        "x-binary",
        HeaderValue::from_bytes(&[0xff, 0xfe, b'a', 0x80, b' ', 0xe9])
            .expect("opaque bytes are a valid value"),
    );
    headers.insert(
        "date",
        HeaderValue::from_static("Sun, 22 Nov 2026 03:00:00 GMT"),
    );
    CachedResponse::new(Url::parse(url).expect("a valid url"), StatusCode::OK)
        .with_version(Version::HTTP_2)
        .with_headers(headers)
        .with_body(body)
}

/// The policy of `response` for a plain GET of its URL, received now.
pub fn policy(response: &CachedResponse) -> CachePolicy {
    policy_for_request(&request_for(&response.url), response)
}

/// The policy of `response` for `request`.
pub fn policy_for_request(request: &Request<()>, response: &CachedResponse) -> CachePolicy {
    let mut head = http::Response::new(());
    *head.status_mut() = response.status;
    *head.headers_mut() = response.headers.clone();
    CachePolicy::new_options(request, &head, SystemTime::now(), Default::default())
}

/// Asserts that `got` is exactly `expected`: status, version, URL, every header value in
/// order, body.
pub fn assert_same_response(got: &CachedResponse, expected: &CachedResponse, context: &str) {
    assert_eq!(got.status, expected.status, "{context}: status");
    assert_eq!(got.version, expected.version, "{context}: version");
    assert_eq!(got.url, expected.url, "{context}: url");
    let got_headers: Vec<_> = got.headers.iter().collect();
    let expected_headers: Vec<_> = expected.headers.iter().collect();
    assert_eq!(got_headers, expected_headers, "{context}: headers");
    assert_eq!(
        got.body.len(),
        expected.body.len(),
        "{context}: body length"
    );
    assert!(got.body == expected.body, "{context}: body bytes differ");
}

/// Asserts that two policies make the same decisions: storable, time to live, age, and
/// whether the original request may be served without revalidation.
pub fn assert_equivalent_policy(
    got: &CachePolicy,
    expected: &CachePolicy,
    request: &Request<()>,
    context: &str,
) {
    let now = SystemTime::now();
    assert_eq!(
        got.is_storable(),
        expected.is_storable(),
        "{context}: policy storable"
    );
    assert_eq!(
        got.time_to_live(now),
        expected.time_to_live(now),
        "{context}: policy time to live"
    );
    assert_eq!(got.age(now), expected.age(now), "{context}: policy age");
    let fresh = |policy: &CachePolicy| match policy.before_request(request, now) {
        BeforeRequest::Fresh(parts) => Some(parts.headers),
        BeforeRequest::Stale { .. } => None,
    };
    assert_eq!(
        fresh(got),
        fresh(expected),
        "{context}: policy decision for the same request"
    );
}

/// Asserts the whole entry: response, policy and tags.
pub fn assert_entry(
    got: &CacheEntry,
    expected: &CachedResponse,
    expected_policy: &CachePolicy,
    expected_tags: &[&str],
    context: &str,
) {
    assert_same_response(&got.response, expected, context);
    let request = request_for(&expected.url);
    assert_equivalent_policy(got.policy(), expected_policy, &request, context);
    assert_eq!(got.metadata.tags, expected_tags, "{context}: tags");
}

/// `len` bytes of random data.
pub fn random_bytes(len: usize) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::rng().fill(&mut bytes[..]);
    Bytes::from(bytes)
}
