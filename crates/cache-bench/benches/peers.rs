//! Whole systems side by side: our tiered stack against the peers a user weighs it
//! against (multi-tier-cache, tower-http-cache's `MultiTierBackend`, foyer's
//! `HybridCache`, http-cache's `MokaManager` and `CACacheManager`), driven through the
//! same workloads in one process, on a `redis-server` this bench starts.
//!
//! Run it with `cargo xtask bench peers --rounds 3` (or `cargo bench -p cache-bench
//! --bench peers -- peers --rounds 3`). Every round runs each workload's contenders in
//! turn, in reverse order every second round; the table gives the median over rounds of
//! each number. Per contender and workload: operations per second, p50 / p99 / p99.9
//! latency from an HDR histogram, the share of reads the first tier answered, the misses
//! (each one an origin fetch that is then stored), and the growth of the process's peak
//! resident set while the contender ran.
//!
//! `--only TEXT` runs only the workloads whose title starts with `TEXT` (for example
//! `--only Zipf`), `--contenders TEXT` only the contenders whose name contains it;
//! `--op-seconds S` and `--zipf-seconds S` set how long each measurement runs.
//!
//! What is stored differs, and the table says so. Ours stores an HTTP response (status,
//! 10 headers, the URL, the `CachePolicy`) with a checksum; "ours, equal bytes" stores the
//! same 16 KiB body with no headers, the closest our stack comes to the peers that store
//! 16 KiB of raw bytes (multi-tier-cache, foyer). tower-http-cache stores the status, the
//! headers and the body. foyer's `insert` returns before its disk write; ours waits for
//! every tier.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_bench::{BODY_LEN, headers, http_cache_response, policy_for, response};
use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::{CacheEntry, CacheManager, CachePolicy, CachedResponse, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_redis::testing::RedisServer;
use cache_redis::{RedisCache, RedisConfig};
use cache_tiered::{Fetched, Tier, TieredCache};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;

/// Time to live of every stored entry.
const TTL: Duration = Duration::from_secs(3600);
/// Keys of the one-task and 64-task workloads: all fit in every first tier.
const HOT_KEYS: usize = 1_000;
/// Keys of the Zipf workloads, and the first tier's size there, in entries.
const ZIPF_KEYS: usize = 20_000;
const ZIPF_FIRST_TIER_ENTRIES: usize = 2_000;
const TASKS: usize = 64;
const STAMPEDE_WAITERS: usize = 1_000;
const STAMPEDE_FETCH: Duration = Duration::from_millis(5);

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Hit,
    Miss,
}

impl<T> From<Option<T>> for Lookup {
    fn from(found: Option<T>) -> Self {
        if found.is_some() {
            Self::Hit
        } else {
            Self::Miss
        }
    }
}

/// What the workloads need of a contender.
trait Contender: Send + Sync {
    /// Reads `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup>;
    /// Stores the contender's 16 KiB value under `key` for [`TTL`].
    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
    /// Removes `key` from the first tier only, so the next read is answered by a lower
    /// tier (and promoted). `None` for a single-tier contender.
    fn drop_from_first_tier<'a>(&'a self, key: &'a str) -> Option<BoxFuture<'a, ()>>;
    /// A coalescing read-through of `key` whose fetch sleeps [`STAMPEDE_FETCH`] and
    /// counts itself in `fetches`. `None` without such an API.
    fn get_or_fetch<'a>(
        &'a self,
        key: &'a str,
        fetches: Arc<AtomicU64>,
    ) -> Option<BoxFuture<'a, ()>>;
    /// Reads the first tier answered so far, when the contender can tell.
    fn first_tier_hits(&self) -> Option<u64>;
    /// Lets go of background work before the contender is dropped.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------
// Ours

struct Ours {
    stack: TieredCache,
    l1: Arc<MemoryCache>,
    /// What a set stores (and the stampede's fetch returns).
    stored: Arc<(CachedResponse, CachePolicy)>,
}

/// The stored response of "ours": the standard one, or its body alone ("equal bytes").
fn our_response(equal_bytes: bool) -> (CachedResponse, CachePolicy) {
    let (full, policy) = response();
    if !equal_bytes {
        return (full, policy);
    }
    let bare = CachedResponse::new(full.url.clone(), full.status).with_body(full.body.clone());
    let policy = policy_for(&bare);
    (bare, policy)
}

