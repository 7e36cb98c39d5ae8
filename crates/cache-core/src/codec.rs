//! The byte envelope every byte-storing backend writes.
//!
//! # Layout (format version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "HCSE"
//! 4       1     format version (1)
//! 5       1     flags (bit 0: the body is stored elsewhere, see `encode_head`)
//! 6       2     reserved, zero
//! 8       8     xxh3-64 checksum of every byte from offset 16 to the end
//! 16      4     metadata length M (little endian)
//! 20      8     body length B (little endian)
//! 28      M     metadata
//! 28+M    B     body, raw (absent when the body is stored elsewhere)
//! ```
//!
//! The metadata holds the original key (so a backend that hashes keys detects a
//! collision), stored-at and expiry times, status, version, URL, every header (name and
//! raw value bytes, in order), tags and the `CachePolicy` (postcard). Every length is
//! checked against the bytes that remain before anything is read or allocated, and the
//! checksum is verified before any field is parsed. Decoding a `Bytes` buffer returns a
//! body that is a zero-copy slice of it.
//!
//! # No credentials at rest
//!
//! A `CachePolicy` keeps the request's headers (for `Vary` matching). The encoder
//! replaces the values of `Authorization`, `Proxy-Authorization` and `Cookie` in them with
//! `redacted` before anything is written. The header stays present, so a response that
//! varies on it never matches a later request by mistake: it becomes a miss instead.
//! Userinfo in a URL (`https://user:password@host/`) is dropped from the response's URL
//! and from the policy's request URI before they are written, so an entry read back from
//! bytes has the URL without it. The key is stored as the caller gave it: build keys
//! without userinfo.

use std::hash::Hasher as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use http_cache_semantics::CachePolicy;
use url::Url;

use crate::entry::{CacheEntry, CachedResponse, EntryMetadata, ResponseHead};
use crate::error::{Error, ErrorKind, Result};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"HCSE";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The size of the fixed header before the metadata.
pub const FIXED_HEADER_LEN: usize = 28;

const FLAG_BODY_DETACHED: u8 = 1;
const CHECKSUM_START: usize = 16;
const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE];
const REDACTED: &str = "redacted";

/// A decoded envelope: the key it was written for and the entry.
#[derive(Debug)]
#[non_exhaustive]
pub struct DecodedEntry {
    /// The key the entry was stored under.
    pub key: String,
    /// The entry; its body is a slice of the decoded buffer.
    pub entry: CacheEntry,
}

/// A decoded head-only envelope (see [`encode_head`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct DecodedHead {
    /// The key the entry was stored under.
    pub key: String,
    /// The response head.
    pub head: ResponseHead,
    /// The cache policy.
    pub policy: CachePolicy,
    /// When it was stored, when it expires, its tags.
    pub metadata: EntryMetadata,
    /// The length of the body stored elsewhere.
    pub body_len: u64,
}

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
    let head = HeadRef::of_response(response);
    let body = &response.body[..];
    write_envelope(
        &[],
        key,
        head,
        PolicyRef::Decoded(policy),
        metadata,
        body.len() as u64,
        Some(body),
    )
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

/// Decodes an envelope with its body. Any defect is an error of kind
/// [`ErrorKind::CorruptEntry`].
///
/// The entry's policy stays in its serialized form (a zero-copy slice of `bytes`, covered
/// by the checksum) until [`CacheEntry::policy`] is first called.
pub fn decode(bytes: Bytes) -> Result<DecodedEntry> {
    let (key_range, entry) = decode_entry(&bytes)?;
    let key = std::str::from_utf8(&bytes[key_range])
        .map_err(|_| corrupt("the key is not utf-8"))?
        .to_owned();
    Ok(DecodedEntry { key, entry })
}

