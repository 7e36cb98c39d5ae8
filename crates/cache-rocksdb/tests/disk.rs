//! Persistence, expiry in compaction, corruption and the size bound of the RocksDB backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{assert_same_response, policy, random_bytes, response};
use cache_core::{CacheManager, CachedResponse, PutOptions};
use cache_rocksdb::{Compression, RocksDbCache, RocksDbConfig};

fn hour() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn entry(body: impl Into<Bytes>) -> CachedResponse {
    response("https://rocks.example/entry", body)
}

fn config(dir: &Path) -> RocksDbConfig {
    RocksDbConfig::new(dir)
        .with_write_buffer_bytes(256 * 1024)
        .with_compression(Compression::None)
}

fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            metadata.is_file().then(|| (entry.path(), metadata.len()))
        })
        .collect()
}

#[tokio::test]
async fn entries_survive_a_reopen_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let kept = entry(Bytes::from(vec![1u8; 20_000]));
    {
        let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
        cache
            .put("kept", kept.clone(), policy(&kept), hour())
            .await
            .unwrap();
        let short = PutOptions::new().with_ttl(Duration::from_millis(300));
        cache
            .put("short", kept.clone(), policy(&kept), short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
    let got = cache
        .get("kept")
        .await
        .unwrap()
        .expect("the entry survived the reopen");
    assert_same_response(&got.response, &kept, "reopened");
    assert!(cache.get("short").await.unwrap().is_none());
    assert_eq!(
        cache.entry_count().await.unwrap(),
        1,
        "the expired entry was dropped at open"
    );
}

#[tokio::test]
async fn compaction_drops_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
    let raw = cache.raw_access();
    let cached = entry(Bytes::from(vec![2u8; 4096]));
    for n in 0..20 {
        let options = PutOptions::new().with_ttl(Duration::from_millis(200));
        cache
            .put(
                &format!("short-{n}"),
                cached.clone(),
                policy(&cached),
                options,
            )
            .await
            .unwrap();
    }
    cache
        .put("long", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    raw.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        raw.read("short-0").unwrap().is_some(),
        "before compaction the expired value is still stored"
    );
    cache.compact().await.unwrap();
    for n in 0..20 {
        assert!(
            raw.read(&format!("short-{n}")).unwrap().is_none(),
            "short-{n} survived compaction"
        );
    }
    assert!(raw.read("long").unwrap().is_some());
    assert_eq!(
        cache.entry_count().await.unwrap(),
        1,
        "the compaction filter kept the count"
    );
}

#[tokio::test]
async fn damaged_table_files_become_misses_never_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Bytes> = (0..40).map(|_| random_bytes(16 * 1024)).collect();
    {
        let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
        for (n, body) in bodies.iter().enumerate() {
            let cached = entry(body.clone());
            cache
                .put(&format!("k{n:02}"), cached.clone(), policy(&cached), hour())
                .await
                .unwrap();
        }
        cache.raw_access().flush().unwrap();
    }
    // The biggest table file holds the entries: flip one byte a third of the way in.
    let (table, len) = files(dir.path())
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|extension| extension == "sst"))
        .max_by_key(|(_, len)| *len)
        .unwrap();
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[(len / 3) as usize] ^= 0x55;
    std::fs::write(&table, &bytes).unwrap();

    let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
    let mut misses = 0;
    for (n, body) in bodies.iter().enumerate() {
        let key = format!("k{n:02}");
        match cache
            .get(&key)
            .await
            .expect("a damaged entry is a miss, not an error")
        {
            Some(got) => assert!(got.response.body == body, "{key} served garbage"),
            None => misses += 1,
        }
    }
    assert_eq!(misses, 1, "one flipped byte damages one entry");
    assert_eq!(cache.stats().unwrap().corrupt_entries, 1);
    drop(cache);

    // A truncated table file: the database is repaired at open, what is lost is a miss.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let cache = RocksDbCache::open(config(dir.path()))
        .await
        .expect("a truncated table file is repaired");
    for (n, body) in bodies.iter().enumerate() {
        let key = format!("k{n:02}");
        if let Some(got) = cache.get(&key).await.expect("get after repair") {
            assert!(
                got.response.body == body,
                "{key} served garbage after repair"
            );
        }
    }
    let again = entry(Bytes::from_static(b"writable again"));
    cache
        .put("k00", again.clone(), policy(&again), hour())
        .await
        .unwrap();
    assert_same_response(
        &cache.get("k00").await.unwrap().unwrap().response,
        &again,
        "after repair",
    );
}

#[tokio::test]
async fn the_size_bound_holds_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 2 * 1024 * 1024;
    let write_buffer = 256 * 1024;
    let cache = RocksDbCache::open(config(dir.path()).with_capacity_bytes(capacity))
        .await
        .unwrap();
    let body_len = 32 * 1024;
    let writes = 3 * capacity as usize / body_len;
    for n in 0..writes {
        let cached = entry(random_bytes(body_len));
        cache
            .put(&format!("k{n:03}"), cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
    }
    assert!(cache.size_bytes().await.unwrap() <= capacity);
    cache.compact().await.unwrap();
    let on_disk: u64 = files(dir.path()).iter().map(|(_, len)| len).sum();
    let margin = 2 * write_buffer + 1024 * 1024;
    assert!(
        on_disk <= capacity + margin,
        "{on_disk} bytes on disk for a {capacity}-byte bound"
    );
    let kept = cache.entry_count().await.unwrap() as usize;
    for n in (writes - kept)..writes {
        assert!(
            cache.get(&format!("k{n:03}")).await.unwrap().is_some(),
            "k{n:03} is among the newest"
        );
    }
    assert!(cache.get("k000").await.unwrap().is_none());
    assert_eq!(cache.stats().unwrap().evictions as usize, writes - kept);
}

#[tokio::test]
async fn the_accounting_stays_exact_across_a_reopen_overwrites_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = [("a", 10_000), ("b", 20_000), ("c", 30_000)];
    {
        let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
        for (key, len) in bodies {
            let cached = entry(random_bytes(len));
            cache
                .put(key, cached.clone(), policy(&cached), hour())
                .await
                .unwrap();
        }
    }
    // After the reopen the backend knows each key's stored size from the scan at open
    // alone: overwriting and deleting must subtract exactly what was stored.
    let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
    let smaller = entry(random_bytes(5_000));
    cache
        .put("a", smaller.clone(), policy(&smaller), hour())
        .await
        .unwrap();
    cache.delete("b").await.unwrap();
    cache.delete("never-written").await.unwrap();
    let (entries, bytes) = (
        cache.entry_count().await.unwrap(),
        cache.size_bytes().await.unwrap(),
    );
    assert_eq!(entries, 2);
    // A recount from disk finds exactly what the running accounting said.
    cache.compact().await.unwrap();
    assert_eq!(cache.entry_count().await.unwrap(), entries);
    assert_eq!(cache.size_bytes().await.unwrap(), bytes);
    let got = cache.get("a").await.unwrap().expect("the overwrite");
    assert_same_response(&got.response, &smaller, "overwritten after the reopen");
    assert!(cache.get("b").await.unwrap().is_none());
    assert_eq!(cache.stats().unwrap().deletes, 2);
}
