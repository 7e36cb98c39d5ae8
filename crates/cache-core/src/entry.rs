//! The stored entry: the response as it was, its cache policy and its storage metadata.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_cache_semantics::CachePolicy;
use url::Url;

use crate::error::{Error, ErrorKind, Result};

/// An HTTP response as a cache stores it: status, version, every header, the URL that
/// produced it and the whole body.
///
/// Headers are kept as a full [`HeaderMap`]: a name with several values keeps every value
/// in order, and values that are not UTF-8 survive byte for byte.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CachedResponse {
    /// The response status.
    pub status: StatusCode,
    /// The HTTP version the response was received with.
    pub version: Version,
    /// Every response header, in order.
    pub headers: HeaderMap,
    /// The URL of the request that produced this response.
    pub url: Url,
    /// The whole response body.
    pub body: Bytes,
}

impl CachedResponse {
    /// Creates a response with the given URL and status, HTTP/1.1, no headers and an
    /// empty body.
    pub fn new(url: Url, status: StatusCode) -> Self {
        Self {
            status,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            url,
            body: Bytes::new(),
        }
    }

    /// Sets the HTTP version. Default: HTTP/1.1.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Replaces all headers. Default: none.
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the body. Default: empty.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Builds a cached response from an `http::Response` and the URL that produced it.
    pub fn from_http(url: Url, response: http::Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            url,
            body,
        }
    }

    /// Turns the cached response back into an `http::Response`, without copying the body.
    pub fn into_http(self) -> http::Response<Bytes> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }

    /// Splits the response into its head and its body.
    pub fn into_head_and_body(self) -> (ResponseHead, Bytes) {
        let head = ResponseHead {
            status: self.status,
            version: self.version,
            headers: self.headers,
            url: self.url,
        };
        (head, self.body)
    }

    /// Joins a head and a body into a cached response.
    pub fn from_head_and_body(head: ResponseHead, body: Bytes) -> Self {
        Self {
            status: head.status,
            version: head.version,
            headers: head.headers,
            url: head.url,
            body,
        }
    }

    /// An estimate of the memory this response occupies, in bytes: the body, the header
    /// names and values and the URL, plus a fixed per-header overhead.
    pub fn approximate_size(&self) -> usize {
        self.body.len() + self.url.as_str().len() + header_map_size(&self.headers)
    }
}

/// The head of a response (everything but the body), used by streaming backends that
/// carry the body separately.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponseHead {
    /// The response status.
    pub status: StatusCode,
    /// The HTTP version the response was received with.
    pub version: Version,
    /// Every response header, in order.
    pub headers: HeaderMap,
    /// The URL of the request that produced this response.
    pub url: Url,
}

impl ResponseHead {
    /// Creates a head with the given URL and status, HTTP/1.1 and no headers.
    pub fn new(url: Url, status: StatusCode) -> Self {
        Self {
            status,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            url,
        }
    }

    /// Replaces all headers. Default: none.
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the HTTP version. Default: HTTP/1.1.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }
}

/// Storage metadata of an entry: when it was stored, when storage drops it, and its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryMetadata {
    /// When the entry was written to this backend.
    pub stored_at: SystemTime,
    /// When the backend drops the entry. An entry is never returned at or after this time.
    pub expires_at: SystemTime,
    /// The tags the entry was stored with, for [`CacheManager::delete_tag`](crate::CacheManager::delete_tag).
    pub tags: Vec<String>,
}

impl EntryMetadata {
    /// Creates metadata for an entry stored at `stored_at` that lives for `storage_ttl`.
    pub fn new(stored_at: SystemTime, storage_ttl: Duration, tags: Vec<String>) -> Self {
        let expires_at = stored_at
            .checked_add(storage_ttl)
            .unwrap_or_else(|| stored_at + Duration::from_secs(100 * 365 * 24 * 3600));
        Self {
            stored_at,
            expires_at,
            tags,
        }
    }

    /// Whether the entry has expired at `now` (expiry is inclusive: an entry whose
    /// `expires_at` equals `now` is expired).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }

    /// How long the entry has left in storage at `now`; zero once it has expired.
    pub fn remaining_ttl(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// The storage TTL the entry was written with.
    pub fn storage_ttl(&self) -> Duration {
        self.expires_at
            .duration_since(self.stored_at)
            .unwrap_or(Duration::ZERO)
    }
}

/// A cached response with its policy and metadata, as returned by
/// [`CacheManager::get`](crate::CacheManager::get).
///
/// An entry read from bytes (every backend but the in-memory one) keeps its policy in
/// serialized form until [`policy`](Self::policy) is first called: a hit that is served
/// without consulting the policy (a storage-fresh hit in a stack, a promotion into memory
/// that is then read many times) does not pay for decoding it. The envelope's checksum
/// has already verified those bytes when the entry was read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheEntry {
    /// The response as it was stored.
    pub response: CachedResponse,
    /// When it was stored, when it expires, its tags.
    pub metadata: EntryMetadata,
    policy: EntryPolicy,
}

/// The policy of an entry: decoded, or still serialized until first used.
#[derive(Debug, Clone)]
struct EntryPolicy {
    decoded: OnceLock<CachePolicy>,
    /// The codec's serialized policy, when the entry was read from an envelope.
    serialized: Option<Bytes>,
}

