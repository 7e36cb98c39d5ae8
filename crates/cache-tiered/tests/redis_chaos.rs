//! Two instances over one real Redis, with the Redis bus, while the test freezes the
//! server (SIGSTOP), kills it (SIGKILL, losing every key and the bus stream) and starts it
//! again. Writers and readers run throughout; afterwards the readings are checked:
//!
//! - an instance never serves a version older than a write it completed itself;
//! - it serves a version another instance has replaced only until the bus delivers the
//!   replacement (or the `Resync` after a lost stream): the longest such window is
//!   measured and printed, and must stay within the bus's reconnect bounds;
//! - once the writers stop and the bus settles, every instance serves the last completed
//!   write of every key (or nothing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::testkit::fixtures::{policy, response, unique_prefix};
use cache_core::{CacheManager, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_redis::testing::{RedisServer, redis_tests_skipped};
use cache_redis::{RedisCache, RedisConfig};
use cache_tiered::{Tier, TieredCache};

const KEYS: usize = 6;
/// How long, at most, an instance may serve a version another has replaced: the server is
/// frozen for 1 s (the bus delivers what waited once it thaws), and the command and
/// connect timeouts and the reconnect delay are a few hundred milliseconds. The load runs
/// for 6.5 s, so a bus that never delivered would break it.
const BUS_BOUND: Duration = Duration::from_secs(3);

fn config(url: &str, namespace: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_namespace(namespace)
        .with_command_timeout(Duration::from_millis(300))
        .with_connect_timeout(Duration::from_millis(300))
        .with_reconnect_max_delay(Duration::from_millis(100))
        .with_bus_ping_interval(Duration::from_millis(200))
}

/// A write that returned `Ok`: `version` of `key` (`None` body for a delete).
#[derive(Debug, Clone, Copy)]
struct Completed {
    key: usize,
    version: u64,
    instance: usize,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    key: usize,
    version: u64,
    instance: usize,
    started: Instant,
}

fn key_name(key: usize) -> String {
    format!("chaos/{key}")
}

fn version_of(body: &[u8]) -> u64 {
    std::str::from_utf8(body).unwrap().parse().unwrap()
}

async fn write(stack: &TieredCache, key: usize, version: u64, delete: bool) -> bool {
    let name = key_name(key);
    if delete {
        return stack.delete(&name).await.is_ok();
    }
    let stored = response(&format!("https://example.com/{name}"), version.to_string());
    let stored_policy = policy(&stored);
    stack
        .put(
            &name,
            stored,
            stored_policy,
            PutOptions::new().with_ttl(Duration::from_secs(600)),
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stay_coherent_while_redis_is_frozen_killed_and_restarted() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = RedisServer::start().unwrap();
    let namespace = unique_prefix("chaos").trim_end_matches(':').to_owned();
    let mut stacks = Vec::new();
    for _ in 0..2 {
        let redis = RedisCache::connect(config(&server.url(), &namespace))
            .await
            .unwrap();
        let stack = TieredCache::builder()
            .tier(Tier::new(Arc::new(
                MemoryCache::open(MemoryConfig::default()).unwrap(),
            )))
            .tier(Tier::new(Arc::new(redis.clone())))
            .with_bus(Arc::new(redis.bus()))
            .build()
            .await
            .unwrap();
        stacks.push(stack);
    }
    let stacks = Arc::new(stacks);
    let stop = Arc::new(AtomicBool::new(false));
    let completed: Arc<Mutex<Vec<Completed>>> = Arc::default();
    let readings: Arc<Mutex<Vec<Reading>>> = Arc::default();
    let next_version = Arc::new(AtomicU64::new(1));

    let mut tasks = Vec::new();
    // One writer per key, so each key's versions are ordered; it alternates instances.
    for key in 0..KEYS {
        let (stacks, stop, completed, next_version) = (
            stacks.clone(),
            stop.clone(),
            completed.clone(),
            next_version.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut round = key;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let instance = round % 2;
                let version = next_version.fetch_add(1, Ordering::Relaxed);
                let delete = round % 7 == 0;
                if write(&stacks[instance], key, version, delete).await {
                    completed.lock().unwrap().push(Completed {
                        key,
                        version,
                        instance,
                        at: Instant::now(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    for reader in 0..4 {
        let (stacks, stop, readings) = (stacks.clone(), stop.clone(), readings.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = reader;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let (key, instance) = (round % KEYS, (round / KEYS) % 2);
                let started = Instant::now();
                if let Ok(Some(entry)) = stacks[instance].get(&key_name(key)).await {
                    readings.lock().unwrap().push(Reading {
                        key,
                        version: version_of(&entry.response.body),
                        instance,
                        started,
                    });
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    // The faults, while the load runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.pause();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.resume();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.restart()).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let completed = completed.lock().unwrap().clone();
    let readings = readings.lock().unwrap().clone();
    assert!(
        completed.len() > 100,
        "the writers made {} writes",
        completed.len()
    );
    assert!(
        readings.len() > 100,
        "the readers saw {} entries",
        readings.len()
    );
    let mut longest_window = Duration::ZERO;
    for reading in &readings {
        let superseded = completed.iter().filter(|write| {
            write.key == reading.key
                && write.version > reading.version
                && write.at < reading.started
        });
        for write in superseded {
            assert_ne!(
                write.instance, reading.instance,
                "{reading:?} served a version older than {write:?}, which the same instance had completed"
            );
            longest_window = longest_window.max(reading.started - write.at);
        }
    }
    println!(
        "{} completed writes, {} readings; the longest an instance served a version another had replaced: {longest_window:?}; resyncs {} and {}",
        completed.len(),
        readings.len(),
        stacks[0].stats().resyncs,
        stacks[1].stats().resyncs
    );
    assert!(
        longest_window < BUS_BOUND,
        "an instance served a replaced version for {longest_window:?}"
    );
    // The restart lost the bus stream: each instance flushed its memory at least once.
    for stack in stacks.iter() {
        assert!(stack.stats().resyncs >= 1, "{:?}", stack.stats());
    }

    // Once the bus has settled, every instance serves the last completed write.
    let settle_deadline = Instant::now() + BUS_BOUND;
    'keys: for key in 0..KEYS {
        let last = completed
            .iter()
            .filter(|write| write.key == key)
            .map(|write| write.version)
            .max();
        loop {
            let mut coherent = true;
            for stack in stacks.iter() {
                if let Some(entry) = stack.get(&key_name(key)).await.unwrap() {
                    let served = version_of(&entry.response.body);
                    coherent &= last.is_none_or(|last| served >= last);
                }
            }
            if coherent {
                continue 'keys;
            }
            assert!(
                Instant::now() < settle_deadline,
                "key {key}: an instance still serves a version older than {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
