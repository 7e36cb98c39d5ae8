//! The `CacheManager` implementation on a reconnecting multiplexed connection.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cache_core::{
    BackendStats, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, Health, KeyPattern, PutOptions, Result, StatsCounters, codec, validate_key,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, RedisResult, RedisWrite, Script};

use crate::bus::RedisBus;
use crate::config::{RedisConfig, redact_url};
use crate::error::{NAME, redis_error, timeout_error};
use crate::streams::RedisStream;

/// Bytes of the put id stored in front of every envelope.
pub(crate) const PUT_ID_LEN: usize = 8;

/// Keys scanned per `SCAN` call by pattern deletion, `clear` and `entry_count`.
const SCAN_BATCH: usize = 1_000;

/// Stores the entry, adds its put id and key to each tag set, keeps each set alive as
/// long as its longest-lived member, and drops up to two members that no longer name
/// the current entry of their key (so sets of often rewritten keys do not grow).
const PUT_TAGGED: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3])
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[i], 2)) do
    local entry = ARGV[4] .. string.sub(member, 9)
    if redis.call('GETRANGE', entry, 0, 7) ~= string.sub(member, 1, 8) then
      redis.call('SREM', KEYS[i], member)
    end
  end
end
return 1
";

/// Deletes the entries a tag set names whose current put id is still the one the set
/// recorded (an entry rewritten without the tag keeps living), then the set.
const DELETE_TAG: &str = r"
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local entry = ARGV[1] .. string.sub(member, 9)
  if redis.call('GETRANGE', entry, 0, 7) == string.sub(member, 1, 8) then
    redis.call('DEL', entry)
    removed = removed + 1
  end
end
redis.call('DEL', KEYS[1])
return removed
";

/// Deletes a key only while it still holds the value with the given put id, so removing a
/// corrupt entry never removes a good one a concurrent put just wrote.
const DELETE_IF_PUT_ID: &str = r"
if redis.call('GETRANGE', KEYS[1], 0, 7) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A cache in Redis, shared by every instance that points at the same server and
/// namespace. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisCache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) connection: ConnectionManager,
    pub(crate) config: RedisConfig,
    entry_prefix: String,
    tag_prefix: String,
    counters: StatsCounters,
    put_tagged: Script,
    delete_tag: Script,
    delete_if_put_id: Script,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache that connects on first use: building it succeeds while Redis is down, and
    /// operations fail with `Unavailable` until it is up. Must be called inside a tokio
    /// runtime. Fails with `Config` when the URL is not a Redis URL.
    pub fn new(config: RedisConfig) -> Result<Self> {
        // The connection manager spawns tasks; outside a runtime that would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "RedisCache::new must be called inside a tokio runtime",
            ));
        }
        let client = open_client(&config)?;
        let manager_config = ConnectionManagerConfig::new()
            // One connection attempt per operation: an operation fails fast with
            // `Unavailable` while the server is down instead of waiting out a backoff,
            // and the next operation tries again.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(config.connect_timeout))
            // Every operation runs inside `run`, whose timer (the command timeout) covers
            // its attempts, reconnection included; a second timer per command inside
            // redis-rs would only cost time.
            .set_response_timeout(None);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|error| redis_error(error, "set up the connection"))?;
        let namespace = &config.namespace;
        Ok(Self {
            inner: Arc::new(Inner {
                entry_prefix: format!("{namespace}:e:"),
                tag_prefix: format!("{namespace}:t:"),
                client,
                connection,
                config,
                counters: StatsCounters::default(),
                put_tagged: Script::new(PUT_TAGGED),
                delete_tag: Script::new(DELETE_TAG),
                delete_if_put_id: Script::new(DELETE_IF_PUT_ID),
            }),
        })
    }

    /// A cache whose server answered a `PING`: fails with `Unavailable` or `Timeout` when
    /// it does not.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let cache = Self::new(config)?;
        cache.ping().await?;
        Ok(cache)
    }

    /// The invalidation bus on this cache's server and namespace, with a new random
    /// instance id; it shares this cache's connection for publishing.
    pub fn bus(&self) -> RedisBus {
        RedisBus::new(self)
    }

    /// The stream `name` in this cache's namespace (`{namespace}:s:{name}`).
    pub fn stream(&self, name: &str) -> RedisStream {
        RedisStream::new(self, name)
    }

    /// The configuration the cache was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The Redis key an entry for `key` is stored under.
    pub fn entry_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.entry_prefix)
    }

    /// The Redis key of the set that records the entries put with `tag`.
    pub fn tag_key(&self, tag: &str) -> String {
        format!("{}{tag}", self.inner.tag_prefix)
    }

    async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let pong: String = self
            .inner
            .query(&redis::cmd("PING"), "ping the server")
            .await?;
        if pong != "PONG" {
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                format!("the server answered {pong:?} to PING"),
            ));
        }
        Ok(started.elapsed())
    }
}

