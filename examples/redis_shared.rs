//! Two instances of a service, each a stack of its own memory tier over one shared Redis.
//! A delete on instance A reaches instance B's memory tier through the invalidation bus.
//! Needs a Redis: `REDIS_URL` or redis://127.0.0.1:6379.
//!
//! `cargo run --example redis_shared`

use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_redis::{RedisCache, RedisConfig};
use cache_tiered::{Tier, TieredCache, TieredStats};
use http::{HeaderValue, StatusCode};

/// One instance: its memory tier, and a stack of it over the shared Redis.
struct Instance {
    memory: Arc<MemoryCache>,
    stack: TieredCache,
}

async fn instance(namespace: &str) -> Result<Instance, Box<dyn std::error::Error>> {
    let redis = RedisCache::connect(RedisConfig::from_env().with_namespace(namespace))
        .await
        .map_err(|error| {
            format!("cannot reach Redis (set REDIS_URL or start redis-server): {error}")
        })?;
    let memory = Arc::new(MemoryCache::open(
        MemoryConfig::default().with_capacity_bytes(16 << 20),
    )?);
    let stack = TieredCache::builder()
        .tier(Tier::new(memory.clone()).with_ttl_scale(0.2))
        // Redis declares itself shared: invalidations from the bus are not applied to it
        // (the publisher did).
        .tier(Tier::new(Arc::new(redis.clone())))
        .with_bus(Arc::new(redis.bus()))
        .build()
        .await?;
    Ok(Instance { memory, stack })
}

fn answered_by(before: &TieredStats, after: &TieredStats) -> &'static str {
    before
        .tiers
        .iter()
        .zip(&after.tiers)
        .find(|(before, after)| after.hits > before.hits)
        .map_or("nobody: a miss", |(_, after)| after.name)
}

async fn read(
    name: &str,
    instance: &Instance,
    key: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let before = instance.stack.stats();
    instance.stack.get(key).await?;
    println!(
        "{name} reads {key}: answered by {}.",
        answered_by(&before, &instance.stack.stats())
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fixed namespace: running the example again reuses its keys.
    let namespace = "example-shared";
    let a = instance(namespace).await?;
    let b = instance(namespace).await?;
    println!("Instances A and B: memory over the Redis namespace {namespace:?}, one bus.\n");

    let key = "GET:https://example.com/profile/42";
    let url = url::Url::parse("https://example.com/profile/42")?;
    let mut response = CachedResponse::new(url.clone(), StatusCode::OK).with_body("profile 42");
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("max-age=300"));
    let request = http::Request::get(url.as_str()).body(())?;
    let mut head = http::Response::new(());
    *head.headers_mut() = response.headers.clone();
    let policy = CachePolicy::new(&request, &head);
    a.stack
        .put(key, response, policy, PutOptions::new())
        .await?;
    println!("A stores {key} (its memory and Redis).");

    read("B", &b, key).await?;
    read("B", &b, key).await?;

    a.stack.delete(key).await?;
    println!("A deletes it: from its memory, from Redis, and on the bus.");
    // B's stack applies bus events in the background; wait until it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.stack.stats().bus_events_applied == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "B applied {} invalidation from the bus; its memory tier {} the entry.",
        b.stack.stats().bus_events_applied,
        if b.memory.get_entry(key)?.is_some() {
            "still has"
        } else {
            "no longer has"
        }
    );
    read("B", &b, key).await?;
    println!(
        "A applied {} of its own events (it skips them).",
        a.stack.stats().bus_events_applied
    );

    a.stack.clear().await?;
    Ok(())
}
