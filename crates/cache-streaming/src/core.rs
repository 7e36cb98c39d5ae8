//! The store's primitives: open and rebuild the index, sweep, remove, and the shared
//! state every clone of a store holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use cache_core::{Error, ErrorKind, Result, StatsCounters, TtlPolicy};
use cache_kit::files::remove_file_if_present;
use cache_kit::{KeyLocks, lock};

use crate::NAME;
use crate::config::{ReadVerification, StreamingConfig};
use crate::index::{Index, IndexEntry, Released};
use crate::layout::{
    BodyDigest, Layout, StoredMetadata, decode_metadata, digest_from_hex, fanned_out_files,
};
use crate::write::{TempRegistry, io_error};

/// Operations on one key are serialized by one of these locks, chosen by the key's hash.
const KEY_LOCK_STRIPES: usize = 64;

/// The state every clone of a store shares.
pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) root: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) ttl_policy: TtlPolicy,
    pub(crate) read_chunk_bytes: usize,
    pub(crate) write_batch_bytes: usize,
    pub(crate) durable_writes: bool,
    pub(crate) read_verification: ReadVerification,
    pub(crate) index: Mutex<Index>,
    pub(crate) key_locks: KeyLocks,
    pub(crate) temps: Arc<TempRegistry>,
    pub(crate) counters: StatsCounters,
    pub(crate) opened: Mutex<SweepReport>,
}

/// What a lookup under a key's lock found.
pub(crate) enum Lookup {
    Found(Box<StoredMetadata>, std::fs::File),
    Missing,
    /// Expired, and removed.
    Expired,
    /// The metadata file was unreadable, and was removed.
    Corrupt,
    /// The body file is missing or has the wrong length.
    CorruptBody(BodyDigest),
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Entries whose storage TTL had run out.
    pub expired: u64,
    /// Body files no entry references (left by a crash between a body's commit and its
    /// metadata's, or by an overwrite or delete interrupted before the body was removed).
    pub orphaned_bodies: u64,
    /// Metadata files that were unreadable or pointed at a missing body (at open only).
    pub broken_entries: u64,
    /// Temporary files of writes that no longer run.
    pub temporary_files: u64,
}

/// Removes the file at `path`, already gone counting as removed.
pub(crate) fn remove(path: &Path) -> Result<()> {
    remove_file_if_present(path).map_err(|error| io_error(error, "cannot remove", path))
}

