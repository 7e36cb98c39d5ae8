//! A writer killed with SIGKILL mid-write: after reopening, every entry that can be read
//! is byte-identical to what was written, none is torn, and the leftovers are swept.
//!
//! The test binary is its own writer: started with `CACHE_CACACHE_CRASH_WRITER=<dir>` it
//! writes forever instead of running tests.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_cacache::{CacacheCache, CacacheConfig, SweepReport};
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, PutOptions};
use http::HeaderValue;
use libtest_mimic::{Arguments, Trial};

const WRITER_ENV: &str = "CACHE_CACACHE_CRASH_WRITER";
const KEYS: u64 = 64;

fn body_for(sequence: u64) -> Vec<u8> {
    let len = 8 * 1024 * (sequence % 7 + 1) as usize;
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(sequence) as u8)
        .collect()
}

fn key_for(sequence: u64) -> String {
    format!("crash-key-{}", sequence % KEYS)
}

fn run_writer(dir: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let cache =
            CacacheCache::open(CacacheConfig::new(dir).with_capacity_bytes(16 * 1024 * 1024))
                .await
                .expect("open");
        let cache = Arc::new(cache);
        // Four writers at once, so the kill lands in the middle of several writes.
        let mut tasks = Vec::new();
        for lane in 0..4u64 {
            let cache = Arc::clone(&cache);
            tasks.push(tokio::spawn(async move {
                let mut sequence = lane;
                while sequence != u64::MAX {
                    let mut cached = response(
                        "https://crash.example/entry",
                        Bytes::from(body_for(sequence)),
                    );
                    cached
                        .headers
                        .insert("x-sequence", HeaderValue::from(sequence));
                    let options = PutOptions::new().with_ttl(Duration::from_secs(3600));
                    cache
                        .put(&key_for(sequence), cached.clone(), policy(&cached), options)
                        .await
                        .expect("put");
                    sequence += 4;
                }
            }));
        }
        // The writers never finish: the parent kills this process.
        futures_never_end(tasks).await;
    });
}

async fn futures_never_end(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        if let Err(error) = task.await {
            panic!("a writer task failed: {error}");
        }
    }
}

fn content_files(dir: &std::path::Path) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|entry| {
                    if entry.path().is_dir() {
                        count(&entry.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    count(&dir.join("content-v2"))
}

fn killed_writer_leaves_no_torn_entry() -> Result<(), libtest_mimic::Failed> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut total_readable = 0;
    for (round, delay_ms) in [(1, 150u64), (2, 420), (3, 777)].into_iter() {
        let mut writer = Command::new(std::env::current_exe()?)
            .env(WRITER_ENV, dir.path())
            .stdout(Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while content_files(dir.path()) < 8 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, mid-write.
        writer.kill()?;
        writer.wait()?;

        let readable = runtime.block_on(async {
            let cache = CacacheCache::open(
                CacacheConfig::new(dir.path()).with_capacity_bytes(16 * 1024 * 1024),
            )
            .await
            .expect("reopen after the kill");
            // Opening swept every leftover: a second sweep finds nothing.
            assert_eq!(
                cache.sweep().await.expect("sweep"),
                SweepReport::default(),
                "round {round}"
            );
            let mut readable = 0;
            for slot in 0..KEYS {
                let key = format!("crash-key-{slot}");
                if let Some(entry) = cache
                    .get(&key)
                    .await
                    .expect("get never fails on a damaged entry")
                {
                    let sequence: u64 = entry.response.headers["x-sequence"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(
                        sequence % KEYS,
                        slot,
                        "round {round}: the entry belongs to its key"
                    );
                    assert!(
                        entry.response.body == body_for(sequence),
                        "round {round}: entry {sequence} is torn"
                    );
                    readable += 1;
                }
            }
            readable
        });
        assert!(
            readable > 0,
            "round {round}: the writer ran {delay_ms} ms and nothing survived"
        );
        total_readable += readable;
    }
    assert!(total_readable >= 3);
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        run_writer(&dir);
        return;
    }
    let arguments = Arguments::from_args();
    let trials = vec![Trial::test(
        "killed_writer_leaves_no_torn_entry",
        killed_writer_leaves_no_torn_entry,
    )];
    libtest_mimic::run(&arguments, trials).exit();
}
