//! How long an entry stays in storage, and the per-put options.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{CACHE_CONTROL, ETAG, LAST_MODIFIED};
use http_cache_semantics::CachePolicy;

use crate::entry::EntryMetadata;

/// The longest storage TTL any entry gets: 100 years of 365 days. Every TTL a
/// [`TtlPolicy`] hands out, the [`PutOptions::with_ttl`] override included, is clamped to
/// it, so every backend can represent the expiry (Redis's `PX` in milliseconds as an
/// `i64` plus the server's clock, the codec's expiry in nanoseconds since 1970 as a
/// `u64`, moka's and the disk backends' clocks) and an entry put with a TTL of "forever"
/// is stored, not refused.
pub const MAX_STORAGE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Turns a response's [`CachePolicy`] into a storage TTL: how long a backend keeps it.
///
/// The storage TTL is the response's remaining freshness lifetime, plus a stale grace
/// window when the response can still be useful once stale (it has a validator, `ETag` or
/// `Last-Modified`, so it can be revalidated with a 304, or it allows
/// `stale-while-revalidate` / `stale-if-error`), clamped to `[min_ttl, max_ttl]`.
/// It is zero, so nothing is stored, for a response the policy says must not be stored
/// (`no-store`, `private` in the shared cache a backend is, a status that is not
/// cacheable) and for one that is already stale with nothing to revalidate it with.
/// [`PutOptions::with_ttl`] overrides the whole computation for one put (store such a
/// response anyway with an explicit TTL). Every TTL, the override's too, is at most
/// [`MAX_STORAGE_TTL`].
///
/// | setting | default |
/// |---|---|
/// | `stale_grace` | 1 hour |
/// | `min_ttl` | 60 seconds |
/// | `max_ttl` | 7 days |
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_core::TtlPolicy;
///
/// let ttl_policy = TtlPolicy::default()
///     .with_stale_grace(Duration::from_secs(600))
///     .with_max_ttl(Duration::from_secs(86_400));
/// assert_eq!(ttl_policy.min_ttl(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TtlPolicy {
    stale_grace: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        Self {
            stale_grace: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl TtlPolicy {
    /// How long a stale response that can be revalidated stays stored past its freshness.
    /// Default: 1 hour.
    #[must_use]
    pub fn with_stale_grace(mut self, stale_grace: Duration) -> Self {
        self.stale_grace = stale_grace;
        self
    }

    /// The shortest storage TTL. Default: 60 seconds.
    #[must_use]
    pub fn with_min_ttl(mut self, min_ttl: Duration) -> Self {
        self.min_ttl = min_ttl;
        self
    }

    /// The longest storage TTL. Default: 7 days.
    #[must_use]
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// The stale grace window.
    pub fn stale_grace(&self) -> Duration {
        self.stale_grace
    }

    /// The shortest storage TTL.
    pub fn min_ttl(&self) -> Duration {
        self.min_ttl
    }

    /// The longest storage TTL.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// The storage TTL of a response with these headers and this policy, at `now`.
    ///
    /// When `min_ttl` exceeds `max_ttl`, `max_ttl` wins; neither goes past
    /// [`MAX_STORAGE_TTL`].
    pub fn storage_ttl(
        &self,
        policy: &CachePolicy,
        response_headers: &HeaderMap,
        now: SystemTime,
    ) -> Duration {
        if !policy.is_storable() {
            return Duration::ZERO;
        }
        let freshness = policy.time_to_live(now);
        let grace = if useful_when_stale(response_headers) {
            self.stale_grace
        } else {
            Duration::ZERO
        };
        let useful = freshness.saturating_add(grace);
        // Stale already and nothing to revalidate it with: no reason to keep it at all
        // (the minimum applies to what is worth keeping).
        if useful.is_zero() {
            return Duration::ZERO;
        }
        useful
            .max(self.min_ttl)
            .min(self.max_ttl)
            .min(MAX_STORAGE_TTL)
    }

    /// The metadata of an entry put at `now` with `options`: the per-put TTL when one is
    /// set (at most [`MAX_STORAGE_TTL`]), otherwise [`storage_ttl`](Self::storage_ttl).
    pub fn entry_metadata(
        &self,
        policy: &CachePolicy,
        response_headers: &HeaderMap,
        options: &PutOptions,
        now: SystemTime,
    ) -> EntryMetadata {
        let ttl = match options.ttl {
            Some(ttl) => ttl.min(MAX_STORAGE_TTL),
            None => self.storage_ttl(policy, response_headers, now),
        };
        EntryMetadata::new(now, ttl, options.tags.clone())
    }
}

fn useful_when_stale(headers: &HeaderMap) -> bool {
    if headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED) {
        return true;
    }
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|directives| {
            let directives = directives.to_ascii_lowercase();
            directives.contains("stale-while-revalidate") || directives.contains("stale-if-error")
        })
    })
}

/// Options of one [`put`](crate::CacheManager::put).
///
/// ```
/// use std::time::Duration;
/// use cache_core::PutOptions;
///
/// let options = PutOptions::new()
///     .with_ttl(Duration::from_secs(30))
///     .with_tags(["user:42", "listing"]);
/// assert_eq!(options.tags(), ["user:42", "listing"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    ttl: Option<Duration>,
    tags: Vec<String>,
}

