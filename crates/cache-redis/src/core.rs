//! The state every handle shares (client, connection, configuration, key layout,
//! scripts, counters) and the Redis primitives the cache, the bus and the streams are
//! written with.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cache_core::{
    CacheEntry, CachePolicy, CachedResponse, EntryMetadata, Error, ErrorKind, KeyPattern, Result,
    StatsCounters, codec,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisResult, RedisWrite, Script, ScriptInvocation};

use crate::config::{RedisConfig, redact_url};
use crate::error::{NAME, redis_error, timeout_error};
use crate::layout::KeyLayout;

/// Bytes of the put id stored in front of every envelope.
pub(crate) const PUT_ID_LEN: usize = 8;

/// How many members of a tag set one script call of tag deletion takes: deleting a tag
/// with a million entries is 2,000 short scripts, never one that blocks the server for
/// the whole set.
pub const TAG_DELETE_PAGE: usize = 500;

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

/// Takes up to `ARGV[2]` members out of a tag set (Redis drops the set with its last
/// member) and unlinks the entries among them whose current put id is still the one the
/// set recorded (an entry rewritten without the tag keeps living); returns how many
/// entries it removed and how many members it took.
const DELETE_TAG_PAGE: &str = r"
local members = redis.call('SPOP', KEYS[1], ARGV[2])
local removed = 0
for _, member in ipairs(members) do
  local entry = ARGV[1] .. string.sub(member, 9)
  if redis.call('GETRANGE', entry, 0, 7) == string.sub(member, 1, 8) then
    redis.call('UNLINK', entry)
    removed = removed + 1
  end
end
return {removed, #members}
";

/// Deletes a key only while it still holds the value with the given put id, so removing a
/// corrupt entry never removes a good one a concurrent put just wrote.
const DELETE_IF_PUT_ID: &str = r"
if redis.call('GETRANGE', KEYS[1], 0, 7) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// What every handle of one cache shares: its bus and streams hold it too.
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) connection: ConnectionManager,
    pub(crate) config: RedisConfig,
    pub(crate) layout: KeyLayout,
    pub(crate) counters: StatsCounters,
    put_tagged: Script,
    delete_tag_page: Script,
    delete_if_put_id: Script,
}

/// What a read of one entry found.
pub(crate) enum Lookup {
    Hit(Arc<CacheEntry>),
    /// No value under the key.
    Miss,
    /// A value past its expiry that Redis has not dropped yet.
    Expired,
    /// A value that did not decode for the key; it was removed.
    Corrupt,
}

/// What a put did.
pub(crate) enum Stored {
    Written,
    /// The storage TTL was zero: nothing was stored and any entry was removed.
    Removed,
}

impl Inner {
    /// The client and a connection manager that connects on first use. Fails with
    /// `Config` when the URL is not a Redis URL.
    pub(crate) fn open(config: RedisConfig) -> Result<Self> {
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
        Ok(Self {
            layout: KeyLayout::new(&config.namespace),
            client,
            connection,
            config,
            counters: StatsCounters::default(),
            put_tagged: Script::new(PUT_TAGGED),
            delete_tag_page: Script::new(DELETE_TAG_PAGE),
            delete_if_put_id: Script::new(DELETE_IF_PUT_ID),
        })
    }

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

