//! Commits: a body complete in its temporary file becomes an entry.

use std::io::Write;
use std::time::SystemTime;

use cache_core::{
    CachePolicy, CachedResponse, Error, ErrorKind, PutOptions, ResponseHead, Result, StoredBody,
    codec,
};
use cache_kit::files::{rename_into_place, sync_parent_dir};
use cache_kit::lock;

use crate::NAME;
use crate::core::{Inner, remove};
use crate::index::{ENTRY_OVERHEAD, IndexEntry, Released};
use crate::layout::{BodyFacts, encode_metadata};
use crate::write::{BodyHasher, TempFile, io_error};

impl Inner {
    /// Commits a body that is complete in its temporary file: the body (unless the same
    /// body is stored already), then the metadata, then the index.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one commit, passed once"
    )]
    pub(crate) fn commit(
        &self,
        key: &str,
        head: &ResponseHead,
        policy: &CachePolicy,
        options: &PutOptions,
        body_temp: TempFile,
        body_file: std::fs::File,
        facts: BodyFacts,
    ) -> Result<StoredBody> {
        let metadata =
            self.ttl_policy
                .entry_metadata(policy, &head.headers, options, SystemTime::now());
        if metadata.storage_ttl().is_zero() {
            drop(body_temp);
            self.delete(key)?;
            return Ok(StoredBody::new(facts.len));
        }
        let envelope = codec::encode_head(key, head, policy, &metadata, facts.len)?;
        let metadata_bytes = encode_metadata(&facts, &envelope);
        let needed = facts.len + metadata_bytes.len() as u64 + ENTRY_OVERHEAD;
        if needed > self.capacity_bytes {
            return Err(self.too_large(key, needed));
        }
        if self.durable_writes {
            body_file
                .sync_all()
                .map_err(|error| io_error(error, "cannot sync", body_temp.path()))?;
        }
        drop(body_file);
        let (metadata_temp, mut metadata_file) = TempFile::create(&self.layout, &self.temps)?;
        metadata_file
            .write_all(&metadata_bytes)
            .map_err(|error| io_error(error, "cannot write", metadata_temp.path()))?;
        if self.durable_writes {
            metadata_file
                .sync_all()
                .map_err(|error| io_error(error, "cannot sync", metadata_temp.path()))?;
        }
        drop(metadata_file);

        let body_path = self.layout.body_path(&facts.digest);
        let entry_path = self.layout.entry_path(key);
        let key_guard = self.key_locks.lock(key);
        {
            let mut index = lock(&self.index);
            if index.acquire_body(&facts) {
                // Stored already: this copy goes.
                body_temp.remove_now();
            } else if let Err(error) = rename_into_place(body_temp.path(), &body_path) {
                let mut released = Released::default();
                index.release_body(&facts.digest, &mut released);
                return Err(io_error(error, "cannot commit the body to", &body_path).with_key(key));
            } else {
                body_temp.renamed();
            }
        }
        if let Err(error) = rename_into_place(metadata_temp.path(), &entry_path) {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            index.release_body(&facts.digest, &mut released);
            self.remove_bodies(&mut index, released)?;
            return Err(io_error(error, "cannot commit the entry to", &entry_path).with_key(key));
        }
        metadata_temp.renamed();
        if self.durable_writes {
            sync_parent_dir(&body_path)
                .and_then(|()| sync_parent_dir(&entry_path))
                .map_err(|error| io_error(error, "cannot sync the directory of", &entry_path))?;
        }
        let evicted = {
            let mut index = lock(&self.index);
            let mut released = Released::default();
            let entry = IndexEntry::new(
                facts,
                metadata_bytes.len() as u64,
                metadata.expires_at,
                metadata.tags,
            );
            let evicted = index.insert(key.to_owned(), entry, self.capacity_bytes, &mut released);
            self.remove_bodies(&mut index, released)?;
            evicted
        };
        drop(key_guard);
        self.counters.add_puts(1);
        self.counters.add_evictions(evicted.len() as u64);
        for victim in evicted {
            let _victim_guard = self.key_locks.lock(&victim);
            // The victim left the index already; if it was written again meanwhile, its
            // new metadata file stays.
            if !lock(&self.index).contains(&victim) {
                let path = self.layout.entry_path(&victim);
                remove(&path)?;
            }
        }
        Ok(StoredBody::new(facts.len))
    }

    /// Refuses a put of `needed` bytes: removes what `key` held (a refused put leaves no
    /// entry, never the previous version) and returns the error.
    pub(crate) fn too_large(&self, key: &str, needed: u64) -> Error {
        let error = Error::new(
            ErrorKind::TooLarge,
            NAME,
            format!(
                "the entry takes {needed} bytes, more than the whole capacity of {}",
                self.capacity_bytes
            ),
        )
        .with_key(key);
        let _key_guard = self.key_locks.lock(key);
        match self.remove_locked(key) {
            Ok(_) => error,
            Err(removal) => removal.with_key(key),
        }
    }

    pub(crate) fn put(
        &self,
        key: &str,
        response: CachedResponse,
        policy: &CachePolicy,
        options: &PutOptions,
    ) -> Result<()> {
        let probe =
            self.ttl_policy
                .entry_metadata(policy, &response.headers, options, SystemTime::now());
        if probe.storage_ttl().is_zero() {
            return self.delete(key);
        }
        let (head, body) = response.into_head_and_body();
        let needed = body.len() as u64 + ENTRY_OVERHEAD;
        if needed > self.capacity_bytes {
            return Err(self.too_large(key, needed));
        }
        let (temp, mut file) = TempFile::create(&self.layout, &self.temps)?;
        file.write_all(&body)
            .map_err(|error| io_error(error, "cannot write", temp.path()).with_key(key))?;
        let mut hasher = BodyHasher::new();
        hasher.update(&body);
        self.commit(key, &head, policy, options, temp, file, hasher.finish())
            .map(drop)
    }
}