/// A memory L1 sized to hold `entries` of `response` under keys like ours.
fn memory_for(entries: usize, response: &CachedResponse) -> Arc<MemoryCache> {
    let per_entry = CacheEntry::approximate_size_of(response, &[]) + key(0).len();
    let config = MemoryConfig::default().with_capacity_bytes((entries * per_entry) as u64);
    Arc::new(MemoryCache::open(config).expect("memory tier"))
}

impl Ours {
    async fn over(
        lower: Arc<dyn CacheManager>,
        first_tier_entries: usize,
        equal_bytes: bool,
    ) -> Self {
        let (response, policy) = our_response(equal_bytes);
        let l1 = memory_for(first_tier_entries, &response);
        let stack = TieredCache::builder()
            .tier(Tier::new(l1.clone()))
            .tier(Tier::new(lower))
            .build()
            .await
            .expect("stack");
        Self {
            stack,
            l1,
            stored: Arc::new((response, policy)),
        }
    }
}

impl Contender for Ours {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move { self.stack.get(key).await.expect("get").into() })
    }

    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (response, policy) = (*self.stored).clone();
            self.stack
                .put(key, response, policy, PutOptions::new().with_ttl(TTL))
                .await
                .expect("put");
        })
    }

    fn drop_from_first_tier<'a>(&'a self, key: &'a str) -> Option<BoxFuture<'a, ()>> {
        Some(Box::pin(async move {
            self.l1.delete(key).await.expect("delete from L1");
        }))
    }

    fn get_or_fetch<'a>(
        &'a self,
        key: &'a str,
        fetches: Arc<AtomicU64>,
    ) -> Option<BoxFuture<'a, ()>> {
        // Only the fetch that runs makes its response: a caller that joins another's
        // fetch pays for an `Arc` clone, as the peers' callers pay for a `Bytes` clone.
        let stored = Arc::clone(&self.stored);
        Some(Box::pin(async move {
            self.stack
                .get_or_fetch(key, move || async move {
                    tokio::time::sleep(STAMPEDE_FETCH).await;
                    fetches.fetch_add(1, Ordering::Relaxed);
                    let (response, policy) = (*stored).clone();
                    Ok::<_, Infallible>(
                        Fetched::new(response, policy)
                            .with_options(PutOptions::new().with_ttl(TTL)),
                    )
                })
                .await
                .expect("get_or_fetch");
        }))
    }

    fn first_tier_hits(&self) -> Option<u64> {
        Some(self.stack.stats().tiers[0].hits)
    }
}

// ---------------------------------------------------------------------------------------
// multi-tier-cache

struct MultiTierCache {
    manager: Arc<multi_tier_cache::CacheManager>,
    l1: Arc<multi_tier_cache::L1Cache>,
    value: Bytes,
}

impl MultiTierCache {
    async fn connect(redis_url: &str, first_tier_entries: usize) -> Self {
        use multi_tier_cache::{CacheSystemBuilder, L1Cache, L2Cache, MokaCacheConfig, TierConfig};
        let l1 = Arc::new(
            L1Cache::new(MokaCacheConfig {
                max_capacity: first_tier_entries as u64,
                time_to_live: TTL,
                // Its default (2 minutes idle) would evict during a run.
                time_to_idle: TTL,
            })
            .expect("multi-tier-cache L1"),
        );
        let l2 = Arc::new(
            L2Cache::with_url(redis_url)
                .await
                .expect("multi-tier-cache L2"),
        );
        let system = CacheSystemBuilder::new()
            .with_tier(l1.clone(), TierConfig::as_l1())
            // Every L2 hit promoted, as ours does (its default promotes one in ten).
            .with_tier(l2, TierConfig::as_l2().with_promotion_frequency(1))
            .build()
            .await
            .expect("multi-tier-cache");
        Self {
            manager: Arc::clone(system.cache_manager()),
            l1,
            value: raw_value(),
        }
    }
}

impl Contender for MultiTierCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move { self.manager.get(key).await.expect("get").into() })
    }

    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.manager
                .set_with_strategy(
                    key,
                    self.value.clone(),
                    multi_tier_cache::CacheStrategy::Custom(TTL),
                )
                .await
                .expect("set");
        })
    }

    fn drop_from_first_tier<'a>(&'a self, key: &'a str) -> Option<BoxFuture<'a, ()>> {
        use multi_tier_cache::CacheBackend as _;
        Some(Box::pin(async move {
            self.l1.remove(key).await.expect("remove from L1");
        }))
    }

    fn get_or_fetch<'a>(
        &'a self,
        key: &'a str,
        fetches: Arc<AtomicU64>,
    ) -> Option<BoxFuture<'a, ()>> {
        let value = self.value.clone();
        Some(Box::pin(async move {
            self.manager
                .get_or_compute_with(
                    key,
                    multi_tier_cache::CacheStrategy::Custom(TTL),
                    move || async move {
                        tokio::time::sleep(STAMPEDE_FETCH).await;
                        fetches.fetch_add(1, Ordering::Relaxed);
                        Ok(value)
                    },
                )
                .await
                .expect("get_or_compute_with");
        }))
    }

    fn first_tier_hits(&self) -> Option<u64> {
        Some(self.manager.get_stats().l1_hits)
    }
}

