//! Persistence, corruption, the size cap and the bounded index of the cacache backend.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cache_cacache::{CacacheCache, CacacheConfig};
use cache_core::testkit::fixtures::{assert_same_response, policy, response};
use cache_core::{CacheManager, CachedResponse, PutOptions};

fn hour() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

fn entry(body: impl Into<Bytes>) -> CachedResponse {
    response("https://disk.example/entry", body)
}

async fn open(dir: &Path, capacity_bytes: u64) -> CacacheCache {
    CacacheCache::open(CacacheConfig::new(dir).with_capacity_bytes(capacity_bytes))
        .await
        .expect("open")
}

fn files_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| {
                let metadata = entry.metadata().expect("metadata");
                if metadata.is_dir() {
                    files_size(&entry.path())
                } else {
                    metadata.len()
                }
            })
            .sum()
    })
}

#[tokio::test]
async fn entries_survive_a_reopen_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let kept = entry(Bytes::from(vec![1u8; 20_000]));
    {
        let cache = open(dir.path(), 1 << 30).await;
        cache
            .put("kept", kept.clone(), policy(&kept), hour().with_tags(["t"]))
            .await
            .unwrap();
        let short = PutOptions::new().with_ttl(Duration::from_millis(300));
        cache
            .put("short", kept.clone(), policy(&kept), short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cache = open(dir.path(), 1 << 30).await;
    let entry = cache
        .get("kept")
        .await
        .unwrap()
        .expect("the entry survived the reopen");
    assert_same_response(&entry.response, &kept, "reopened");
    assert_eq!(entry.metadata.tags, ["t"]);
    assert!(cache.get("short").await.unwrap().is_none());
    assert_eq!(
        cache.entry_count().await.unwrap(),
        1,
        "the expired entry was dropped at open"
    );
    assert_eq!(cache.stats().unwrap().expirations, 1);
    // Tags were rebuilt from disk.
    assert_eq!(cache.delete_tag("t").await.unwrap(), 1);
}

#[tokio::test]
async fn flipped_and_truncated_files_on_disk_are_misses_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30).await;
    let raw = cache.raw_access();
    let original = entry(Bytes::from(vec![9u8; 50_000]));
    for key in ["flip", "truncate", "bucket"] {
        cache
            .put(key, original.clone(), policy(&original), hour())
            .await
            .unwrap();
    }
    let flip = raw.content_file("flip").unwrap();
    let mut bytes = std::fs::read(&flip).unwrap();
    bytes[40_000] ^= 0xff;
    std::fs::write(&flip, bytes).unwrap();
    let truncate = raw.content_file("truncate").unwrap();
    let len = std::fs::metadata(&truncate).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncate)
        .unwrap()
        .set_len(len / 3)
        .unwrap();

    assert!(cache.get("flip").await.unwrap().is_none());
    assert!(cache.get("truncate").await.unwrap().is_none());
    assert!(
        !flip.exists() && !truncate.exists(),
        "corrupt content was removed"
    );
    assert!(
        !raw.bucket_file("flip").exists(),
        "the corrupt entry's bucket was removed"
    );
    assert_eq!(cache.stats().unwrap().corrupt_entries, 2);

    // A corrupt index bucket is noticed at the next open: the entry is gone, its content
    // swept, and nothing panics.
    let bucket = raw.bucket_file("bucket");
    let content = raw.content_file("bucket").unwrap();
    let mut bucket_bytes = std::fs::read(&bucket).unwrap();
    let middle = bucket_bytes.len() / 2;
    bucket_bytes[middle] ^= 0x20;
    std::fs::write(&bucket, bucket_bytes).unwrap();
    drop(cache);
    let cache = open(dir.path(), 1 << 30).await;
    assert!(cache.get("bucket").await.unwrap().is_none());
    assert!(
        !content.exists(),
        "the unreferenced content was swept at open"
    );
    assert!(!bucket.exists(), "the corrupt bucket was swept at open");
}

