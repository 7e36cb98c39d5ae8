//! The write path: one fan-out over the tiers and one settle rule, shared by `put`,
//! `put_stream` and the deletions, and the detached runner that lets a write finish (and
//! the bus hear of it) when its caller's future is dropped.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cache_core::{
    BoxBody, CacheEntry, CacheFuture, CachePolicy, CachedResponse, Error, ErrorKind,
    InvalidationEvent, KeyPattern, PutOptions, ResponseHead, Result, StoredBody,
};
use futures::future::join_all;

use super::{Key, NAME, StackInner, TierState};
use crate::tier::{FailureMode, bump};

/// What one tier's part of a write came to.
pub(crate) enum TierOutcome {
    /// Done; for deletions of many keys, how many the tier removed.
    Done(u64),
    /// The tier's write failed, but it holds no older version of what was written (a
    /// failed put whose key was then removed): the stack may carry on without it.
    Degraded(Error),
    /// The tier may still hold what the write meant to replace or remove.
    Stale(Error),
}

/// Runs `work` so that it finishes even when the caller's future is dropped: it is polled
/// once at once (a write to ready tiers, such as memory without a bus, completes there and
/// costs nothing more) and, if it has to wait, carried on in a task of its own. Outside a
/// tokio runtime it runs in the caller's future.
pub(crate) fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> CacheFuture<'static, Result<T>> {
    let mut work = Box::pin(work);
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    if let Poll::Ready(output) = work.as_mut().poll(&mut context) {
        return CacheFuture::ready(output);
    }
    match tokio::runtime::Handle::try_current() {
        // The task polls the future again at once, with its own waker.
        Ok(runtime) => {
            let task = runtime.spawn(work);
            CacheFuture::new(async move {
                task.await.unwrap_or_else(|error| {
                    Err(Error::new(ErrorKind::Backend, NAME, "a write task failed")
                        .with_source(error))
                })
            })
        }
        Err(_) => CacheFuture::new(work),
    }
}

impl StackInner {
    pub(crate) fn count_tier_error(&self, state: &TierState) {
        bump(&state.counters.errors);
        bump(&self.counters.errors);
    }

    /// The one settle rule: every tier was written; a `Fail` tier's error fails the call,
    /// and so does a tier that may still hold an older version (in either mode: the
    /// stack cannot promise what it was asked). Otherwise the largest count.
    fn settle(&self, outcomes: Vec<(usize, TierOutcome)>) -> Result<u64> {
        let mut largest = 0;
        let mut failed: Option<Error> = None;
        let mut stale: Option<Error> = None;
        for (index, outcome) in outcomes {
            let state = &self.tiers[index];
            match outcome {
                TierOutcome::Done(count) => largest = largest.max(count),
                TierOutcome::Degraded(error) => {
                    if state.tier.failure_mode == FailureMode::Fail && failed.is_none() {
                        failed = Some(error);
                    }
                }
                TierOutcome::Stale(error) => {
                    bump(&self.counters.stale_tiers);
                    if stale.is_none() {
                        stale = Some(Error::new(
                            error.kind(),
                            NAME,
                            format!(
                                "tier {index} ({}) may still hold what this call replaced or removed",
                                state.tier.manager.name()
                            ),
                        )
                        .with_source(error));
                    }
                }
            }
        }
        // A tier that may hold the old version is what the caller most needs to know.
        match stale.or(failed) {
            Some(error) => Err(error),
            None => Ok(largest),
        }
    }

    /// A tier's write failed: it must not keep an older version, so the key is removed
    /// from it.
    async fn remove_after_failure(
        &self,
        state: &TierState,
        key: &Key<'_>,
        error: Error,
    ) -> TierOutcome {
        self.count_tier_error(state);
        match state.tier.manager.delete(key.text).await {
            Ok(()) => TierOutcome::Degraded(error.with_key(key.text)),
            Err(delete_error) => {
                self.count_tier_error(state);
                TierOutcome::Stale(
                    Error::new(
                        delete_error.kind(),
                        state.tier.manager.name(),
                        format!("the write failed ({error}) and so did removing the key"),
                    )
                    .with_key(key.text)
                    .with_source(delete_error),
                )
            }
        }
    }

    /// A tier's deletion failed: what it held may still be there.
    fn failed_deletion(&self, state: &TierState, error: Error) -> TierOutcome {
        self.count_tier_error(state);
        TierOutcome::Stale(error)
    }

    fn base_ttl(
        &self,
        policy: &CachePolicy,
        headers: &http::HeaderMap,
        options: &PutOptions,
    ) -> Duration {
        options.ttl().unwrap_or_else(|| {
            self.ttl_policy
                .storage_ttl(policy, headers, SystemTime::now())
        })
    }

