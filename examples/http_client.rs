//! The cache under a real HTTP client: reqwest with `http-cache-reqwest`, over the
//! adapter, over a tiered stack (memory over disk), talking to a small origin server this
//! program starts on 127.0.0.1. It prints each request's hit or miss as it goes.
//!
//! ```sh
//! cargo run --example http_client
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_cacache::{CacacheCache, CacacheConfig};
use cache_http_cache::HttpCacheAdapter;
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};
use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests the origin answered.
#[derive(Clone, Default)]
struct Origin {
    requests: Arc<AtomicU64>,
}

async fn catalog(State(origin): State<Origin>) -> Response {
    origin.requests.fetch_add(1, Ordering::Relaxed);
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        "[\"apple\", \"pear\"]",
    )
        .into_response()
}

async fn price(State(origin): State<Origin>, request: HeaderMap) -> Response {
    origin.requests.fetch_add(1, Ordering::Relaxed);
    let headers = [
        (header::ETAG, "\"price-7\""),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag == "\"price-7\"")
    {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, "{\"apple\": 3}").into_response()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let origin = Origin::default();
    let app = Router::new()
        .route("/catalog", get(catalog))
        .route("/price", get(price))
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("origin on {base}");

    let dir = tempfile::tempdir()?;
    let stack = TieredCache::builder()
        .tier(Tier::new(Arc::new(MemoryCache::open(
            MemoryConfig::default().with_capacity_bytes(32 << 20),
        )?)))
        .tier(Tier::new(Arc::new(
            CacacheCache::open(CacacheConfig::new(dir.path())).await?,
        )))
        .build()
        .await?;
    let client =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build()?)
            .with(Cache(HttpCache {
                mode: CacheMode::Default,
                manager: HttpCacheAdapter::new(Arc::new(stack.clone())),
                options: HttpCacheOptions::default(),
            }))
            .build();

    for path in ["/catalog", "/catalog", "/price", "/price", "/catalog"] {
        let before = origin.requests.load(Ordering::Relaxed);
        let response = client.get(format!("{base}{path}")).send().await?;
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response.text().await?;
        let asked_origin = origin.requests.load(Ordering::Relaxed) > before;
        let note = match (cache.as_str(), asked_origin) {
            ("HIT", false) => "served from the cache",
            ("HIT", true) => "revalidated with the origin (304), served from the cache",
            _ => "fetched from the origin",
        };
        println!("GET {path:<9} x-cache: {cache:<4} {note}: {body}");
    }
    let stats = stack.stats();
    println!(
        "\norigin requests: {}; stack: {} hits, {} misses, {} puts",
        origin.requests.load(Ordering::Relaxed),
        stats.hits,
        stats.misses,
        stats.puts
    );
    Ok(())
}
