//! Deduplication, cancellation, corruption, persistence, the size cap, the tee and the
//! sweeps of the streaming store.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::crash::files_below;
use cache_core::testkit::fixtures::{policy, random_bytes, response};
use cache_core::{
    BoxBody, BoxError, CacheManager, ErrorKind, PutOptions, ResponseHead, StreamingCacheManager,
    body,
};
use cache_streaming::{ReadVerification, StreamingCache, StreamingConfig, SweepReport};
use http::HeaderValue;

const URL: &str = "https://bodies.example/file";

fn hour() -> PutOptions {
    PutOptions::new().with_ttl(Duration::from_secs(3600))
}

async fn open(dir: &Path, capacity_bytes: u64) -> StreamingCache {
    StreamingCache::open(StreamingConfig::new(dir).with_capacity_bytes(capacity_bytes))
        .await
        .expect("open")
}

fn head() -> ResponseHead {
    response(URL, Bytes::new()).into_head_and_body().0
}

/// `bytes` as a body of 64 KiB chunks.
fn chunked(bytes: &Bytes) -> BoxBody {
    let chunks: Vec<Result<Bytes, BoxError>> = (0..bytes.len())
        .step_by(64 * 1024)
        .map(|start| Ok(bytes.slice(start..(start + 64 * 1024).min(bytes.len()))))
        .collect();
    body::from_chunks(chunks)
}

async fn put_streamed(store: &StreamingCache, key: &str, bytes: &Bytes) {
    let stored = store
        .put_stream(
            key,
            head(),
            policy(&response(URL, Bytes::new())),
            chunked(bytes),
            hour(),
        )
        .await
        .expect("put_stream");
    assert_eq!(stored.len, bytes.len() as u64);
}

async fn streamed_body(store: &StreamingCache, key: &str) -> Option<Bytes> {
    let entry = store.get_stream(key).await.expect("get_stream")?;
    Some(
        body::collect(entry.body, usize::MAX)
            .await
            .expect("the streamed body"),
    )
}

fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| {
                let metadata = entry.metadata().expect("metadata");
                if metadata.is_dir() {
                    bytes_in(&entry.path())
                } else {
                    metadata.len()
                }
            })
            .sum()
    })
}

fn bodies_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("v1").join("bodies")
}

fn tmp_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("v1").join("tmp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_under_32_keys_is_stored_once_and_freed_by_the_last_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let shared = random_bytes(3 * 1024 * 1024 + 17);
    let mut puts = Vec::new();
    for n in 0..32 {
        let (store, shared) = (store.clone(), shared.clone());
        puts.push(tokio::spawn(async move {
            put_streamed(&store, &format!("key-{n}"), &shared).await;
        }));
    }
    for put in puts {
        put.await.expect("a put task panicked");
    }
    assert_eq!(store.body_count(), 1);
    assert_eq!(files_below(&bodies_dir(dir.path())), 1);
    assert_eq!(
        files_below(&tmp_dir(dir.path())),
        0,
        "every redundant copy is gone"
    );
    let size = store.size_bytes().await.unwrap();
    assert!(
        size < 2 * shared.len() as u64,
        "the body is counted once: {size} bytes for a {} byte body",
        shared.len()
    );

    for n in 0..16 {
        store.delete(&format!("key-{n}")).await.unwrap();
    }
    for n in 16..32 {
        let got = streamed_body(&store, &format!("key-{n}")).await;
        assert!(got.as_ref() == Some(&shared), "key-{n} lost its body");
    }
    assert_eq!(store.body_count(), 1);
    for n in 16..32 {
        store.delete(&format!("key-{n}")).await.unwrap();
    }
    assert_eq!(store.body_count(), 0);
    assert_eq!(
        files_below(&bodies_dir(dir.path())),
        0,
        "the body file is freed"
    );
    assert_eq!(store.size_bytes().await.unwrap(), 0);
}

