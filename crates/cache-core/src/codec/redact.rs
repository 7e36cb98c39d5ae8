//! The policy's serialized form, with the request's credentials redacted, and URLs
//! without userinfo: what keeps credentials out of the stored bytes.

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_cache_semantics::CachePolicy;
use url::Url;

use super::format::corrupt;
use crate::error::{Error, ErrorKind, Result};

const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE];
const REDACTED: &str = "redacted";

/// Returns the policy's serialized form with the request's credentials redacted: the exact
/// bytes the envelope stores for it.
pub fn encode_policy(policy: &CachePolicy) -> Result<Vec<u8>> {
    let serialized = postcard::to_allocvec(policy).map_err(|error| {
        Error::new(
            ErrorKind::Backend,
            "codec",
            "cannot serialize the cache policy",
        )
        .with_source(error)
    })?;
    redact_request_credentials(serialized)
}

/// Decodes a policy written by [`encode_policy`].
pub fn decode_policy(bytes: &[u8]) -> Result<CachePolicy> {
    postcard::from_bytes(bytes)
        .map_err(|error| corrupt("the cache policy does not decode").with_source(error))
}

// The serialized `CachePolicy` starts with the request's header map, the response's and
// the request URI (its first three fields), so the credentials are redacted by decoding
// those alone, rewriting them and putting them back in front of the untouched rest. The
// codec tests pin this down: a change of field order in `http-cache-semantics` makes them
// fail.
fn redact_request_credentials(serialized: Vec<u8>) -> Result<Vec<u8>> {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct PolicyStart(
        #[serde(with = "http_serde::header_map")] HeaderMap,
        #[serde(with = "http_serde::header_map")] HeaderMap,
        #[serde(with = "http_serde::uri")] http::Uri,
    );

    // Most policies carry no credential: when no credential header name and no `@`
    // (userinfo) occurs anywhere in the bytes (`proxy-authorization` contains
    // `authorization`), nothing is decoded on this put.
    let mentions = |name: &[u8]| serialized.windows(name.len()).any(|window| window == name);
    if !mentions(b"authorization") && !mentions(b"cookie") && !serialized.contains(&b'@') {
        return Ok(serialized);
    }
    let (PolicyStart(mut request_headers, response_headers, uri), rest) =
        postcard::take_from_bytes::<PolicyStart>(&serialized).map_err(|error| {
            Error::new(
                ErrorKind::Backend,
                "codec",
                "cannot read the policy's request headers and uri",
            )
            .with_source(error)
        })?;
    let credentials = CREDENTIAL_HEADERS
        .iter()
        .any(|name| request_headers.contains_key(name));
    let stored_uri = uri_without_userinfo(&uri);
    if !credentials && stored_uri.is_none() {
        return Ok(serialized);
    }
    for name in &CREDENTIAL_HEADERS {
        let count = request_headers.get_all(name).iter().count();
        if count == 0 {
            continue;
        }
        request_headers.remove(name);
        for _ in 0..count {
            request_headers.append(name, HeaderValue::from_static(REDACTED));
        }
    }
    let start = PolicyStart(request_headers, response_headers, stored_uri.unwrap_or(uri));
    let mut redacted = postcard::to_allocvec(&start).map_err(|error| {
        Error::new(
            ErrorKind::Backend,
            "codec",
            "cannot write the policy's request headers and uri",
        )
        .with_source(error)
    })?;
    redacted.extend_from_slice(rest);
    Ok(redacted)
}

/// `url` as it is stored: without userinfo (no credential at rest).
pub(super) fn url_without_userinfo(url: &Url) -> std::borrow::Cow<'_, str> {
    if url.username().is_empty() && url.password().is_none() {
        return std::borrow::Cow::Borrowed(url.as_str());
    }
    let mut stored = url.clone();
    // Both fail only for URLs that cannot have userinfo, which have none to drop.
    let _ = stored.set_username("");
    let _ = stored.set_password(None);
    std::borrow::Cow::Owned(stored.into())
}

/// `uri` without userinfo, or `None` when it has none.
fn uri_without_userinfo(uri: &http::Uri) -> Option<http::Uri> {
    let authority = uri.authority()?;
    let (_, host_and_port) = authority.as_str().rsplit_once('@')?;
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host_and_port.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}