    /// One command through [`run`](Self::run).
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd, what: &str) -> Result<T> {
        self.run(what, |mut connection| async move {
            cmd.query_async(&mut connection).await
        })
        .await
    }

    /// One script call through [`run`](Self::run) (`EVALSHA`, loading the script when the
    /// server does not know it).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        what: &str,
    ) -> Result<T> {
        self.run(what, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    /// `PING`, and how long the answer took.
    pub(crate) async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let pong: String = self.query(&redis::cmd("PING"), "ping the server").await?;
        if pong != "PONG" {
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                format!("the server answered {pong:?} to PING"),
            ));
        }
        Ok(started.elapsed())
    }

    /// Reads and decodes the entry for `key`; a value that does not decode is removed.
    pub(crate) async fn lookup(&self, key: &str) -> Result<Lookup> {
        let redis_key = self.layout.entry(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&redis_key);
        let stored: Option<Vec<u8>> = self.query(&cmd, "get the entry").await?;
        let Some(stored) = stored else {
            return Ok(Lookup::Miss);
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
                Ok(Lookup::Hit(Arc::new(entry)))
            }
            // Redis expires the key itself a moment later (its clock started when the SET
            // arrived, after the entry's stored-at).
            Ok(_) => Ok(Lookup::Expired),
            Err(put_id) => {
                self.remove_corrupt(&redis_key, put_id).await;
                Ok(Lookup::Corrupt)
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
                self.invoke::<u64>(&invocation, "remove a corrupt entry")
                    .await
            }
            None => self.delete_key(redis_key).await,
        };
    }

    /// Stores the entry for `key` (a put id, then the envelope) for its storage TTL, and
    /// records it in the sets of its tags.
    pub(crate) async fn store(
        &self,
        key: &str,
        response: &CachedResponse,
        policy: &CachePolicy,
        metadata: &EntryMetadata,
    ) -> Result<Stored> {
        let redis_key = self.layout.entry(key);
        let ttl = metadata.storage_ttl();
        if ttl.is_zero() {
            self.delete_key(&redis_key).await?;
            return Ok(Stored::Removed);
        }
        let put_id: [u8; PUT_ID_LEN] = rand::random();
        // The envelope borrows the body: it is copied once, into the command.
        let envelope = match codec::encode_parts_borrowed(key, response, policy, metadata) {
            Ok(envelope) => envelope,
            Err(error) => return Err(self.refuse(&redis_key, error).await),
        };
        let value_len = PUT_ID_LEN + envelope.len();
        if value_len as u64 > self.config.max_entry_bytes {
            let refusal = Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the entry takes {value_len} bytes, more than the limit of {}",
                    self.config.max_entry_bytes
                ),
            );
            return Err(self.refuse(&redis_key, refusal).await);
        }
        let write_value = |out: &mut dyn std::io::Write| {
            out.write_all(&put_id)?;
            envelope.write_to(out)
        };
        let value_error = |error: std::io::Error| {
            Error::new(ErrorKind::Backend, NAME, "cannot write the value").with_source(error)
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
            self.query::<()>(&cmd, "put the entry").await?;
        } else {
            let mut invocation = self.put_tagged.key(&redis_key);
            for tag in &metadata.tags {
                invocation.key(self.layout.tag(tag));
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
                .arg(self.layout.entry_prefix());
            drop(value);
            self.invoke::<i64>(&invocation, "put the tagged entry")
                .await?;
        }
        Ok(Stored::Written)
    }

    /// The error of a put refused after validation (too large, cannot be encoded), once
    /// the key's previous entry is gone: a refused put leaves no entry under its key, not
    /// the version it would have replaced. When that entry cannot be removed, the error
    /// of the removal is returned instead (the previous version may still be there).
    async fn refuse(&self, redis_key: &str, refusal: Error) -> Error {
        match self.delete_key(redis_key).await {
            Ok(_) => refusal,
            Err(error) => error,
        }
    }

    /// Deletes one Redis key; returns how many existed (0 or 1).
    pub(crate) async fn delete_key(&self, redis_key: &str) -> Result<u64> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(redis_key);
        self.query(&cmd, "delete the entry").await
    }

    /// Deletes the entries recorded under `tag` that still carry it, and the tag's set,
    /// [`TAG_DELETE_PAGE`] members per script call; returns how many entries were removed.
    /// Runs as a task of its own: a caller that stops waiting does not leave the tag half
    /// deleted.
    pub(crate) async fn delete_tag(self: &Arc<Self>, tag: &str) -> Result<u64> {
        let inner = Arc::clone(self);
        let tag_key = self.layout.tag(tag);
        tokio::spawn(async move { inner.delete_tag_pages(&tag_key).await })
            .await
            .map_err(|error| {
                Error::new(ErrorKind::Backend, NAME, "the tag deletion task failed")
                    .with_source(error)
            })?
    }

    /// Pops pages of the tag set until a page comes back short: the set is empty then
    /// (members a concurrent put adds after that belong to the put, not to this deletion).
    async fn delete_tag_pages(&self, tag_key: &str) -> Result<u64> {
        let mut removed = 0;
        loop {
            let mut invocation = self.delete_tag_page.key(tag_key);
            invocation
                .arg(self.layout.entry_prefix())
                .arg(TAG_DELETE_PAGE);
            let (page_removed, taken): (u64, usize) =
                self.invoke(&invocation, "delete a tag").await?;
            removed += page_removed;
            if taken < TAG_DELETE_PAGE {
                return Ok(removed);
            }
        }
    }

    /// Unlinks the namespace's entries whose keys match `pattern`; returns how many.
    pub(crate) async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64> {
        // The Redis glob selects a superset (its `?` is one byte, ours one character);
        // the pattern itself decides.
        self.unlink_matching(&self.layout.entries_matching(pattern), |redis_key| {
            self.layout
                .key_of_entry(redis_key)
                .is_some_and(|key| pattern.matches(key))
        })
        .await
    }

    /// Unlinks every entry and tag set of the namespace; returns how many entries.
    pub(crate) async fn clear(&self) -> Result<u64> {
        let removed = self
            .unlink_matching(&self.layout.every_entry(), |_| true)
            .await?;
        self.unlink_matching(&self.layout.every_tag(), |_| true)
            .await?;
        Ok(removed)
    }

    /// Counts the namespace's entries with a full `SCAN`: O(entries) round trips' worth of
    /// work, and memory of 8 bytes per entry to count a key `SCAN` lists twice only once.
    pub(crate) async fn entry_count(&self) -> Result<u64> {
        use std::hash::{Hash, Hasher};
        let pattern = self.layout.every_entry();
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

/// Errors of a connection that broke (not of the command): the connection manager
/// reconnects, and the operation may be tried again.
fn is_connection_failure(error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && (error.kind() == redis::ErrorKind::Io
            || error.is_connection_refusal()
            || error.is_connection_dropped())
}
