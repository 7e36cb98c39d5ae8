//! The invalidation bus over Redis: Pub/Sub for speed, a capped stream for replay.
//!
//! Publishing runs one Lua script that appends the event to the stream `{ns}:bus:log`
//! (`XADD ... MAXLEN ~`) and publishes `{id}\n{event}` on the channel `{ns}:bus` (`{ns}`
//! the encoded namespace), atomically, so the channel and the stream agree on the order
//! and the ids. A subscriber remembers the id of the last event it saw. Whenever it
//! (re)connects it subscribes first, then replays the stream after that id, and from then
//! on skips channel messages it already replayed. It sends `Resync` instead of replaying when events after
//! its position were trimmed away (`max-deleted-entry-id` past it), when the server's
//! `run_id` changed (a restart loses or rewinds the stream) and when its own consumer fell
//! behind its bounded queue. An attempt that reaches the server but cannot replay (the
//! user may not read the stream, the catch-up fails) or is refused (credentials) sends
//! `Resync` too, once per attempt, and the subscriber tries again after the reconnection
//! delay; only while the server cannot be reached at all does it wait silently, since the
//! replay after reconnecting brings what was published meanwhile.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    BusMessage, BusSubscription, CacheFuture, Error, ErrorKind, InstanceId, InvalidationBus,
    InvalidationEvent, Result,
};
use futures::StreamExt;
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::Inner;
use crate::error::{NAME, redis_error, timeout_error};
use crate::streams::{StreamId, parse_entries};

/// Messages a subscriber holds for a consumer that has not read them yet; past it the
/// consumer receives `Resync`.
const SUBSCRIBER_QUEUE: usize = 1_024;

/// Entries read per `XRANGE` while replaying.
const REPLAY_BATCH: usize = 512;

/// The first pause between reconnection attempts; it doubles up to the configured maximum.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// Appends the event to the stream and publishes it with its id, in one step.
const PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
redis.call('PUBLISH', ARGV[2], id .. '\n' .. ARGV[3])
return id
";

/// The stream's state (last generated id, largest deleted id, entries ever added, length)
/// and up to `ARGV[2]` entries from `ARGV[1]` on, inclusive, read atomically; an empty
/// last id when there is no stream.
const CATCH_UP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'', '', 0, 0, {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do
  fields[info[i]] = info[i + 1]
end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {fields['last-generated-id'], fields['max-deleted-entry-id'] or '',
        fields['entries-added'] or -1, fields['length'], entries}
";

/// The bytes of one event: a format version, then postcard.
const WIRE_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct WireEvent {
    origin: u128,
    event: InvalidationEvent,
}

fn encode_event(origin: InstanceId, event: InvalidationEvent) -> Result<Vec<u8>> {
    let bytes = vec![WIRE_VERSION];
    let wire = WireEvent {
        origin: origin.as_u128(),
        event,
    };
    postcard::to_extend(&wire, bytes).map_err(|error| {
        Error::new(ErrorKind::InvalidInput, NAME, "cannot encode the event").with_source(error)
    })
}

fn decode_event(bytes: &[u8]) -> Option<(InstanceId, InvalidationEvent)> {
    let (&version, rest) = bytes.split_first()?;
    if version != WIRE_VERSION {
        return None;
    }
    let wire: WireEvent = postcard::from_bytes(rest).ok()?;
    Some((InstanceId::from_u128(wire.origin), wire.event))
}

/// The [`InvalidationBus`] over Redis, for the instances that share a server and a
/// namespace. Get one from [`RedisCache::bus`]; each has its own [`InstanceId`], and its
/// subscriptions never yield its own events.
///
/// ```no_run
/// # async fn example() -> cache_core::Result<()> {
/// use cache_core::{BusMessage, InvalidationBus, InvalidationEvent};
/// use cache_redis::{RedisCache, RedisConfig};
///
/// let cache = RedisCache::connect(RedisConfig::from_env()).await?;
/// let (here, there) = (cache.bus(), cache.bus());
/// let mut subscription = there.subscribe().await?;
/// here.publish(InvalidationEvent::Delete { key: "GET:/users/42".into() }).await?;
/// match subscription.recv().await {
///     Some(BusMessage::Event { origin, event }) => assert_eq!(origin, here.instance_id()),
///     Some(BusMessage::Resync { .. }) => { /* flush the local tiers */ }
///     _ => {}
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBus {
    shared: Arc<BusShared>,
    instance: InstanceId,
}

struct BusShared {
    cache: Arc<Inner>,
    channel: String,
    stream_key: String,
    publish: Script,
    catch_up: Script,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("instance", &self.instance)
            .field("channel", &self.shared.channel)
            .finish_non_exhaustive()
    }
}