// ---------------------------------------------------------------------------------------
// tower-http-cache

type ThcBackend = tower_http_cache::backend::multi_tier::MultiTierBackend<
    tower_http_cache::backend::memory::InMemoryBackend,
    tower_http_cache::backend::redis::RedisBackend,
>;

struct TowerHttpCache {
    backend: ThcBackend,
    entry: tower_http_cache::backend::CacheEntry,
}

impl TowerHttpCache {
    async fn connect(redis_url: &str, first_tier_entries: usize) -> Self {
        use tower_http_cache::backend::memory::InMemoryBackend;
        use tower_http_cache::backend::multi_tier::MultiTierBuilder;
        use tower_http_cache::backend::redis::RedisBackend;
        let client = redis::Client::open(redis_url).expect("redis url");
        let connection = client
            .get_connection_manager()
            .await
            .expect("tower-http-cache connection");
        let backend = MultiTierBuilder::new()
            .l1(InMemoryBackend::new(first_tier_entries as u64))
            .l2(RedisBackend::new(connection).with_namespace("bench-thc"))
            // Promoted on the first L2 hit (in a spawned task, as it always does).
            .promotion_threshold(1)
            .write_through(true)
            .build();
        let (cached, _) = response();
        let entry = tower_http_cache::backend::CacheEntry::new(
            http::StatusCode::OK,
            http::Version::HTTP_11,
            headers()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
                .collect(),
            cached.body,
        );
        Self { backend, entry }
    }
}

impl Contender for TowerHttpCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        use tower_http_cache::backend::CacheBackend as _;
        Box::pin(async move { self.backend.get(key).await.expect("get").into() })
    }

    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        use tower_http_cache::backend::CacheBackend as _;
        Box::pin(async move {
            self.backend
                .set(key.to_owned(), self.entry.clone(), TTL, Duration::ZERO)
                .await
                .expect("set");
        })
    }

    fn drop_from_first_tier<'a>(&'a self, key: &'a str) -> Option<BoxFuture<'a, ()>> {
        use tower_http_cache::backend::CacheBackend as _;
        Some(Box::pin(async move {
            self.backend
                .l1()
                .invalidate(key)
                .await
                .expect("invalidate L1");
        }))
    }

    fn get_or_fetch<'a>(&'a self, _: &'a str, _: Arc<AtomicU64>) -> Option<BoxFuture<'a, ()>> {
        // Its coalescing lives in the tower layer, not in the backend.
        None
    }

    fn first_tier_hits(&self) -> Option<u64> {
        // Its TierStats are not counted (0.6.1).
        None
    }
}

// ---------------------------------------------------------------------------------------
// foyer

struct Foyer {
    cache: foyer::HybridCache<String, Bytes>,
    value: Bytes,
    memory_hits: AtomicU64,
}

impl Foyer {
    async fn open(dir: &Path, first_tier_entries: usize) -> Self {
        use foyer::{
            BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCacheBuilder,
            HybridCachePolicy, PsyncIoEngineConfig, RecoverMode,
        };
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(1 << 30)
            .build()
            .expect("foyer device");
        let value = raw_value();
        let cache = HybridCacheBuilder::<String, Bytes>::new()
            .with_name("bench-foyer")
            // Every insert is written to disk, as ours writes every tier (its default
            // writes an entry only when memory evicts it).
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(false)
            .memory(first_tier_entries * (key(0).len() + value.len()))
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage()
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(
                BlockEngineConfig::new(device)
                    .with_block_size(16 * 1024 * 1024)
                    .with_buffer_pool_size(64 * 1024 * 1024)
                    .with_submit_queue_size_threshold(128 * 1024 * 1024),
            )
            .with_recover_mode(RecoverMode::None)
            .build()
            .await
            .expect("foyer");
        Self {
            cache,
            value,
            memory_hits: AtomicU64::new(0),
        }
    }
}

