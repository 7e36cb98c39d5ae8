//! A content-addressed store for large HTTP response bodies: bodies stream in and out in
//! bounded chunks, identical bodies are stored once, and a body another key still uses is
//! never lost.
//!
//! Every distinct body is one file named by its SHA-256; each key has a small metadata
//! file (the core codec's head-only envelope: response head, policy, times, tags) that
//! names its body's digest, length and checksum. A put hashes and writes the body to a
//! temporary file as it arrives and commits with renames (body, then metadata) only when
//! the body ended and matched its `Content-Length`; a read streams the file in chunks and
//! verifies the body as it goes.
//!
//! ```no_run
//! # async fn example(upstream: cache_core::BoxBody) -> cache_core::Result<()> {
//! use cache_core::{CachePolicy, PutOptions, ResponseHead, StreamingCacheManager, body};
//! use cache_streaming::{StreamingConfig, StreamingCache};
//!
//! let store = StreamingCache::open(
//!     StreamingConfig::new("/var/cache/my-service/bodies").with_capacity_bytes(20 << 30),
//! )
//! .await?;
//! let url: url::Url = "https://downloads.example/big.iso".parse().unwrap();
//! let request = http::Request::get(url.as_str()).body(()).unwrap();
//! let response = http::Response::builder()
//!     .header("cache-control", "max-age=3600")
//!     .body(())
//!     .unwrap();
//! let policy = CachePolicy::new(&request, &response);
//! let head = ResponseHead::new(url, response.status()).with_headers(response.headers().clone());
//!
//! // Serve the client while the body is stored: `to_client` yields each chunk once it is
//! // on its way to disk; `stored` resolves when the entry is committed.
//! let (to_client, stored) = store.tee("GET:big.iso", head, policy, upstream, PutOptions::new());
//! # drop(to_client);
//! println!("cached {} bytes", stored.await?.len);
//!
//! // Later: stream it back out, 256 KiB at a time, verified as it is read.
//! if let Some(entry) = store.get_stream("GET:big.iso").await? {
//!     let bytes = body::collect(entry.body, usize::MAX).await?;
//!     println!("{} bytes from disk", bytes.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Capabilities
//!
//! Streaming, tags, pattern deletion, `clear`, entry count, size in bytes, statistics;
//! entries are stored as bytes (the codec redacts credentials; corrupt files are misses).
//! The buffered [`CacheManager`](cache_core::CacheManager) operations work on the same
//! entries, so the store passes the whole conformance suite.
//!
//! # Guarantees
//!
//! - **Bounded memory**: a put holds about two write batches (1 MiB each by default), a
//!   streamed read at most two read chunks (256 KiB each), whatever the body's size.
//! - **Atomic commits**: `put_stream` commits only after the body ended without error and
//!   matched any declared `Content-Length`; a failing body, a length mismatch or a dropped
//!   future leaves no entry (the previous one stays) and its temporary file is removed
//!   (by the put, or by the next sweep after a crash).
//! - **Deduplication with safe references**: a body is removed only when the last entry
//!   using it goes (overwrite, delete, expiry, eviction). The reference counts are
//!   recounted from the metadata files at every open, so a crash cannot leave them wrong;
//!   the sweep at open (and [`StreamingCache::sweep`]) removes bodies nothing references
//!   and stale temporary files.
//! - **Verified reads**: a streamed body yields its last chunk only after the whole body
//!   matched its checksum ([`ReadVerification`]); a mismatch or a truncated file ends the
//!   stream with an error and removes every entry using that body. The buffered `get`
//!   verifies before it returns (a corrupt body is a miss).
//! - **Expiry and size**: expiry is checked on every read and enforced by the sweep; the
//!   capacity counts every distinct body once plus each metadata file (and 256 bytes per
//!   entry), evicting least recently used entries, also at open (recency after a restart
//!   follows write time).
//! - **No blocking on the executor**: file I/O and hashing run on tokio's blocking pool.
//!
//! A dropped `put_stream` that had already received its whole body may still commit: the
//! commit is a few renames that run to completion once started. One process owns a store
//! directory at a time.
//!
//! # Configuration
//!
//! | setting | default |
//! |---|---|
//! | [`StreamingConfig::new`] | the directory (required) |
//! | [`StreamingConfig::with_capacity_bytes`] | 10 GiB |
//! | [`StreamingConfig::with_ttl_policy`] | [`TtlPolicy::default`](cache_core::TtlPolicy::default) |
//! | [`StreamingConfig::with_read_chunk_bytes`] | 256 KiB |
//! | [`StreamingConfig::with_write_batch_bytes`] | 1 MiB |
//! | [`StreamingConfig::with_durable_writes`] | `false` (no `fsync`) |
//! | [`StreamingConfig::with_read_verification`] | [`ReadVerification::Checksum`] (xxh3-64) |

mod backend;
mod commit;
mod config;
mod core;
mod index;
mod layout;
mod lookup;
mod put;
mod raw;
mod read;
mod write;

pub use backend::StreamingCache;
pub use cache_kit::SweeperHandle;
pub use config::{ReadVerification, StreamingConfig};
pub use put::PutHandle;
pub use raw::RawAccess;

pub use crate::core::SweepReport;

const NAME: &str = "streaming";