impl EntryPolicy {
    fn decode(&self) -> Result<CachePolicy> {
        match &self.serialized {
            Some(serialized) => crate::codec::decode_policy(serialized),
            None => Err(Error::new(
                ErrorKind::CorruptEntry,
                "codec",
                "the entry holds no policy",
            )),
        }
    }
}

impl CacheEntry {
    /// Assembles an entry from its parts.
    pub fn new(response: CachedResponse, policy: CachePolicy, metadata: EntryMetadata) -> Self {
        Self {
            response,
            metadata,
            policy: EntryPolicy {
                decoded: OnceLock::from(policy),
                serialized: None,
            },
        }
    }

    /// Assembles an entry whose policy is still in the codec's serialized form (what
    /// [`codec::encode_policy`](crate::codec::encode_policy) wrote); it is decoded when
    /// first used.
    pub fn with_serialized_policy(
        response: CachedResponse,
        serialized_policy: Bytes,
        metadata: EntryMetadata,
    ) -> Self {
        Self {
            response,
            metadata,
            policy: EntryPolicy {
                decoded: OnceLock::new(),
                serialized: Some(serialized_policy),
            },
        }
    }

    /// The `http-cache-semantics` policy that decides whether the response may be
    /// reused, decoded on first use.
    ///
    /// A serialized policy that does not decode (the checksum matched, so only a
    /// writer of another format could produce one) is an error of kind
    /// [`ErrorKind::CorruptEntry`]; treat the entry as a miss.
    pub fn try_policy(&self) -> Result<&CachePolicy> {
        if let Some(policy) = self.policy.decoded.get() {
            return Ok(policy);
        }
        let policy = self.policy.decode()?;
        Ok(self.policy.decoded.get_or_init(|| policy))
    }

    /// The `http-cache-semantics` policy that decides whether the response may be
    /// reused, decoded on first use.
    ///
    /// Never panics: if the serialized policy does not decode (see
    /// [`try_policy`](Self::try_policy)), this is a policy that forbids storing and
    /// reusing the response (`Cache-Control: no-store`), so a caller that consults it
    /// revalidates or fetches again, as for a miss.
    pub fn policy(&self) -> &CachePolicy {
        if let Ok(policy) = self.try_policy() {
            return policy;
        }
        self.policy.decoded.get_or_init(unusable_policy)
    }

    /// Splits the entry into its response, its policy (decoded, without a copy) and its
    /// metadata.
    pub fn into_parts(self) -> (CachedResponse, CachePolicy, EntryMetadata) {
        let EntryPolicy {
            decoded,
            serialized,
        } = self.policy;
        let policy = match decoded.into_inner() {
            Some(policy) => policy,
            None => serialized
                .as_deref()
                .and_then(|serialized| crate::codec::decode_policy(serialized).ok())
                .unwrap_or_else(unusable_policy),
        };
        (self.response, policy, self.metadata)
    }

    /// The policy's serialized form, when the entry was read from an envelope and the
    /// policy was not replaced since (a backend writing the entry again can reuse it).
    pub fn serialized_policy(&self) -> Option<&Bytes> {
        self.policy.serialized.as_ref()
    }

    /// An estimate of the memory this entry occupies, in bytes (response, tags and a
    /// fixed allowance for the policy, which holds a copy of the request and response
    /// headers).
    pub fn approximate_size(&self) -> usize {
        Self::approximate_size_of(&self.response, &self.metadata.tags)
    }

    /// [`approximate_size`](Self::approximate_size) of the entry `response` with `tags`
    /// would make, without building it (to decide where a put may go).
    pub fn approximate_size_of(response: &CachedResponse, tags: &[String]) -> usize {
        entry_size(&response.url, &response.headers, response.body.len(), tags)
    }

    /// [`approximate_size`](Self::approximate_size) of an entry with this `head`, a body of
    /// `body_len` bytes and `tags` (for streamed entries, whose body is not at hand).
    pub fn approximate_size_for(head: &ResponseHead, body_len: u64, tags: &[String]) -> usize {
        let body_len = usize::try_from(body_len).unwrap_or(usize::MAX);
        entry_size(&head.url, &head.headers, body_len, tags)
    }
}

/// The one size estimate of an entry: body, URL, the headers twice (the policy holds a
/// copy), a fixed allowance for the rest of the policy, and the tags.
fn entry_size(url: &Url, headers: &HeaderMap, body_len: usize, tags: &[String]) -> usize {
    const POLICY_OVERHEAD: usize = 512;
    body_len
        .saturating_add(url.as_str().len())
        .saturating_add(2 * header_map_size(headers))
        .saturating_add(POLICY_OVERHEAD)
        .saturating_add(tags.iter().map(String::len).sum::<usize>())
}

fn header_map_size(headers: &HeaderMap) -> usize {
    const PER_HEADER_OVERHEAD: usize = 32;
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + PER_HEADER_OVERHEAD)
        .sum()
}

/// The policy of an entry whose serialized policy does not decode: nothing may be
/// stored or reused under it.
fn unusable_policy() -> CachePolicy {
    let request = http::Request::new(());
    let mut response = http::Response::new(());
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    CachePolicy::new(&request, &response)
}
