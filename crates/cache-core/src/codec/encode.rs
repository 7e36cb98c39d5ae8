//! Writing envelopes: whole, behind a prefix, with a borrowed body, or head-only.

use std::hash::Hasher as _;

use http::{HeaderMap, StatusCode, Version};
use http_cache_semantics::CachePolicy;
use url::Url;

use super::format::{
    CHECKSUM_START, FIXED_HEADER_LEN, FLAG_BODY_DETACHED, FORMAT_VERSION, MAGIC, unix_nanos,
    version_code,
};
use super::redact::{encode_policy, url_without_userinfo};
use crate::entry::{CacheEntry, CachedResponse, EntryMetadata, ResponseHead};
use crate::error::{Error, ErrorKind, Result};

/// Encodes an entry with its body into one envelope.
pub fn encode(key: &str, entry: &CacheEntry) -> Result<Vec<u8>> {
    let response = &entry.response;
    let head = HeadRef::of_response(response);
    // An entry read from an envelope carries its policy's serialized (already redacted)
    // bytes: they are written again as they are, without decoding them.
    let policy = match entry.serialized_policy() {
        Some(serialized) => PolicyRef::Serialized(serialized),
        None => PolicyRef::Decoded(entry.try_policy()?),
    };
    write_envelope(
        &[],
        key,
        head,
        policy,
        &entry.metadata,
        response.body.len() as u64,
        Some(&response.body[..]),
    )
}

/// Encodes a response, its policy and metadata into one envelope, without building a
/// [`CacheEntry`] first.
pub fn encode_parts(
    key: &str,
    response: &CachedResponse,
    policy: &CachePolicy,
    metadata: &EntryMetadata,
) -> Result<Vec<u8>> {
    encode_parts_with_prefix(&[], key, response, policy, metadata)
}

/// [`encode_parts`] behind `prefix`: the result is `prefix` followed by the envelope, in
/// one allocation, for backends that store a few bytes of their own before it (a
/// sequence number, a put id) and so need not copy the envelope once more.
pub fn encode_parts_with_prefix(
    prefix: &[u8],
    key: &str,
    response: &CachedResponse,
    policy: &CachePolicy,
    metadata: &EntryMetadata,
) -> Result<Vec<u8>> {
    let head = HeadRef::of_response(response);
    let body = &response.body[..];
    write_envelope(
        prefix,
        key,
        head,
        PolicyRef::Decoded(policy),
        metadata,
        body.len() as u64,
        Some(body),
    )
}

/// An envelope whose body is borrowed, not copied: its fixed header and metadata in one
/// small buffer, then the response's body. For backends that hand the bytes straight to a
/// writer (a Redis command, a socket, a file) and so need not assemble them in a buffer
/// of their own first. [`write_to`](Self::write_to) writes exactly the bytes
/// [`encode_parts`] returns.
#[derive(Debug)]
pub struct BorrowedEnvelope<'a> {
    head: Vec<u8>,
    body: &'a [u8],
}

impl BorrowedEnvelope<'_> {
    /// The envelope's length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Always false: an envelope has at least its fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the whole envelope to `out`.
    pub fn write_to(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.head)?;
        out.write_all(self.body)
    }
}

/// [`encode_parts`] without copying the body: see [`BorrowedEnvelope`].
pub fn encode_parts_borrowed<'a>(
    key: &str,
    response: &'a CachedResponse,
    policy: &CachePolicy,
    metadata: &EntryMetadata,
) -> Result<BorrowedEnvelope<'a>> {
    let head = HeadRef::of_response(response);
    let body = &response.body[..];
    let mut envelope_head = write_head(
        &[],
        0,
        key,
        head,
        PolicyRef::Decoded(policy),
        metadata,
        body.len() as u64,
        false,
    )?;
    let mut checksum = twox_hash::XxHash3_64::new();
    checksum.write(&envelope_head[CHECKSUM_START..]);
    checksum.write(body);
    envelope_head[8..16].copy_from_slice(&checksum.finish().to_le_bytes());
    Ok(BorrowedEnvelope {
        head: envelope_head,
        body,
    })
}

/// Encodes a head-only envelope for a body of `body_len` bytes that the backend stores
/// elsewhere (the streaming store keeps bodies in content-addressed files).
pub fn encode_head(
    key: &str,
    head: &ResponseHead,
    policy: &CachePolicy,
    metadata: &EntryMetadata,
    body_len: u64,
) -> Result<Vec<u8>> {
    let head = HeadRef {
        status: head.status,
        version: head.version,
        headers: &head.headers,
        url: &head.url,
    };
    write_envelope(
        &[],
        key,
        head,
        PolicyRef::Decoded(policy),
        metadata,
        body_len,
        None,
    )
}

