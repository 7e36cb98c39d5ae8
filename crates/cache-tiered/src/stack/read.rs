//! The read path: one walk over the tiers, shared by `get`, `get_stream` and
//! `get_or_fetch`, and the promotion of a hit into the faster tiers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{
    CacheEntry, CachedResponse, EntryMetadata, Error, ErrorKind, PutOptions, Result, StreamedEntry,
    StreamingCacheManager, body,
};

use super::coherence::Snapshot;
use super::write::{detached, scaled};
use super::{Key, NAME, StackInner, TierState};
use crate::tier::{FailureMode, bump};

/// Taken off the remaining life of an entry promoted into a tier with a smaller TTL scale
/// than its source's, so that the copy gets metadata of its own.
const PROMOTION_CLOCK_MARGIN: Duration = Duration::from_millis(5);

/// How the caller wants a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The whole entry in memory (`get`): a streamed body larger than the stack's
    /// buffered-get limit is an error.
    Buffered,
    /// A body to stream (`get_stream`): a streaming tier's body is handed on as it is
    /// unless it is promoted.
    Streamed,
}

/// What a walk found.
pub(crate) enum Found {
    Entry(Arc<CacheEntry>),
    /// Boxed: a streamed entry is large, and a buffered hit should not carry its size.
    Stream(Box<StreamedEntry>),
}

/// What the streaming tier answered.
enum StreamRead {
    Missed,
    Stream(Box<StreamedEntry>),
    /// The body read whole; whether to promote it.
    Entry(Arc<CacheEntry>, bool),
}

impl StackInner {
    /// Walks the tiers from `from` for `key`, promoting a hit from a slower tier into the
    /// faster ones. `count` says whether hits and misses are counted.
    pub(crate) async fn walk(
        self: &Arc<Self>,
        key: &Key<'_>,
        from: usize,
        count: bool,
        want: Want,
    ) -> Result<Option<Found>> {
        // Taken before any slower tier is read: a promotion copies only what was read
        // while no write of the key ran (see `coherence`).
        let snapshot = self.coherence.snapshot(key);
        for index in from..self.tiers.len() {
            let state = &self.tiers[index];
            let found = match &state.tier.streaming {
                None => {
                    let result = state.tier.manager.get(key.text).await;
                    self.answered(index, result, count)?.map(|entry| {
                        let promote = index > 0 && self.promotion.hit_says_promote(key.hash);
                        (entry, promote)
                    })
                }
                Some(streaming) => {
                    match self
                        .read_streaming(index, streaming.as_ref(), key, count, want)
                        .await?
                    {
                        StreamRead::Missed => None,
                        StreamRead::Stream(streamed) => return Ok(Some(Found::Stream(streamed))),
                        StreamRead::Entry(entry, promote) => Some((entry, promote)),
                    }
                }
            };
            if let Some((entry, promote)) = found {
                if promote {
                    self.promote(key, &entry, index, snapshot).await;
                }
                return Ok(Some(Found::Entry(entry)));
            }
        }
        if count {
            bump(&self.counters.misses);
        }
        Ok(None)
    }

