//! Coherence: what keeps a promotion from bringing back a replaced or removed version,
//! and the bus listener that applies other instances' invalidations.
//!
//! Every write of one key (put, delete, a bus delete) runs inside [`Coherence::write_key`]:
//! it holds its key's stripe exclusively (so the tiers see one key's writes in one order)
//! and bumps the stripe's version before and after its tier operations. Every invalidation of many keys (tags, patterns, clear, resync) runs
//! inside [`Coherence::write_all`]: it holds the stack-wide lock exclusively and bumps the
//! epoch before and after. A promotion samples the stripe's version and the epoch before
//! it reads the slower tier, and copies only while it holds the stripe exclusively and the
//! stack-wide lock shared (taken without waiting: a busy key is simply not promoted) and
//! both numbers are unchanged. So a copy either lands before a write's tier operations
//! start (and the write replaces it) or comes from a read made after the write finished.

use std::future::Future;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::{BusMessage, BusSubscription, CacheManager, InvalidationEvent, KeyPattern};
use futures::future::join_all;
use tokio::sync::RwLock;

use super::{Key, StackInner, TierState, lock};
use crate::tier::bump;

/// Stripes of per-key versions and locks (keys share stripes by hash).
const STRIPES: usize = 1024;

struct Stripe {
    version: AtomicU64,
    lock: RwLock<()>,
}

pub(crate) struct Coherence {
    stripes: Box<[Stripe]>,
    epoch: AtomicU64,
    many_keys: RwLock<()>,
}

/// What a reader saw before it read a slower tier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    stripe: usize,
    version: u64,
    epoch: u64,
}