/// The policy as `write_envelope` takes it: decoded, or already serialized by
/// [`encode_policy`].
#[derive(Clone, Copy)]
enum PolicyRef<'a> {
    Decoded(&'a CachePolicy),
    Serialized(&'a [u8]),
}

#[derive(Clone, Copy)]
struct HeadRef<'a> {
    status: StatusCode,
    version: Version,
    headers: &'a HeaderMap,
    url: &'a Url,
}

impl<'a> HeadRef<'a> {
    fn of_response(response: &'a CachedResponse) -> Self {
        Self {
            status: response.status,
            version: response.version,
            headers: &response.headers,
            url: &response.url,
        }
    }
}

fn write_envelope(
    prefix: &[u8],
    key: &str,
    head: HeadRef<'_>,
    policy: PolicyRef<'_>,
    metadata: &EntryMetadata,
    body_len: u64,
    body: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let body_bytes = body.map_or(0, <[u8]>::len);
    let mut out = write_head(
        prefix,
        body_bytes,
        key,
        head,
        policy,
        metadata,
        body_len,
        body.is_none(),
    )?;
    let base = prefix.len();
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    let checksum = twox_hash::XxHash3_64::oneshot(&out[base + CHECKSUM_START..]);
    out[base + 8..base + 16].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Writes `prefix`, the fixed header (checksum left zero) and the metadata into a buffer
/// with room for `body_capacity` more bytes.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one envelope head, passed once"
)]
fn write_head(
    prefix: &[u8],
    body_capacity: usize,
    key: &str,
    head: HeadRef<'_>,
    policy: PolicyRef<'_>,
    metadata: &EntryMetadata,
    body_len: u64,
    detached: bool,
) -> Result<Vec<u8>> {
    let encoded_policy;
    let policy_bytes: &[u8] = match policy {
        PolicyRef::Decoded(policy) => {
            encoded_policy = encode_policy(policy)?;
            &encoded_policy
        }
        PolicyRef::Serialized(serialized) => serialized,
    };
    let url = url_without_userinfo(head.url);
    let headers_len: usize = head
        .headers
        .iter()
        .map(|(name, value)| 6 + name.as_str().len() + value.len())
        .sum();
    let tags_len: usize = metadata.tags.iter().map(|tag| 4 + tag.len()).sum();
    let metadata_len = 4
        + key.len()
        + 8
        + 8
        + 2
        + 1
        + 4
        + url.len()
        + 4
        + headers_len
        + 4
        + tags_len
        + 4
        + policy_bytes.len();
    let mut out =
        Vec::with_capacity(prefix.len() + FIXED_HEADER_LEN + metadata_len + body_capacity);

    out.extend_from_slice(prefix);
    let base = prefix.len();
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(if detached { FLAG_BODY_DETACHED } else { 0 });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32_len(metadata_len, "metadata")?.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());

    put_bytes32(&mut out, key.as_bytes(), "key")?;
    out.extend_from_slice(&unix_nanos(metadata.stored_at).to_le_bytes());
    out.extend_from_slice(&unix_nanos(metadata.expires_at).to_le_bytes());
    out.extend_from_slice(&head.status.as_u16().to_le_bytes());
    out.push(version_code(head.version));
    put_bytes32(&mut out, url.as_bytes(), "url")?;
    out.extend_from_slice(&u32_len(head.headers.len(), "header count")?.to_le_bytes());
    for (name, value) in head.headers {
        let name = name.as_str().as_bytes();
        // Header names are at most 64 KiB by construction in `http`.
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        put_bytes32(&mut out, value.as_bytes(), "header value")?;
    }
    out.extend_from_slice(&u32_len(metadata.tags.len(), "tag count")?.to_le_bytes());
    for tag in &metadata.tags {
        put_bytes32(&mut out, tag.as_bytes(), "tag")?;
    }
    put_bytes32(&mut out, policy_bytes, "policy")?;
    debug_assert_eq!(out.len(), base + FIXED_HEADER_LEN + metadata_len);
    Ok(out)
}

fn u32_len(len: usize, what: &str) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        Error::new(
            ErrorKind::TooLarge,
            "codec",
            format!("{what} is {len} bytes, more than 4 GiB"),
        )
    })
}

fn put_bytes32(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<()> {
    out.extend_from_slice(&u32_len(bytes.len(), what)?.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}
