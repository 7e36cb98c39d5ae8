//! Typed values: any `Serialize + DeserializeOwned` value cached in the same tiers as HTTP
//! responses.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{BoxError, CacheEntry, CacheManager, CachePolicy, CachedResponse, PutOptions};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stack::{FetchError, Fetched, TieredCache};

/// How long a typed value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlPreset {
    /// 10 seconds.
    RealTime,
    /// 5 minutes.
    Short,
    /// 1 hour.
    Medium,
    /// 3 hours.
    Long,
    /// Any duration.
    Custom(Duration),
}

impl TtlPreset {
    /// The preset's duration.
    pub fn duration(self) -> Duration {
        match self {
            Self::RealTime => Duration::from_secs(10),
            Self::Short => Duration::from_secs(5 * 60),
            Self::Medium => Duration::from_secs(60 * 60),
            Self::Long => Duration::from_secs(3 * 60 * 60),
            Self::Custom(duration) => duration,
        }
    }
}

/// The header that marks a stored typed value and names its Rust type, so a value of
/// another type (or an HTTP response) under the same key is never decoded as this one.
const TYPE_HEADER: &str = "x-cache-typed-value";

fn type_marker<T>() -> HeaderValue {
    // Type names are ASCII identifiers, paths and generics; anything else is replaced.
    let name: String = std::any::type_name::<T>()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&name).unwrap_or_else(|_| HeaderValue::from_static("unnamed"))
}

fn decode<T: DeserializeOwned>(entry: &CacheEntry) -> Option<T> {
    if entry.response.headers.get(TYPE_HEADER) != Some(&type_marker::<T>()) {
        return None;
    }
    serde_json::from_slice(&entry.response.body).ok()
}

fn encode<T: Serialize>(value: &T, ttl: Duration) -> Result<Fetched, BoxError> {
    let body = serde_json::to_vec(value)?;
    // A URL of its own scheme: typed values are not HTTP resources.
    let url = url::Url::parse("cache-typed://value/")?;
    let mut response = CachedResponse::new(url.clone(), StatusCode::OK).with_body(body);
    response.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers.insert(TYPE_HEADER, type_marker::<T>());
    let max_age = HeaderValue::from_str(&format!("max-age={}", ttl.as_secs()))?;
    response
        .headers
        .insert(http::header::CACHE_CONTROL, max_age);
    let request = http::Request::get(url.as_str()).body(())?;
    let mut head = http::Response::new(());
    *head.headers_mut() = response.headers.clone();
    let policy = CachePolicy::new(&request, &head);
    Ok(Fetched::new(response, policy).with_options(PutOptions::new().with_ttl(ttl)))
}

impl TieredCache {
    /// The value of type `T` cached under `key`, or the one `compute` produces, cached for
    /// `ttl` in every tier (as JSON). Concurrent calls for one key compute once, as with
    /// [`get_or_fetch`](Self::get_or_fetch). A stored value of another type, or one that
    /// no longer decodes (the type changed between deployments), is replaced.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use cache_memory::{MemoryCache, MemoryConfig};
    /// use cache_tiered::{Tier, TieredCache, TtlPreset};
    ///
    /// let stack = TieredCache::builder()
    ///     .tier(Tier::new(Arc::new(MemoryCache::open(MemoryConfig::default())?)))
    ///     .build()
    ///     .await?;
    /// let prices: Vec<u32> = stack
    ///     .get_or_compute_typed("prices", TtlPreset::Short, || async {
    ///         Ok::<_, std::io::Error>(vec![120, 95, 310])
    ///     })
    ///     .await?;
    /// assert_eq!(prices, [120, 95, 310]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_compute_typed<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: TtlPreset,
        compute: F,
    ) -> Result<T, FetchError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        cache_core::validate_key("tiered", key)?;
        let ttl = ttl.duration();
        if let Some(entry) = CacheManager::get(self, key).await? {
            match decode(&entry) {
                Some(value) => return Ok(value),
                // Another type, or a shape this type no longer has: replaced below.
                None => CacheManager::delete(self, key).await?,
            }
        }
        let fetch = move || async move {
            let value = compute().await.map_err(Into::into)?;
            encode(&value, ttl)
        };
        let entry: Arc<CacheEntry> = self.join_or_start_fetch(key, fetch).await?;
        decode(&entry).ok_or_else(|| {
            FetchError::Fetch(Arc::new(
                format!(
                    "another writer stored something other than a {} under {key:?}",
                    std::any::type_name::<T>()
                )
                .into(),
            ))
        })
    }
}
