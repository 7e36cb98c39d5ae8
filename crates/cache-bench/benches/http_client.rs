//! A cached GET through a real client: reqwest + `http-cache-reqwest`, with the
//! `cache-http-cache` adapter over `cache-memory` against the same stack with
//! `http-cache`'s own `MokaManager`. The origin (axum on 127.0.0.1) serves the standard
//! 16 KiB response with ten headers; every measured request is a fresh hit that never
//! reaches it (checked).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::routing::get;
use cache_bench::{headers, response};
use cache_http_cache::HttpCacheAdapter;
use cache_memory::{MemoryCache, MemoryConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use http_cache::MokaManager;
use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
use reqwest_middleware::ClientWithMiddleware;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn origin(State(requests): State<Arc<AtomicU64>>) -> impl IntoResponse {
    requests.fetch_add(1, Ordering::Relaxed);
    let (cached, _) = response();
    let mut reply = axum::http::Response::new(axum::body::Body::from(cached.body));
    for (name, value) in headers() {
        if name != "content-length" {
            reply.headers_mut().append(
                HeaderName::from_static(name),
                value.parse().expect("header value"),
            );
        }
    }
    reply
}

fn client<T: http_cache::CacheManager>(manager: T) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
    )
    .with(Cache(HttpCache {
        mode: CacheMode::Default,
        manager,
        options: HttpCacheOptions::default(),
    }))
    .build()
}

async fn cached_get(client: &ClientWithMiddleware, url: &str) -> usize {
    let reply = client.get(url).send().await.expect("send");
    assert_eq!(
        reply
            .headers()
            .get("x-cache")
            .map(http::HeaderValue::as_bytes),
        Some(&b"HIT"[..]),
        "a measured request must be a hit"
    );
    reply.bytes().await.expect("body").len()
}

fn http_client_benches(c: &mut Criterion) {
    let rt = runtime();
    let requests = Arc::new(AtomicU64::new(0));
    let url = rt.block_on(async {
        let app = Router::new()
            .route("/item", get(origin))
            .with_state(Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/item")
    });
    let ours = client(HttpCacheAdapter::new(Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20)).unwrap(),
    )));
    let peer = client(MokaManager::new(moka::future::Cache::new(10_000)));
    for warm in [&ours, &peer] {
        rt.block_on(async {
            let reply = warm.get(&url).send().await.expect("warm-up");
            assert_eq!(reply.bytes().await.expect("body").len(), 16 * 1024);
        });
    }
    let origin_requests = requests.load(Ordering::Relaxed);

    let mut group = c.benchmark_group("http_client/cached_get");
    group.bench_function("cache-http-cache over cache-memory", |b| {
        b.to_async(&rt).iter(|| cached_get(&ours, &url));
    });
    group.bench_function("http-cache MokaManager", |b| {
        b.to_async(&rt).iter(|| cached_get(&peer, &url));
    });
    group.finish();
    assert_eq!(
        requests.load(Ordering::Relaxed),
        origin_requests,
        "no measured request reached the origin"
    );
}

criterion_group!(benches, http_client_benches);
criterion_main!(benches);
