//! The stack's counters, exact, and the snapshot users read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::tier::TierStats;

/// The stack's counters, exact, and each tier's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Gets answered by some tier.
    pub hits: u64,
    /// Gets no tier could answer.
    pub misses: u64,
    /// Entries copied into faster tiers (one per tier written).
    pub promotions: u64,
    /// `put` and `put_stream` calls (including `get_or_fetch`'s stores).
    pub puts: u64,
    /// Tier operations and bus publications that failed.
    pub errors: u64,
    /// Times a tier may have been left holding a version the stack meant to replace or
    /// remove: its write failed and so did removing the key (the call returned an error
    /// saying so), or a bus event could not be applied to it even by clearing it.
    pub stale_tiers: u64,
    /// Fetches `get_or_fetch` started.
    pub fetches: u64,
    /// Fetches that ran past [`TieredBuilder::with_fetch_timeout`](crate::TieredBuilder::with_fetch_timeout).
    pub fetch_timeouts: u64,
    /// Fetches running now.
    pub in_flight_fetches: u64,
    /// `get_or_fetch` callers that waited for a fetch another caller started.
    pub coalesced_waiters: u64,
    /// Invalidations received from the bus and applied to the local tiers.
    pub bus_events_applied: u64,
    /// `Resync` signals received from the bus (each flushed the local tiers).
    pub resyncs: u64,
    /// Each tier's counters, fastest first.
    pub tiers: Vec<TierStats>,
}

#[derive(Debug, Default)]
pub(crate) struct StackCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) puts: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) stale_tiers: AtomicU64,
    pub(crate) fetches: AtomicU64,
    pub(crate) fetch_timeouts: AtomicU64,
    pub(crate) in_flight_fetches: AtomicU64,
    pub(crate) coalesced_waiters: AtomicU64,
    pub(crate) bus_events_applied: AtomicU64,
    pub(crate) resyncs: AtomicU64,
}

impl StackCounters {
    pub(crate) fn snapshot(&self, tiers: Vec<TierStats>) -> TieredStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TieredStats {
            hits: load(&self.hits),
            misses: load(&self.misses),
            promotions: load(&self.promotions),
            puts: load(&self.puts),
            errors: load(&self.errors),
            stale_tiers: load(&self.stale_tiers),
            fetches: load(&self.fetches),
            fetch_timeouts: load(&self.fetch_timeouts),
            in_flight_fetches: load(&self.in_flight_fetches),
            coalesced_waiters: load(&self.coalesced_waiters),
            bus_events_applied: load(&self.bus_events_applied),
            resyncs: load(&self.resyncs),
            tiers,
        }
    }
}
