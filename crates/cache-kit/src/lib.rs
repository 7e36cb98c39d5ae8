//! Building blocks for cache backends.
//!
//! The disk backends of this workspace (cacache, RocksDB, the streaming store) are built
//! from these pieces, and a backend of your own can be too; the contract itself lives in
//! `cache-core` and stays small.
//!
//! - [`KeyLocks`]: striped locks that serialize the operations on one key (and
//!   [`KeyLocks::lock_all`] for whole-store operations such as `clear`).
//! - [`LruIndex`]: an in-memory index of key to entry with recency, tags, expiry and
//!   byte accounting, for backends that keep their index in memory and evict by bytes.
//! - [`SweeperHandle`]: a task that runs a sweep every period until it is dropped.
//! - [`blocking`]: run a key's work on tokio's blocking pool after validating the key.
//! - [`files`]: remove-if-present, rename-into-place, fsync a directory, list the files below one.
//! - [`lock`]: a `Mutex` lock that survives poisoning.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use cache_kit::{IndexedEntry, KeyLocks, LruIndex};
//!
//! struct Entry {
//!     len: u64,
//!     expires_at: SystemTime,
//!     tags: Vec<String>,
//! }
//!
//! impl IndexedEntry for Entry {
//!     fn expires_at(&self) -> SystemTime {
//!         self.expires_at
//!     }
//!     fn tags(&self) -> &[String] {
//!         &self.tags
//!     }
//!     fn accounted_bytes(&self, key: &str) -> u64 {
//!         self.len + key.len() as u64
//!     }
//! }
//!
//! let locks: KeyLocks = KeyLocks::new(64);
//! let mut index = LruIndex::new();
//! let expires_at = SystemTime::now() + Duration::from_secs(60);
//! for key in ["a", "b", "c"] {
//!     let _key = locks.lock(key);
//!     index.insert(key.to_owned(), Entry { len: 99, expires_at, tags: vec!["docs".into()] });
//! }
//! index.touch("a");
//! // Down to two entries' worth of bytes: "b" was used least recently.
//! let evicted = index.evict_to(200, None);
//! assert_eq!(evicted.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(), ["b"]);
//! assert_eq!(index.keys_tagged("docs").len(), 2);
//! ```

pub mod blocking;
pub mod files;
mod key_locks;
mod lru;
mod sweeper;
mod sync;

pub use key_locks::{AllKeysGuard, KeyLocks};
pub use lru::{IndexedEntry, LruIndex};
pub use sweeper::{MIN_SWEEP_PERIOD, SweeperHandle};
pub use sync::lock;