#[tokio::test]
async fn overwriting_a_key_releases_its_old_body_but_not_a_shared_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (first, second) = (random_bytes(100_000), random_bytes(200_000));
    put_streamed(&store, "a", &first).await;
    put_streamed(&store, "b", &first).await;
    put_streamed(&store, "a", &second).await;
    assert_eq!(store.body_count(), 2, "first is still used by b");
    put_streamed(&store, "b", &second).await;
    assert_eq!(store.body_count(), 1, "nothing uses first any more");
    assert_eq!(files_below(&bodies_dir(dir.path())), 1);
    assert!(streamed_body(&store, "a").await.as_ref() == Some(&second));
    assert!(streamed_body(&store, "b").await.as_ref() == Some(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_short_long_and_dropped_puts_leave_nothing_after_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let template = response(URL, Bytes::new());

    // A body that fails half-way.
    let failing: Vec<Result<Bytes, BoxError>> = vec![
        Ok(random_bytes(3 * 1024 * 1024)),
        Err("the origin hung up".into()),
    ];
    let error = store
        .put_stream(
            "failing",
            head(),
            policy(&template),
            body::from_chunks(failing),
            hour(),
        )
        .await
        .expect_err("a failing body");
    assert_eq!(error.kind(), ErrorKind::Body);

    // Declared lengths that do not match.
    for (key, actual) in [("short", 999_999usize), ("long", 1_000_001)] {
        let mut declared = head();
        declared
            .headers
            .insert("content-length", HeaderValue::from(1_000_000u32));
        let error = store
            .put_stream(
                key,
                declared,
                policy(&template),
                chunked(&random_bytes(actual)),
                hour(),
            )
            .await
            .expect_err("a length mismatch");
        assert_eq!(error.kind(), ErrorKind::Body, "{key}");
    }

    // A future dropped half-way, with 2 MiB written.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(4);
    for _ in 0..2 {
        sender.send(Ok(random_bytes(1024 * 1024))).await.unwrap();
    }
    let put = store.put_stream(
        "dropped",
        head(),
        policy(&template),
        body::from_receiver(receiver),
        hour(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), put)
            .await
            .is_err(),
        "the put cannot finish while its body is stalled"
    );
    drop(sender);

    for key in ["failing", "short", "long", "dropped"] {
        assert!(
            store.get(key).await.unwrap().is_none(),
            "{key} left an entry"
        );
    }
    store.sweep().await.unwrap();
    assert_eq!(
        files_below(&tmp_dir(dir.path())),
        0,
        "stray temporary files"
    );
    assert_eq!(files_below(&bodies_dir(dir.path())), 0, "stray bodies");
    assert_eq!(store.body_count(), 0);
    assert_eq!(store.entry_count().await.unwrap(), 0);
}