#[tokio::test]
async fn the_size_cap_holds_and_keeps_the_most_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 1024 * 1024;
    let cache = open(dir.path(), capacity).await;
    let body_len = 32 * 1024;
    // Three times the cap, with key 0 read after every write so it stays recent.
    let writes = 3 * capacity as usize / body_len;
    for n in 0..writes {
        let cached = entry(Bytes::from(vec![n as u8; body_len]));
        cache
            .put(&format!("k{n}"), cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
        assert!(
            cache.get("k0").await.unwrap().is_some(),
            "k0 is used constantly and must stay"
        );
    }
    let on_disk = files_size(dir.path());
    let entries = cache.entry_count().await.unwrap();
    // The documented margin: index lines are estimated, directories are not counted.
    let margin = entries * 512;
    assert!(
        on_disk <= capacity + margin,
        "{on_disk} bytes on disk for a {capacity}-byte cap"
    );
    assert!(cache.size_bytes().await.unwrap() <= capacity);
    let last = writes - 1;
    for n in (last + 1 - (entries as usize - 1))..=last {
        assert!(
            cache.get(&format!("k{n}")).await.unwrap().is_some(),
            "recent entry k{n} was evicted"
        );
    }
    assert!(
        cache.get("k1").await.unwrap().is_none(),
        "the oldest unused entry was kept"
    );

    // The cap holds across a restart with a smaller capacity.
    drop(cache);
    let cache = open(dir.path(), capacity / 2).await;
    assert!(cache.size_bytes().await.unwrap() <= capacity / 2);
    assert!(files_size(dir.path()) <= capacity / 2 + margin);
}

#[tokio::test]
async fn ten_thousand_overwrites_keep_a_bounded_bucket_and_one_content_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30).await;
    let raw = cache.raw_access();
    let cached = entry(Bytes::from(vec![3u8; 1024]));
    cache
        .put("hot", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    let bucket_after_one = std::fs::metadata(raw.bucket_file("hot")).unwrap().len();
    for _ in 0..10_000 {
        cache
            .put("hot", cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
    }
    // Overwrites append a line and every fourth one compacts the bucket to its last line:
    // after 10,001 writes (10,001 = 4 * 2,500 + 1) it holds exactly one line again, and it
    // never held more than four.
    let bucket_after_many = std::fs::metadata(raw.bucket_file("hot")).unwrap().len();
    assert_eq!(
        bucket_after_many, bucket_after_one,
        "the bucket was compacted to one line"
    );
    let mut longest = 0;
    for _ in 0..8 {
        cache
            .put("hot", cached.clone(), policy(&cached), hour())
            .await
            .unwrap();
        let lines = std::fs::read_to_string(raw.bucket_file("hot"))
            .unwrap()
            .lines()
            .filter(|line| !line.is_empty())
            .count();
        longest = longest.max(lines);
    }
    assert_eq!(longest, 4, "a bucket never holds more than four lines");
    let content_files = std::fs::read_dir(dir.path().join("content-v2/sha256"))
        .unwrap()
        .flatten()
        .map(|first| {
            std::fs::read_dir(first.path())
                .unwrap()
                .flatten()
                .map(|second| std::fs::read_dir(second.path()).unwrap().count())
                .sum::<usize>()
        })
        .sum::<usize>();
    assert_eq!(content_files, 1, "old versions' content was reclaimed");
    assert_eq!(cache.entry_count().await.unwrap(), 1);
    let entry = cache.get("hot").await.unwrap().unwrap();
    assert_same_response(&entry.response, &cached, "after 10,000 overwrites");
    // cacache itself still finds the one entry by key.
    let metadata = cacache::index::find(dir.path(), "hot").unwrap().unwrap();
    assert_eq!(
        metadata.size as u64,
        std::fs::metadata(raw.content_file("hot").unwrap())
            .unwrap()
            .len()
    );
}

#[tokio::test]
async fn deleting_removes_bucket_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30).await;
    let raw = cache.raw_access();
    let cached = entry(Bytes::from_static(b"bye"));
    cache
        .put("gone", cached.clone(), policy(&cached), hour())
        .await
        .unwrap();
    let content = raw.content_file("gone").unwrap();
    cache.delete("gone").await.unwrap();
    assert!(!content.exists());
    assert!(!raw.bucket_file("gone").exists());
}

/// A zero sweep period is taken as the shortest one, not a panic that ends the sweeper.
#[tokio::test]
async fn a_sweeper_with_a_zero_period_still_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30).await;
    let short = entry("short-lived");
    cache
        .put(
            "short",
            short.clone(),
            policy(&short),
            PutOptions::new().with_ttl(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let _sweeper = cache.spawn_sweeper(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.stats().unwrap().expirations == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never swept"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