/// Where a subscriber stands: the server it last talked to and the last event it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    run_id: String,
    last_seen: StreamId,
}

impl RedisBus {
    pub(crate) fn new(cache: Arc<Inner>) -> Self {
        Self {
            shared: Arc::new(BusShared {
                channel: cache.layout.bus_channel(),
                stream_key: cache.layout.bus_stream(),
                cache,
                publish: Script::new(PUBLISH),
                catch_up: Script::new(CATCH_UP),
            }),
            instance: InstanceId::random(),
        }
    }

    /// The same bus under another instance id (to keep an id across restarts, say).
    pub fn with_instance_id(mut self, instance: InstanceId) -> Self {
        self.instance = instance;
        self
    }

    /// The Redis key of the stream that keeps recent events for replay.
    pub fn stream_key(&self) -> &str {
        &self.shared.stream_key
    }

    /// The Pub/Sub channel events are published on.
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }
}

impl BusShared {
    async fn run_id(&self) -> Result<String> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("server");
        let info: String = self.cache.query(&cmd, "read the server's run id").await?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    NAME,
                    "the server's INFO has no run_id line",
                )
            })
    }

    /// One consistent look at the stream: its state and up to `count` entries from `from`
    /// on (inclusive), read in one script so no trim can fall between the two.
    async fn read_stream(&self, from: StreamId, count: usize) -> Result<StreamSnapshot> {
        let mut invocation = self.catch_up.key(&self.stream_key);
        invocation.arg(from.to_string()).arg(count);
        let (last_generated, max_deleted, entries_added, length, entries): (
            String,
            String,
            i64,
            i64,
            Value,
        ) = self
            .cache
            .invoke(&invocation, "read the bus stream")
            .await?;
        if last_generated.is_empty() {
            return Ok(StreamSnapshot::default());
        }
        if max_deleted.is_empty() || entries_added < 0 {
            // Redis before 7.0 reports neither, so gaps would go unnoticed.
            return Err(Error::new(
                ErrorKind::Config,
                NAME,
                "the invalidation bus needs Redis 7.0 or newer (XINFO STREAM lacks max-deleted-entry-id)",
            ));
        }
        Ok(StreamSnapshot {
            exists: true,
            last_generated: last_generated.parse()?,
            max_deleted: max_deleted.parse()?,
            ever_removed: entries_added > length,
            entries: parse_entries(entries)?,
        })
    }

    /// Where a subscription that starts now stands.
    async fn current_position(&self) -> Result<Position> {
        let run_id = self.run_id().await?;
        let snapshot = self.read_stream(StreamId::ZERO, 0).await?;
        Ok(Position {
            run_id,
            last_seen: snapshot.last_generated,
        })
    }
}

/// The stream as one `CATCH_UP` call saw it; all zero and empty when there is no stream.
#[derive(Default)]
struct StreamSnapshot {
    exists: bool,
    /// Some entry was ever trimmed or deleted from the stream.
    ever_removed: bool,
    last_generated: StreamId,
    max_deleted: StreamId,
    entries: Vec<crate::streams::StreamEntry>,
}

impl InvalidationBus for RedisBus {
    fn instance_id(&self) -> InstanceId {
        self.instance
    }

    fn publish(&self, event: InvalidationEvent) -> CacheFuture<'_, Result<()>> {
        CacheFuture::new(async move {
            let payload = encode_event(self.instance, event)?;
            let shared = &self.shared;
            let mut invocation = shared.publish.key(&shared.stream_key);
            invocation
                .arg(shared.cache.config.bus_stream_max_len)
                .arg(&shared.channel)
                .arg(payload);
            // Retried once after a connection failure like every operation: the first
            // attempt may have published already, but every invalidation is idempotent, so
            // a duplicate is harmless where a lost one is not.
            let _id: String = shared
                .cache
                .invoke(&invocation, "publish an invalidation")
                .await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> CacheFuture<'_, Result<BusSubscription>> {
        CacheFuture::new(async move {
            // A subscription covers every event published after this call returns: its
            // position is taken now and the subscriber replays from it. When the server
            // cannot be reached now, the subscriber starts without a position and sends
            // `Resync` once it connects.
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(Error::new(
                    ErrorKind::Config,
                    NAME,
                    "a bus subscription runs a tokio task: subscribe inside a tokio runtime",
                ));
            }
            let position = match self.shared.current_position().await {
                Ok(position) => Some(position),
                // Unreachable now: the subscriber resyncs once it gets through.
                Err(error) if error.is_temporary() => None,
                Err(error) => return Err(error),
            };
            let (sender, mut receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
            let subscriber = Subscriber {
                shared: Arc::clone(&self.shared),
                instance: self.instance,
                position,
                outbox: Outbox {
                    sender,
                    fell_behind: false,
                },
            };
            tokio::spawn(subscriber.run());
            Ok(BusSubscription::new(futures::stream::poll_fn(
                move |context| receiver.poll_recv(context),
            )))
        })
    }
}

/// The bounded queue to the consumer; when it is full, messages are dropped and the
/// consumer receives `Resync` as soon as there is room again.
struct Outbox {
    sender: mpsc::Sender<BusMessage>,
    fell_behind: bool,
}

enum Delivery {
    Delivered,
    ConsumerGone,
}

impl Outbox {
    fn send(&mut self, message: BusMessage) -> Delivery {
        use mpsc::error::TrySendError;
        if self.fell_behind {
            match self.sender.try_send(BusMessage::Resync {
                reason: "the subscriber fell behind and dropped events".to_owned(),
            }) {
                Ok(()) => self.fell_behind = false,
                Err(TrySendError::Full(_)) => return Delivery::Delivered,
                Err(TrySendError::Closed(_)) => return Delivery::ConsumerGone,
            }
        }
        match self.sender.try_send(message) {
            Ok(()) => Delivery::Delivered,
            Err(TrySendError::Full(_)) => {
                self.fell_behind = true;
                Delivery::Delivered
            }
            Err(TrySendError::Closed(_)) => Delivery::ConsumerGone,
        }
    }