    /// A buffered walk of every tier.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        key: &Key<'_>,
        count: bool,
    ) -> Result<Option<Arc<CacheEntry>>> {
        match self.walk(key, 0, count, Want::Buffered).await? {
            Some(Found::Entry(entry)) => Ok(Some(entry)),
            // A buffered walk reads streamed bodies whole.
            Some(Found::Stream(_)) | None => Ok(None),
        }
    }

    /// Counts what tier `index` answered; a failure is an error only in `Fail` mode.
    /// Backends never return expired entries (the contract), so a hit is not re-checked.
    pub(crate) fn answered(
        &self,
        index: usize,
        result: Result<Option<Arc<CacheEntry>>>,
        count: bool,
    ) -> Result<Option<Arc<CacheEntry>>> {
        let state = &self.tiers[index];
        match result {
            Ok(Some(entry)) => {
                if count {
                    bump(&state.counters.hits);
                    bump(&self.counters.hits);
                }
                Ok(Some(entry))
            }
            Ok(None) => {
                if count {
                    bump(&state.counters.misses);
                }
                Ok(None)
            }
            Err(error) => {
                self.count_tier_error(state);
                match state.tier.failure_mode {
                    FailureMode::Fail => Err(error),
                    FailureMode::Degrade => Ok(None),
                }
            }
        }
    }

    /// Reads the streaming tier: small bodies that faster tiers want are read whole and
    /// promoted; a buffered read of a body over the buffered-get limit is `TooLarge`
    /// (nothing is read); other bodies stream from the tier.
    async fn read_streaming(
        &self,
        index: usize,
        streaming: &dyn StreamingCacheManager,
        key: &Key<'_>,
        count: bool,
        want: Want,
    ) -> Result<StreamRead> {
        let state = &self.tiers[index];
        let streamed = match streaming.get_stream(key.text).await {
            Ok(Some(streamed)) => streamed,
            other => {
                self.answered(index, other.map(|_| None), count)?;
                return Ok(StreamRead::Missed);
            }
        };
        let small = streamed.body_len <= self.stream_promotion_limit;
        let size = CacheEntry::approximate_size_for(
            &streamed.head,
            streamed.body_len,
            &streamed.metadata.tags,
        );
        let wanted = self.tiers[..index]
            .iter()
            .any(|faster| faster.tier.accepts_promotions && faster.tier.admits(size));
        // Checked before the promotion strategy hears of the hit: a get that fails counts
        // as nothing.
        if want == Want::Buffered && streamed.body_len > self.max_buffered_body {
            return Err(Error::new(
                ErrorKind::TooLarge,
                NAME,
                format!(
                    "the body of {} bytes is over the stack's buffered-get limit of {} bytes: read it with get_stream",
                    streamed.body_len, self.max_buffered_body
                ),
            )
            .with_key(key.text));
        }
        let promote = index > 0 && small && wanted && self.promotion.hit_says_promote(key.hash);
        if want == Want::Streamed && !promote {
            self.count_hit(state, count);
            return Ok(StreamRead::Stream(Box::new(streamed)));
        }
        let StreamedEntry {
            head,
            policy,
            metadata,
            body_len,
            body: streamed_body,
            ..
        } = streamed;
        let limit = usize::try_from(body_len).unwrap_or(usize::MAX);
        let bytes = match body::collect(streamed_body, limit).await {
            Ok(bytes) => bytes,
            // The tier found its bytes bad (and removes the entry): a miss there, or the
            // error for a tier that fails.
            Err(error) => {
                self.count_tier_error(state);
                return match state.tier.failure_mode {
                    FailureMode::Fail => Err(error),
                    FailureMode::Degrade => Ok(StreamRead::Missed),
                };
            }
        };
        self.count_hit(state, count);
        let entry = CacheEntry::new(
            CachedResponse::from_head_and_body(head, bytes),
            policy,
            metadata,
        );
        Ok(StreamRead::Entry(Arc::new(entry), promote))
    }

    fn count_hit(&self, state: &TierState, count: bool) {
        if count {
            bump(&state.counters.hits);
            bump(&self.counters.hits);
        }
    }

    /// Copies `entry`, found in tier `source`, into the faster tiers that accept it: each
    /// for its own share of the entry's TTL, never longer than the entry has left in
    /// `source`, and only while no write of the key started since `snapshot`.
    async fn promote(
        self: &Arc<Self>,
        key: &Key<'_>,
        entry: &Arc<CacheEntry>,
        source: usize,
        snapshot: Snapshot,
    ) {
        let remaining = entry.metadata.remaining_ttl(SystemTime::now());
        if remaining.is_zero() {
            return;
        }
        // A policy that does not decode makes the entry unusable: it is not copied.
        if entry.try_policy().is_err() {
            return;
        }
        let size = entry.approximate_size();
        let takes = |state: &TierState| state.tier.accepts_promotions && state.tier.admits(size);
        if !self.tiers[..source].iter().any(takes) {
            return;
        }
        // A promotion that has begun runs to the end even when the get is dropped: a copy
        // into a tier that writes on the blocking pool would otherwise land after the
        // key's stripe was let go, and after a write that followed.
        let inner = Arc::clone(self);
        let key = key.text.to_owned();
        let entry = Arc::clone(entry);
        let promotion = detached(async move {
            let copies = inner.copy_into_faster_tiers(&key, &entry, source, remaining, size);
            inner.coherence.promote_if_unchanged(snapshot, copies).await;
            Ok(())
        });
        let _ = promotion.await;
    }

    /// Copies `entry` from tier `source` into the faster tiers that take it, fastest first
    /// and one after the other (the faster tiers answer the next get sooner, and a
    /// promotion is no reason to run many slow writes at once).
    async fn copy_into_faster_tiers(
        &self,
        key: &str,
        entry: &Arc<CacheEntry>,
        source: usize,
        remaining: Duration,
        size: usize,
    ) {
        // The source tier holds its share of the entry's TTL: the whole TTL is that share
        // divided by its scale, and each target keeps its own share of the whole.
        let source_scale = self.tiers[source].tier.ttl_scale;
        let whole_ttl = unscaled(entry.metadata.storage_ttl(), source_scale);
        for state in &self.tiers[..source] {
            if !(state.tier.accepts_promotions && state.tier.admits(size)) {
                continue;
            }
            let share = scaled(whole_ttl, state.tier.ttl_scale);
            let ttl = if share < remaining {
                share
            } else if state.tier.ttl_scale >= source_scale {
                // The copy may end with the entry itself: the memory backend then keeps
                // the entry as it is, metadata included, and the storage TTL in that
                // metadata is never more than this tier's share (its scale is not smaller).
                remaining
            } else {
                // Kept as it is, the entry would carry the source's larger share as its
                // storage TTL, and a promotion out of this tier would overestimate the
                // whole TTL: a shorter TTL makes the copy get metadata of its own.
                remaining.saturating_sub(PROMOTION_CLOCK_MARGIN)
            };
            let options = PutOptions::new().with_ttl(ttl);
            match state
                .tier
                .manager
                .put_entry(key, Arc::clone(entry), options)
                .await
            {
                Ok(()) => {
                    bump(&state.counters.promotions);
                    bump(&self.counters.promotions);
                }
                Err(_) => self.count_tier_error(state),
            }
        }
    }
}

/// `ttl` divided by `scale` (the inverse of [`scaled`]), capped as `scaled` caps.
fn unscaled(ttl: Duration, scale: f64) -> Duration {
    scaled(ttl, 1.0 / scale)
}

/// A buffered entry as a streamed one (one chunk, no copy of the body).
pub(crate) fn streamed_from(entry: &CacheEntry) -> StreamedEntry {
    let (head, body_bytes) = entry.response.clone().into_head_and_body();
    StreamedEntry::new(
        head,
        entry.policy().clone(),
        EntryMetadata::clone(&entry.metadata),
        body_bytes.len() as u64,
        body::full(body_bytes),
    )
}