impl Contender for Foyer {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            match self.cache.get(key).await.expect("get") {
                Some(entry) => {
                    if entry.source() == foyer::Source::Memory {
                        self.memory_hits.fetch_add(1, Ordering::Relaxed);
                    }
                    Lookup::Hit
                }
                None => Lookup::Miss,
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            drop(self.cache.insert(key.to_owned(), self.value.clone()));
        })
    }

    fn drop_from_first_tier<'a>(&'a self, key: &'a str) -> Option<BoxFuture<'a, ()>> {
        Some(Box::pin(async move {
            self.cache.memory().remove(key);
        }))
    }

    fn get_or_fetch<'a>(
        &'a self,
        key: &'a str,
        fetches: Arc<AtomicU64>,
    ) -> Option<BoxFuture<'a, ()>> {
        let value = self.value.clone();
        Some(Box::pin(async move {
            self.cache
                .get_or_fetch(key, move || async move {
                    tokio::time::sleep(STAMPEDE_FETCH).await;
                    fetches.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(value)
                })
                .await
                .expect("get_or_fetch");
        }))
    }

    fn first_tier_hits(&self) -> Option<u64> {
        Some(self.memory_hits.load(Ordering::Relaxed))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.cache.close().await.expect("close foyer");
        })
    }
}

// ---------------------------------------------------------------------------------------
// http-cache's managers (one tier each)

struct HttpCacheManager<M> {
    manager: M,
    /// Its one tier is a disk: every read is a disk read, as after a first-tier drop.
    disk_only: bool,
    response: http_cache::HttpResponse,
    policy: CachePolicy,
    hits: AtomicU64,
}

impl<M: http_cache::CacheManager> HttpCacheManager<M> {
    fn new(manager: M, disk_only: bool) -> Self {
        let (_, policy) = response();
        Self {
            manager,
            disk_only,
            response: http_cache_response(),
            policy,
            hits: AtomicU64::new(0),
        }
    }
}

impl<M: http_cache::CacheManager> Contender for HttpCacheManager<M> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            match self.manager.get(key).await.expect("get") {
                Some(_) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Lookup::Hit
                }
                None => Lookup::Miss,
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.manager
                .put(key.to_owned(), self.response.clone(), self.policy.clone())
                .await
                .expect("put");
        })
    }

    fn drop_from_first_tier<'a>(&'a self, _: &'a str) -> Option<BoxFuture<'a, ()>> {
        self.disk_only
            .then(|| -> BoxFuture<'a, ()> { Box::pin(async {}) })
    }

    fn get_or_fetch<'a>(&'a self, _: &'a str, _: Arc<AtomicU64>) -> Option<BoxFuture<'a, ()>> {
        None
    }

    fn first_tier_hits(&self) -> Option<u64> {
        Some(self.hits.load(Ordering::Relaxed))
    }
}

// ---------------------------------------------------------------------------------------
// The contenders of each family, built fresh for every workload run

fn raw_value() -> Bytes {
    let body = response().0.body;
    assert_eq!(body.len(), BODY_LEN);
    body
}

