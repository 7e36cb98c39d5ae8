//! The stack with a streaming tier: the conformance suite's streaming cases, small bodies
//! promoted into memory, large ones streamed from the tier that holds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::testkit::{Suite, run_all};
use cache_core::{
    BoxBody, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, PutOptions, ResponseHead, Result, StoredBody, StreamedEntry,
    StreamingCacheManager, TtlPolicy, body,
};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache};

/// A streaming backend for tests: it spools a body to memory before committing it (so an
/// error, a length mismatch or a dropped future commits nothing) and streams it out in
/// 4 KiB chunks.
#[derive(Default)]
struct SpoolingStore {
    entries: Mutex<HashMap<String, Arc<CacheEntry>>>,
}

impl CacheManager for SpoolingStore {
    fn name(&self) -> &'static str {
        "spooling"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_streaming()
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        let mut entries = self.entries.lock().unwrap();
        let live = entries
            .get(key)
            .filter(|entry| !entry.metadata.is_expired_at(SystemTime::now()))
            .cloned();
        if live.is_none() {
            entries.remove(key);
        }
        CacheFuture::ready(Ok(live))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        let metadata = TtlPolicy::default().entry_metadata(
            &policy,
            &response.headers,
            &options,
            SystemTime::now(),
        );
        let mut entries = self.entries.lock().unwrap();
        if metadata.storage_ttl().is_zero() {
            entries.remove(key);
        } else {
            entries.insert(
                key.to_owned(),
                Arc::new(CacheEntry::new(response, policy, metadata)),
            );
        }
        CacheFuture::ready(Ok(()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        self.entries.lock().unwrap().remove(key);
        CacheFuture::ready(Ok(()))
    }
}

impl StreamingCacheManager for SpoolingStore {
    fn put_stream<'a>(
        &'a self,
        key: &'a str,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<StoredBody>> {
        CacheFuture::new(async move {
            let bytes = body::collect(body, usize::MAX).await?;
            let declared = head
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|declared| declared != bytes.len() as u64) {
                return Err(Error::new(
                    ErrorKind::Body,
                    "spooling",
                    "the body does not match its content-length",
                ));
            }
            let len = bytes.len() as u64;
            self.put(
                key,
                CachedResponse::from_head_and_body(head, bytes),
                policy,
                options,
            )
            .await?;
            Ok(StoredBody::new(len))
        })
    }

    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
        CacheFuture::new(async move {
            let Some(entry) = self.get(key).await? else {
                return Ok(None);
            };
            let (head, bytes) = entry.response.clone().into_head_and_body();
            let chunks: Vec<_> = bytes
                .chunks(4096)
                .map(|chunk| Ok(bytes.slice_ref(chunk)))
                .collect();
            Ok(Some(StreamedEntry::new(
                head,
                entry.policy().clone(),
                entry.metadata.clone(),
                bytes.len() as u64,
                body::from_chunks(chunks),
            )))
        })
    }
}

async fn stack(limit: u64) -> (TieredCache, Arc<MemoryCache>, Arc<SpoolingStore>) {
    let memory = Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20)).unwrap(),
    );
    let store = Arc::new(SpoolingStore::default());
    let stack = TieredCache::builder()
        .tier(Tier::new(memory.clone()).with_max_entry_bytes(64 * 1024))
        .tier(Tier::streaming(store.clone()))
        .with_stream_promotion_limit(limit)
        .build()
        .await
        .unwrap();
    (stack, memory, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_a_streaming_tier_passes_the_conformance_suite() {
    let (stack, _, _) = stack(1 << 20).await;
    let stack = Arc::new(stack);
    let report = run_all(&Suite::new(stack.clone()).with_streaming(stack)).await;
    // The stack supports what all its tiers do: the test store has no tags, patterns,
    // clear, counts or health.
    assert_eq!(
        report.skipped_names(),
        [
            "tags",
            "delete_pattern",
            "entry_count",
            "size_bytes",
            "health",
            "corrupt_entries_become_misses",
            "no_credentials_at_rest",
            "clear",
        ]
    );
    assert_eq!(report.passed.len(), 20);
}

async fn put_streamed(stack: &TieredCache, key: &str, len: usize) {
    let stored = response(&format!("https://example.com/{key}"), vec![3u8; len]);
    let policy = policy(&stored);
    let (head, bytes) = stored.into_head_and_body();
    let chunks: Vec<_> = bytes
        .chunks(1000)
        .map(|chunk| Ok(bytes.slice_ref(chunk)))
        .collect();
    let written = stack
        .put_stream(
            key,
            head,
            policy,
            body::from_chunks(chunks),
            PutOptions::new().with_ttl(Duration::from_secs(100)),
        )
        .await
        .unwrap();
    assert_eq!(written.len, len as u64);
}

#[tokio::test]
async fn small_bodies_reach_memory_and_large_ones_stay_in_the_streaming_tier() {
    let (stack, memory, store) = stack(32 * 1024).await;
    put_streamed(&stack, "small", 10_000).await;
    put_streamed(&stack, "large", 200_000).await;
    assert_eq!(
        memory
            .get_entry("small")
            .unwrap()
            .unwrap()
            .response
            .body
            .len(),
        10_000
    );
    assert!(memory.get_entry("large").unwrap().is_none());
    assert!(store.get("large").await.unwrap().is_some());

    // The small one is promoted back into memory after memory lost it.
    memory.delete("small").await.unwrap();
    let streamed = stack.get_stream("small").await.unwrap().unwrap();
    assert_eq!(
        body::collect(streamed.body, usize::MAX)
            .await
            .unwrap()
            .len(),
        10_000
    );
    assert!(memory.get_entry("small").unwrap().is_some());

    // The large one streams from the store in its chunks, and is never held in memory.
    let streamed = stack.get_stream("large").await.unwrap().unwrap();
    assert_eq!(streamed.body_len, 200_000);
    assert_eq!(
        body::collect(streamed.body, usize::MAX).await.unwrap(),
        Bytes::from(vec![3u8; 200_000])
    );
    assert!(memory.get_entry("large").unwrap().is_none());

    // Rewritten large: the small copy memory held under that key goes.
    put_streamed(&stack, "small", 100_000).await;
    assert!(memory.get_entry("small").unwrap().is_none());
    let stats = stack.stats();
    assert_eq!(stats.promotions, 1);
    assert_eq!((stats.tiers[0].puts, stats.tiers[1].puts), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_the_content_addressed_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = cache_streaming::StreamingCache::open(
        cache_streaming::StreamingConfig::new(dir.path()).with_capacity_bytes(1 << 30),
    )
    .await
    .unwrap();
    let memory = Arc::new(
        MemoryCache::open(MemoryConfig::default().with_capacity_bytes(256 << 20)).unwrap(),
    );
    let stack = TieredCache::builder()
        .tier(Tier::new(memory).with_max_entry_bytes(64 * 1024))
        .tier(Tier::streaming(Arc::new(store)))
        .build()
        .await
        .unwrap();
    let stack = Arc::new(stack);
    let report = run_all(&Suite::new(stack.clone()).with_streaming(stack)).await;
    // Both tiers support tags, patterns, clear and stats; counts, sizes and stored bytes
    // belong to the tiers.
    assert_eq!(
        report.skipped_names(),
        [
            "entry_count",
            "size_bytes",
            "health",
            "corrupt_entries_become_misses",
            "no_credentials_at_rest",
        ]
    );
    assert_eq!(report.passed.len(), 23);
}