/// Decodes an envelope and checks that it was written for `key`; an envelope written
/// for another key (a hash collision in the backend) is a corrupt entry. Like [`decode`],
/// the policy is decoded on first use.
pub fn decode_for_key(bytes: Bytes, key: &str) -> Result<CacheEntry> {
    let (key_range, entry) = decode_entry(&bytes)?;
    if bytes[key_range] != *key.as_bytes() {
        return Err(corrupt("the entry was stored for another key").with_key(key));
    }
    Ok(entry)
}

fn decode_entry(bytes: &Bytes) -> Result<(std::ops::Range<usize>, CacheEntry)> {
    let fixed = read_fixed_header(bytes, false)?;
    let body_start = FIXED_HEADER_LEN + fixed.metadata_len;
    let parsed = parse_metadata(bytes, FIXED_HEADER_LEN..body_start)?;
    let entry = CacheEntry::with_serialized_policy(
        CachedResponse::from_head_and_body(parsed.head, bytes.slice(body_start..)),
        bytes.slice(parsed.policy),
        parsed.metadata,
    );
    Ok((parsed.key, entry))
}

/// Decodes a head-only envelope written by [`encode_head`].
pub fn decode_head(bytes: Bytes) -> Result<DecodedHead> {
    let fixed = read_fixed_header(&bytes, true)?;
    let end = FIXED_HEADER_LEN + fixed.metadata_len;
    let parsed = parse_metadata(&bytes, FIXED_HEADER_LEN..end)?;
    let key = std::str::from_utf8(&bytes[parsed.key])
        .map_err(|_| corrupt("the key is not utf-8"))?
        .to_owned();
    Ok(DecodedHead {
        key,
        head: parsed.head,
        policy: decode_policy(&bytes[parsed.policy])?,
        metadata: parsed.metadata,
        body_len: fixed.body_len,
    })
}

/// Reads the storage expiry of an envelope without verifying its checksum or decoding it,
/// for compaction filters and sweeps that only need to know whether an entry is dead.
/// `None` when the bytes are not an envelope this version understands.
pub fn peek_expires_at(bytes: &[u8]) -> Option<SystemTime> {
    if bytes.len() < FIXED_HEADER_LEN + 4 || bytes[0..4] != MAGIC || bytes[4] != FORMAT_VERSION {
        return None;
    }
    let key_len = u32::from_le_bytes(
        bytes[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4]
            .try_into()
            .ok()?,
    ) as usize;
    let expires_at_offset = (FIXED_HEADER_LEN + 4)
        .checked_add(key_len)?
        .checked_add(8)?;
    let field = bytes.get(expires_at_offset..expires_at_offset.checked_add(8)?)?;
    Some(from_unix_nanos(u64::from_le_bytes(field.try_into().ok()?)))
}

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
fn url_without_userinfo(url: &Url) -> std::borrow::Cow<'_, str> {
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

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn version_code(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        // HTTP/1.1 and any version `http` adds later are stored as HTTP/1.1.
        _ => 2,
    }
}

fn version_from_code(code: u8) -> Option<Version> {
    Some(match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => return None,
    })
}

fn corrupt(message: &str) -> Error {
    Error::new(ErrorKind::CorruptEntry, "codec", message)
}

struct FixedHeader {
    metadata_len: usize,
    body_len: u64,
}

/// Checks magic, version, flags, lengths and checksum; returns the fixed header.
fn read_fixed_header(bytes: &[u8], head_only: bool) -> Result<FixedHeader> {
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(corrupt("the envelope is shorter than its fixed header"));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("the envelope does not start with the magic bytes"));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(corrupt("the envelope has an unsupported format version"));
    }
    let detached = bytes[5] == FLAG_BODY_DETACHED;
    if (bytes[5] & !FLAG_BODY_DETACHED) != 0 || bytes[6..8] != [0, 0] {
        return Err(corrupt("the envelope has unknown flags"));
    }
    if detached != head_only {
        return Err(corrupt(if head_only {
            "expected a head-only envelope, found one with a body"
        } else {
            "expected an envelope with a body, found a head-only one"
        }));
    }
    let stored_checksum = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let metadata_len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    let body_len = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let stored_body_len = if detached { 0 } else { body_len };
    let expected_len = (FIXED_HEADER_LEN as u64)
        .checked_add(metadata_len as u64)
        .and_then(|len| len.checked_add(stored_body_len));
    if expected_len != Some(bytes.len() as u64) {
        return Err(corrupt("the envelope's lengths do not match its size"));
    }
    if twox_hash::XxHash3_64::oneshot(&bytes[CHECKSUM_START..]) != stored_checksum {
        return Err(corrupt("the envelope's checksum does not match"));
    }
    Ok(FixedHeader {
        metadata_len,
        body_len,
    })
}

