//! Raw access to the stored files, for the conformance suite's corruption and credential
//! cases.

use std::path::PathBuf;

use cache_core::Result;
use cache_kit::lock;

use crate::backend::StreamingCache;
use crate::write::io_error;

/// Access to the files behind entries, for tests that corrupt or inspect them.
#[derive(Debug, Clone)]
pub struct RawAccess {
    store: StreamingCache,
}

impl RawAccess {
    /// The metadata file of `key` (whether or not it exists).
    pub fn metadata_file(&self, key: &str) -> PathBuf {
        self.store.inner.layout.entry_path(key)
    }

    /// The body file of `key`'s current entry.
    pub fn body_file(&self, key: &str) -> Option<PathBuf> {
        let inner = &self.store.inner;
        lock(&inner.index)
            .peek(key)
            .map(|entry| inner.layout.body_path(&entry.body.digest))
    }

    /// The bytes of `key`'s metadata file, or `None` when it has none.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.metadata_file(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error, "cannot read", &path)),
        }
    }

    /// Overwrites `key`'s metadata file with `bytes`.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.metadata_file(key);
        std::fs::write(&path, bytes).map_err(|error| io_error(error, "cannot write", &path))
    }
}

impl StreamingCache {
    /// Raw access to the stored files (for corruption and credential tests).
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            store: self.clone(),
        }
    }
}