fn open_client(config: &RedisConfig) -> Result<Client> {
    #[cfg(feature = "tls")]
    {
        // rustls needs a process-wide crypto provider; this crate builds it with ring.
        // Installing fails harmlessly when the application installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(root) = &config.tls_root_certificate {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            };
            return Client::build_with_tls(config.url.as_str(), certificates)
                .map_err(|error| client_config_error(config, &error));
        }
    }
    Client::open(config.url.as_str()).map_err(|error| client_config_error(config, &error))
}

/// The parse error may quote the URL, password included: it is not kept as the source.
fn client_config_error(config: &RedisConfig, error: &redis::RedisError) -> Error {
    Error::new(
        ErrorKind::Config,
        NAME,
        format!(
            "{} is not a usable redis url ({:?})",
            redact_url(&config.url),
            error.kind()
        ),
    )
}

impl Inner {
    /// Runs `operation` on the shared connection within the command timeout. An operation
    /// that failed because the connection was down is tried once more: the failure made
    /// the connection manager reconnect, and after a server restart the second attempt
    /// is the one that finds it up. Every operation retried this way is idempotent.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, operation: F) -> Result<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match operation(self.connection.clone()).await {
                Err(error) if is_connection_failure(&error) => {
                    operation(self.connection.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.config.command_timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(redis_error(error, what)),
            Err(_) => Err(timeout_error(what, self.config.command_timeout)),
        }
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd, what: &str) -> Result<T> {
        self.run(what, |mut connection| async move {
            cmd.query_async(&mut connection).await
        })
        .await
    }