    fn resync(&mut self, reason: impl Into<String>) -> Delivery {
        self.fell_behind = false;
        self.send(BusMessage::Resync {
            reason: reason.into(),
        })
    }
}

struct Subscriber {
    shared: Arc<BusShared>,
    instance: InstanceId,
    position: Option<Position>,
    outbox: Outbox,
}

/// Why a connected subscriber stopped listening.
enum Disconnect {
    ConnectionLost,
    ConsumerGone,
}

impl Subscriber {
    async fn run(mut self) {
        let sender = self.outbox.sender.clone();
        let max_delay = self.shared.cache.config.reconnect_max_delay;
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            let outcome = tokio::select! {
                outcome = self.connect_and_listen() => outcome,
                () = sender.closed() => return,
            };
            match outcome {
                Ok(Disconnect::ConsumerGone) => return,
                // It got through before the connection dropped: start the backoff over.
                Ok(Disconnect::ConnectionLost) => delay = FIRST_RECONNECT_DELAY,
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = sender.closed() => return,
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    /// One connection's life: subscribe, replay what was missed, then listen until the
    /// connection fails or the consumer goes away.
    async fn connect_and_listen(&mut self) -> Result<Disconnect> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.cache.config;
        let pubsub = match self.subscribe_to_channel().await {
            Ok(pubsub) => pubsub,
            // The server cannot be reached: once it can, the replay brings what is
            // published meanwhile.
            Err(error) if error.is_temporary() => return Err(error),
            // Refused (credentials, permissions): no replay will follow by itself.
            Err(error) => return self.cannot_catch_up(error),
        };
        let (mut sink, mut messages) = pubsub.split();

        // Subscribed first, replayed second: whatever is published from here on arrives on
        // the channel, and whatever came before is in the stream.
        match self.catch_up().await {
            Ok(Delivery::Delivered) => {}
            Ok(Delivery::ConsumerGone) => return Ok(Disconnect::ConsumerGone),
            Err(error) => return self.cannot_catch_up(error),
        }

        let mut ping = tokio::time::interval(config.bus_ping_interval);
        ping.reset();
        let sender = self.outbox.sender.clone();
        loop {
            // A `Resync` the full queue could not take is delivered as soon as there is
            // room, even when no further event arrives.
            let owed_resync = self.outbox.fell_behind;
            tokio::select! {
                permit = sender.reserve(), if owed_resync => {
                    let Ok(permit) = permit else {
                        return Ok(Disconnect::ConsumerGone);
                    };
                    permit.send(BusMessage::Resync {
                        reason: "the subscriber fell behind and dropped events".to_owned(),
                    });
                    self.outbox.fell_behind = false;
                }
                message = messages.next() => {
                    let Some(message) = message else {
                        return Ok(Disconnect::ConnectionLost);
                    };
                    if let Delivery::ConsumerGone = self.on_channel_message(message.get_payload_bytes()) {
                        return Ok(Disconnect::ConsumerGone);
                    }
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(config.command_timeout, sink.ping::<Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Ok(Disconnect::ConnectionLost);
                    }
                }
            }
        }
    }

    /// A Pub/Sub connection subscribed to the bus's channel.
    async fn subscribe_to_channel(&self) -> Result<redis::aio::PubSub> {
        let config = &self.shared.cache.config;
        let refused = |error: redis::RedisError| redis_error(error, "subscribe to the bus");
        let mut pubsub = tokio::time::timeout(
            config.connect_timeout,
            self.shared.cache.client.get_async_pubsub(),
        )
        .await
        .map_err(|_| timeout_error("connect the bus subscriber", config.connect_timeout))?
        .map_err(refused)?;
        tokio::time::timeout(
            config.command_timeout,
            pubsub.subscribe(&self.shared.channel),
        )
        .await
        .map_err(|_| timeout_error("subscribe to the bus", config.command_timeout))?
        .map_err(refused)?;
        Ok(pubsub)
    }

    /// This attempt could not subscribe or replay: the consumer may be missing events and
    /// learns it now, at every failed attempt (at most one per reconnection delay), until
    /// an attempt catches up. The subscriber keeps its position, so that attempt replays
    /// from there.
    fn cannot_catch_up(&mut self, error: Error) -> Result<Disconnect> {
        let reason = format!("the bus subscriber cannot catch up on missed events: {error}");
        match self.outbox.resync(reason) {
            Delivery::Delivered => Err(error),
            Delivery::ConsumerGone => Ok(Disconnect::ConsumerGone),
        }
    }

    /// Replays the events after the subscriber's position, or sends `Resync` when they
    /// cannot all be replayed.
    async fn catch_up(&mut self) -> Result<Delivery> {
        let run_id = self.shared.run_id().await?;
        let Some(position) = self.position.as_mut() else {
            let snapshot = self.shared.read_stream(StreamId::ZERO, 0).await?;
            self.position = Some(Position {
                run_id,
                last_seen: snapshot.last_generated,
            });
            return Ok(self
                .outbox
                .resync("the bus subscribed while the server was unreachable"));
        };
        if position.run_id != run_id {
            let snapshot = self.shared.read_stream(StreamId::ZERO, 0).await?;
            *position = Position {
                run_id,
                last_seen: snapshot.last_generated,
            };
            return Ok(self
                .outbox
                .resync("the redis server restarted, so its event stream may have lost events"));
        }
        loop {
            // From the last event seen, inclusive: finding it proves that nothing after it
            // was trimmed (trimming removes the oldest entries first).
            let from = position.last_seen;
            let snapshot = self.shared.read_stream(from, REPLAY_BATCH + 1).await?;
            let mut entries = snapshot.entries.into_iter().peekable();
            let anchored = if from == StreamId::ZERO {
                // The stream did not exist when the subscription started: everything in it
                // came later, and nothing may have been removed since.
                !snapshot.ever_removed
            } else {
                entries.next_if(|entry| entry.id == from).is_some()
            };
            if !anchored || snapshot.max_deleted > from {
                position.last_seen = snapshot.last_generated;
                let reason = if snapshot.exists {
                    "events this subscriber missed were trimmed from the bus stream"
                } else {
                    "the bus stream is gone, with the events this subscriber missed"
                };
                return Ok(self.outbox.resync(reason));
            }
            let mut replayed = 0;
            for entry in entries {
                replayed += 1;
                position.last_seen = entry.id;
                let Some((origin, event)) = entry.field("e").and_then(|bytes| decode_event(bytes))
                else {
                    // Written by a newer version, perhaps: this instance cannot apply it.
                    if let Delivery::ConsumerGone =
                        self.outbox.resync("an event on the bus could not be read")
                    {
                        return Ok(Delivery::ConsumerGone);
                    }
                    continue;
                };
                if origin != self.instance
                    && let Delivery::ConsumerGone =
                        self.outbox.send(BusMessage::Event { origin, event })
                {
                    return Ok(Delivery::ConsumerGone);
                }
            }
            let complete = replayed < REPLAY_BATCH;
            if complete {
                return Ok(Delivery::Delivered);
            }
        }
    }

    /// A channel message `{id}\n{event}`; skipped when the replay already delivered it.
    fn on_channel_message(&mut self, payload: &[u8]) -> Delivery {
        let Some(split) = payload.iter().position(|&byte| byte == b'\n') else {
            return Delivery::Delivered;
        };
        let Some(id) = std::str::from_utf8(&payload[..split])
            .ok()
            .and_then(|id| id.parse::<StreamId>().ok())
        else {
            return Delivery::Delivered;
        };
        let Some(position) = self.position.as_mut() else {
            return Delivery::Delivered;
        };
        if id <= position.last_seen {
            return Delivery::Delivered;
        }
        position.last_seen = id;
        match decode_event(&payload[split + 1..]) {
            Some((origin, event)) if origin != self.instance => {
                self.outbox.send(BusMessage::Event { origin, event })
            }
            Some(_) => Delivery::Delivered,
            None => self.outbox.resync("an event on the bus could not be read"),
        }
    }
}