fn key(n: usize) -> String {
    format!("GET:https://bench.example/item/{n:05}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// A memory first tier over Redis.
    Redis,
    /// A memory first tier over a disk store.
    Disk,
}

const REDIS_CONTENDERS: [&str; 5] = [
    "ours (memory over cache-redis)",
    "ours, equal bytes",
    "multi-tier-cache",
    "tower-http-cache MultiTierBackend",
    "http-cache MokaManager (memory only)",
];

const DISK_CONTENDERS: [&str; 4] = [
    "ours (memory over cache-cacache)",
    "ours, equal bytes",
    "foyer HybridCache",
    "http-cache CACacheManager (disk only)",
];

/// A contender and the directory it keeps its files in while it lives.
struct Built {
    contender: Box<dyn Contender>,
    _dir: tempfile::TempDir,
}

async fn build(family: Family, name: &str, server: &RedisServer, first_tier: usize) -> Built {
    let redis_url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let contender: Box<dyn Contender> = match (family, name) {
        (Family::Redis, name) if name.starts_with("ours") => {
            let redis = RedisCache::connect(RedisConfig::new(&redis_url).with_namespace("bench"))
                .await
                .expect("cache-redis");
            Box::new(Ours::over(Arc::new(redis), first_tier, name.contains("equal")).await)
        }
        (Family::Redis, "multi-tier-cache") => {
            Box::new(MultiTierCache::connect(&redis_url, first_tier).await)
        }
        (Family::Redis, "tower-http-cache MultiTierBackend") => {
            Box::new(TowerHttpCache::connect(&redis_url, first_tier).await)
        }
        (Family::Redis, _) => Box::new(HttpCacheManager::new(
            http_cache::MokaManager::new(moka::future::Cache::new(first_tier as u64)),
            false,
        )),
        (Family::Disk, name) if name.starts_with("ours") => {
            let disk =
                CacacheCache::open(CacacheConfig::new(dir.path()).with_capacity_bytes(4 << 30))
                    .await
                    .expect("cache-cacache");
            Box::new(Ours::over(Arc::new(disk), first_tier, name.contains("equal")).await)
        }
        (Family::Disk, "foyer HybridCache") => Box::new(Foyer::open(dir.path(), first_tier).await),
        (Family::Disk, _) => Box::new(HttpCacheManager::new(
            http_cache::CACacheManager::new(dir.path().to_path_buf(), true),
            true,
        )),
    };
    Built {
        contender,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------
// Measurement

/// What one contender did in one workload run.
#[derive(Debug, Clone, Default)]
struct Outcome {
    ops_per_second: f64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    /// Reads done (for the first tier's share).
    reads: Option<u64>,
    /// Reads answered by the first tier, over all reads.
    first_tier_ratio: Option<f64>,
    /// Misses (or origin fetches for the stampede).
    misses: u64,
    peak_rss_growth_kib: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Resets the peak resident set to the current one (Linux 4.0 and later) and returns
/// the current one.
fn reset_peak_rss() -> u64 {
    // Not available everywhere: then the growth reads from the process's start.
    let _ = std::fs::write("/proc/self/clear_refs", b"5");
    proc_status_kib("VmRSS:")
}

/// A seeded xorshift generator: the same sequence for every contender.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(1.0) over `n` ranks: the cumulative distribution, for sampling by search.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|rank| 1.0 / rank as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut sum = 0.0;
    weights
        .iter()
        .map(|weight| {
            sum += weight / total;
            sum
        })
        .collect()
}

fn zipf_sample(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = rng.unit();
    cdf.partition_point(|&p| p < u).min(cdf.len() - 1)
}

/// Stores keys `0..count` with 64 tasks.
async fn fill(contender: &Arc<dyn Contender>, count: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (contender, next) = (Arc::clone(contender), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if n >= count {
                        break;
                    }
                    contender.set(&key(n)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("fill task");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    FirstTierHit,
    LowerTierHit,
    Set,
    Set64,
    Zipf,
    Stampede,
}

impl Workload {
    fn title(self, family: Family) -> &'static str {
        match (self, family) {
            (Self::FirstTierHit, _) => "L1 hit, 1 task (memory over Redis)",
            (Self::LowerTierHit, Family::Redis) => "L2 (Redis) hit + promotion, 1 task",
            (Self::LowerTierHit, Family::Disk) => "disk hit + promotion, 1 task (memory over disk)",
            (Self::Set, _) => "set, 1 task (memory over Redis)",
            (Self::Set64, _) => "set, 64 tasks (memory over Redis)",
            (Self::Zipf, Family::Redis) => {
                "Zipf(1.0) over 20,000 keys, L1 2,000 entries, 90% get / 10% set, 64 tasks (memory over Redis)"
            }
            (Self::Zipf, Family::Disk) => {
                "Zipf(1.0) over 20,000 keys, L1 2,000 entries, 90% get / 10% set, 64 tasks (memory over disk)"
            }
            (Self::Stampede, Family::Redis) => {
                "cold-key stampede: 1,000 concurrent misses, 5 ms fetch (memory over Redis)"
            }
            (Self::Stampede, Family::Disk) => {
                "cold-key stampede: 1,000 concurrent misses, 5 ms fetch (memory over disk)"
            }
        }
    }
}

struct Settings {
    rounds: usize,
    op_seconds: f64,
    zipf_seconds: f64,
    /// Only the workloads whose title starts with this (`--only`), and only the contenders
    /// whose name contains `contenders` (`--contenders`).
    only: Option<String>,
    contenders: Option<String>,
}

/// Runs one workload on one freshly built contender; `None` when the contender has no
/// way to take part.
async fn run(
    workload: Workload,
    family: Family,
    name: &str,
    server: &RedisServer,
    settings: &Settings,
) -> Option<Outcome> {
    flush(server).await;
    let first_tier = if workload == Workload::Zipf {
        ZIPF_FIRST_TIER_ENTRIES
    } else {
        // Everything the workload touches fits in the first tier.
        2 * HOT_KEYS
    };
    let rss_before = reset_peak_rss();
    let built = build(family, name, server, first_tier).await;
    let contender: Arc<dyn Contender> = Arc::from(built.contender);
    let op_time = Duration::from_secs_f64(settings.op_seconds);
    let outcome = match workload {
        Workload::FirstTierHit => {
            fill(&contender, HOT_KEYS).await;
            for n in 0..HOT_KEYS {
                assert_eq!(contender.get(&key(n)).await, Lookup::Hit, "{name}: warm-up");
            }
            let hits_before = contender.first_tier_hits();
            let mut outcome = one_task(op_time, |n| {
                let contender = Arc::clone(&contender);
                async move {
                    let key = key(n % HOT_KEYS);
                    let started = Instant::now();
                    let lookup = contender.get(&key).await;
                    (started.elapsed(), lookup)
                }
            })
            .await;
            outcome.first_tier_ratio = ratio(hits_before, contender.first_tier_hits(), &outcome);
            outcome
        }
        Workload::LowerTierHit => {
            contender.drop_from_first_tier(&key(0))?.await;
            fill(&contender, HOT_KEYS).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let hits_before = contender.first_tier_hits();
            let mut outcome = one_task(op_time, |n| {
                let contender = Arc::clone(&contender);
                async move {
                    let key = key(n % HOT_KEYS);
                    if let Some(dropped) = contender.drop_from_first_tier(&key) {
                        dropped.await;
                    }
                    let started = Instant::now();
                    let lookup = contender.get(&key).await;
                    (started.elapsed(), lookup)
                }
            })
            .await;
            outcome.first_tier_ratio = ratio(hits_before, contender.first_tier_hits(), &outcome);
            outcome
        }
        Workload::Set => Outcome {
            // Writes only: no read for a first tier to answer.
            reads: None,
            ..one_task(op_time, |n| {
                let contender = Arc::clone(&contender);
                async move {
                    let key = key(n % HOT_KEYS);
                    let started = Instant::now();
                    contender.set(&key).await;
                    (started.elapsed(), Lookup::Hit)
                }
            })
            .await
        },
        Workload::Set64 => sets_64(&contender, op_time).await,
        Workload::Zipf => {
            contender.drop_from_first_tier(&key(0))?.await;
            fill(&contender, ZIPF_KEYS).await;
            let hits_before = contender.first_tier_hits();
            let mut outcome =
                zipf(&contender, Duration::from_secs_f64(settings.zipf_seconds)).await;
            outcome.first_tier_ratio = ratio(hits_before, contender.first_tier_hits(), &outcome);
            outcome
        }
        Workload::Stampede => {
            let fetches = Arc::new(AtomicU64::new(0));
            drop(contender.get_or_fetch("probe", Arc::clone(&fetches))?);
            let started = Instant::now();
            let calls: Vec<_> = (0..STAMPEDE_WAITERS)
                .map(|_| {
                    let (contender, fetches) = (Arc::clone(&contender), Arc::clone(&fetches));
                    tokio::spawn(async move {
                        let started = Instant::now();
                        contender
                            .get_or_fetch("stampede-key", fetches)
                            .expect("checked above")
                            .await;
                        started.elapsed()
                    })
                })
                .collect();
            let mut latencies = histogram();
            for call in calls {
                latencies.saturating_record(call.await.expect("stampede task").as_nanos() as u64);
            }
            let elapsed = started.elapsed();
            Outcome {
                ops_per_second: STAMPEDE_WAITERS as f64 / elapsed.as_secs_f64(),
                p50_ns: latencies.value_at_quantile(0.50),
                p99_ns: latencies.value_at_quantile(0.99),
                p999_ns: latencies.value_at_quantile(0.999),
                reads: None,
                first_tier_ratio: None,
                misses: fetches.load(Ordering::Relaxed),
                peak_rss_growth_kib: 0,
            }
        }
    };
    let peak = proc_status_kib("VmHWM:");
    contender.close().await;
    drop(contender);
    Some(Outcome {
        peak_rss_growth_kib: peak.saturating_sub(rss_before),
        ..outcome
    })
}

fn ratio(before: Option<u64>, after: Option<u64>, outcome: &Outcome) -> Option<f64> {
    let reads = outcome.reads?;
    let hits = after?.checked_sub(before?)?;
    (reads > 0).then(|| hits as f64 / reads as f64)
}

/// Runs `operation(n)` for n = 0, 1, ... on this task for `duration`; each returns its
/// own latency and outcome.
async fn one_task<F, Fut>(duration: Duration, mut operation: F) -> Outcome
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (Duration, Lookup)>,
{
    let mut latencies = histogram();
    let (mut misses, mut n) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < duration {
        let (latency, lookup) = operation(n).await;
        latencies.saturating_record(latency.as_nanos() as u64);
        misses += u64::from(lookup == Lookup::Miss);
        n += 1;
    }
    let elapsed = started.elapsed();
    Outcome {
        ops_per_second: n as f64 / elapsed.as_secs_f64(),
        p50_ns: latencies.value_at_quantile(0.50),
        p99_ns: latencies.value_at_quantile(0.99),
        p999_ns: latencies.value_at_quantile(0.999),
        reads: Some(n as u64),
        misses,
        ..Outcome::default()
    }
}

async fn sets_64(contender: &Arc<dyn Contender>, duration: Duration) -> Outcome {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let contender = Arc::clone(contender);
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut n = task;
                let mut done = 0u64;
                while started.elapsed() < duration {
                    let key = key(n % HOT_KEYS);
                    let begun = Instant::now();
                    contender.set(&key).await;
                    latencies.saturating_record(begun.elapsed().as_nanos() as u64);
                    n += TASKS;
                    done += 1;
                }
                (latencies, done)
            })
        })
        .collect();
    let mut latencies = histogram();
    let mut done = 0;
    for task in tasks {
        let (task_latencies, task_done) = task.await.expect("set task");
        latencies.add(task_latencies).expect("same bounds");
        done += task_done;
    }
    let elapsed = started.elapsed();
    Outcome {
        ops_per_second: done as f64 / elapsed.as_secs_f64(),
        p50_ns: latencies.value_at_quantile(0.50),
        p99_ns: latencies.value_at_quantile(0.99),
        p999_ns: latencies.value_at_quantile(0.999),
        ..Outcome::default()
    }
}