    /// One `SCAN` page of keys under `pattern` (a Redis glob; never `KEYS`): the next
    /// cursor (0 when done) and the keys. A key can come up in more than one page.
    async fn scan_page(&self, pattern: &str, cursor: u64) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH);
        self.query(&cmd, "scan the namespace").await
    }

    /// Unlinks every key under `pattern` that `keep` selects, page by page (memory stays
    /// bounded by a page); returns how many keys existed and were removed.
    async fn unlink_matching(&self, pattern: &str, keep: impl Fn(&[u8]) -> bool) -> Result<u64> {
        let (mut cursor, mut removed) = (0, 0);
        loop {
            let (next, mut keys) = self.scan_page(pattern, cursor).await?;
            keys.retain(|key| keep(key));
            // A key listed twice is unlinked once: the second UNLINK counts 0.
            removed += self.unlink(&keys).await?;
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Unlinks `keys` in batches; returns how many existed.
    async fn unlink(&self, keys: &[Vec<u8>]) -> Result<u64> {
        let mut removed = 0;
        for batch in keys.chunks(SCAN_BATCH) {
            let mut cmd = redis::cmd("UNLINK");
            for key in batch {
                cmd.arg(key);
            }
            removed += self.query::<u64>(&cmd, "unlink keys").await?;
        }
        Ok(removed)
    }

    async fn get(&self, key: &str) -> Result<Option<Arc<CacheEntry>>> {
        let redis_key = format!("{}{key}", self.entry_prefix);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&redis_key);
        let stored: Option<Vec<u8>> = self
            .query(&cmd, "get the entry")
            .await
            .map_err(|error| error.with_key(key))?;
        let Some(stored) = stored else {
            self.counters.add_misses(1);
            return Ok(None);
        };
        let stored = Bytes::from(stored);
        let decoded = if stored.len() < PUT_ID_LEN {
            Err(None)
        } else {
            codec::decode_for_key(stored.slice(PUT_ID_LEN..), key)
                .map_err(|_| Some(stored.slice(..PUT_ID_LEN)))
        };
        match decoded {
            Ok(entry) if !entry.metadata.is_expired_at(SystemTime::now()) => {
                self.counters.add_hits(1);
                Ok(Some(Arc::new(entry)))
            }
            Ok(_) => {
                // Redis expires the key itself a moment later (its clock started when the
                // SET arrived, after the entry's stored-at).
                self.counters.add_misses(1);
                Ok(None)
            }
            Err(put_id) => {
                self.remove_corrupt(&redis_key, put_id).await;
                self.counters.add_corrupt_entries(1);
                self.counters.add_misses(1);
                Ok(None)
            }
        }
    }

    /// Removes a value that did not decode. Best effort: the caller gets a miss either way,
    /// and a value left behind is found corrupt (and removed) again on the next read.
    async fn remove_corrupt(&self, redis_key: &str, put_id: Option<Bytes>) {
        let _ = match put_id {
            Some(put_id) => {
                let mut invocation = self.delete_if_put_id.key(redis_key);
                invocation.arg(&put_id[..]);
                self.run("remove a corrupt entry", |mut connection| {
                    let invocation = &invocation;
                    async move { invocation.invoke_async::<u64>(&mut connection).await }
                })
                .await
            }
            None => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(redis_key);
                self.query::<u64>(&cmd, "remove a corrupt entry").await
            }
        };
    }

    async fn put(
        &self,
        key: &str,
        response: &CachedResponse,
        policy: &CachePolicy,
        options: &PutOptions,
    ) -> Result<()> {
        let metadata = self.config.ttl_policy.entry_metadata(
            policy,
            &response.headers,
            options,
            SystemTime::now(),
        );
        let redis_key = format!("{}{key}", self.entry_prefix);
        let ttl = metadata.storage_ttl();
        if ttl.is_zero() {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&redis_key);
            self.query::<u64>(&cmd, "delete the entry")
                .await
                .map_err(|error| error.with_key(key))?;
            return Ok(());
        }
        let put_id: [u8; PUT_ID_LEN] = rand::random();
        // The envelope borrows the body: it is copied once, into the command.
        let envelope = codec::encode_parts_borrowed(key, response, policy, &metadata)
            .map_err(|error| error.with_key(key))?;
        let value_len = PUT_ID_LEN + envelope.len();
        if value_len as u64 > self.config.max_entry_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry takes {value_len} bytes, more than the limit of {}",
                    self.config.max_entry_bytes
                ),
            )
            .with_key(key));
        }
        let write_value = |out: &mut dyn std::io::Write| {
            out.write_all(&put_id)?;
            envelope.write_to(out)
        };
        let value_error = |error: std::io::Error| {
            Error::new(ErrorKind::Backend, NAME, "cannot write the value")
                .with_key(key)
                .with_source(error)
        };
        // Redis counts whole milliseconds: round up so Redis never drops the entry before
        // its expiry (reads check the exact expiry themselves).
        let ttl_ms = u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        if metadata.tags.is_empty() {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&redis_key);
            cmd.reserve_space_for_args([value_len, 2, 20]);
            write_value(&mut cmd.writer_for_next_arg()).map_err(value_error)?;
            cmd.arg("PX").arg(ttl_ms);
            drop(envelope);
            self.query::<()>(&cmd, "put the entry")
                .await
                .map_err(|error| error.with_key(key))?;
        } else {
            let mut invocation = self.put_tagged.key(&redis_key);
            for tag in &metadata.tags {
                invocation.key(format!("{}{tag}", self.tag_prefix));
            }
            let mut member = Vec::with_capacity(PUT_ID_LEN + key.len());
            member.extend_from_slice(&put_id);
            member.extend_from_slice(key.as_bytes());
            let mut value = Vec::with_capacity(value_len);
            write_value(&mut value).map_err(value_error)?;
            drop(envelope);
            invocation
                .arg(&value)
                .arg(ttl_ms)
                .arg(member)
                .arg(&self.entry_prefix);
            drop(value);
            self.run("put the tagged entry", |mut connection| {
                let invocation = &invocation;
                async move { invocation.invoke_async::<i64>(&mut connection).await }
            })
            .await
            .map_err(|error| error.with_key(key))?;
        }
        self.counters.add_puts(1);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(format!("{}{key}", self.entry_prefix));
        self.query::<u64>(&cmd, "delete the entry")
            .await
            .map_err(|error| error.with_key(key))?;
        self.counters.add_deletes(1);
        Ok(())
    }

    async fn delete_tag(&self, tag: &str) -> Result<u64> {
        let mut invocation = self.delete_tag.key(format!("{}{tag}", self.tag_prefix));
        invocation.arg(&self.entry_prefix);
        let removed = self
            .run("delete a tag", |mut connection| {
                let invocation = &invocation;
                async move { invocation.invoke_async::<u64>(&mut connection).await }
            })
            .await?;
        self.counters.add_deletes(removed);
        Ok(removed)
    }

    async fn delete_pattern(&self, pattern: &KeyPattern) -> Result<u64> {
        let glob = format!(
            "{}{}",
            escape_glob(&self.entry_prefix),
            redis_glob(pattern.as_str())
        );
        // The Redis glob selects a superset (its `?` is one byte, ours one character);
        // the pattern itself decides.
        let removed = self
            .unlink_matching(&glob, |redis_key| {
                redis_key
                    .strip_prefix(self.entry_prefix.as_bytes())
                    .and_then(|key| std::str::from_utf8(key).ok())
                    .is_some_and(|key| pattern.matches(key))
            })
            .await?;
        self.counters.add_deletes(removed);
        Ok(removed)
    }

    async fn clear(&self) -> Result<()> {
        let entries = format!("{}*", escape_glob(&self.entry_prefix));
        let removed = self.unlink_matching(&entries, |_| true).await?;
        let tag_sets = format!("{}*", escape_glob(&self.tag_prefix));
        self.unlink_matching(&tag_sets, |_| true).await?;
        self.counters.add_deletes(removed);
        Ok(())
    }

    /// Counts the namespace's entries with a full `SCAN`: O(entries) round trips' worth of
    /// work, and memory of 8 bytes per entry to count a key `SCAN` lists twice only once.
    async fn entry_count(&self) -> Result<u64> {
        use std::hash::{Hash, Hasher};
        let pattern = format!("{}*", escape_glob(&self.entry_prefix));
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_page(&pattern, cursor).await?;
            for key in keys {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                seen.insert(hasher.finish());
            }
            if next == 0 {
                return Ok(seen.len() as u64);
            }
            cursor = next;
        }
    }
}

