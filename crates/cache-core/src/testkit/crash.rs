//! Crash-safety support: a writer to kill with SIGKILL and the check to run after the
//! backend is reopened. A backend's crash test starts its own test binary as the writer
//! (see the `cache-cacache` and `cache-rocksdb` crash tests).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use super::fixtures::{policy, response};
use crate::manager::CacheManager;
use crate::ttl::PutOptions;

/// How many distinct keys the writer cycles through (so it overwrites as well).
pub const CRASH_KEYS: u64 = 64;

/// The body the writer stores for write number `sequence`: 8 to 56 KiB of a pattern
/// that depends on the sequence.
pub fn crash_body(sequence: u64) -> Vec<u8> {
    let len = 8 * 1024 * (sequence % 7 + 1) as usize;
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(sequence) as u8)
        .collect()
}

/// The key of write number `sequence`.
pub fn crash_key(sequence: u64) -> String {
    format!("crash-key-{}", sequence % CRASH_KEYS)
}

/// Writes forever from four tasks (until the process is killed); panics on a failed put.
pub async fn write_until_killed(manager: Arc<dyn CacheManager>) {
    let mut lanes = Vec::new();
    for lane in 0..4u64 {
        let manager = Arc::clone(&manager);
        lanes.push(tokio::spawn(async move {
            let mut sequence = lane;
            while sequence < u64::MAX - 4 {
                let mut cached = response(
                    "https://crash.example/entry",
                    Bytes::from(crash_body(sequence)),
                );
                cached
                    .headers
                    .insert("x-sequence", HeaderValue::from(sequence));
                let options = PutOptions::new().with_ttl(Duration::from_secs(3600));
                manager
                    .put(
                        &crash_key(sequence),
                        cached.clone(),
                        policy(&cached),
                        options,
                    )
                    .await
                    .expect("the crash writer's put");
                sequence += 4;
            }
        }));
    }
    for lane in lanes {
        if let Err(error) = lane.await {
            panic!("a crash writer task failed: {error}");
        }
    }
}

/// Starts this test binary again as the writer (with `writer_env` set to `dir`), waits
/// until `writing` says it is writing, lets it run `delay` more, and kills it with
/// SIGKILL: no destructor, no flush, in the middle of writes.
pub fn kill_writer_mid_write(
    writer_env: &str,
    dir: &std::path::Path,
    writing: impl Fn() -> bool,
    delay: Duration,
) -> std::io::Result<()> {
    let mut writer = std::process::Command::new(std::env::current_exe()?)
        .env(writer_env, dir)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let started = std::time::Instant::now();
    while !writing() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix.
    writer.kill()?;
    writer.wait()?;
    Ok(())
}

/// Counts the files below `dir`, recursively (0 when it does not exist).
pub fn files_below(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| {
                if entry.path().is_dir() {
                    files_below(&entry.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// Reads every key the writer uses from the reopened backend: each readable entry must
/// be exactly what was written for its sequence number, on the key it belongs to.
/// Returns how many were readable.
pub async fn verify_after_crash(manager: &dyn CacheManager) -> u64 {
    let mut readable = 0;
    for slot in 0..CRASH_KEYS {
        let key = format!("crash-key-{slot}");
        let entry = manager
            .get(&key)
            .await
            .unwrap_or_else(|error| panic!("get of {key} after the crash failed: {error}"));
        if let Some(entry) = entry {
            let sequence: u64 = entry.response.headers["x-sequence"]
                .to_str()
                .expect("x-sequence")
                .parse()
                .expect("x-sequence is a number");
            assert_eq!(
                sequence % CRASH_KEYS,
                slot,
                "{key} holds another key's entry"
            );
            assert!(
                entry.response.body == crash_body(sequence),
                "{key}: entry {sequence} is torn"
            );
            readable += 1;
        }
    }
    readable
}
