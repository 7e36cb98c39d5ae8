//! Writing your own backend: a cache that keeps entries as bytes in a map, written the way
//! a crate outside this workspace would write one (only the public API of `cache-core`),
//! with expiry, honest capabilities, and the conformance suite as one trial per case.
//!
//! ```sh
//! cargo run --example custom_backend                    # use it, then prove it
//! cargo test --example custom_backend                   # the same, as its test
//! cargo test --example custom_backend -- byte_map::tags # one case (no demo with arguments)
//! ```
//!
//! The example is built with `harness = false` (the root `Cargo.toml`), so `main` is the
//! test harness: run bare, it first shows the backend at work, then runs the trials; given
//! arguments (a filter, or `--list` as `cargo nextest` asks) it only runs the trials.
//!
//! The map stands in for any byte store you may want behind the contract (a key-value
//! service, an object store, an embedded database): entries go in as the core codec's
//! envelope, so the codec does the hard parts (every header byte for byte, the policy
//! without credentials, a checksum), and this file does the storage.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::testkit::libtest_mimic::{self, Arguments};
use cache_core::testkit::{Conformance, RawStorageFns, Suite};
use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, KeyPattern, PutOptions, Result, StatsCounters, TtlPolicy, codec,
    validate_key,
};

const NAME: &str = "byte-map";

/// The largest envelope the map keeps, declared in the capabilities.
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// Entries as codec envelopes in a map. Cloning shares the map.
#[derive(Clone, Default)]
pub struct ByteMapCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<String, Bytes>>,
    ttl_policy: TtlPolicy,
    counters: StatsCounters,
}

impl ByteMapCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Bytes>> {
        // The map is consistent after every critical section, so a panic elsewhere does
        // not make it unusable.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored bytes of `key`, for the conformance cases that corrupt or inspect them.
    pub fn raw_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.entries().get(key).map(|bytes| bytes.to_vec())
    }

    /// Replaces the stored bytes of `key`, bypassing the codec.
    pub fn write_raw_bytes(&self, key: &str, bytes: &[u8]) {
        self.entries()
            .insert(key.to_owned(), Bytes::copy_from_slice(bytes));
    }

    /// The envelope under `key` if it is still the one `stored` (so a concurrent put is
    /// never undone), removed.
    fn remove_if_unchanged(&self, key: &str, stored: &Bytes) -> bool {
        let mut entries = self.entries();
        if entries.get(key) == Some(stored) {
            entries.remove(key);
            true
        } else {
            false
        }
    }
}

impl CacheManager for ByteMapCache {
    fn name(&self) -> &'static str {
        NAME
    }

    // Only what this backend really does: no tags (it keeps no tag index), no health
    // check (a map is always there). The suite checks that the rest says `Unsupported`,
    // and that a put over the declared limit is refused and leaves no entry.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_delete_pattern()
            .with_clear()
            .with_entry_count()
            .with_stats()
            .with_stores_bytes()
            .with_max_entry_bytes(MAX_ENTRY_BYTES)
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        let counters = &self.inner.counters;
        let Some(stored) = self.entries().get(key).cloned() else {
            counters.add_misses(1);
            return CacheFuture::ready(Ok(None));
        };
        // A decode failure (flipped bytes, truncation, another format, another key's
        // envelope) is a miss: the entry goes and is counted, the caller never sees it.
        let answer = match codec::decode_for_key(stored.clone(), key) {
            Ok(entry) if !entry.metadata.is_expired_at(SystemTime::now()) => {
                counters.add_hits(1);
                Some(Arc::new(entry))
            }
            Ok(_) => {
                if self.remove_if_unchanged(key, &stored) {
                    counters.add_expirations(1);
                }
                counters.add_misses(1);
                None
            }
            Err(_) => {
                if self.remove_if_unchanged(key, &stored) {
                    counters.add_corrupt_entries(1);
                }
                counters.add_misses(1);
                None
            }
        };
        // Nothing here waits, so the answer is ready: no allocation for the future.
        CacheFuture::ready(Ok(answer))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        let result = (|| {
            validate_key(NAME, key)?;
            let metadata = self.inner.ttl_policy.entry_metadata(
                &policy,
                &response.headers,
                &options,
                SystemTime::now(),
            );
            if metadata.storage_ttl().is_zero() {
                // A zero TTL stores nothing and removes the key.
                self.entries().remove(key);
                return Ok(());
            }
            // The codec redacts the request's credentials inside the policy.
            let envelope = codec::encode_parts(key, &response, &policy, &metadata)?;
            if envelope.len() as u64 > MAX_ENTRY_BYTES {
                // A refused put leaves no entry: the previous version goes too.
                self.entries().remove(key);
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    NAME,
                    format!(
                        "the entry takes {} bytes, more than the limit of {MAX_ENTRY_BYTES}",
                        envelope.len()
                    ),
                )
                .with_key(key));
            }
            self.entries().insert(key.to_owned(), Bytes::from(envelope));
            self.inner.counters.add_puts(1);
            Ok(())
        })();
        CacheFuture::ready(result)
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        if self.entries().remove(key).is_some() {
            self.inner.counters.add_deletes(1);
        }
        // Deleting a missing key succeeds.
        CacheFuture::ready(Ok(()))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|key, _| !pattern.matches(key));
        let removed = (before - entries.len()) as u64;
        self.inner.counters.add_deletes(removed);
        CacheFuture::ready(Ok(removed))
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        self.entries().clear();
        CacheFuture::ready(Ok(()))
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        // Exact: expired envelopes still in the map are not live entries.
        let now = SystemTime::now();
        let live = self
            .entries()
            .values()
            .filter(|bytes| {
                codec::peek_expires_at(bytes).is_some_and(|expires_at| expires_at > now)
            })
            .count();
        CacheFuture::ready(Ok(live as u64))
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}