impl Inner {
    /// Opens (or creates) the store in `config`'s directory: recounts every body's
    /// references from the metadata files, drops expired and broken entries, evicts down
    /// to the capacity, and removes orphaned bodies and temporary files.
    pub(crate) fn open(config: StreamingConfig) -> Result<Self> {
        if config.capacity_bytes == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the capacity must be more than zero bytes",
            ));
        }
        let layout = Layout::new(&config.path);
        layout
            .create_dirs()
            .map_err(|error| io_error(error, "cannot create the store in", &config.path))?;
        let inner = Self {
            layout,
            root: config.path,
            capacity_bytes: config.capacity_bytes,
            ttl_policy: config.ttl_policy,
            read_chunk_bytes: config.read_chunk_bytes,
            write_batch_bytes: config.write_batch_bytes,
            durable_writes: config.durable_writes,
            read_verification: config.read_verification,
            index: Mutex::new(Index::default()),
            key_locks: KeyLocks::new(KEY_LOCK_STRIPES),
            temps: Arc::default(),
            counters: StatsCounters::default(),
            opened: Mutex::default(),
        };
        let broken_entries = inner.rebuild_index()?;
        let mut report = inner.sweep()?;
        report.broken_entries = broken_entries;
        *lock(&inner.opened) = report;
        Ok(inner)
    }

    /// Removes the files of bodies nobody references any more. Called with the index
    /// lock held (the guard is the proof), so no commit renames the same body into place
    /// meanwhile.
    pub(crate) fn remove_bodies(
        &self,
        _index: &mut MutexGuard<'_, Index>,
        released: Released,
    ) -> Result<()> {
        for digest in released.unreferenced_bodies {
            let path = self.layout.body_path(&digest);
            remove(&path)?;
        }
        Ok(())
    }

    /// Rebuilds the index from the metadata files; returns how many broken ones it
    /// removed.
    pub(crate) fn rebuild_index(&self) -> Result<u64> {
        let now = SystemTime::now();
        let entries_dir = self.layout.entries_dir();
        let files = fanned_out_files(entries_dir)
            .map_err(|error| io_error(error, "cannot list", entries_dir))?;
        let mut found: Vec<(SystemTime, String, IndexEntry)> = Vec::new();
        let mut broken = 0;
        for (path, _) in files {
            let Ok(bytes) = std::fs::read(&path) else {
                broken += 1;
                remove(&path)?;
                continue;
            };
            let metadata_len = bytes.len() as u64;
            let usable = match decode_metadata(Bytes::from(bytes)) {
                Ok(stored) if self.layout.entry_path(&stored.head.key) == path => {
                    let body_len = std::fs::metadata(self.layout.body_path(&stored.body.digest))
                        .map(|file| file.len())
                        .ok();
                    if body_len != Some(stored.body.len) {
                        None
                    } else if stored.head.metadata.expires_at <= now {
                        self.counters.add_expirations(1);
                        remove_file_if_present(&path)
                            .map_err(|error| io_error(error, "cannot remove", &path))?;
                        continue;
                    } else {
                        Some(stored)
                    }
                }
                _ => None,
            };
            match usable {
                Some(stored) => {
                    let metadata = stored.head.metadata;
                    found.push((
                        metadata.stored_at,
                        stored.head.key,
                        IndexEntry::new(
                            stored.body,
                            metadata_len,
                            metadata.expires_at,
                            metadata.tags,
                        ),
                    ));
                }
                None => {
                    broken += 1;
                    self.counters.add_corrupt_entries(1);
                    remove(&path)?;
                }
            }
        }
        // The oldest writes are the least recently used after a restart.
        found.sort_by_key(|(stored_at, _, _)| *stored_at);
        let evicted = {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            for (_, key, entry) in found {
                index.acquire_body(&entry.body);
                let _ = index.insert(key, entry, u64::MAX, &mut released);
            }
            let evicted = index.evict_to(self.capacity_bytes, None, &mut released);
            self.remove_bodies(&mut index, released)?;
            evicted
        };
        self.counters.add_evictions(evicted.len() as u64);
        for key in evicted {
            let path = self.layout.entry_path(&key);
            remove(&path)?;
        }
        Ok(broken)
    }

    pub(crate) fn sweep(&self) -> Result<SweepReport> {
        let now = SystemTime::now();
        let expired = lock(&self.index).expired_keys(now);
        let mut report = SweepReport {
            expired: self.remove_expired(expired, now)?,
            ..SweepReport::default()
        };
        self.counters.add_expirations(report.expired);

        let tmp = self.layout.tmp_dir();
        let temporaries =
            std::fs::read_dir(tmp).map_err(|error| io_error(error, "cannot list", tmp))?;
        for temporary in temporaries {
            let path = temporary
                .map_err(|error| io_error(error, "cannot list", tmp))?
                .path();
            if !self.temps.is_active(&path) {
                remove(&path)?;
                report.temporary_files += 1;
            }
        }

        let bodies_dir = self.layout.bodies_dir();
        let bodies = fanned_out_files(bodies_dir)
            .map_err(|error| io_error(error, "cannot list", bodies_dir))?;
        for (path, name) in bodies {
            // Checked and removed under the index lock: a commit takes its reference and
            // renames its body into place under the same lock.
            let index = lock(&self.index);
            let referenced = digest_from_hex(&name).is_some_and(|digest| {
                index.is_body_referenced(&digest) && self.layout.body_path(&digest) == path
            });
            if !referenced {
                remove(&path)?;
                report.orphaned_bodies += 1;
            }
            drop(index);
        }
        Ok(report)
    }

    /// Removes the entries of `keys` that are still expired at `now`, each checked under
    /// its key's lock: a key put again since it was listed (with the same body too, the
    /// common refresh of an unchanged resource) expires later and stays. Returns how many
    /// were removed.
    pub(crate) fn remove_expired(&self, keys: Vec<String>, now: SystemTime) -> Result<u64> {
        let mut removed = 0;
        for key in keys {
            if self.remove_entry_if(&key, |entry| entry.expires_at <= now)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `key`'s entry when `condition` holds for it (checked under the key's lock):
    /// the metadata file first, then the index entry and, with its last reference, the
    /// body. Returns whether an entry was removed.
    pub(crate) fn remove_entry_if(
        &self,
        key: &str,
        condition: impl Fn(&IndexEntry) -> bool,
    ) -> Result<bool> {
        let _key_guard = self.key_locks.lock(key);
        if !lock(&self.index).peek(key).is_some_and(&condition) {
            return Ok(false);
        }
        self.remove_locked(key)
    }

    /// Removes `key`'s metadata file (whether or not the index knows it) and its index
    /// entry. The caller holds the key's lock.
    pub(crate) fn remove_locked(&self, key: &str) -> Result<bool> {
        let path = self.layout.entry_path(key);
        remove(&path)?;
        let mut index = lock(&self.index);
        let mut released = Released::default();
        let removed = index.remove(key, &mut released).is_some();
        self.remove_bodies(&mut index, released)?;
        Ok(removed)
    }

    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let _key_guard = self.key_locks.lock(key);
        // Every call counts, found or not, as `BackendStats::deletes` says and every other
        // backend counts.
        self.remove_locked(key)?;
        self.counters.add_deletes(1);
        Ok(())
    }

    /// Removes every entry that uses a body found corrupt, and so the body.
    pub(crate) fn remove_corrupt_body(&self, digest: &BodyDigest) {
        let keys = lock(&self.index).keys_using(digest);
        for key in keys {
            // A removal that fails leaves an entry whose next read fails the same way
            // and tries again.
            if let Ok(true) = self.remove_entry_if(&key, |entry| entry.body.digest == *digest) {
                self.counters.add_corrupt_entries(1);
            }
        }
    }

    /// Removes the entries tagged `tag` (only while an entry still carries the tag: an
    /// overwrite without it survives).
    pub(crate) fn delete_tag(&self, tag: &str) -> Result<u64> {
        let keys = lock(&self.index).keys_tagged(tag);
        let mut removed = 0;
        for key in keys {
            if self.remove_entry_if(&key, |entry| {
                entry.tags.iter().any(|carried| carried == tag)
            })? {
                removed += 1;
            }
        }
        self.counters.add_deletes(removed);
        Ok(removed)
    }

    pub(crate) fn delete_where(
        &self,
        condition: impl Fn(&str, &IndexEntry) -> bool,
    ) -> Result<u64> {
        let keys: Vec<String> = lock(&self.index)
            .iter()
            .filter(|(key, entry)| condition(key, entry))
            .map(|(key, _)| key.clone())
            .collect();
        let mut removed = 0;
        for key in keys {
            if self.remove_entry_if(&key, |entry| condition(&key, entry))? {
                removed += 1;
            }
        }
        self.counters.add_deletes(removed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cache_core::testkit::fixtures::{policy, response};
    use cache_core::{CacheManager, PutOptions};

    use super::*;
    use crate::StreamingCache;

    /// The sweep lists the expired keys, then removes them one by one: a key put again in
    /// between, even with the same body, must stay.
    #[tokio::test]
    async fn a_key_put_again_after_the_sweep_listed_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = StreamingCache::open(StreamingConfig::new(dir.path()))
            .await
            .unwrap();
        let stored = response("https://example.com/refreshed", "unchanged body");
        let short = PutOptions::new().with_ttl(Duration::from_millis(20));
        store
            .put("k", stored.clone(), policy(&stored), short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = SystemTime::now();
        let listed = lock(&store.inner.index).expired_keys(now);
        assert_eq!(listed, ["k"]);
        // Refreshed with the same body before the sweep gets to it.
        let hour = PutOptions::new().with_ttl(Duration::from_secs(3600));
        store
            .put("k", stored.clone(), policy(&stored), hour)
            .await
            .unwrap();
        assert_eq!(store.inner.remove_expired(listed, now).unwrap(), 0);
        assert!(store.get("k").await.unwrap().is_some());
    }
}
