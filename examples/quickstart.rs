//! Quickstart: cache one HTTP response in memory, read it back, watch it expire, and
//! look at the statistics. Needs no server: `cargo run --example quickstart`.

use std::time::Duration;

use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use http::{HeaderValue, StatusCode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An in-memory cache that may hold up to 64 MiB of responses.
    let cache = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 * 1024 * 1024))?;
    println!("Created an in-memory cache with room for 64 MiB of responses.\n");

    // The response an origin server sent for GET https://example.com/greeting.
    let url = url::Url::parse("https://example.com/greeting")?;
    let mut response =
        CachedResponse::new(url.clone(), StatusCode::OK).with_body("Hello from the origin server!");
    response
        .headers
        .insert("content-type", HeaderValue::from_static("text/plain"));
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("max-age=60"));

    // The cache policy (from http-cache-semantics) decides how long the response is fresh.
    let request = http::Request::get(url.as_str()).body(())?;
    let mut head = http::Response::new(());
    *head.headers_mut() = response.headers.clone();
    let policy = CachePolicy::new(&request, &head);
    println!(
        "The origin says the response stays fresh for {} seconds (Cache-Control: max-age=60).",
        policy
            .time_to_live(std::time::SystemTime::now())
            .as_secs_f64()
            .round()
    );

    // Store it. For this demo we keep it for only one second, so we can watch it expire.
    let key = "GET:https://example.com/greeting";
    let options = PutOptions::new().with_ttl(Duration::from_secs(1));
    cache.put(key, response, policy, options).await?;
    println!("Stored the response under the key {key:?}, to be kept for 1 second.\n");

    // Read it back: a hit returns the very same response, without contacting the origin.
    match cache.get(key).await? {
        Some(entry) => println!(
            "HIT: got status {} with body {:?} ({} bytes), stored {} ms ago.",
            entry.response.status,
            String::from_utf8_lossy(&entry.response.body),
            entry.response.body.len(),
            entry
                .metadata
                .stored_at
                .elapsed()
                .unwrap_or_default()
                .as_millis()
        ),
        None => println!("MISS: this should not happen right after storing!"),
    }

    // Wait until the entry's storage time runs out.
    println!("\nWaiting 1.2 seconds so the entry expires...");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    match cache.get(key).await? {
        Some(_) => println!("HIT: unexpected, the entry should have expired."),
        None => println!(
            "MISS: the entry expired, so the cache no longer returns it. A real client would now ask the origin again."
        ),
    }

    // A key that was never stored is a miss too.
    let never_stored = cache.get("GET:https://example.com/never-stored").await?;
    println!(
        "A key that was never stored is a {}.",
        if never_stored.is_some() {
            "hit"
        } else {
            "miss"
        }
    );

    let stats = cache.stats()?;
    println!("\nStatistics since the cache was created:");
    println!("  hits:   {}  (reads answered from the cache)", stats.hits);
    println!(
        "  misses: {}  (reads the cache could not answer)",
        stats.misses
    );
    println!("  puts:   {}  (responses stored)", stats.puts);
    println!("  entries held now: {}", cache.entry_count().await?);
    Ok(())
}
