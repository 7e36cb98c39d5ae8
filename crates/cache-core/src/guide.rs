//! # Writing a backend
//!
//! A backend is a type that implements [`CacheManager`] (and [`StreamingCacheManager`]
//! when it can move bodies as streams). Once it does, it works everywhere this workspace
//! takes a cache: alone, as a tier of `cache-tiered`, behind `http-cache` through
//! `cache-http-cache`. This page is the contract method by method, then how to prove a
//! backend keeps it: the conformance suite, run from the backend's own tests.
//!
//! A complete backend in a few dozen lines, and its test (it stores the codec's bytes
//! in a map, standing in for any key-value store; `examples/custom_backend.rs` in the
//! repository is a fuller one with pattern deletion, counts and statistics):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::SystemTime;
//!
//! use bytes::Bytes;
//! use cache_core::{
//!     CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
//!     PutOptions, Result, TtlPolicy, codec, validate_key,
//! };
//!
//! #[derive(Default)]
//! struct MapCache {
//!     entries: Mutex<HashMap<String, Bytes>>,
//!     ttl_policy: TtlPolicy,
//! }
//!
//! impl CacheManager for MapCache {
//!     fn name(&self) -> &'static str {
//!         "map"
//!     }
//!
//!     fn capabilities(&self) -> Capabilities {
//!         // It writes bytes: the suite checks corruption and credentials at rest.
//!         Capabilities::none().with_stores_bytes()
//!     }
//!
//!     fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
//!         if let Err(too_long) = validate_key(self.name(), key) {
//!             return CacheFuture::ready(Err(too_long));
//!         }
//!         let mut entries = self.entries.lock().unwrap();
//!         let Some(stored) = entries.get(key).cloned() else {
//!             return CacheFuture::ready(Ok(None));
//!         };
//!         match codec::decode_for_key(stored, key) {
//!             Ok(entry) if !entry.metadata.is_expired_at(SystemTime::now()) => {
//!                 CacheFuture::ready(Ok(Some(Arc::new(entry))))
//!             }
//!             // Expired, or bytes that do not decode: a miss, and the entry goes.
//!             _ => {
//!                 entries.remove(key);
//!                 CacheFuture::ready(Ok(None))
//!             }
//!         }
//!     }
//!
//!     fn put<'a>(
//!         &'a self,
//!         key: &'a str,
//!         response: CachedResponse,
//!         policy: CachePolicy,
//!         options: PutOptions,
//!     ) -> CacheFuture<'a, Result<()>> {
//!         CacheFuture::ready((|| {
//!             validate_key(self.name(), key)?;
//!             let metadata = self.ttl_policy.entry_metadata(
//!                 &policy,
//!                 &response.headers,
//!                 &options,
//!                 SystemTime::now(),
//!             );
//!             let mut entries = self.entries.lock().unwrap();
//!             if metadata.storage_ttl().is_zero() {
//!                 entries.remove(key);
//!             } else {
//!                 let envelope = codec::encode_parts(key, &response, &policy, &metadata)?;
//!                 entries.insert(key.to_owned(), Bytes::from(envelope));
//!             }
//!             Ok(())
//!         })())
//!     }
//!
//!     fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
//!         self.entries.lock().unwrap().remove(key);
//!         CacheFuture::ready(Ok(()))
//!     }
//! }
//!
//! // The backend's test, tests/conformance.rs with `harness = false` for it in Cargo.toml:
//! // one trial per case, each on a cache of its own.
//! use cache_core::testkit::{Conformance, RawStorageFns, Suite};
//!
//! # fn main() {
//! let conformance = Conformance::new("map", || async {
//!     let cache = Arc::new(MapCache::default());
//!     let (reader, writer) = (Arc::clone(&cache), Arc::clone(&cache));
//!     let raw = RawStorageFns::new(
//!         move |key| Ok(reader.entries.lock().unwrap().get(key).map(|bytes| bytes.to_vec())),
//!         move |key, bytes| {
//!             let bytes = Bytes::copy_from_slice(bytes);
//!             writer.entries.lock().unwrap().insert(key.to_owned(), bytes);
//!             Ok(())
//!         },
//!     );
//!     Suite::new(cache).with_raw_storage(Arc::new(raw))
//! })
//! // Everything the capabilities leave out, and nothing else.
//! .expect_skipped([
//!     "tags", "delete_pattern", "entry_count", "size_bytes", "health", "stats", "clear",
//!     "stream_round_trip", "stream_body_error_leaves_no_entry",
//!     "stream_length_mismatch_leaves_no_entry", "stream_dropped_put_leaves_no_entry",
//!     "refused_put_leaves_no_entry",
//! ]);
//! // In the test file, `main` is `conformance.run().exit()`: the arguments of `cargo test`
//! // or `cargo nextest` pick the trials. Here, all of them, and what they came to:
//! use cache_core::testkit::libtest_mimic::{self, Arguments};
//! let conclusion = libtest_mimic::run(&Arguments::from_iter(["guide"]), conformance.trials());
//! // 17 cases and the check of the skipped list pass; the 12 skipped are reported ignored.
//! assert_eq!((conclusion.num_passed, conclusion.num_failed, conclusion.num_ignored), (18, 0, 12));
//! # }
//! ```
//!
//! ## The contract, method by method
//!
//! The trait's [`# Contract`](crate::CacheManager#contract) section is the normative text; this
//! is how to meet it.
//!
//! - **`name`**: a short static name (`"redis"`, `"map"`). It goes into every
//!   [`Error`](crate::Error) and into the tiered stack's statistics.
//! - **`capabilities`**: declare exactly what the backend does. Every optional method
//!   has a default that returns [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported);
//!   keep the default for what you do not support. A silent no-op is a bug (the
//!   `unsupported_operations_say_so` case catches it), and so is a declared capability
//!   that does not hold (its case fails).
//! - **`get`**: return the entry exactly as it was put (status, version, every header
//!   value in order, non-UTF-8 values byte for byte, URL, body, an equivalent policy) with
//!   its metadata (stored-at, expiry, tags). Never an entry at or after its
//!   `expires_at`. Keys longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) fail with
//!   `InvalidKey` ([`validate_key`](crate::validate_key) does it).
//! - **`put`**: replace whatever is under the key, atomically (a concurrent `get` sees the
//!   old or the new entry, never a mix). A put you refuse after validating it (too large
//!   for your limit or capacity: `ErrorKind::TooLarge`) removes what the key held: a
//!   caller must never be served the previous version after a refused put. Declare the
//!   limit with [`Capabilities::with_max_entry_bytes`](crate::Capabilities::with_max_entry_bytes)
//!   (the tiered stack then skips your tier for larger entries, and the suite's
//!   `refused_put_leaves_no_entry` case checks the refusal), and
//!   [`Capabilities::with_shared`](crate::Capabilities::with_shared) if other instances
//!   use the same store. The storage TTL is the per-put override when set,
//!   otherwise the backend's [`TtlPolicy`](crate::TtlPolicy):
//!   [`TtlPolicy::entry_metadata`](crate::TtlPolicy::entry_metadata) computes both. A zero
//!   TTL stores nothing and removes the key.
//! - **`delete`**: deleting a missing key succeeds.
//! - **`delete_tag`** (optional): remove the entries stored with the tag, and not an entry
//!   that was overwritten without it since. Return how many went.
//! - **`delete_pattern`** (optional): [`KeyPattern::matches`](crate::KeyPattern::matches)
//!   decides; [`KeyPattern::literal_prefix`](crate::KeyPattern::literal_prefix) narrows a
//!   range scan in an ordered store.
//! - **`clear`** (optional): everything of this cache, nothing outside it (other
//!   namespaces, other data in the same database).
//! - **`entry_count`** / **`size_bytes`** (optional): live entries exactly; bytes as the
//!   backend accounts them against its capacity.
//! - **`health`** (optional): a round trip to whatever the backend depends on, with its
//!   latency.
//! - **`stats`** (optional): keep a [`StatsCounters`](crate::StatsCounters) and count every
//!   operation once: a hit or a miss per `get` (an expired or corrupt entry is a miss).
//!
//! ## Futures
//!
//! Methods return a [`CacheFuture`](crate::CacheFuture): `CacheFuture::ready(..)` when
//! the answer is at hand (no allocation, as above), `CacheFuture::new(async move { .. })`
//! when the backend waits on the network, and `CacheFuture::blocking(name, || ..)` for
//! blocking work (files, embedded databases), which runs it on tokio's blocking pool.
//! Blocking I/O never runs on the executor itself.
//!
//! ## Expiry
//!
//! Every entry expires from storage. Use the store's own expiry where it has one
//! (Redis `PX`, moka's per-entry expiry) and check `expires_at` on read anyway when the
//! store's clock or granularity differs; stores without expiry check on read and reclaim
//! in a sweep. [`codec::peek_expires_at`](crate::codec::peek_expires_at) reads an
//! envelope's expiry without decoding it, for sweeps and compaction filters.
//!
//! ## Bytes, corruption and credentials
//!
//! A backend that writes bytes (disk, network) stores the codec's envelope:
//! [`codec::encode_parts`](crate::codec::encode_parts) to write,
//! [`codec::decode_for_key`](crate::codec::decode_for_key) to read. The envelope carries a
//! checksum and the original key, so flipped, truncated, foreign or misplaced bytes fail
//! to decode: such an entry MUST be a miss, removed (only if it is still the version that
//! failed) and counted in `corrupt_entries`, never an error and never a panic. The codec
//! also replaces the request's `Authorization`, `Proxy-Authorization` and `Cookie`
//! values inside the policy with `redacted`; do not serialize a `CachePolicy` any other
//! way. Declare [`Capabilities::with_stores_bytes`](crate::Capabilities::with_stores_bytes)
//! and give the suite raw access to the stored bytes: it corrupts them and greps them for
//! secrets.
//!
//! Backends that map keys to file names hash them (keys may hold `../`, NUL and 8 KiB of
//! anything); the envelope keeps the original key, and `decode_for_key` turns a hash
//! collision into a corrupt entry instead of a wrong answer.
//!
//! ## Proving it: the conformance suite
//!
//! With the `testkit` feature (a dev-dependency:
//! `cache-core = { version = "0.1", features = ["testkit"] }`),
//! [`testkit::Conformance`](crate::testkit::Conformance) makes the suite one
//! [libtest-mimic](crate::testkit::libtest_mimic) trial per case, for a test target with
//! `harness = false`: `cargo test` and `cargo nextest` report each case and filter them
//! by name. Its factory builds the backend again for every trial (inside the trial's own
//! tokio runtime), so give each call a fresh one (a new directory, a new namespace) with
//! room for a few dozen MiB, and keep its directory or server alive with
//! [`Suite::keep_alive`](crate::testkit::Suite::keep_alive). List the cases your
//! capabilities leave out with
//! [`expect_skipped`](crate::testkit::Conformance::expect_skipped): any other skip fails,
//! and so does a listed case that runs, so a capability you add later is tested the
//! moment you declare it. Add
//! [`Suite::with_streaming`](crate::testkit::Suite::with_streaming) for a streaming
//! backend and [`Suite::with_raw_storage`](crate::testkit::Suite::with_raw_storage) for
//! one that stores bytes. Every case uses its own random key prefix, so suites can share
//! one server.
//!
//! [`CacheManager`]: crate::CacheManager
//! [`StreamingCacheManager`]: crate::StreamingCacheManager
