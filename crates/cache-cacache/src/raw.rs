//! Raw access to the stored bytes, for the conformance suite's corruption and credential
//! cases.

use std::path::PathBuf;

use cache_core::{Error, ErrorKind, Result};
use cache_kit::lock;

use crate::backend::CacacheCache;
use crate::core::{NAME, io_error};
use crate::layout::{bucket_path, content_path};

/// Direct access to the stored bytes, for tests that corrupt or inspect them.
///
/// `read` returns the content file of the key's current entry; `write` replaces that
/// file's bytes in place, as disk corruption would.
#[derive(Debug, Clone)]
pub struct RawAccess {
    cache: CacacheCache,
}

impl CacacheCache {
    /// Raw access to the stored bytes (for corruption and credential tests).
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            cache: self.clone(),
        }
    }
}

impl RawAccess {
    /// The path of the content file of `key`'s current entry.
    pub fn content_file(&self, key: &str) -> Option<PathBuf> {
        let inner = &self.cache.inner;
        lock(&inner.index)
            .peek(key)
            .map(|entry| content_path(&inner.dir, &entry.integrity))
    }

    /// The path of `key`'s index bucket.
    pub fn bucket_file(&self, key: &str) -> PathBuf {
        bucket_path(&self.cache.inner.dir, key)
    }

    /// The stored bytes of `key`'s current entry.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.content_file(key) {
            Some(path) => std::fs::read(&path)
                .map(Some)
                .map_err(|error| io_error(error, "cannot read", &path)),
            None => Ok(None),
        }
    }

    /// Overwrites the stored bytes of `key`'s current entry.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.content_file(key).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, NAME, "no entry to overwrite").with_key(key)
        })?;
        std::fs::write(&path, bytes).map_err(|error| io_error(error, "cannot write", &path))
    }
}