async fn zipf(contender: &Arc<dyn Contender>, duration: Duration) -> Outcome {
    let cdf = Arc::new(zipf_cdf(ZIPF_KEYS));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (contender, cdf) = (Arc::clone(contender), Arc::clone(&cdf));
            tokio::spawn(async move {
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0x2545_f491));
                let mut latencies = histogram();
                let (mut done, mut reads, mut misses) = (0u64, 0u64, 0u64);
                while started.elapsed() < duration {
                    let key = key(zipf_sample(&cdf, &mut rng));
                    let write = rng.unit() < 0.1;
                    let begun = Instant::now();
                    if write {
                        contender.set(&key).await;
                    } else {
                        reads += 1;
                        if contender.get(&key).await == Lookup::Miss {
                            // The origin is asked (no delay here) and its answer stored.
                            misses += 1;
                            contender.set(&key).await;
                        }
                    }
                    latencies.saturating_record(begun.elapsed().as_nanos() as u64);
                    done += 1;
                }
                (latencies, done, reads, misses)
            })
        })
        .collect();
    let mut latencies = histogram();
    let (mut done, mut reads, mut misses) = (0, 0, 0);
    for task in tasks {
        let (task_latencies, task_done, task_reads, task_misses) = task.await.expect("zipf task");
        latencies.add(task_latencies).expect("same bounds");
        done += task_done;
        reads += task_reads;
        misses += task_misses;
    }
    let elapsed = started.elapsed();
    Outcome {
        ops_per_second: done as f64 / elapsed.as_secs_f64(),
        p50_ns: latencies.value_at_quantile(0.50),
        p99_ns: latencies.value_at_quantile(0.99),
        p999_ns: latencies.value_at_quantile(0.999),
        reads: Some(reads),
        misses,
        ..Outcome::default()
    }
}

