//! Two instances of a service share one Redis; each keeps a local memory tier in front of
//! it. A delete on instance A reaches instance B's memory tier through the invalidation
//! bus. Needs a Redis: `REDIS_URL` or redis://127.0.0.1:6379.
//!
//! `cargo run --example redis_shared`

use std::time::Duration;

use cache_core::{
    BusMessage, CacheManager, CachePolicy, CachedResponse, InvalidationBus, InvalidationEvent,
    PutOptions,
};
use cache_memory::MemoryCache;
use cache_redis::{RedisBus, RedisCache, RedisConfig};
use http::{HeaderValue, StatusCode};

/// One process's view: its own memory tier, the shared Redis, and its bus.
struct Instance {
    name: &'static str,
    memory: MemoryCache,
    redis: RedisCache,
    bus: RedisBus,
}

impl Instance {
    async fn start(name: &'static str, namespace: &str) -> cache_core::Result<Self> {
        let redis = RedisCache::connect(RedisConfig::from_env().with_namespace(namespace)).await?;
        Ok(Self {
            name,
            memory: MemoryCache::builder().with_capacity_bytes(16 << 20).build(),
            bus: redis.bus(),
            redis,
        })
    }

    /// Memory first, then Redis (copying a Redis hit into memory).
    async fn get(&self, key: &str) -> cache_core::Result<&'static str> {
        if self.memory.get(key).await?.is_some() {
            return Ok("hit in its memory tier");
        }
        match self.redis.get(key).await? {
            Some(entry) => {
                let entry = (*entry).clone();
                let ttl = entry.metadata.remaining_ttl(std::time::SystemTime::now());
                self.memory
                    .put(
                        key,
                        entry.response,
                        entry.policy,
                        PutOptions::new().with_ttl(ttl),
                    )
                    .await?;
                Ok("hit in the shared Redis (now copied to its memory tier)")
            }
            None => Ok("miss everywhere"),
        }
    }

    /// Deletes everywhere it can reach and tells the other instances.
    async fn delete(&self, key: &str) -> cache_core::Result<()> {
        self.memory.delete(key).await?;
        self.redis.delete(key).await?;
        self.bus
            .publish(InvalidationEvent::Delete {
                key: key.to_owned(),
            })
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fixed namespace: running the example again reuses its keys.
    let namespace = "example-shared";
    let a = Instance::start("A", namespace).await.map_err(|error| {
        format!("cannot reach Redis (set REDIS_URL or start redis-server): {error}")
    })?;
    let b = Instance::start("B", namespace).await?;
    println!("Instances A and B share Redis namespace {namespace:?}.");

    // B listens for invalidations from the other instances.
    let mut b_invalidations = b.bus.subscribe().await?;

    // A caches a response in Redis.
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
    a.redis
        .put(key, response, policy, PutOptions::new())
        .await?;
    println!("A stored {key} in Redis.");

    println!("B reads it: {}.", b.get(key).await?);
    println!("B reads it again: {}.", b.get(key).await?);

    // A deletes it: from its tiers, from Redis, and on the bus.
    a.delete(key).await?;
    println!("A deleted it and published the deletion.");

    // B applies what the bus delivers to its local tier only.
    let message = tokio::time::timeout(Duration::from_secs(5), b_invalidations.recv())
        .await?
        .ok_or("the bus closed")?;
    match message {
        BusMessage::Event {
            origin,
            event: InvalidationEvent::Delete { key: deleted },
        } => {
            b.memory.delete(&deleted).await?;
            println!(
                "{} received the deletion of {deleted} from instance {origin} and dropped it from its memory tier.",
                b.name
            );
        }
        BusMessage::Resync { reason } => {
            b.memory.clear().await?;
            println!(
                "{} was told to resync ({reason}) and flushed its memory tier.",
                b.name
            );
        }
        other => println!("{} received {other:?}", b.name),
    }
    println!("B reads it once more: {}.", b.get(key).await?);

    a.redis.clear().await?;
    Ok(())
}
