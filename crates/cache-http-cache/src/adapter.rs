//! The adapter: http-cache's `CacheManager` over any `cache_core::CacheManager`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::{CacheManager, PutOptions};
use http::HeaderName;
use http_cache::{CacheKey, HttpResponse};
use http_cache_semantics::CachePolicy;

use crate::convert::{from_http_cache_response, to_http_cache_response};

/// What a failure of the cache does to the request going through http-cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureMode {
    /// The request goes on as if there were no cache: a failed lookup is a miss, a failed
    /// store hands the response back uncached, a failed delete is ignored. Each failure
    /// is counted in [`HttpCacheAdapter::errors`].
    #[default]
    Degrade,
    /// The error goes to http-cache, which fails the request with it.
    Fail,
}

/// A cache of this workspace as the cache manager of `http-cache` (and so of
/// `http-cache-reqwest` and `http-cache-tower`). Cloning is cheap; clones share the
/// cache and the error count.
#[derive(Clone)]
pub struct HttpCacheAdapter {
    cache: Arc<dyn CacheManager>,
    put_options: PutOptions,
    failure_mode: FailureMode,
    errors: Arc<AtomicU64>,
}

impl std::fmt::Debug for HttpCacheAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCacheAdapter")
            .field("cache", &self.cache.name())
            .field("put_options", &self.put_options)
            .field("failure_mode", &self.failure_mode)
            .finish_non_exhaustive()
    }
}

impl HttpCacheAdapter {
    /// An adapter over `cache`: any backend, or a tiered stack.
    pub fn new(cache: Arc<dyn CacheManager>) -> Self {
        Self {
            cache,
            put_options: PutOptions::new(),
            failure_mode: FailureMode::Degrade,
            errors: Arc::default(),
        }
    }

    /// The options of every put (tags for later invalidation, a fixed storage TTL).
    /// Default: none (the backend's TTL policy decides).
    #[must_use]
    pub fn with_put_options(mut self, put_options: PutOptions) -> Self {
        self.put_options = put_options;
        self
    }

    /// What a failing cache does to requests. Default: [`FailureMode::Degrade`].
    #[must_use]
    pub fn with_failure_mode(mut self, failure_mode: FailureMode) -> Self {
        self.failure_mode = failure_mode;
        self
    }

    /// The cache under the adapter.
    pub fn cache(&self) -> &Arc<dyn CacheManager> {
        &self.cache
    }

    /// How many cache failures were absorbed ([`FailureMode::Degrade`]) since the adapter
    /// was created.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn absorb(&self, error: cache_core::Error) -> http_cache::Result<()> {
        match self.failure_mode {
            FailureMode::Fail => Err(Box::new(error)),
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

impl http_cache::CacheManager for HttpCacheAdapter {
    async fn get(
        &self,
        cache_key: &str,
    ) -> http_cache::Result<Option<(HttpResponse, CachePolicy)>> {
        match self.cache.get(cache_key).await {
            Ok(Some(entry)) => match entry.try_policy() {
                Ok(policy) => Ok(Some((
                    to_http_cache_response(&entry.response),
                    policy.clone(),
                ))),
                // A policy that does not decode makes the entry unusable: a miss.
                Err(error) => self.absorb(error).map(|()| None),
            },
            Ok(None) => Ok(None),
            Err(error) => self.absorb(error).map(|()| None),
        }
    }

    async fn put(
        &self,
        cache_key: String,
        response: HttpResponse,
        policy: CachePolicy,
    ) -> http_cache::Result<HttpResponse> {
        // The backend keeps the body it is given; http-cache gets `response` back whole.
        let stored = match from_http_cache_response(response.clone()) {
            Ok(stored) => stored,
            Err(error) => return self.absorb(error.with_key(&cache_key)).map(|()| response),
        };
        match self
            .cache
            .put(&cache_key, stored, policy, self.put_options.clone())
            .await
        {
            Ok(()) => Ok(response),
            Err(error) => self.absorb(error).map(|()| response),
        }
    }

    async fn delete(&self, cache_key: &str) -> http_cache::Result<()> {
        match self.cache.delete(cache_key).await {
            Ok(()) => Ok(()),
            Err(error) => self.absorb(error),
        }
    }
}

/// A cache key for `HttpCacheOptions::cache_key` that adds the values of the request
/// headers `names` to http-cache's `METHOD:URI` key, so that the variants of a response
/// that varies on them (`Vary: Accept-Language`) are cached side by side instead of
/// replacing each other.
///
/// ```
/// use cache_http_cache::key_with_request_headers;
/// use http::header::ACCEPT_LANGUAGE;
///
/// let key = key_with_request_headers([ACCEPT_LANGUAGE]);
/// let request = http::Request::get("http://example.com/greeting")
///     .header("accept-language", "de")
///     .body(())
///     .unwrap();
/// let (parts, _) = request.into_parts();
/// assert_eq!(key(&parts), "GET:http://example.com/greeting\naccept-language=de");
/// ```
///
/// http-cache invalidates `GET:URI` after an unsafe request (a `POST` to the same URI)
/// with this function too, from the `POST`'s parts, which names another key: with a
/// custom key, invalidate by tag or pattern instead.
pub fn key_with_request_headers(names: impl IntoIterator<Item = HeaderName>) -> CacheKey {
    let names: Vec<HeaderName> = names.into_iter().collect();
    Arc::new(move |parts: &http::request::Parts| {
        let mut key = format!("{}:{}", parts.method, parts.uri);
        for name in &names {
            let mut values = parts.headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                continue;
            }
            // A newline cannot occur in a URI or a header value: the key is unambiguous.
            let _ = write!(key, "\n{name}=");
            for (index, value) in values.enumerate() {
                if index > 0 {
                    key.push(',');
                }
                key.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
        }
        key
    })
}
