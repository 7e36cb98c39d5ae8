//! A two-tier stack, memory over disk, with no services: writes reach both tiers, a
//! memory miss is served from disk and promoted, 100 concurrent callers of one missing
//! key make one fetch, and the statistics say exactly what happened.
//!
//! `cargo run --example tiered`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::{CacheManager, CachePolicy, CachedResponse, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Fetched, Tier, TieredCache, TtlPreset};
use http::{HeaderValue, StatusCode};

fn origin_response(
    path: &str,
) -> Result<(CachedResponse, CachePolicy), Box<dyn std::error::Error + Send + Sync>> {
    let url = url::Url::parse(&format!("https://example.com{path}"))?;
    let mut response =
        CachedResponse::new(url.clone(), StatusCode::OK).with_body(format!("the page at {path}"));
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("max-age=600"));
    let request = http::Request::get(url.as_str()).body(())?;
    let mut head = http::Response::new(());
    *head.headers_mut() = response.headers.clone();
    let policy = CachePolicy::new(&request, &head);
    Ok((response, policy))
}

/// The tier whose hit count went up between two snapshots.
fn answered_by(
    before: &cache_tiered::TieredStats,
    after: &cache_tiered::TieredStats,
) -> &'static str {
    before
        .tiers
        .iter()
        .zip(&after.tiers)
        .find(|(before, after)| after.hits > before.hits)
        .map_or("no tier (a miss)", |(_, after)| after.name)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let memory = Arc::new(MemoryCache::open(
        MemoryConfig::default().with_capacity_bytes(16 << 20),
    )?);
    let disk = Arc::new(
        CacacheCache::open(CacacheConfig::new(dir.path()).with_capacity_bytes(256 << 20)).await?,
    );
    let stack = TieredCache::builder()
        // Memory keeps entries for a tenth of their TTL and nothing over 1 MiB.
        .tier(
            Tier::new(memory.clone())
                .with_ttl_scale(0.1)
                .with_max_entry_bytes(1 << 20),
        )
        .tier(Tier::new(disk.clone()))
        .build()
        .await?;
    println!(
        "A stack of memory (L1) over disk (L2) in {}.\n",
        dir.path().display()
    );

    let (response, policy) = origin_response("/home")?;
    stack
        .put(
            "GET:/home",
            response,
            policy,
            PutOptions::new().with_ttl(Duration::from_secs(600)),
        )
        .await?;
    let l1_ttl = memory
        .get_entry("GET:/home")?
        .map(|entry| entry.metadata.storage_ttl());
    let l2_ttl = disk
        .get("GET:/home")
        .await?
        .map(|entry| entry.metadata.storage_ttl());
    println!("put GET:/home for 600 s: memory keeps it {l1_ttl:?}, disk {l2_ttl:?}.");

    let before = stack.stats();
    stack.get("GET:/home").await?;
    println!(
        "get GET:/home: answered by {}.",
        answered_by(&before, &stack.stats())
    );
    memory.delete("GET:/home").await?;
    let before = stack.stats();
    stack.get("GET:/home").await?;
    println!(
        "dropped it from memory; get: answered by {}.",
        answered_by(&before, &stack.stats())
    );
    println!(
        "promoted back into memory: {}.",
        if memory.get_entry("GET:/home")?.is_some() {
            "it is there again"
        } else {
            "it is not"
        }
    );

    // 100 callers miss on the same key at once: one fetch from the origin.
    let fetches = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (stack, fetches) = (stack.clone(), fetches.clone());
            tokio::spawn(async move {
                stack
                    .get_or_fetch("GET:/popular", move || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await; // the origin is slow
                        let (response, policy) = origin_response("/popular")?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Fetched::new(
                            response, policy,
                        ))
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        caller.await??;
    }
    println!(
        "\n100 concurrent get_or_fetch calls on GET:/popular: {} fetch from the origin.",
        fetches.load(Ordering::SeqCst)
    );

    // Any serde type, with a TTL preset.
    let top: Vec<String> = stack
        .get_or_compute_typed("top-products", TtlPreset::Short, || async {
            Ok::<_, std::io::Error>(vec!["kettle".to_owned(), "teapot".to_owned()])
        })
        .await?;
    println!("typed value top-products (5 min): {top:?}");

    let stats = stack.stats();
    println!(
        "\nstack: {} hits, {} misses, {} promotions, {} puts, {} fetches, {} coalesced waiters, {} errors",
        stats.hits,
        stats.misses,
        stats.promotions,
        stats.puts,
        stats.fetches,
        stats.coalesced_waiters,
        stats.errors
    );
    for tier in &stats.tiers {
        println!(
            "  {:>8}: {} hits, {} misses, {} promotions in, {} puts",
            tier.name, tier.hits, tier.misses, tier.promotions, tier.puts
        );
    }
    Ok(())
}