impl Coherence {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    version: AtomicU64::new(0),
                    lock: RwLock::new(()),
                })
                .collect(),
            epoch: AtomicU64::new(0),
            many_keys: RwLock::new(()),
        }
    }

    fn stripe_of(key: &Key<'_>) -> usize {
        (key.hash % STRIPES as u64) as usize
    }

    /// Samples `key`'s version and the epoch, before a slower tier is read.
    pub(crate) fn snapshot(&self, key: &Key<'_>) -> Snapshot {
        let stripe = Self::stripe_of(key);
        Snapshot {
            stripe,
            version: self.stripes[stripe].version.load(Ordering::Acquire),
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    /// Runs `work`, a write of `key` to the tiers, so that no promotion of the key overlaps
    /// it or copies what was read before it, and no other write of the key (or of a key
    /// on the same stripe) overlaps it: every tier sees a key's writes in one order.
    pub(crate) async fn write_key<T>(&self, key: &Key<'_>, work: impl Future<Output = T>) -> T {
        let stripe = &self.stripes[Self::stripe_of(key)];
        let _writing = stripe.lock.write().await;
        stripe.version.fetch_add(1, Ordering::AcqRel);
        let output = work.await;
        stripe.version.fetch_add(1, Ordering::AcqRel);
        output
    }

    /// Runs `work`, an invalidation of many keys, so that no promotion overlaps it or
    /// copies what was read before it.
    pub(crate) async fn write_all<T>(&self, work: impl Future<Output = T>) -> T {
        let _writing = self.many_keys.write().await;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let output = work.await;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        output
    }

    /// Runs `copy` when no write of the key (nor of many keys) started since `snapshot` and
    /// none is running; writes that start meanwhile wait until it is done. Returns whether
    /// it ran.
    pub(crate) async fn promote_if_unchanged(
        &self,
        snapshot: Snapshot,
        copy: impl Future<Output = ()>,
    ) -> bool {
        let Ok(_no_invalidation) = self.many_keys.try_read() else {
            return false;
        };
        let stripe = &self.stripes[snapshot.stripe];
        let Ok(_no_write) = stripe.lock.try_write() else {
            return false;
        };
        if stripe.version.load(Ordering::Acquire) != snapshot.version
            || self.epoch.load(Ordering::Acquire) != snapshot.epoch
        {
            return false;
        }
        copy.await;
        true
    }
}

/// Applies the other instances' events until the bus ends, then flushes the local tiers
/// once (nothing keeps them coherent any more).
pub(crate) async fn listen(weak: Weak<StackInner>, mut subscription: BusSubscription) {
    while let Some(message) = subscription.recv().await {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.apply_bus_message(message).await;
    }
    if let Some(inner) = weak.upgrade() {
        bump(&inner.counters.errors);
        inner
            .apply_bus_message(BusMessage::Resync {
                reason: "the invalidation bus ended".to_owned(),
            })
            .await;
    }
}

/// What a bus event asks of one local tier.
#[derive(Clone, Copy)]
enum LocalInvalidation<'a> {
    Delete(&'a str),
    DeleteTag(&'a str),
    DeletePattern(&'a KeyPattern),
    Clear,
}

impl StackInner {
    /// [`Coherence::write_key`], then detaches the key's fetch in flight: a fetch that
    /// started before the write may have read what it replaced (its fill looks in the
    /// tiers first), so callers that come after the write start a fetch of their own
    /// instead of joining it (its earlier callers still get its outcome).
    pub(crate) async fn writing_key<T>(&self, key: &Key<'_>, work: impl Future<Output = T>) -> T {
        let output = self.coherence.write_key(key, work).await;
        lock(&self.in_flight).remove(key.text);
        output
    }

    /// [`Coherence::write_all`], then detaches every fetch in flight (see
    /// [`writing_key`](Self::writing_key)).
    pub(crate) async fn writing_all<T>(&self, work: impl Future<Output = T>) -> T {
        let output = self.coherence.write_all(work).await;
        lock(&self.in_flight).clear();
        output
    }

    pub(crate) async fn apply_bus_message(&self, message: BusMessage) {
        match message {
            BusMessage::Event { event, .. } => {
                match &event {
                    InvalidationEvent::Delete { key } => {
                        let key = Key::new(key);
                        self.writing_key(
                            &key,
                            self.invalidate_local(LocalInvalidation::Delete(key.text)),
                        )
                        .await;
                    }
                    InvalidationEvent::DeleteTag { tag } => {
                        self.writing_all(self.invalidate_local(LocalInvalidation::DeleteTag(tag)))
                            .await;
                    }
                    InvalidationEvent::DeletePattern { pattern } => {
                        match KeyPattern::new(pattern) {
                            Ok(pattern) => {
                                self.writing_all(
                                    self.invalidate_local(LocalInvalidation::DeletePattern(
                                        &pattern,
                                    )),
                                )
                                .await;
                            }
                            // A pattern this instance cannot read: what it named is unknown, so
                            // everything local goes.
                            Err(_) => {
                                bump(&self.counters.errors);
                                self.writing_all(self.invalidate_local(LocalInvalidation::Clear))
                                    .await;
                            }
                        }
                    }
                    // `Clear`, and any kind of event added later that this version does not
                    // know: clearing the local tiers is always coherent.
                    _ => {
                        self.writing_all(self.invalidate_local(LocalInvalidation::Clear))
                            .await;
                    }
                }
                bump(&self.counters.bus_events_applied);
            }
            BusMessage::Resync { .. } => {
                self.writing_all(self.invalidate_local(LocalInvalidation::Clear))
                    .await;
                bump(&self.counters.resyncs);
            }
            // A kind of message added later: clearing is always coherent.
            _ => {
                self.writing_all(self.invalidate_local(LocalInvalidation::Clear))
                    .await;
            }
        }
    }

    /// Applies `invalidation` to every local tier. A tier where it fails, or that cannot do
    /// it (tags on a tier without tags), is cleared instead; one that cannot be cleared
    /// either is counted as stale.
    async fn invalidate_local(&self, invalidation: LocalInvalidation<'_>) {
        let local = self.tiers.iter().filter(|state| !state.tier.shared);
        join_all(local.map(|state| self.invalidate_tier(state, invalidation))).await;
    }

    async fn invalidate_tier(&self, state: &TierState, invalidation: LocalInvalidation<'_>) {
        let tier: &dyn CacheManager = state.tier.manager.as_ref();
        let result = match invalidation {
            LocalInvalidation::Delete(key) => tier.delete(key).await.map(|()| 0),
            LocalInvalidation::DeleteTag(tag) => tier.delete_tag(tag).await,
            LocalInvalidation::DeletePattern(pattern) => tier.delete_pattern(pattern).await,
            LocalInvalidation::Clear => tier.clear().await.map(|()| 0),
        };
        let Err(error) = result else {
            return;
        };
        if error.kind() != cache_core::ErrorKind::Unsupported {
            self.count_tier_error(state);
        }
        let cleared = match invalidation {
            LocalInvalidation::Clear => false,
            _ => match tier.clear().await {
                Ok(()) => true,
                Err(_) => {
                    self.count_tier_error(state);
                    false
                }
            },
        };
        if !cleared {
            bump(&self.counters.stale_tiers);
        }
    }
}