/// The parsed metadata; the key and the serialized policy as ranges of the envelope.
struct ParsedMetadata {
    key: std::ops::Range<usize>,
    head: ResponseHead,
    policy: std::ops::Range<usize>,
    metadata: EntryMetadata,
}

fn parse_metadata(bytes: &Bytes, range: std::ops::Range<usize>) -> Result<ParsedMetadata> {
    let mut reader = Reader {
        bytes,
        position: range.start,
        end: range.end,
    };
    let key_len = reader.u32()? as usize;
    let key = reader.take_range(key_len, "key")?;
    let stored_at = from_unix_nanos(reader.u64()?);
    let expires_at = from_unix_nanos(reader.u64()?);
    let status =
        StatusCode::from_u16(reader.u16()?).map_err(|_| corrupt("the status code is invalid"))?;
    let version =
        version_from_code(reader.u8()?).ok_or_else(|| corrupt("the http version is invalid"))?;
    let url = Url::parse(reader.str("url")?).map_err(|_| corrupt("the url does not parse"))?;

    // Each header takes at least 6 bytes, so the count is checked against what remains
    // before anything is allocated for it.
    let header_count = reader.u32()? as usize;
    if header_count > reader.remaining() / 6 {
        return Err(corrupt("the header count exceeds the metadata"));
    }
    let mut headers = HeaderMap::try_with_capacity(header_count)
        .map_err(|_| corrupt("the header count is too large"))?;
    for _ in 0..header_count {
        let name_len = reader.u16()? as usize;
        let name = HeaderName::from_bytes(reader.take(name_len, "header name")?)
            .map_err(|_| corrupt("a header name is invalid"))?;
        let value_len = reader.u32()? as usize;
        let value_range = reader.take_range(value_len, "header value")?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value_range))
            .map_err(|_| corrupt("a header value is invalid"))?;
        headers
            .try_append(name, value)
            .map_err(|_| corrupt("too many headers"))?;
    }

    let tag_count = reader.u32()? as usize;
    if tag_count > reader.remaining() / 4 {
        return Err(corrupt("the tag count exceeds the metadata"));
    }
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        tags.push(reader.string("tag")?);
    }

    let policy_len = reader.u32()? as usize;
    let policy = reader.take_range(policy_len, "policy")?;
    if reader.remaining() != 0 {
        return Err(corrupt("the metadata has trailing bytes"));
    }

    Ok(ParsedMetadata {
        key,
        head: ResponseHead::new(url, status)
            .with_version(version)
            .with_headers(headers),
        policy,
        metadata: EntryMetadata {
            stored_at,
            expires_at,
            tags,
        },
    })
}

/// Reads fields from `bytes[position..end]`, checking every length against what remains.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.end - self.position
    }

    fn take_range(&mut self, len: usize, what: &str) -> Result<std::ops::Range<usize>> {
        if len > self.remaining() {
            return Err(corrupt(&format!(
                "the {what} runs past the end of the metadata"
            )));
        }
        let range = self.position..self.position + len;
        self.position += len;
        Ok(range)
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        let range = self.take_range(len, what)?;
        Ok(&self.bytes[range])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N, "number")?;
        Ok(slice.try_into().expect("length checked by take"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn str(&mut self, what: &str) -> Result<&'a str> {
        let len = self.u32()? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| corrupt(&format!("the {what} is not utf-8")))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        self.str(what).map(str::to_owned)
    }
}
