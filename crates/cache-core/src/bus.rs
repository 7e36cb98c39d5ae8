//! The invalidation bus: how instances that share a tier keep their local tiers coherent.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::future::CacheFuture;

/// An invalidation another instance must apply to its local tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InvalidationEvent {
    /// One key was deleted.
    Delete {
        /// The deleted key.
        key: String,
    },
    /// Every entry with a tag was deleted.
    DeleteTag {
        /// The tag.
        tag: String,
    },
    /// Every key matching a [`KeyPattern`](crate::KeyPattern) was deleted.
    DeletePattern {
        /// The pattern as written.
        pattern: String,
    },
    /// The whole cache was cleared.
    Clear,
}

/// Identifies one instance (one process's stack) on a bus, so it can skip its own events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstanceId(u128);

impl InstanceId {
    /// A new random id.
    pub fn random() -> Self {
        // `RandomState` is seeded from the operating system's randomness and every new
        // state gets fresh keys, so two of them give 128 unpredictable bits without an
        // extra dependency.
        let half = || {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        Self((u128::from(half()) << 64) | u128::from(half()))
    }

    /// The id as a number, for transports.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// An id from a number read off a transport.
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({:032x})", self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusMessage {
    /// Another instance published this event.
    Event {
        /// The instance that published it.
        origin: InstanceId,
        /// What to invalidate.
        event: InvalidationEvent,
    },
    /// Events may have been missed (the subscriber fell behind or was disconnected longer
    /// than the bus remembers): flush the local tiers.
    Resync {
        /// Why, in words, for logs.
        reason: String,
    },
}

/// A stream of [`BusMessage`]s for one subscriber. Never yields the subscriber's own events.
pub struct BusSubscription {
    messages: Pin<Box<dyn Stream<Item = BusMessage> + Send>>,
}

impl BusSubscription {
    /// Wraps a stream of messages; used by bus implementations.
    pub fn new(messages: impl Stream<Item = BusMessage> + Send + 'static) -> Self {
        Self {
            messages: Box::pin(messages),
        }
    }

    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        self.messages.next().await
    }
}

impl Stream for BusSubscription {
    type Item = BusMessage;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.messages.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for BusSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusSubscription").finish_non_exhaustive()
    }
}

/// Publishes invalidations to, and receives them from, the other instances.
///
/// # Contract
///
/// - `publish` MUST deliver the event to every current subscriber of every other
///   instance, tagged with this instance's id.
/// - A subscription MUST NOT yield events this instance published.
/// - When a subscriber may have missed events, it MUST receive [`BusMessage::Resync`]
///   before any later event.
pub trait InvalidationBus: Send + Sync {
    /// This instance's id.
    fn instance_id(&self) -> InstanceId;

    /// Sends `event` to the other instances.
    fn publish(&self, event: InvalidationEvent) -> CacheFuture<'_, Result<()>>;

    /// Starts receiving the other instances' events.
    fn subscribe(&self) -> CacheFuture<'_, Result<BusSubscription>>;
}

/// An in-process bus: every [`InProcessBus`] made from one hub reaches the others. For
/// tests and for several stacks inside one process.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cache_core::bus::{BusMessage, InProcessHub, InvalidationBus, InvalidationEvent};
///
/// let hub = InProcessHub::new(1024);
/// let (a, b) = (hub.bus(), hub.bus());
/// let mut from_others = b.subscribe().await.unwrap();
/// a.publish(InvalidationEvent::Clear).await.unwrap();
/// assert_eq!(
///     from_others.recv().await,
///     Some(BusMessage::Event { origin: a.instance_id(), event: InvalidationEvent::Clear })
/// );
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct InProcessHub {
    sender: broadcast::Sender<(InstanceId, InvalidationEvent)>,
}

impl InProcessHub {
    /// A hub that buffers up to `capacity` events per slow subscriber; a subscriber that
    /// falls further behind receives [`BusMessage::Resync`].
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// A new instance on this hub, with its own id.
    pub fn bus(&self) -> InProcessBus {
        InProcessBus {
            id: InstanceId::random(),
            sender: self.sender.clone(),
        }
    }
}

/// One instance's end of an [`InProcessHub`].
#[derive(Debug, Clone)]
pub struct InProcessBus {
    id: InstanceId,
    sender: broadcast::Sender<(InstanceId, InvalidationEvent)>,
}

impl InvalidationBus for InProcessBus {
    fn instance_id(&self) -> InstanceId {
        self.id
    }

    fn publish(&self, event: InvalidationEvent) -> CacheFuture<'_, Result<()>> {
        // A send with no subscriber at all is not an error: nobody needs the event.
        let _ = self.sender.send((self.id, event));
        CacheFuture::ready(Ok(()))
    }

    fn subscribe(&self) -> CacheFuture<'_, Result<BusSubscription>> {
        let own_id = self.id;
        let receiver = self.sender.subscribe();
        let messages = futures::stream::unfold(receiver, move |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok((origin, _)) if origin == own_id => {}
                    Ok((origin, event)) => {
                        return Some((BusMessage::Event { origin, event }, receiver));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let reason = format!("the subscriber fell {missed} events behind");
                        return Some((BusMessage::Resync { reason }, receiver));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        CacheFuture::ready(Ok(BusSubscription::new(messages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_reach_others_but_not_their_origin() {
        let hub = InProcessHub::new(16);
        let (a, b) = (hub.bus(), hub.bus());
        let mut a_receives = a.subscribe().await.unwrap();
        let mut b_receives = b.subscribe().await.unwrap();
        let delete = InvalidationEvent::Delete { key: "k".into() };
        a.publish(delete.clone()).await.unwrap();
        b.publish(InvalidationEvent::Clear).await.unwrap();
        assert_eq!(
            b_receives.recv().await,
            Some(BusMessage::Event {
                origin: a.instance_id(),
                event: delete
            })
        );
        // A skips its own delete and sees B's clear first.
        assert_eq!(
            a_receives.recv().await,
            Some(BusMessage::Event {
                origin: b.instance_id(),
                event: InvalidationEvent::Clear
            })
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_resync() {
        let hub = InProcessHub::new(2);
        let (a, b) = (hub.bus(), hub.bus());
        let mut b_receives = b.subscribe().await.unwrap();
        for n in 0..5 {
            a.publish(InvalidationEvent::Delete {
                key: format!("k{n}"),
            })
            .await
            .unwrap();
        }
        assert_eq!(
            b_receives.recv().await,
            Some(BusMessage::Resync {
                reason: "the subscriber fell 3 events behind".into()
            })
        );
        assert_eq!(
            b_receives.recv().await,
            Some(BusMessage::Event {
                origin: a.instance_id(),
                event: InvalidationEvent::Delete { key: "k3".into() }
            })
        );
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(InstanceId::random(), InstanceId::random());
    }
}
