//! When a hit in a slower tier is copied into the faster ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When a hit in a slower tier is promoted into the faster tiers that accept promotions.
///
/// Per-key tracking (for the counting strategies) keeps at most
/// [`TieredBuilder::with_max_tracked_keys`](crate::TieredBuilder::with_max_tracked_keys)
/// keys; the least recently hit ones are forgotten first.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Promotion {
    /// Every hit in a slower tier is promoted.
    #[default]
    Always,
    /// A key is promoted on its `n`th hit in the slower tiers (1 behaves like `Always`).
    AfterHits(u32),
    /// A key is promoted once its hit rate reaches `per_minute`. The rate is a count of
    /// hits that decays exponentially with a one-minute time constant, so a key hit
    /// `per_minute` times in quick succession qualifies and one hit that often spread
    /// over an hour does not.
    HitRate {
        /// Hits per minute needed.
        per_minute: f64,
    },
}

/// The one-minute time constant of [`Promotion::HitRate`].
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct KeyActivity {
    /// Hits counted so far (decayed, for the rate strategy).
    score: f64,
    last_hit: Instant,
}

/// Per-key activity in two generations: a key is looked up in the current one, then the
/// previous one; when the current one is full it becomes the previous one (dropping the
/// older), so at most `max_keys` keys are tracked and recently hit keys survive.
#[derive(Debug)]
pub(crate) struct PromotionTracker {
    strategy: Promotion,
    generation_capacity: usize,
    /// Keyed by the 64-bit hash the stack computes once per operation, so a tracked key costs the same whatever its
    /// length (a collision merges two keys' counts, which only promotes a little early).
    generations: Mutex<(HashMap<u64, KeyActivity>, HashMap<u64, KeyActivity>)>,
}

impl PromotionTracker {
    pub(crate) fn new(strategy: Promotion, max_keys: usize) -> Self {
        Self {
            strategy,
            generation_capacity: (max_keys / 2).max(1),
            generations: Mutex::new((HashMap::new(), HashMap::new())),
        }
    }

    /// Records a hit in a slower tier of the key whose hash is `key` and says whether to
    /// promote it now.
    pub(crate) fn hit_says_promote(&self, key: u64) -> bool {
        let threshold = match self.strategy {
            Promotion::Always | Promotion::AfterHits(0 | 1) => return true,
            Promotion::AfterHits(n) => f64::from(n),
            Promotion::HitRate { per_minute } => per_minute,
        };
        let now = Instant::now();
        let mut generations = self
            .generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (current, previous) = &mut *generations;
        let mut activity = current
            .remove(&key)
            .or_else(|| previous.remove(&key))
            .unwrap_or(KeyActivity {
                score: 0.0,
                last_hit: now,
            });
        if let Promotion::HitRate { .. } = self.strategy {
            let elapsed = now.saturating_duration_since(activity.last_hit);
            activity.score *= (-elapsed.as_secs_f64() / RATE_WINDOW.as_secs_f64()).exp();
        }
        activity.score += 1.0;
        activity.last_hit = now;
        if activity.score >= threshold {
            // Promoted: the faster tier answers from now on; counting starts over if the
            // entry comes back down.
            return true;
        }
        if current.len() >= self.generation_capacity {
            *previous = std::mem::take(current);
        }
        current.insert(key, activity);
        false
    }

    /// How many keys are tracked now.
    pub(crate) fn tracked_keys(&self) -> usize {
        let generations = self
            .generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        generations.0.len() + generations.1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(key: &str) -> u64 {
        crate::stack::Key::new(key).hash
    }

    #[test]
    fn always_promotes_without_tracking() {
        let tracker = PromotionTracker::new(Promotion::Always, 10);
        assert!(tracker.hit_says_promote(hash("a")));
        assert_eq!(tracker.tracked_keys(), 0);
    }

    #[test]
    fn after_hits_promotes_on_the_nth_hit_then_starts_over() {
        let tracker = PromotionTracker::new(Promotion::AfterHits(3), 10);
        assert!(!tracker.hit_says_promote(hash("a")));
        assert!(!tracker.hit_says_promote(hash("b")));
        assert!(!tracker.hit_says_promote(hash("a")));
        assert!(tracker.hit_says_promote(hash("a")));
        assert_eq!(tracker.tracked_keys(), 1);
        assert!(!tracker.hit_says_promote(hash("a")));
    }

    #[test]
    fn tracking_is_bounded_and_keeps_recent_keys() {
        let tracker = PromotionTracker::new(Promotion::AfterHits(2), 100);
        for n in 0..10_000 {
            assert!(!tracker.hit_says_promote(hash(&format!("cold-{n}"))));
            assert!(tracker.tracked_keys() <= 100);
        }
        // The most recent key is still remembered: its second hit promotes.
        assert!(tracker.hit_says_promote(hash("cold-9999")));
    }

    #[tokio::test(start_paused = true)]
    async fn hit_rate_counts_recent_hits_only() {
        let tracker = PromotionTracker::new(Promotion::HitRate { per_minute: 3.0 }, 10);
        // Three hits within the same instant reach three per minute.
        assert!(!tracker.hit_says_promote(hash("burst")));
        assert!(!tracker.hit_says_promote(hash("burst")));
        assert!(tracker.hit_says_promote(hash("burst")));
        // Hits ten minutes apart decay to almost nothing in between: never three.
        for _ in 0..10 {
            assert!(!tracker.hit_says_promote(hash("slow")));
            tokio::time::advance(Duration::from_secs(600)).await;
        }
        // Two quick hits, a minute's pause, two more: e^-1 * 2 + 2 = 2.74 < 3.
        assert!(!tracker.hit_says_promote(hash("paused")));
        assert!(!tracker.hit_says_promote(hash("paused")));
        tokio::time::advance(RATE_WINDOW).await;
        assert!(!tracker.hit_says_promote(hash("paused")));
        assert!(!tracker.hit_says_promote(hash("paused")));
        // A fifth hit right away: 3.74 >= 3.
        assert!(tracker.hit_says_promote(hash("paused")));
    }
}
