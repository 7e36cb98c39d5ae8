//! Capped Redis Streams: publish, read the latest entries, block for new ones.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::{Error, ErrorKind, Result};
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::core::Inner;
use crate::error::{NAME, redis_error, timeout_error};

/// The id Redis gives a stream entry: milliseconds and a sequence number, ordered.
///
/// ```
/// use cache_redis::StreamId;
///
/// let id: StreamId = "1700000000000-3".parse().unwrap();
/// assert_eq!(id, StreamId::new(1_700_000_000_000, 3));
/// assert!(id < StreamId::new(1_700_000_000_001, 0));
/// assert_eq!(id.to_string(), "1700000000000-3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch on the server's clock when the entry was added.
    pub millis: u64,
    /// Orders entries added within one millisecond.
    pub sequence: u64,
}

impl StreamId {
    /// The id before every entry (`0-0`).
    pub const ZERO: Self = Self::new(0, 0);

    /// An id from its two parts.
    pub const fn new(millis: u64, sequence: u64) -> Self {
        Self { millis, sequence }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.millis, self.sequence)
    }
}

impl FromStr for StreamId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidInput,
                NAME,
                format!("{text:?} is not a stream id (`<millis>-<sequence>`)"),
            )
        };
        let (millis, sequence) = text.split_once('-').ok_or_else(invalid)?;
        Ok(Self {
            millis: millis.parse().map_err(|_| invalid())?,
            sequence: sequence.parse().map_err(|_| invalid())?,
        })
    }
}

/// One entry of a stream: its id and its fields in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// The field names and values.
    pub fields: Vec<(String, Bytes)>,
}

impl StreamEntry {
    /// The value of the first field called `name`.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
    }
}

/// A Redis Stream capped at about `max_len` entries (`XADD ... MAXLEN ~`), in the
/// cache's namespace. Cheap to clone.
///
/// ```no_run
/// # async fn example() -> cache_core::Result<()> {
/// use std::time::Duration;
/// use cache_redis::{RedisCache, RedisConfig, StreamId};
///
/// let cache = RedisCache::connect(RedisConfig::from_env()).await?;
/// let audit = cache.stream("audit").with_max_len(1_000);
/// let id = audit.publish([("event", &b"purged /users"[..])]).await?;
/// let latest = audit.latest(10).await?;
/// assert_eq!(latest.last().map(|entry| entry.id), Some(id));
/// // Waits up to a second for an entry after `id`.
/// let newer = audit.read_after(id, 100, Duration::from_secs(1)).await?;
/// # let _ = newer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStream {
    inner: Arc<Inner>,
    key: String,
    max_len: u64,
    /// Blocking reads hold a connection of their own: on the shared multiplexed one, a
    /// blocked `XREAD` would stall every other command behind it.
    blocking: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

