//! Reads: find a key's live entry under its lock and open its body.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use cache_core::{CacheEntry, CachedResponse, Result, StreamedEntry};
use cache_kit::lock;

use crate::core::{Inner, Lookup};
use crate::layout::{StoredMetadata, decode_metadata};
use crate::read::{FileBody, Verifier};
use crate::write::io_error;

impl Inner {
    /// Finds `key`'s live entry and opens its body file. Counts a miss when there is
    /// none (and the expiry or corruption that made it one); the caller counts the hit.
    pub(crate) fn open_entry(&self, key: &str) -> Result<Option<(StoredMetadata, std::fs::File)>> {
        let outcome = {
            // Under the key's lock the index and the metadata file agree: a commit renames
            // the metadata and updates the index under the same lock.
            let _key_guard = self.key_locks.lock(key);
            self.open_locked(key)?
        };
        match outcome {
            Lookup::Found(stored, file) => return Ok(Some((*stored, file))),
            Lookup::Missing => {}
            Lookup::Expired => self.counters.add_expirations(1),
            Lookup::Corrupt => self.counters.add_corrupt_entries(1),
            Lookup::CorruptBody(digest) => self.remove_corrupt_body(&digest),
        }
        self.counters.add_misses(1);
        Ok(None)
    }

    pub(crate) fn open_locked(&self, key: &str) -> Result<Lookup> {
        let now = SystemTime::now();
        let found = lock(&self.index)
            .touch(key)
            .map(|entry| (entry.body.digest, entry.expires_at));
        let Some((digest, expires_at)) = found else {
            return Ok(Lookup::Missing);
        };
        if expires_at <= now {
            self.remove_locked(key)?;
            return Ok(Lookup::Expired);
        }
        let entry_path = self.layout.entry_path(key);
        let bytes = match std::fs::read(&entry_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Removed behind the store's back: the index must not keep counting it.
                self.remove_locked(key)?;
                return Ok(Lookup::Missing);
            }
            Err(error) => return Err(io_error(error, "cannot read", &entry_path).with_key(key)),
        };
        let stored = match decode_metadata(Bytes::from(bytes)) {
            Ok(stored) if stored.head.key == key && stored.body.digest == digest => stored,
            _ => {
                self.remove_locked(key)?;
                return Ok(Lookup::Corrupt);
            }
        };
        let body_path = self.layout.body_path(&digest);
        // Opened under the index lock: the body cannot be removed before it is open, and
        // an open file stays readable after its removal.
        let opened = {
            let _index = lock(&self.index);
            std::fs::File::open(&body_path)
        };
        let file = match opened {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lookup::CorruptBody(digest));
            }
            Err(error) => return Err(io_error(error, "cannot open", &body_path).with_key(key)),
        };
        let file_len = file
            .metadata()
            .map_err(|error| io_error(error, "cannot inspect", &body_path).with_key(key))?
            .len();
        if file_len != stored.body.len {
            return Ok(Lookup::CorruptBody(digest));
        }
        Ok(Lookup::Found(Box::new(stored), file))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        let Some((stored, mut file)) = self.open_entry(key)? else {
            return Ok(None);
        };
        let mut body = Vec::with_capacity(usize::try_from(stored.body.len).unwrap_or(0));
        let body_path = self.layout.body_path(&stored.body.digest);
        (&mut file)
            .take(stored.body.len)
            .read_to_end(&mut body)
            .map_err(|error| io_error(error, "cannot read", &body_path).with_key(key))?;
        let mut verifier = Verifier::new(self.read_verification);
        verifier.update(&body);
        if body.len() as u64 != stored.body.len || !verifier.matches(&stored.body) {
            self.counters.add_misses(1);
            self.remove_corrupt_body(&stored.body.digest);
            return Ok(None);
        }
        self.counters.add_hits(1);
        let head = stored.head;
        Ok(Some(Arc::new(CacheEntry::new(
            CachedResponse::from_head_and_body(head.head, Bytes::from(body)),
            head.policy,
            head.metadata,
        ))))
    }

    pub(crate) fn get_stream(self: &Arc<Self>, key: &str) -> Result<Option<StreamedEntry>> {
        let Some((stored, file)) = self.open_entry(key)? else {
            return Ok(None);
        };
        self.counters.add_hits(1);
        let inner = Arc::clone(self);
        let digest = stored.body.digest;
        let on_corrupt = Arc::new(move || inner.remove_corrupt_body(&digest));
        let body = FileBody::new(
            file,
            stored.body,
            self.read_verification,
            self.read_chunk_bytes,
            on_corrupt,
        );
        let head = stored.head;
        Ok(Some(StreamedEntry::new(
            head.head,
            head.policy,
            head.metadata,
            stored.body.len,
            Box::pin(body),
        )))
    }
}
