//! A writer killed with SIGKILL mid-write: after reopening, every entry that can be read
//! is byte-identical to what was written, none is torn, and the leftovers are swept.
//!
//! The test binary is its own writer: started with `CACHE_CACACHE_CRASH_WRITER=<dir>` it
//! writes forever instead of running tests.

use std::sync::Arc;
use std::time::Duration;

use cache_cacache::{CacacheCache, CacacheConfig, SweepReport};
use cache_core::testkit::crash::{
    files_below, kill_writer_mid_write, verify_after_crash, write_until_killed,
};
use libtest_mimic::{Arguments, Trial};

const WRITER_ENV: &str = "CACHE_CACACHE_CRASH_WRITER";

async fn open(dir: &std::path::Path) -> CacacheCache {
    CacacheCache::open(CacacheConfig::new(dir).with_capacity_bytes(16 * 1024 * 1024))
        .await
        .expect("open")
}

fn killed_writer_leaves_no_torn_entry() -> Result<(), libtest_mimic::Failed> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    for (round, delay_ms) in [(1, 150u64), (2, 420), (3, 777)] {
        let writing = || files_below(&dir.path().join("content-v2")) >= 8;
        kill_writer_mid_write(
            WRITER_ENV,
            dir.path(),
            writing,
            Duration::from_millis(delay_ms),
        )?;

        runtime.block_on(async {
            let cache = open(dir.path()).await;
            // Opening swept every leftover: a second sweep finds nothing.
            assert_eq!(
                cache.sweep().await.expect("sweep"),
                SweepReport::default(),
                "round {round}"
            );
            let readable = verify_after_crash(&cache).await;
            assert!(
                readable > 0,
                "round {round}: the writer ran {delay_ms} ms and nothing survived"
            );
        });
    }
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async { write_until_killed(Arc::new(open(dir.as_ref()).await)).await });
        return;
    }
    let trials = vec![Trial::test(
        "killed_writer_leaves_no_torn_entry",
        killed_writer_leaves_no_torn_entry,
    )];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
