//! Raw access to the stored values and the keys they live under, for the conformance
//! suite's corruption and credential cases and for tests that look inside Redis.

use std::sync::Arc;

use cache_core::Result;

use crate::backend::RedisCache;
use crate::core::Inner;

impl RedisCache {
    /// The prefix of every Redis key this cache, its bus and its streams use (the
    /// namespace's encoded form and `:`). No other namespace's keys start with it.
    pub fn key_prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    /// The Redis key an entry for `key` is stored under.
    pub fn entry_key(&self, key: &str) -> String {
        self.inner.layout.entry(key)
    }

    /// The Redis key of the set that records the entries put with `tag`.
    pub fn tag_key(&self, tag: &str) -> String {
        self.inner.layout.tag(tag)
    }

    /// Raw access to the stored values (for corruption and credential tests).
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Direct access to the value stored for a key: the 8-byte put id, then the codec's
/// envelope. Reads and writes go through the cache's own connection.
#[derive(Clone)]
pub struct RawAccess {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RawAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAccess")
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl RawAccess {
    /// The value stored for `key`, byte for byte, or `None`.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.layout.entry(key));
        self.inner
            .query(&cmd, "read the raw value")
            .await
            .map_err(|error| error.with_key(key))
    }

    /// Replaces the value stored for `key` with `bytes`, keeping its expiry (as
    /// corruption in Redis would).
    pub async fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.inner.layout.entry(key))
            .arg(bytes)
            .arg("KEEPTTL");
        self.inner
            .query(&cmd, "write the raw value")
            .await
            .map_err(|error| error.with_key(key))
    }
}
