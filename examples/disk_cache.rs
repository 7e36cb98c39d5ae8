//! A cache on disk that survives restarts: run it twice.
//!
//! ```sh
//! cargo run --example disk_cache    # first run: a miss, the response is stored on disk
//! cargo run --example disk_cache    # second run: served from disk, stored by the first run
//! ```
//!
//! The cache lives in `$TMPDIR/tiered-http-cache-disk-example` (or the directory given as
//! the first argument); delete it to start over.

use std::time::{Duration, SystemTime};

use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
use http::{HeaderValue, StatusCode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join("tiered-http-cache-disk-example"),
        Into::into,
    );
    let cache =
        CacacheCache::open(CacacheConfig::new(&dir).with_capacity_bytes(64 * 1024 * 1024)).await?;
    println!("Opened the disk cache in {}", dir.display());
    println!(
        "It holds {} entries ({} bytes).\n",
        cache.entry_count().await?,
        cache.size_bytes().await?
    );

    let key = "GET:https://example.com/report.json";
    if let Some(entry) = cache.get(key).await? {
        let age = SystemTime::now()
            .duration_since(entry.metadata.stored_at)
            .unwrap_or_default();
        println!("SERVED FROM DISK: {key}");
        println!(
            "  stored by an earlier run {:.1} seconds ago, body {:?}",
            age.as_secs_f64(),
            String::from_utf8_lossy(&entry.response.body)
        );
        println!(
            "  it stays on disk for another {} seconds",
            entry.metadata.remaining_ttl(SystemTime::now()).as_secs()
        );
        return Ok(());
    }

    println!(
        "MISS: {key} is not on disk yet, so this run plays the origin server and stores the response."
    );
    let url = url::Url::parse("https://example.com/report.json")?;
    let mut response = CachedResponse::new(url.clone(), StatusCode::OK)
        .with_body(r#"{"report":"quarterly","rows":1200}"#);
    response
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("max-age=600"));
    let request = http::Request::get(url.as_str()).body(())?;
    let mut head = http::Response::new(());
    *head.headers_mut() = response.headers.clone();
    let policy = CachePolicy::new(&request, &head);
    cache
        .put(
            key,
            response,
            policy,
            PutOptions::new().with_ttl(Duration::from_secs(600)),
        )
        .await?;
    println!(
        "Stored it on disk for 10 minutes. Run this example again to see it served from disk."
    );
    Ok(())
}