/// The store's own error behind a body error (`body::collect` wraps it).
fn store_cause(error: &cache_core::Error) -> &cache_core::Error {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<cache_core::Error>())
        .expect("the store's error is the cause")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_body_byte_ends_the_stream_with_an_error_and_removes_the_entries() {
    // Five 256 KiB read chunks: the flipped byte is in the second, the third and the
    // short last one (the check runs over the whole body before its last chunk).
    for (verification, flipped) in [
        (ReadVerification::Checksum, 300_000),
        (ReadVerification::Checksum, 700_000),
        (ReadVerification::Checksum, 1024 * 1024 + 2),
        (ReadVerification::Sha256, 700_000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = StreamingCache::open(
            StreamingConfig::new(dir.path()).with_read_verification(verification),
        )
        .await
        .unwrap();
        let stored = random_bytes(1024 * 1024 + 5);
        put_streamed(&store, "victim", &stored).await;
        put_streamed(&store, "same-body", &stored).await;
        let path = store.raw_access().body_file("victim").expect("a body file");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[flipped] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();

        let entry = store
            .get_stream("victim")
            .await
            .unwrap()
            .expect("the entry opens");
        let error = body::collect(entry.body, usize::MAX)
            .await
            .expect_err("the corrupt body must end with an error");
        assert_eq!(error.kind(), ErrorKind::Body, "{verification:?} {flipped}");
        assert_eq!(store_cause(&error).kind(), ErrorKind::CorruptEntry);

        assert!(
            store.get("victim").await.unwrap().is_none(),
            "{verification:?}"
        );
        assert!(
            store.get("same-body").await.unwrap().is_none(),
            "shares the corrupt body"
        );
        assert!(!path.exists(), "the corrupt body file is removed");
        assert_eq!(store.stats().unwrap().corrupt_entries, 2);
    }
}

#[tokio::test]
async fn a_body_truncated_while_it_is_streamed_ends_with_an_error_and_removes_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let stored = random_bytes(1024 * 1024);
    put_streamed(&store, "victim", &stored).await;
    let entry = store
        .get_stream("victim")
        .await
        .unwrap()
        .expect("the entry opens");
    // The reader starts on the first poll, after the file lost its tail.
    let path = store.raw_access().body_file("victim").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(300_000)
        .unwrap();
    let error = body::collect(entry.body, usize::MAX)
        .await
        .expect_err("a truncated body must end with an error");
    assert_eq!(error.kind(), ErrorKind::Body);
    assert_eq!(store_cause(&error).kind(), ErrorKind::CorruptEntry);
    assert!(store.get("victim").await.unwrap().is_none());
    assert_eq!(store.stats().unwrap().corrupt_entries, 1);
    assert!(!path.exists(), "the truncated body file is removed");
}

#[tokio::test]
async fn a_corrupt_or_truncated_body_is_a_miss_for_a_buffered_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (flipped, truncated) = (random_bytes(300_000), random_bytes(300_000));
    put_streamed(&store, "flipped", &flipped).await;
    put_streamed(&store, "truncated", &truncated).await;
    let raw = store.raw_access();
    let flipped_path = raw.body_file("flipped").unwrap();
    let mut bytes = std::fs::read(&flipped_path).unwrap();
    bytes[12] ^= 1;
    std::fs::write(&flipped_path, bytes).unwrap();
    let truncated_path = raw.body_file("truncated").unwrap();
    std::fs::write(&truncated_path, &truncated[..1000]).unwrap();

    assert!(store.get("flipped").await.unwrap().is_none());
    assert!(store.get_stream("truncated").await.unwrap().is_none());
    assert!(store.get("truncated").await.unwrap().is_none());
    assert_eq!(store.stats().unwrap().corrupt_entries, 2);
    assert_eq!(store.body_count(), 0);
    assert_eq!(files_below(&bodies_dir(dir.path())), 0);
}