    pub(crate) async fn put(
        &self,
        key: &Key<'_>,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> Result<()> {
        bump(&self.counters.puts);
        let base_ttl = self.base_ttl(&policy, &response.headers, &options);
        let size = CacheEntry::approximate_size_of(&response, options.tags());
        // One copy of the response per tier that takes it, the last taking the original.
        let admitted: Vec<bool> = self
            .tiers
            .iter()
            .map(|state| state.tier.admits(size))
            .collect();
        let copies = admitted.iter().filter(|&&admitted| admitted).count();
        let mut payloads: Vec<(CachedResponse, CachePolicy)> = (1..copies)
            .map(|_| (response.clone(), policy.clone()))
            .collect();
        payloads.push((response, policy));
        let mut payloads = payloads.into_iter();
        let writes: Vec<_> = self
            .tiers
            .iter()
            .zip(admitted)
            .enumerate()
            .map(|(index, (state, admitted))| {
                let options = options
                    .clone()
                    .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
                let payload = if admitted { payloads.next() } else { None };
                async move {
                    // Whether this tier did not take the entry for its size: skipped by
                    // its limit, or refused by the backend as too large.
                    let mut too_large = payload.is_none();
                    let outcome = match payload {
                        Some((response, policy)) => {
                            match state
                                .tier
                                .manager
                                .put(key.text, response, policy, options)
                                .await
                            {
                                Ok(()) => {
                                    if !base_ttl.is_zero() {
                                        bump(&state.counters.puts);
                                    }
                                    TierOutcome::Done(0)
                                }
                                Err(error) => {
                                    too_large = error.kind() == ErrorKind::TooLarge;
                                    self.remove_after_failure(state, key, error).await
                                }
                            }
                        }
                        // A tier that does not take the new version must not keep the old.
                        None => match state.tier.manager.delete(key.text).await {
                            Ok(()) => TierOutcome::Done(0),
                            Err(error) => self.failed_deletion(state, error),
                        },
                    };
                    (index, outcome, too_large)
                }
            })
            .collect();
        let written = self.writing_key(key, join_all(writes)).await;
        let too_large_for_every_tier =
            !base_ttl.is_zero() && written.iter().all(|(_, _, too_large)| *too_large);
        let outcomes = written
            .into_iter()
            .map(|(index, outcome, _)| (index, outcome))
            .collect();
        // Other instances drop the older version from their local tiers.
        let published = self
            .publish(InvalidationEvent::Delete {
                key: key.text.to_owned(),
            })
            .await;
        self.settle(outcomes)?;
        if too_large_for_every_tier {
            // Nothing stored it and every tier dropped the key: the put is refused, as a
            // single backend refuses an entry over its limit.
            return Err(self.too_large_for_every_tier(key, size));
        }
        published
    }

    fn too_large_for_every_tier(&self, key: &Key<'_>, size: usize) -> Error {
        let limits: Vec<String> = self
            .tiers
            .iter()
            .map(|state| {
                state
                    .tier
                    .max_entry_bytes
                    .map_or_else(|| "none".to_owned(), |limit| limit.to_string())
            })
            .collect();
        Error::new(
            ErrorKind::TooLarge,
            NAME,
            format!(
                "the entry takes {size} bytes and no tier takes it (tier limits: {}); no tier holds the key now",
                limits.join(", ")
            ),
        )
        .with_key(key.text)
    }