/// Empties the bench's own server between contenders (it was started by this bench).
async fn flush(server: &RedisServer) {
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await
        .expect("FLUSHALL");
}

// ---------------------------------------------------------------------------------------
// The plan and the table

fn parse_settings(args: &[String]) -> Settings {
    let mut settings = Settings {
        rounds: 3,
        op_seconds: 2.0,
        zipf_seconds: 10.0,
        only: None,
        contenders: None,
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let value = |words: &mut std::slice::Iter<'_, String>| -> f64 {
            words
                .next()
                .and_then(|value| value.parse().ok())
                .filter(|value: &f64| *value > 0.0)
                .unwrap_or_else(|| panic!("{word} takes a positive number"))
        };
        match word.as_str() {
            "--rounds" => settings.rounds = value(&mut words) as usize,
            "--op-seconds" => settings.op_seconds = value(&mut words),
            "--zipf-seconds" => settings.zipf_seconds = value(&mut words),
            "--only" => settings.only = words.next().cloned(),
            "--contenders" => settings.contenders = words.next().cloned(),
            _ => {}
        }
    }
    settings
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench -p cache-bench` runs every bench binary with the filter it was given:
    // this one runs only when asked for by name (it takes minutes).
    if !args.iter().any(|arg| arg == "peers") {
        eprintln!("peers: not selected (run `cargo xtask bench peers`)");
        return;
    }
    let settings = parse_settings(&args);
    let server = RedisServer::start().expect("start redis-server");
    // The runtime `#[tokio::main]` gives an application: one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut plan: Vec<(Workload, Family)> = vec![
        (Workload::FirstTierHit, Family::Redis),
        (Workload::LowerTierHit, Family::Redis),
        (Workload::Set, Family::Redis),
        (Workload::Set64, Family::Redis),
        (Workload::Zipf, Family::Redis),
        (Workload::LowerTierHit, Family::Disk),
        (Workload::Zipf, Family::Disk),
        (Workload::Stampede, Family::Redis),
        (Workload::Stampede, Family::Disk),
    ];
    if let Some(only) = &settings.only {
        plan.retain(|(workload, family)| workload.title(*family).starts_with(only.as_str()));
    }
    let mut results: BTreeMap<(usize, &'static str), Vec<Outcome>> = BTreeMap::new();
    for round in 0..settings.rounds {
        for (index, &(workload, family)) in plan.iter().enumerate() {
            let names: &[&'static str] = match family {
                Family::Redis => &REDIS_CONTENDERS,
                Family::Disk => &DISK_CONTENDERS,
            };
            let mut order = names.to_vec();
            if let Some(contenders) = &settings.contenders {
                order.retain(|name| name.contains(contenders.as_str()));
            }
            if round % 2 == 1 {
                order.reverse();
            }
            for name in order {
                let outcome = runtime.block_on(run(workload, family, name, &server, &settings));
                if let Some(outcome) = outcome {
                    eprintln!(
                        "peers: round {} {} / {name}: {:.0} ops/s, p99 {}",
                        round + 1,
                        workload.title(family),
                        outcome.ops_per_second,
                        time(outcome.p99_ns as f64)
                    );
                    results.entry((index, name)).or_default().push(outcome);
                }
            }
        }
    }
    println!(
        "\n{} rounds (contenders in reverse order every second round); medians over rounds.",
        settings.rounds
    );
    for (index, &(workload, family)) in plan.iter().enumerate() {
        println!("\n**{}**\n", workload.title(family));
        println!(
            "| contender | ops/s | p50 | p99 | p99.9 | first-tier hits | misses / fetches | peak RSS growth | ops/s relative to ours |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let names: &[&'static str] = match family {
            Family::Redis => &REDIS_CONTENDERS,
            Family::Disk => &DISK_CONTENDERS,
        };
        let ours = results
            .get(&(index, names[0]))
            .map(|outcomes| median(outcomes.iter().map(|o| o.ops_per_second).collect()));
        for name in names {
            let Some(outcomes) = results.get(&(index, *name)) else {
                continue;
            };
            let pick = |field: fn(&Outcome) -> f64| median(outcomes.iter().map(field).collect());
            let ops = pick(|o| o.ops_per_second);
            let ratios: Vec<f64> = outcomes.iter().filter_map(|o| o.first_tier_ratio).collect();
            let first_tier = if outcomes.iter().all(|o| o.reads.is_none()) {
                // A workload without reads.
                "-".to_owned()
            } else if ratios.len() == outcomes.len() {
                format!("{:.1} %", 100.0 * median(ratios))
            } else {
                "not reported".to_owned()
            };
            println!(
                "| {name} | {ops:.0} | {} | {} | {} | {first_tier} | {:.0} | {:.1} MiB | {} |",
                time(pick(|o| o.p50_ns as f64)),
                time(pick(|o| o.p99_ns as f64)),
                time(pick(|o| o.p999_ns as f64)),
                pick(|o| o.misses as f64),
                pick(|o| o.peak_rss_growth_kib as f64) / 1024.0,
                ours.map_or_else(|| "-".to_owned(), |ours| format!("{:.2}", ops / ours)),
            );
        }
    }
}