#[tokio::test]
async fn entries_and_references_survive_a_reopen_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let shared = random_bytes(500_000);
    {
        let store = open(dir.path(), 1 << 30).await;
        put_streamed(&store, "one", &shared).await;
        put_streamed(&store, "two", &shared).await;
        let short = response(URL, random_bytes(1000));
        store
            .put(
                "short",
                short.clone(),
                policy(&short),
                PutOptions::new().with_ttl(Duration::from_millis(200)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let store = open(dir.path(), 1 << 30).await;
    assert_eq!(
        store.open_report().expired,
        0,
        "expired entries are dropped before the sweep"
    );
    assert_eq!(store.stats().unwrap().expirations, 1);
    assert!(store.get("short").await.unwrap().is_none());
    assert_eq!(store.entry_count().await.unwrap(), 2);
    assert_eq!(store.body_count(), 1, "the short entry's body went with it");
    store.delete("one").await.unwrap();
    assert!(
        streamed_body(&store, "two").await.as_ref() == Some(&shared),
        "recounted references"
    );
    store.delete("two").await.unwrap();
    assert_eq!(files_below(&bodies_dir(dir.path())), 0);
}

#[tokio::test]
async fn writing_three_times_the_capacity_keeps_the_most_recent_entries_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let capacity: u64 = 4 * 1024 * 1024;
    let store = open(dir.path(), capacity).await;
    let bodies: Vec<Bytes> = (0..12).map(|_| random_bytes(1024 * 1024)).collect();
    for (n, bytes) in bodies.iter().enumerate() {
        put_streamed(&store, &format!("entry-{n}"), bytes).await;
        if n >= 2 {
            // entry-0 is read after every put, so it stays the most recently used.
            assert!(
                store.get("entry-0").await.unwrap().is_some(),
                "after put {n}"
            );
        }
    }
    let on_disk = bytes_in(&dir.path().join("v1"));
    assert!(
        on_disk <= capacity,
        "{on_disk} bytes on disk, capacity {capacity}"
    );
    assert!(store.size_bytes().await.unwrap() <= capacity);
    // Three 1 MiB bodies fit with their metadata: entry-0 and the two latest.
    assert_eq!(store.entry_count().await.unwrap(), 3);
    for n in [0, 10, 11] {
        let got = streamed_body(&store, &format!("entry-{n}")).await;
        assert!(got.as_ref() == Some(&bodies[n]), "entry-{n} must be kept");
    }
    assert_eq!(store.stats().unwrap().evictions, 9);

    // The cap holds across a restart with a smaller capacity too.
    drop(store);
    let store = open(dir.path(), 2 * 1024 * 1024).await;
    assert_eq!(store.entry_count().await.unwrap(), 1);
    assert!(
        streamed_body(&store, "entry-11").await.is_some(),
        "the latest write stays"
    );
    assert!(bytes_in(&dir.path().join("v1")) <= 2 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_hands_on_every_byte_while_the_entry_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let template = response(URL, Bytes::new());
    let upstream = random_bytes(5 * 1024 * 1024 + 3);
    let (client, stored) = store.tee(
        "teed",
        head(),
        policy(&template),
        chunked(&upstream),
        hour(),
    );
    let served = body::collect(client, usize::MAX)
        .await
        .expect("the client's body");
    assert!(served == upstream, "the client got other bytes");
    assert_eq!(stored.await.expect("stored").len, upstream.len() as u64);
    assert!(streamed_body(&store, "teed").await.as_ref() == Some(&upstream));

    // A client that goes away does not stop the entry from being stored.
    let (client, stored) = store.tee(
        "abandoned",
        head(),
        policy(&template),
        chunked(&upstream),
        hour(),
    );
    drop(client);
    assert_eq!(stored.await.expect("stored").len, upstream.len() as u64);
    assert!(streamed_body(&store, "abandoned").await.as_ref() == Some(&upstream));

    // An upstream failure reaches the client and stores nothing.
    let failing: Vec<Result<Bytes, BoxError>> =
        vec![Ok(random_bytes(1000)), Err("the origin hung up".into())];
    let (client, stored) = store.tee(
        "failed",
        head(),
        policy(&template),
        body::from_chunks(failing),
        hour(),
    );
    let error = body::collect(client, usize::MAX)
        .await
        .expect_err("the client sees the failure");
    assert_eq!(error.kind(), ErrorKind::Body);
    assert_eq!(
        stored.await.expect_err("not stored").kind(),
        ErrorKind::Body
    );
    assert!(store.get("failed").await.unwrap().is_none());

    // An invalid key fails the store, not the client.
    let long_key = "k".repeat(cache_core::MAX_KEY_LEN + 1);
    let (client, stored) = store.tee(
        &long_key,
        head(),
        policy(&template),
        chunked(&upstream),
        hour(),
    );
    let served = body::collect(client, usize::MAX)
        .await
        .expect("the client's body");
    assert!(served == upstream);
    assert_eq!(
        stored.await.expect_err("invalid key").kind(),
        ErrorKind::InvalidKey
    );

    // A store that gives up half-way (the body outgrows its capacity) still serves the
    // client every byte, without a gap.
    let small_dir = tempfile::tempdir().unwrap();
    let small = open(small_dir.path(), 1024 * 1024).await;
    let (client, stored) = small.tee(
        "too-big",
        head(),
        policy(&template),
        chunked(&upstream),
        hour(),
    );
    let served = body::collect(client, usize::MAX)
        .await
        .expect("the client's body");
    assert!(served == upstream, "the client must get the whole body");
    assert_eq!(
        stored.await.expect_err("too large").kind(),
        ErrorKind::TooLarge
    );
    assert!(small.get("too-big").await.unwrap().is_none());
}

#[tokio::test]
async fn sweeps_remove_orphaned_bodies_and_stale_temporary_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let kept = random_bytes(10_000);
    put_streamed(&store, "kept", &kept).await;
    let orphan_dir = bodies_dir(dir.path()).join("ab");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(orphan_dir.join(format!("ab{}", "0".repeat(62))), b"orphan").unwrap();
    std::fs::write(orphan_dir.join("not-a-digest"), b"foreign").unwrap();
    std::fs::write(tmp_dir(dir.path()).join("1-2-3.tmp"), b"left by a crash").unwrap();
    let expiring = response(URL, random_bytes(100));
    store
        .put(
            "expiring",
            expiring.clone(),
            policy(&expiring),
            PutOptions::new().with_ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let report = store.sweep().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.orphaned_bodies, 2);
    assert_eq!(report.temporary_files, 1);
    assert_eq!(store.sweep().await.unwrap(), SweepReport::default());
    assert!(streamed_body(&store, "kept").await.as_ref() == Some(&kept));
    assert_eq!(files_below(&bodies_dir(dir.path())), 1);
}

#[tokio::test]
async fn a_body_larger_than_the_capacity_is_refused_without_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1024 * 1024).await;
    let template = response(URL, Bytes::new());
    let error = store
        .put_stream(
            "big",
            head(),
            policy(&template),
            chunked(&random_bytes(2 * 1024 * 1024)),
            hour(),
        )
        .await
        .expect_err("too large");
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    let mut declared = head();
    declared
        .headers
        .insert("content-length", HeaderValue::from(5_000_000u32));
    let error = store
        .put_stream(
            "declared",
            declared,
            policy(&template),
            body::full(Bytes::new()),
            hour(),
        )
        .await
        .expect_err("declared too large");
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    store.sweep().await.unwrap();
    assert_eq!(files_below(&dir.path().join("v1")), 0);
}

