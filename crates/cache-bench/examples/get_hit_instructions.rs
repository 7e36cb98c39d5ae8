//! Memory get-hit (and the tiered stack's L1 hit), for instruction counting under callgrind, which repeats exactly where
//! timings on a shared 2-core machine do not.
//!
//! ```sh
//! cargo build --release -p cache-bench --example get_hit_instructions
//! for mode in setup-only cache-memory cache-tiered raw-moka; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode \
//!     target/release/examples/get_hit_instructions $mode 100000
//! done
//! ```
//!
//! (instructions of a mode - instructions of `setup-only`) / 100000 = instructions per get.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cache_bench::{KEY_COUNT, keys, response};
use cache_core::{CacheManager, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "cache-memory".to_owned());
    let gets: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = keys();
    let (cached, policy) = response();
    let memory = MemoryCache::open(MemoryConfig::default().with_capacity_bytes(1 << 30)).unwrap();
    let raw_moka: moka::sync::Cache<String, Arc<Vec<u8>>> =
        moka::sync::Cache::new(KEY_COUNT as u64 * 2);
    let raw_value = Arc::new(cached.body.to_vec());
    // Every mode builds everything, so `setup-only` subtracts the same setup.
    let stack = runtime
        .block_on(
            TieredCache::builder()
                .tier(Tier::new(Arc::new(
                    MemoryCache::open(MemoryConfig::default().with_capacity_bytes(1 << 30))
                        .unwrap(),
                )))
                .tier(Tier::new(Arc::new(
                    MemoryCache::open(MemoryConfig::default().with_capacity_bytes(1 << 30))
                        .unwrap(),
                )))
                .build(),
        )
        .expect("stack");
    runtime.block_on(async {
        for key in &keys {
            let options = PutOptions::new().with_ttl(Duration::from_secs(3600));
            memory
                .put(key, cached.clone(), policy.clone(), options)
                .await
                .expect("put");
            raw_moka.insert(key.clone(), Arc::clone(&raw_value));
            let options = PutOptions::new().with_ttl(Duration::from_secs(3600));
            stack
                .put(key, cached.clone(), policy.clone(), options)
                .await
                .expect("put");
        }
    });
    memory.run_pending_tasks();
    raw_moka.run_pending_tasks();
    let manager: Arc<dyn CacheManager> = Arc::new(memory);
    let stack: Arc<dyn CacheManager> = Arc::new(stack);
    runtime.block_on(async {
        for n in 0..gets {
            let key = &keys[n % KEY_COUNT];
            match mode.as_str() {
                "cache-memory" => {
                    black_box(manager.get(key).await.expect("get").expect("a hit"));
                }
                "cache-tiered" => {
                    black_box(stack.get(key).await.expect("get").expect("a hit"));
                }
                "raw-moka" => {
                    black_box(raw_moka.get(key.as_str()).expect("a hit"));
                }
                _ => {}
            }
        }
    });
}
