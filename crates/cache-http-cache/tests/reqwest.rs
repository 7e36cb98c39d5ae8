//! End to end: a real `reqwest` client with `http-cache-reqwest`, over the adapter, over a
//! memory-over-disk stack, against a real HTTP server on 127.0.0.1 that counts how often
//! each route is hit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_cacache::{CacacheCache, CacacheConfig};
use cache_http_cache::{HttpCacheAdapter, key_with_request_headers};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};
use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
use reqwest_middleware::ClientWithMiddleware;

/// How often each route was hit, and how many of the hits were answered 304.
#[derive(Clone, Default)]
struct Origin {
    hits: Arc<Mutex<HashMap<&'static str, u64>>>,
}

impl Origin {
    fn hit(&self, route: &'static str) {
        *self.hits.lock().unwrap().entry(route).or_default() += 1;
    }

    fn count(&self, route: &str) -> u64 {
        self.hits.lock().unwrap().get(route).copied().unwrap_or(0)
    }
}

const ETAG: &str = "\"v1\"";

async fn cacheable(State(origin): State<Origin>) -> Response {
    origin.hit("cacheable");
    (
        [(header::CACHE_CONTROL, "public, max-age=600")],
        "cacheable body",
    )
        .into_response()
}

async fn no_store(State(origin): State<Origin>) -> Response {
    origin.hit("no-store");
    ([(header::CACHE_CONTROL, "no-store")], "never stored").into_response()
}

async fn revalidated(State(origin): State<Origin>, request: HeaderMap) -> Response {
    origin.hit("revalidated");
    // Stale at once, with a validator: every use is a conditional request.
    let headers = [(header::ETAG, ETAG), (header::CACHE_CONTROL, "max-age=0")];
    if request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        == Some(ETAG)
    {
        origin.hit("revalidated 304");
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, "validated body").into_response()
}

async fn varied(State(origin): State<Origin>, request: HeaderMap) -> Response {
    origin.hit("varied");
    let language = request
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("en")
        .to_owned();
    (
        [
            (header::CACHE_CONTROL, "public, max-age=600"),
            (header::VARY, "accept-language"),
        ],
        format!("greeting in {language}"),
    )
        .into_response()
}

async fn personal(State(origin): State<Origin>) -> Response {
    origin.hit("personal");
    (
        [(header::CACHE_CONTROL, "public, max-age=600")],
        "account page",
    )
        .into_response()
}

/// Starts the origin on a free loopback port; returns its base URL and counters.
async fn start_origin() -> (String, Origin) {
    let origin = Origin::default();
    let app = Router::new()
        .route("/cacheable", get(cacheable))
        .route("/no-store", get(no_store))
        .route("/revalidated", get(revalidated))
        .route("/varied", get(varied))
        .route("/personal", get(personal))
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), origin)
}

/// reqwest + http-cache-reqwest over the adapter over memory over disk (cacache in
/// `dir`).
async fn cached_client(
    dir: &Path,
    options: HttpCacheOptions,
) -> (ClientWithMiddleware, TieredCache) {
    let disk = CacacheCache::open(CacacheConfig::new(dir)).await.unwrap();
    let memory = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20)).unwrap();
    let stack = TieredCache::builder()
        .tier(Tier::new(Arc::new(memory)))
        .tier(Tier::new(Arc::new(disk)))
        .build()
        .await
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(Cache(HttpCache {
        mode: CacheMode::Default,
        manager: HttpCacheAdapter::new(Arc::new(stack.clone())),
        options,
    }))
    .build();
    (client, stack)
}