#[tokio::test]
async fn durable_writes_store_the_same_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = StreamingCache::open(StreamingConfig::new(dir.path()).with_durable_writes(true))
        .await
        .unwrap();
    let bytes = random_bytes(2 * 1024 * 1024);
    put_streamed(&store, "durable", &bytes).await;
    drop(store);
    let store = open(dir.path(), 1 << 30).await;
    assert!(streamed_body(&store, "durable").await.as_ref() == Some(&bytes));
}

/// A zero sweep period is taken as the shortest one, not a panic that ends the sweeper.
#[tokio::test]
async fn a_sweeper_with_a_zero_period_still_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let short = response(URL, random_bytes(1000));
    store
        .put(
            "short",
            short.clone(),
            policy(&short),
            PutOptions::new().with_ttl(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let _sweeper = store.spawn_sweeper(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.stats().unwrap().expirations == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never swept"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.body_count(), 0);
}

/// `deletes` counts every `delete` call, found or not, as every backend does.
#[tokio::test]
async fn every_delete_call_counts_found_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let stored = response(URL, random_bytes(100));
    store
        .put("present", stored.clone(), policy(&stored), hour())
        .await
        .unwrap();
    store.delete("present").await.unwrap();
    store.delete("missing").await.unwrap();
    assert_eq!(store.stats().unwrap().deletes, 2);
}