impl fmt::Debug for RedisStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStream")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisStream {
    pub(crate) fn new(inner: Arc<Inner>, name: &str) -> Self {
        Self {
            key: inner.layout.stream(name),
            inner,
            max_len: 10_000,
            blocking: Arc::default(),
        }
    }

    /// Caps the stream at about `max_len` entries: Redis trims whole internal nodes, so a
    /// few more may stay. Default: 10,000.
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// The Redis key of the stream.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends an entry with `fields` and returns its id. At least one field is needed.
    pub async fn publish<'f>(
        &self,
        fields: impl IntoIterator<Item = (&'f str, &'f [u8])>,
    ) -> Result<StreamId> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*");
        let mut count = 0;
        for (name, value) in fields {
            cmd.arg(name).arg(value);
            count += 1;
        }
        if count == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                NAME,
                "a stream entry needs at least one field",
            ));
        }
        let id: String = self.inner.query(&cmd, "add to the stream").await?;
        id.parse()
    }

    /// The newest `count` entries, oldest first.
    pub async fn latest(&self, count: usize) -> Result<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.key).arg("+").arg("-").arg("COUNT").arg(count);
        let reply: Value = self.inner.query(&cmd, "read the stream").await?;
        let mut entries = parse_entries(reply)?;
        entries.reverse();
        Ok(entries)
    }

    /// Up to `count` entries after `after`, oldest first, waiting up to `block` for the
    /// first one to arrive (`XREAD BLOCK`); empty when none came. A zero `block` does not
    /// wait. Use [`StreamId::ZERO`] to read from the start.
    pub async fn read_after(
        &self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        if block.is_zero() {
            cmd.arg("STREAMS").arg(&self.key).arg(after.to_string());
            let reply: Value = self.inner.query(&cmd, "read the stream").await?;
            return parse_xread(reply);
        }
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after.to_string());
        let budget = block.saturating_add(self.inner.config.command_timeout);
        // Waiting for the connection counts against the budget too.
        let read = async {
            let mut slot = self.blocking.lock().await;
            let result = async {
                let connection = match slot.as_mut() {
                    Some(connection) => connection,
                    None => {
                        // No response timeout of the connection's own: each read's
                        // budget (below) bounds it, and the next read may block longer
                        // than this one.
                        let config = redis::AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(self.inner.config.connect_timeout))
                            .set_response_timeout(None);
                        let connection = self
                            .inner
                            .client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?;
                        slot.insert(connection)
                    }
                };
                cmd.query_async::<Value>(connection).await
            }
            .await;
            if result.is_err() {
                *slot = None;
            }
            result
        };
        match tokio::time::timeout(budget, read).await {
            Ok(Ok(reply)) => parse_xread(reply),
            Ok(Err(error)) => Err(redis_error(error, "read the stream")),
            Err(_) => {
                // The abandoned read may still be answered on that connection: start over.
                if let Ok(mut slot) = self.blocking.try_lock() {
                    *slot = None;
                }
                Err(timeout_error("read the stream", budget))
            }
        }
    }

    /// The number of entries in the stream now.
    pub async fn len(&self) -> Result<u64> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(&self.key);
        self.inner.query(&cmd, "count the stream").await
    }
}

fn malformed(what: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        NAME,
        format!("the server sent a malformed {what}"),
    )
}

fn text_of(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

fn bytes_of(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        Value::SimpleString(text) => Some(Bytes::from(text)),
        _ => None,
    }
}

/// Entries as `XRANGE` and `XREVRANGE` send them: `[[id, [field, value, ...]], ...]`.
pub(crate) fn parse_entries(reply: Value) -> Result<Vec<StreamEntry>> {
    let Value::Array(items) = reply else {
        return Err(malformed("stream reply"));
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                return Err(malformed("stream entry"));
            };
            let [id, fields]: [Value; 2] =
                parts.try_into().map_err(|_| malformed("stream entry"))?;
            let id: StreamId = text_of(id)
                .ok_or_else(|| malformed("stream entry id"))?
                .parse()?;
            let Value::Array(fields) = fields else {
                return Err(malformed("stream entry fields"));
            };
            let mut pairs = Vec::with_capacity(fields.len() / 2);
            let mut fields = fields.into_iter();
            while let Some(name) = fields.next() {
                let name = text_of(name).ok_or_else(|| malformed("stream field name"))?;
                let value = fields
                    .next()
                    .and_then(bytes_of)
                    .ok_or_else(|| malformed("stream field value"))?;
                pairs.push((name, value));
            }
            Ok(StreamEntry { id, fields: pairs })
        })
        .collect()
}

/// The entries of the one stream an `XREAD` asked for (RESP2 array or RESP3 map); `Nil`
/// when a blocking read timed out.
fn parse_xread(reply: Value) -> Result<Vec<StreamEntry>> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.into_iter().next() {
            None => Ok(Vec::new()),
            Some(Value::Array(stream)) => {
                let [_, entries]: [Value; 2] = stream
                    .try_into()
                    .map_err(|_| malformed("stream read reply"))?;
                parse_entries(entries)
            }
            Some(_) => Err(malformed("stream read reply")),
        },
        Value::Map(streams) => match streams.into_iter().next() {
            None => Ok(Vec::new()),
            Some((_, entries)) => parse_entries(entries),
        },
        _ => Err(malformed("stream read reply")),
    }
}
