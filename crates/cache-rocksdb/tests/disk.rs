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

/// Writes 50 entries, deletes the keys numbered in `deleted` after their entries reached
/// a table file, flushes, flips one byte in each of the two largest table files at
/// `position(len)`, and reopens.
async fn damage_two_tables(
    dir: &Path,
    bodies: &[Bytes],
    deleted: &[usize],
    position: impl Fn(u64) -> u64,
) -> RocksDbCache {
    let config = || {
        RocksDbConfig::new(dir)
            .with_write_buffer_bytes(256 * 1024)
            .with_capacity_bytes(DAMAGE_CAPACITY)
    };
    {
        let cache = RocksDbCache::open(config()).await.unwrap();
        for (n, body) in bodies.iter().enumerate() {
            let cached = entry(body.clone());
            cache
                .put(&format!("k{n:02}"), cached.clone(), policy(&cached), hour())
                .await
                .unwrap();
        }
        if !deleted.is_empty() {
            // The entries go to a table file first, so only the deletions' tombstones
            // keep them from being read.
            cache.raw_access().flush().unwrap();
            for n in deleted {
                cache.delete(&format!("k{n:02}")).await.unwrap();
            }
        }
        cache.raw_access().flush().unwrap();
    }
    let mut tables: Vec<(PathBuf, u64)> = files(dir)
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|extension| extension == "sst"))
        .collect();
    tables.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    assert!(
        tables.len() >= 2,
        "the entries span two table files at least"
    );
    for (table, len) in &tables[..2] {
        let mut bytes = std::fs::read(table).unwrap();
        bytes[position(*len) as usize] ^= 0x55;
        std::fs::write(table, &bytes).unwrap();
    }
    RocksDbCache::open(config()).await.expect("reopen")
}

const DAMAGE_CAPACITY: u64 = 4 * 1024 * 1024;

/// Reads every entry back (none may be garbage) and returns how many were lost; checks
/// that nothing is left on disk beyond the cap and that the cache takes writes again.
async fn survey_after_damage(dir: &Path, cache: &RocksDbCache, bodies: &[Bytes]) -> usize {
    let mut misses = 0;
    for (n, body) in bodies.iter().enumerate() {
        let key = format!("k{n:02}");
        match cache.get(&key).await.expect("a damaged entry is a miss") {
            Some(got) => assert!(got.response.body == body, "{key} served garbage"),
            None => misses += 1,
        }
    }
    assert!(!dir.join("lost").exists(), "a repair archive was left");
    assert!(
        !dir.join("salvage").exists(),
        "a salvage directory was left"
    );
    let on_disk: u64 = cache_kit::files::files_under(dir)
        .iter()
        .map(|file| std::fs::metadata(file).map_or(0, |metadata| metadata.len()))
        .sum();
    assert!(
        on_disk <= DAMAGE_CAPACITY + 2 * 1024 * 1024,
        "{on_disk} bytes on disk for a cap of {DAMAGE_CAPACITY}"
    );
    let again = entry(Bytes::from_static(b"writable again"));
    cache
        .put("k00", again.clone(), policy(&again), hour())
        .await
        .unwrap();
    assert_same_response(
        &cache.get("k00").await.unwrap().unwrap().response,
        &again,
        "after the damage",
    );
    misses
}

/// Compressed blocks damaged in two tables: the scan at open cannot read past them. The
/// database is salvaged: only the entries of the damaged blocks are lost, no garbage is
/// served, no archive is left, the cache takes writes. (A RocksDB repair dropped both
/// tables whole and left them archived in `lost/`.)
#[tokio::test]
async fn damaged_blocks_in_two_tables_are_salvaged_without_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    // Compressible bodies, so the blocks are LZ4-compressed and a flipped byte breaks
    // the decompression, not just the bytes of one value.
    let bodies: Vec<Bytes> = (0..50)
        .map(|n| Bytes::from(format!("entry {n:02} of the damage test; ").repeat(500)))
        .collect();
    // A twentieth of the way in: a block whose damage stops the scan at open.
    let cache = damage_two_tables(dir.path(), &bodies, &[], |len| len / 20).await;
    let misses = survey_after_damage(dir.path(), &cache, &bodies).await;
    // Every body is larger than a block, so each flipped byte damages one entry's block:
    // at most those two entries are lost (one may survive a flip that decodes to the
    // same bytes), every other entry is copied.
    assert!(
        misses <= 2,
        "two flipped bytes lost {misses} of 50 entries, not only the damaged blocks"
    );
}

/// Entries deleted before the damage stay deleted after the salvage: their older versions
/// in the table files are not copied back.
#[tokio::test]
async fn a_salvage_brings_no_deleted_entry_back() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Bytes> = (0..50)
        .map(|n| Bytes::from(format!("entry {n:02} of the damage test; ").repeat(500)))
        .collect();
    let deleted = [3, 17, 31, 44];
    let cache = damage_two_tables(dir.path(), &bodies, &deleted, |len| len / 20).await;
    for n in deleted {
        let key = format!("k{n:02}");
        assert!(
            cache.get(&key).await.unwrap().is_none(),
            "{key} was deleted and came back"
        );
    }
    let misses = survey_after_damage(dir.path(), &cache, &bodies).await;
    assert!(
        misses <= deleted.len() + 2,
        "{misses} of 50 missing: more than the deleted ones and two damaged blocks"
    );
}

/// A damaged table index: RocksDB cannot read that table at all and drops it, but its
/// archive does not stay behind the size cap's back.
#[tokio::test]
async fn tables_dropped_by_a_repair_leave_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Bytes> = (0..50).map(|_| random_bytes(16 * 1024)).collect();
    // The last kilobyte holds the table's index, properties and footer.
    let cache = damage_two_tables(dir.path(), &bodies, &[], |len| len - 200).await;
    survey_after_damage(dir.path(), &cache, &bodies).await;
}

/// A database whose write-order records were lost (as a repair can lose that table):
/// reopening restores them, and new writes never reuse a live entry's sequence number, so
/// eviction still takes the oldest entries and never the newest.
#[tokio::test]
async fn a_lost_write_order_is_rebuilt_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let small = entry(Bytes::from_static(b"x"));
    let put = |cache: RocksDbCache, key: &'static str| {
        let small = small.clone();
        async move {
            cache
                .put(key, small.clone(), policy(&small), hour())
                .await
                .unwrap();
        }
    };
    let one_entry = {
        let cache = RocksDbCache::open(config(dir.path())).await.unwrap();
        put(cache.clone(), "k0").await;
        cache.size_bytes().await.unwrap()
    };
    // Room for three entries and not four: the encoded policy's timestamps vary in
    // length by a few bytes, so the slack is half an entry rather than an exact fit.
    let capped = || config(dir.path()).with_capacity_bytes(3 * one_entry + one_entry / 2);
    {
        let cache = RocksDbCache::open(capped()).await.unwrap();
        put(cache.clone(), "k1").await;
        put(cache.clone(), "k2").await;
        cache.raw_access().remove_write_order().unwrap();
    }
    let cache = RocksDbCache::open(capped()).await.unwrap();
    assert_eq!(cache.entry_count().await.unwrap(), 3);
    put(cache.clone(), "k3").await;
    assert!(
        cache.get("k0").await.unwrap().is_none(),
        "the oldest goes first"
    );
    for kept in ["k1", "k2", "k3"] {
        assert!(
            cache.get(kept).await.unwrap().is_some(),
            "{kept} was evicted"
        );
    }
    put(cache.clone(), "k4").await;
    assert!(cache.get("k1").await.unwrap().is_none());
    assert_eq!(cache.entry_count().await.unwrap(), 3);
}