    pub(crate) async fn put_stream(
        &self,
        key: &Key<'_>,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> Result<StoredBody> {
        let Some((index, streaming)) = self.streaming_tier() else {
            return Err(Error::unsupported(NAME, "put_stream"));
        };
        let streaming = Arc::clone(streaming);
        bump(&self.counters.puts);
        let base_ttl = self.base_ttl(&policy, &head.headers, &options);
        // The entry's size without its body: the body's length is known once it is stored.
        let size_without_body = CacheEntry::approximate_size_for(&head, 0, options.tags());
        // The body goes to one place only: when that tier fails, nothing is stored anywhere
        // and every tier keeps what it had, in either failure mode. The body is streamed
        // outside the key's stripe (an upload can take minutes and must not hold up other
        // writes or the bus): the tier commits it atomically, and the copies below, made
        // under the stripe, replace whatever a promotion copied meanwhile.
        let state = &self.tiers[index];
        let scaled_options = options
            .clone()
            .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
        let stored = match streaming
            .put_stream(key.text, head, policy, body, scaled_options)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                self.count_tier_error(state);
                return Err(error);
            }
        };
        if !base_ttl.is_zero() {
            bump(&state.counters.puts);
        }
        let outcomes = self
            .writing_key(key, async {
                // The other tiers get the entry buffered when it fits them, read back once
                // from the streaming tier; the rest drop any older version they hold.
                let size = size_without_body
                    .saturating_add(usize::try_from(stored.len).unwrap_or(usize::MAX));
                let mut buffered: Option<Arc<CacheEntry>> = None;
                let mut outcomes = Vec::with_capacity(self.tiers.len());
                for (other, state) in self.tiers.iter().enumerate() {
                    if other == index {
                        continue;
                    }
                    let copy =
                        if state.tier.admits(size) && stored.len <= self.stream_promotion_limit {
                            if buffered.is_none() {
                                buffered = streaming.get(key.text).await.ok().flatten();
                            }
                            buffered.clone()
                        } else {
                            None
                        };
                    let outcome = match copy {
                        Some(entry) => {
                            let options = options
                                .clone()
                                .with_ttl(scaled(base_ttl, state.tier.ttl_scale));
                            let written = state
                                .tier
                                .manager
                                .put(
                                    key.text,
                                    entry.response.clone(),
                                    entry.policy().clone(),
                                    options,
                                )
                                .await;
                            match written {
                                Ok(()) => {
                                    if !base_ttl.is_zero() {
                                        bump(&state.counters.puts);
                                    }
                                    TierOutcome::Done(0)
                                }
                                Err(error) => self.remove_after_failure(state, key, error).await,
                            }
                        }
                        None => match state.tier.manager.delete(key.text).await {
                            Ok(()) => TierOutcome::Done(0),
                            Err(error) => self.failed_deletion(state, error),
                        },
                    };
                    outcomes.push((other, outcome));
                }
                outcomes
            })
            .await;
        let published = self
            .publish(InvalidationEvent::Delete {
                key: key.text.to_owned(),
            })
            .await;
        self.settle(outcomes)?;
        published?;
        Ok(stored)
    }

    pub(crate) async fn delete(&self, key: &Key<'_>) -> Result<()> {
        let deletes = self
            .tiers
            .iter()
            .enumerate()
            .map(|(index, state)| async move {
                let outcome = match state.tier.manager.delete(key.text).await {
                    Ok(()) => TierOutcome::Done(1),
                    Err(error) => self.failed_deletion(state, error),
                };
                (index, outcome)
            });
        let outcomes = self.writing_key(key, join_all(deletes)).await;
        bump(&self.counters.deletes);
        let published = self
            .publish(InvalidationEvent::Delete {
                key: key.text.to_owned(),
            })
            .await;
        self.settle(outcomes)?;
        published
    }

    /// Runs an invalidation of many keys on every tier, publishes it and settles.
    pub(crate) async fn invalidate_many(&self, invalidation: Invalidation<'_>) -> Result<u64> {
        let runs = self
            .tiers
            .iter()
            .enumerate()
            .map(|(index, state)| async move {
                let tier = state.tier.manager.as_ref();
                let result = match invalidation {
                    Invalidation::Tag(tag) => tier.delete_tag(tag).await,
                    Invalidation::Pattern(pattern) => tier.delete_pattern(pattern).await,
                    Invalidation::Clear => tier.clear().await.map(|()| 0),
                };
                let outcome = match result {
                    Ok(count) => TierOutcome::Done(count),
                    Err(error) => self.failed_deletion(state, error),
                };
                (index, outcome)
            });
        let outcomes = self.writing_all(join_all(runs)).await;
        let published = self
            .publish(match invalidation {
                Invalidation::Tag(tag) => InvalidationEvent::DeleteTag {
                    tag: tag.to_owned(),
                },
                Invalidation::Pattern(pattern) => InvalidationEvent::DeletePattern {
                    pattern: pattern.as_str().to_owned(),
                },
                Invalidation::Clear => InvalidationEvent::Clear,
            })
            .await;
        let removed = self.settle(outcomes)?;
        published?;
        if !matches!(invalidation, Invalidation::Clear) {
            self.counters
                .deletes
                .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Publishes `event`; a failure is counted and becomes the call's error (after the
    /// tiers' own errors): the other instances did not hear of the write.
    async fn publish(&self, event: InvalidationEvent) -> Result<()> {
        let Some(bus) = &self.bus else {
            return Ok(());
        };
        bus.publish(event).await.map_err(|error| {
            bump(&self.counters.errors);
            Error::new(
                error.kind(),
                NAME,
                "the tiers were written but the bus did not carry the invalidation: other instances may keep the older version until their copies expire",
            )
            .with_source(error)
        })
    }
}

/// An invalidation of many keys.
#[derive(Clone, Copy)]
pub(crate) enum Invalidation<'a> {
    Tag(&'a str),
    Pattern(&'a KeyPattern),
    Clear,
}

/// `ttl` times `scale`, never rounded down to nothing when `ttl` is not nothing.
pub(crate) fn scaled(ttl: Duration, scale: f64) -> Duration {
    if ttl.is_zero() {
        return ttl;
    }
    // Past about a century a TTL means "as long as the tier keeps anything"; the cap also
    // keeps the multiplication from overflowing.
    const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    Duration::try_from_secs_f64(ttl.min(LONGEST).as_secs_f64() * scale)
        .unwrap_or(LONGEST)
        .min(LONGEST)
        .max(Duration::from_millis(1))
}
