//! A writer killed with SIGKILL in the middle of streamed puts: after reopening, every
//! entry that can be read is byte-identical to what was written, and the open's sweep
//! removed every leftover (temporary files, unreferenced bodies).
//!
//! The test binary is its own writer: started with `CACHE_STREAMING_CRASH_WRITER=<dir>`
//! it writes forever instead of running tests.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::crash::{files_below, kill_writer_mid_write};
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{BoxError, CacheManager, PutOptions, StreamingCacheManager, body};
use cache_streaming::{StreamingCache, StreamingConfig, SweepReport};
use http::HeaderValue;
use libtest_mimic::{Arguments, Trial};

const WRITER_ENV: &str = "CACHE_STREAMING_CRASH_WRITER";
const KEYS: u64 = 24;

/// Ten distinct bodies (64 KiB to 1.2 MiB), so keys share bodies as well.
fn crash_body(sequence: u64) -> Vec<u8> {
    let shape = sequence % 10;
    let len = 64 * 1024 + shape as usize * 120 * 1024;
    (0..len)
        .map(|i| (i as u64).wrapping_mul(131).wrapping_add(shape * 7) as u8)
        .collect()
}

async fn open(dir: &Path) -> StreamingCache {
    StreamingCache::open(StreamingConfig::new(dir).with_capacity_bytes(64 * 1024 * 1024))
        .await
        .expect("open")
}

async fn write_until_killed(store: StreamingCache) {
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..4u64 {
        let store = store.clone();
        lanes.spawn(async move {
            let mut sequence = lane;
            loop {
                let mut cached = response("https://crash.example/big", Bytes::new());
                cached
                    .headers
                    .insert("x-sequence", HeaderValue::from(sequence));
                let policy = policy(&cached);
                let bytes = Bytes::from(crash_body(sequence));
                let chunks: Vec<Result<Bytes, BoxError>> = (0..bytes.len())
                    .step_by(32 * 1024)
                    .map(|start| Ok(bytes.slice(start..(start + 32 * 1024).min(bytes.len()))))
                    .collect();
                let (head, _) = cached.into_head_and_body();
                store
                    .put_stream(
                        &format!("crash-key-{}", sequence % KEYS),
                        head,
                        policy,
                        body::from_chunks(chunks),
                        PutOptions::new().with_ttl(Duration::from_secs(3600)),
                    )
                    .await
                    .expect("the crash writer's put");
                sequence += 4;
            }
        });
    }
    // The lanes write until the process is killed: one only ever ends by failing.
    if let Some(Err(error)) = lanes.join_next().await {
        panic!("a crash writer task failed: {error}");
    }
}

fn killed_writer_leaves_no_torn_entry() -> Result<(), libtest_mimic::Failed> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    for (round, delay_ms) in [(1, 150u64), (2, 420), (3, 777)] {
        let writing = || files_below(&dir.path().join("v1").join("entries")) >= 8;
        kill_writer_mid_write(
            WRITER_ENV,
            dir.path(),
            writing,
            Duration::from_millis(delay_ms),
        )?;

        runtime.block_on(async {
            let store = open(dir.path()).await;
            assert_eq!(
                store.sweep().await.expect("sweep"),
                SweepReport::default(),
                "round {round}: opening swept every leftover"
            );
            assert_eq!(
                files_below(&dir.path().join("v1").join("tmp")),
                0,
                "round {round}"
            );
            assert_eq!(
                files_below(&dir.path().join("v1").join("bodies")),
                store.body_count(),
                "round {round}: every body file is referenced"
            );
            let mut readable = 0;
            for slot in 0..KEYS {
                let key = format!("crash-key-{slot}");
                let Some(entry) = store.get_stream(&key).await.expect("get_stream") else {
                    continue;
                };
                let sequence: u64 = entry.head.headers["x-sequence"]
                    .to_str()
                    .expect("x-sequence")
                    .parse()
                    .expect("a number");
                assert_eq!(sequence % KEYS, slot, "{key} holds another key's entry");
                let bytes = body::collect(entry.body, usize::MAX)
                    .await
                    .unwrap_or_else(|error| {
                        panic!("round {round}: {key} does not read back: {error}")
                    });
                assert!(
                    bytes == crash_body(sequence),
                    "round {round}: {key} is torn"
                );
                readable += 1;
            }
            assert!(
                readable > 0,
                "round {round}: the writer ran {delay_ms} ms and nothing survived"
            );
            assert_eq!(
                store.stats().expect("stats").corrupt_entries,
                0,
                "round {round}"
            );
        });
    }
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async { write_until_killed(open(dir.as_ref()).await).await });
        return;
    }
    let trials = vec![Trial::test(
        "killed_writer_leaves_no_torn_entry",
        killed_writer_leaves_no_torn_entry,
    )];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