/// Errors of a connection that broke (not of the command): the connection manager
/// reconnects, and the operation may be tried again.
fn is_connection_failure(error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && (error.kind() == redis::ErrorKind::Io
            || error.is_connection_refusal()
            || error.is_connection_dropped())
}

/// `text` with Redis's glob characters escaped, so it matches only itself.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A [`KeyPattern`] source as a Redis glob matching at least the same keys: literals are
/// escaped, `*` stays, and `?` (one character, which may be several bytes) becomes `*`.
fn redis_glob(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => glob.push('*'),
            '\\' => {
                if let Some(escaped) = chars.next() {
                    glob.push_str(&escape_glob(&escaped.to_string()));
                }
            }
            other => glob.push_str(&escape_glob(&other.to_string())),
        }
    }
    glob
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
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(self.inner.get(key))
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
        CacheFuture::new(async move { self.inner.put(key, &response, &policy, &options).await })
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key(NAME, key) {
            return CacheFuture::ready(Err(error));
        }
        CacheFuture::new(self.inner.delete(key))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(self.inner.delete_tag(tag))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(self.inner.delete_pattern(pattern))
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        CacheFuture::new(self.inner.clear())
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        CacheFuture::new(self.inner.entry_count())
    }

    fn health(&self) -> CacheFuture<'_, Result<Health>> {
        CacheFuture::new(async move { self.ping().await.map(Health::new) })
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.inner.counters.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_escape_literals_and_widen_one_character_wildcards() {
        assert_eq!(escape_glob("ns[1]*?\\"), "ns\\[1\\]\\*\\?\\\\");
        assert_eq!(redis_glob("GET:/users/*"), "GET:/users/*");
        assert_eq!(redis_glob("a?c"), "a*c");
        assert_eq!(redis_glob("lit\\*eral[x]"), "lit\\*eral\\[x\\]");
    }
}
