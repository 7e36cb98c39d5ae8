//! Shared fixtures for the benchmarks: the same response for every contender.
//!
//! The benchmarks compare each backend with its raw dependency and with the peers'
//! managers in one run. Run them with `cargo xtask bench` (which prints the ratios) or
//! `cargo bench -p cache-bench`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::{CachePolicy, CachedResponse, EntryMetadata, codec};
use http::{HeaderMap, HeaderValue, StatusCode};
use url::Url;

/// How many distinct keys the benchmarks cycle through.
pub const KEY_COUNT: usize = 10_000;

/// The body size of the standard response: 16 KiB.
pub const BODY_LEN: usize = 16 * 1024;

/// The keys the benchmarks use, `GET:https://bench.example/item/{n}`.
pub fn keys() -> Vec<String> {
    (0..KEY_COUNT)
        .map(|n| format!("GET:https://bench.example/item/{n}"))
        .collect()
}

/// The ten response headers of the standard response, all UTF-8 so that every peer can
/// store them.
pub fn headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "application/json; charset=utf-8"),
        ("cache-control", "public, max-age=3600"),
        ("etag", "\"5d8c72a5edda8d6a\""),
        ("last-modified", "Sat, 21 Nov 2026 10:00:00 GMT"),
        ("date", "Sun, 22 Nov 2026 03:00:00 GMT"),
        ("vary", "accept-encoding"),
        ("server", "bench-origin/1.0"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("access-control-allow-origin", "*"),
        ("content-length", "16384"),
    ]
}

/// The standard response: status 200, ten headers and a 16 KiB body, with its policy.
pub fn response() -> (CachedResponse, CachePolicy) {
    let url = Url::parse("https://bench.example/item/0").expect("url");
    let mut header_map = HeaderMap::new();
    for (name, value) in headers() {
        header_map.append(name, HeaderValue::from_static(value));
    }
    let body: Vec<u8> = (0..BODY_LEN).map(|n| (n % 251) as u8).collect();
    let response = CachedResponse::new(url.clone(), StatusCode::OK)
        .with_headers(header_map)
        .with_body(Bytes::from(body));
    (response.clone(), policy_for(&response))
}

/// The standard response as the `http-cache` crate's managers take it (the same
/// status, headers, URL and body).
pub fn http_cache_response() -> http_cache::HttpResponse {
    let (cached, _) = response();
    let mut http_headers = http_cache::HttpHeaders::new();
    for (name, value) in headers() {
        http_headers.append(name.to_owned(), value.to_owned());
    }
    http_cache::HttpResponse {
        body: cached.body.to_vec(),
        headers: http_headers,
        status: 200,
        url: cached.url.clone(),
        version: http_cache::HttpVersion::Http11,
        metadata: None,
    }
}

/// The policy of a response to a plain GET of its URL.
pub fn policy_for(response: &CachedResponse) -> CachePolicy {
    let request = http::Request::get(response.url.as_str())
        .body(())
        .expect("request");
    let mut head = http::Response::new(());
    *head.status_mut() = response.status;
    *head.headers_mut() = response.headers.clone();
    CachePolicy::new_options(&request, &head, SystemTime::now(), Default::default())
}

/// The environment variable `cargo xtask bench` sets on every second round: the
/// benchmarks that honour it (through [`in_round_order`]) then run their contenders in
/// reverse order.
pub const REVERSED_ROUND_VAR: &str = "CACHE_BENCH_REVERSED";

/// The contenders of a group in the order this round runs them: as given, or reversed
/// when [`REVERSED_ROUND_VAR`] is set. Whichever contender runs first in a process was
/// measured slower on the 2-core VM than the same contender later in the process
/// (RocksDB's raw get: 33.5 µs alone, 24.2 µs after the backend had run), so rounds
/// alternate the order and the per-round ratios are paired over both orders.
pub fn in_round_order<T>(mut contenders: Vec<T>) -> Vec<T> {
    if std::env::var_os(REVERSED_ROUND_VAR).is_some() {
        contenders.reverse();
    }
    contenders
}

/// The first `count` of [`keys`], handed out in turn from any thread.
#[derive(Debug)]
pub struct KeyCycle {
    /// The keys, in the order they are handed out.
    pub keys: Vec<String>,
    next: AtomicUsize,
}

impl KeyCycle {
    /// The first `count` keys (at most [`KEY_COUNT`]).
    pub fn new(count: usize) -> Self {
        let mut keys = keys();
        keys.truncate(count);
        Self {
            keys,
            next: AtomicUsize::new(0),
        }
    }

    /// The next key, starting again from the first after the last.
    pub fn next(&self) -> &str {
        &self.keys[self.next.fetch_add(1, Ordering::Relaxed) % self.keys.len()]
    }
}

/// The standard response encoded as the byte-storing backends store it (for `key`, with
/// an hour to live): what the raw contenders read and write.
pub fn encoded(key: &str) -> Vec<u8> {
    let (cached, policy) = response();
    let metadata = EntryMetadata::new(SystemTime::now(), Duration::from_secs(3600), vec![]);
    codec::encode_parts(key, &cached, &policy, &metadata).expect("encode")
}
