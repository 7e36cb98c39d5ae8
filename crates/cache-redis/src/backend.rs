//! The [`CacheManager`] implementation: validate, call the core, count.

use std::sync::Arc;
use std::time::SystemTime;

use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, Health, KeyPattern, PutOptions, Result, validate_key,
};

use crate::bus::RedisBus;
use crate::config::RedisConfig;
use crate::core::{Inner, Lookup, Stored};
use crate::error::NAME;
use crate::streams::RedisStream;

/// A cache in Redis, shared by every instance that points at the same server and
/// namespace. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisCache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache on the server `config` names, once it answered a `PING`: fails with
    /// `Unavailable` or `Timeout` when it does not, and with `Config` when the URL is not
    /// a Redis URL or the server refuses the credentials. With
    /// [`RedisConfig::with_lazy_connect`] it returns without waiting for the server, and
    /// operations fail with `Unavailable` until the server is up. Must run inside a tokio
    /// runtime (the connection runs tasks of its own).
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        // The connection manager spawns tasks; outside a runtime that would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "RedisCache::connect must run inside a tokio runtime",
            ));
        }
        let lazy = config.lazy_connect;
        let cache = Self {
            inner: Arc::new(Inner::open(config)?),
        };
        if !lazy {
            cache.inner.ping().await?;
        }
        Ok(cache)
    }

    /// The invalidation bus on this cache's server and namespace, with a new random
    /// instance id; it shares this cache's connection for publishing.
    pub fn bus(&self) -> RedisBus {
        RedisBus::new(Arc::clone(&self.inner))
    }

    /// The stream `name` in this cache's namespace.
    pub fn stream(&self, name: &str) -> RedisStream {
        RedisStream::new(Arc::clone(&self.inner), name)
    }

    /// The configuration the cache was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }
}

impl CacheManager for RedisCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_tags()
            .with_delete_pattern()
            .with_clear()
            .with_entry_count()
            .with_health()
            .with_stats()
            .with_stores_bytes()
            // RedisConfig::with_max_entry_bytes: the largest encoded value a put sends.
            .with_max_entry_bytes(self.inner.config.max_entry_bytes)
            // Every instance pointed at the server and namespace sees the same entries.
            .with_shared()
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            let counters = &self.inner.counters;
            let lookup = self
                .inner
                .lookup(key)
                .await
                .map_err(|error| error.with_key(key))?;
            match lookup {
                Lookup::Hit(entry) => {
                    counters.add_hits(1);
                    return Ok(Some(entry));
                }
                Lookup::Miss | Lookup::Expired => {}
                Lookup::Corrupt => counters.add_corrupt_entries(1),
            }
            counters.add_misses(1);
            Ok(None)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            let metadata = self.inner.config.ttl_policy.entry_metadata(
                &policy,
                &response.headers,
                &options,
                SystemTime::now(),
            );
            let stored = self
                .inner
                .store(key, &response, &policy, &metadata)
                .await
                .map_err(|error| error.with_key(key))?;
            if let Stored::Written = stored {
                self.inner.counters.add_puts(1);
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(async move {
            self.inner
                .delete_key(&self.inner.layout.entry(key))
                .await
                .map_err(|error| error.with_key(key))?;
            self.inner.counters.add_deletes(1);
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(async move {
            let removed = self.inner.delete_tag(tag).await?;
            self.inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(async move {
            let removed = self.inner.delete_matching(pattern).await?;
            self.inner.counters.add_deletes(removed);
            Ok(removed)
        })
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        CacheFuture::new(async move {
            let removed = self.inner.clear().await?;
            self.inner.counters.add_deletes(removed);
            Ok(())
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::new(self.inner.entry_count())
    }

    fn health(&self) -> CacheFuture<'_, Result<Health>> {
        CacheFuture::new(async move { self.inner.ping().await.map(Health::new) })
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}