async fn fetch(
    client: &ClientWithMiddleware,
    url: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let cache_status = response
        .headers()
        .get("x-cache")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    (response.text().await.unwrap(), cache_status)
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            files_contain(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|window| window == needle)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cacheable_get_is_served_from_the_cache_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let (base, origin) = start_origin().await;
    let (client, stack) = cached_client(dir.path(), HttpCacheOptions::default()).await;
    let url = format!("{base}/cacheable");
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("cacheable body".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("cacheable body".into(), "HIT".into())
    );
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("cacheable body".into(), "HIT".into())
    );
    assert_eq!(origin.count("cacheable"), 1);
    let stats = stack.stats();
    assert_eq!((stats.hits, stats.puts), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_store_response_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (base, origin) = start_origin().await;
    let (client, stack) = cached_client(dir.path(), HttpCacheOptions::default()).await;
    let url = format!("{base}/no-store");
    for _ in 0..3 {
        assert_eq!(
            fetch(&client, &url, &[]).await,
            ("never stored".into(), "MISS".into())
        );
    }
    assert_eq!(origin.count("no-store"), 3);
    assert_eq!(stack.stats().puts, 0);
    assert!(!files_contain(dir.path(), b"never stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_with_an_etag_is_revalidated_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let (base, origin) = start_origin().await;
    let (client, _) = cached_client(dir.path(), HttpCacheOptions::default()).await;
    let url = format!("{base}/revalidated");
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("validated body".into(), "MISS".into())
    );
    // Stale: a conditional request, answered 304, and the stored body is served.
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("validated body".into(), "HIT".into())
    );
    assert_eq!(
        fetch(&client, &url, &[]).await,
        ("validated body".into(), "HIT".into())
    );
    assert_eq!(origin.count("revalidated"), 3);
    assert_eq!(origin.count("revalidated 304"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_two_language_variants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (base, origin) = start_origin().await;
    let (client, _) = cached_client(dir.path(), HttpCacheOptions::default()).await;
    let url = format!("{base}/varied");
    let german = [("accept-language", "de")];
    let english = [("accept-language", "en")];
    assert_eq!(
        fetch(&client, &url, &german).await,
        ("greeting in de".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &german).await,
        ("greeting in de".into(), "HIT".into())
    );
    // One entry per key in http-cache: English is never answered with the German variant;
    // it is fetched and replaces it.
    assert_eq!(
        fetch(&client, &url, &english).await,
        ("greeting in en".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &english).await,
        ("greeting in en".into(), "HIT".into())
    );
    assert_eq!(
        fetch(&client, &url, &german).await,
        ("greeting in de".into(), "MISS".into())
    );
    assert_eq!(origin.count("varied"), 3);

    // With the language in the key, both variants stay cached side by side.
    let dir = tempfile::tempdir().unwrap();
    let options = HttpCacheOptions {
        cache_key: Some(key_with_request_headers([header::ACCEPT_LANGUAGE])),
        ..HttpCacheOptions::default()
    };
    let (client, _) = cached_client(dir.path(), options).await;
    assert_eq!(
        fetch(&client, &url, &german).await,
        ("greeting in de".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &english).await,
        ("greeting in en".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &german).await,
        ("greeting in de".into(), "HIT".into())
    );
    assert_eq!(
        fetch(&client, &url, &english).await,
        ("greeting in en".into(), "HIT".into())
    );
    assert_eq!(origin.count("varied"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_and_cookie_values_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (base, origin) = start_origin().await;
    let (client, _) = cached_client(dir.path(), HttpCacheOptions::default()).await;
    let url = format!("{base}/personal");
    let credentials = [
        ("authorization", "Bearer token-8d1f0c77e2"),
        ("cookie", "session=cookie-5b93aa01"),
    ];
    assert_eq!(
        fetch(&client, &url, &credentials).await,
        ("account page".into(), "MISS".into())
    );
    assert_eq!(
        fetch(&client, &url, &credentials).await,
        ("account page".into(), "HIT".into())
    );
    assert_eq!(origin.count("personal"), 1);
    assert!(
        files_contain(dir.path(), b"account page"),
        "the entry is on disk"
    );
    for secret in ["token-8d1f0c77e2", "cookie-5b93aa01"] {
        assert!(
            !files_contain(dir.path(), secret.as_bytes()),
            "{secret} is on disk"
        );
    }
}