impl PutOptions {
    /// Options with no TTL override and no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the entry for exactly `ttl`, bypassing the backend's [`TtlPolicy`] (its
    /// minimum and maximum do not apply), up to [`MAX_STORAGE_TTL`]: a longer one is taken
    /// as that. A zero TTL stores nothing and removes any entry under the key.
    /// Default: the backend's `TtlPolicy` decides.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags the entry so that [`delete_tag`](crate::CacheManager::delete_tag) can remove it.
    /// Default: no tags.
    #[must_use]
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The TTL override, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_for(response_headers: &[(&str, &str)], now: SystemTime) -> (CachePolicy, HeaderMap) {
        let request = http::Request::get("https://example.com/a")
            .body(())
            .unwrap();
        let mut builder = http::Response::builder().status(200);
        for (name, value) in response_headers {
            builder = builder.header(*name, *value);
        }
        let response = builder.body(()).unwrap();
        let policy = CachePolicy::new_options(&request, &response, now, Default::default());
        (policy, response.headers().clone())
    }

    #[test]
    fn fresh_response_without_validator_gets_its_freshness() {
        let now = SystemTime::now();
        let (policy, headers) = policy_for(&[("cache-control", "max-age=600")], now);
        let ttl = TtlPolicy::default().storage_ttl(&policy, &headers, now);
        assert_eq!(ttl, Duration::from_secs(600));
    }

    #[test]
    fn validator_adds_the_stale_grace() {
        let now = SystemTime::now();
        let (policy, headers) =
            policy_for(&[("cache-control", "max-age=600"), ("etag", "\"v1\"")], now);
        let ttl = TtlPolicy::default().storage_ttl(&policy, &headers, now);
        assert_eq!(ttl, Duration::from_secs(600 + 3600));
    }

    #[test]
    fn stale_if_error_adds_the_stale_grace() {
        let now = SystemTime::now();
        let (policy, headers) =
            policy_for(&[("cache-control", "max-age=10, stale-if-error=60")], now);
        let ttl = TtlPolicy::default()
            .with_stale_grace(Duration::from_secs(100))
            .storage_ttl(&policy, &headers, now);
        assert_eq!(ttl, Duration::from_secs(110));
    }

    #[test]
    fn responses_not_to_store_get_no_ttl_at_all() {
        let now = SystemTime::now();
        let ttl_policy = TtlPolicy::default();
        for headers in [
            &[("cache-control", "no-store"), ("etag", "\"v1\"")][..],
            &[("cache-control", "private, max-age=600")][..],
            // Stale already, nothing to revalidate it with.
            &[("cache-control", "max-age=0")][..],
            &[][..],
        ] {
            let (policy, response_headers) = policy_for(headers, now);
            assert_eq!(
                ttl_policy.storage_ttl(&policy, &response_headers, now),
                Duration::ZERO,
                "{headers:?}"
            );
        }
        // Stale already, but revalidatable: kept for the grace window.
        let (policy, response_headers) =
            policy_for(&[("cache-control", "max-age=0"), ("etag", "\"v1\"")], now);
        assert_eq!(
            ttl_policy.storage_ttl(&policy, &response_headers, now),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn ttl_is_clamped_to_min_and_max() {
        let now = SystemTime::now();
        let (short, short_headers) = policy_for(&[("cache-control", "max-age=5")], now);
        let (long, long_headers) = policy_for(&[("cache-control", "max-age=99999999")], now);
        let ttl_policy = TtlPolicy::default()
            .with_min_ttl(Duration::from_secs(30))
            .with_max_ttl(Duration::from_secs(3600));
        assert_eq!(
            ttl_policy.storage_ttl(&short, &short_headers, now),
            Duration::from_secs(30)
        );
        assert_eq!(
            ttl_policy.storage_ttl(&long, &long_headers, now),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn per_put_ttl_overrides_the_policy_unclamped() {
        let now = SystemTime::now();
        let (policy, headers) = policy_for(&[("cache-control", "max-age=600")], now);
        let options = PutOptions::new()
            .with_ttl(Duration::from_millis(1500))
            .with_tags(["a"]);
        let metadata = TtlPolicy::default().entry_metadata(&policy, &headers, &options, now);
        assert_eq!(metadata.stored_at, now);
        assert_eq!(metadata.expires_at, now + Duration::from_millis(1500));
        assert_eq!(metadata.tags, vec!["a".to_owned()]);
        assert_eq!(metadata.storage_ttl(), Duration::from_millis(1500));
    }

    #[test]
    fn every_storage_ttl_is_clamped_to_the_storage_maximum() {
        let now = SystemTime::now();
        let (policy, headers) = policy_for(&[("cache-control", "max-age=600")], now);
        let ttl_policy = TtlPolicy::default();
        for ttl in [
            Duration::from_secs(10_000_000_000_000_000),
            Duration::MAX,
            MAX_STORAGE_TTL + Duration::from_nanos(1),
        ] {
            let options = PutOptions::new().with_ttl(ttl);
            let metadata = ttl_policy.entry_metadata(&policy, &headers, &options, now);
            assert_eq!(metadata.storage_ttl(), MAX_STORAGE_TTL, "{ttl:?}");
            assert_eq!(metadata.expires_at, now + MAX_STORAGE_TTL);
        }
        let options = PutOptions::new().with_ttl(MAX_STORAGE_TTL);
        let metadata = ttl_policy.entry_metadata(&policy, &headers, &options, now);
        assert_eq!(metadata.storage_ttl(), MAX_STORAGE_TTL);

        // A policy whose bounds reach past the maximum stays within it as well.
        let (long, long_headers) = policy_for(&[("cache-control", "max-age=2147483647")], now);
        let unbounded = TtlPolicy::default()
            .with_min_ttl(Duration::MAX)
            .with_max_ttl(Duration::MAX);
        assert_eq!(
            unbounded.storage_ttl(&long, &long_headers, now),
            MAX_STORAGE_TTL
        );
        assert_eq!(
            unbounded.storage_ttl(&policy, &headers, now),
            MAX_STORAGE_TTL
        );
    }
}