/// Puts, gets and damages an entry, printing what happens.
async fn demo() -> Result<()> {
    let backend = ByteMapCache::default();
    let cache: Arc<dyn CacheManager> = Arc::new(backend.clone());
    let url: url::Url = "https://example.com/hello".parse().expect("a valid URL");
    let request = http::Request::get(url.as_str())
        .body(())
        .expect("a valid request");
    let head = http::Response::builder()
        .header("cache-control", "max-age=60")
        .body(())
        .expect("a valid response");
    let policy = CachePolicy::new(&request, &head);
    let response = CachedResponse::new(url, http::StatusCode::OK)
        .with_headers(head.headers().clone())
        .with_body("hello from a backend of my own");

    let options = PutOptions::new().with_ttl(Duration::from_secs(60));
    cache.put("GET:hello", response, policy, options).await?;
    let entry = cache.get("GET:hello").await?.expect("just stored");
    println!(
        "{}: {:?}, expires in {} s",
        cache.name(),
        String::from_utf8_lossy(&entry.response.body),
        entry.metadata.remaining_ttl(SystemTime::now()).as_secs()
    );
    let stored = backend
        .raw_bytes("GET:hello")
        .map_or(0, |bytes| bytes.len());
    println!("stored as a {stored} byte codec envelope");

    // Damaged bytes are a miss (and the entry goes), never an error or a panic.
    backend.write_raw_bytes("GET:hello", b"not an envelope");
    assert!(cache.get("GET:hello").await?.is_none());
    println!("after corrupting the bytes: a miss");
    println!("capabilities: {:?}", cache.capabilities());
    println!("stats: {:?}", cache.stats()?);
    Ok(())
}

/// The conformance suite: one trial per case, each on a map of its own.
fn conformance() -> Conformance {
    Conformance::new("byte_map", || async {
        let cache = ByteMapCache::default();
        let (reader, writer) = (cache.clone(), cache.clone());
        let raw = RawStorageFns::new(
            move |key| Ok(reader.raw_bytes(key)),
            move |key, bytes| {
                writer.write_raw_bytes(key, bytes);
                Ok(())
            },
        );
        Suite::new(Arc::new(cache)).with_raw_storage(Arc::new(raw))
    })
    // Exactly what the capabilities leave out: tags, size, health and streaming.
    .expect_skipped([
        "tags",
        "size_bytes",
        "health",
        "stream_round_trip",
        "stream_body_error_leaves_no_entry",
        "stream_length_mismatch_leaves_no_entry",
        "stream_dropped_put_leaves_no_entry",
    ])
}

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    // Only a bare run shows the demo: with arguments, `cargo nextest` lists the trials or
    // runs one of them, and anything printed before would be taken for their output.
    if std::env::args_os().len() == 1 {
        let demo = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
            .and_then(|runtime| runtime.block_on(demo()).map_err(|error| error.to_string()));
        if let Err(error) = demo {
            eprintln!("the demo failed: {error}");
            return ExitCode::FAILURE;
        }
        println!();
    }
    libtest_mimic::run(&arguments, conformance().trials()).exit_code()
}
