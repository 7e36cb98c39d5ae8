//! Reading envelopes: every length is checked against the bytes that remain before
//! anything is read or allocated, and the checksum is verified before any field is
//! parsed.

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_cache_semantics::CachePolicy;
use url::Url;

use super::format::{
    CHECKSUM_START, FIXED_HEADER_LEN, FLAG_BODY_DETACHED, FORMAT_VERSION, MAGIC, corrupt,
    from_unix_nanos, version_from_code,
};
use super::redact::decode_policy;
use crate::entry::{CacheEntry, CachedResponse, EntryMetadata, ResponseHead};
use crate::error::Result;

/// A decoded envelope: the key it was written for and the entry.
#[derive(Debug)]
#[non_exhaustive]
pub struct DecodedEntry {
    /// The key the entry was stored under.
    pub key: String,
    /// The entry; its body is a slice of the decoded buffer.
    pub entry: CacheEntry,
}

/// A decoded head-only envelope (see [`encode_head`](super::encode_head)).
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

/// Decodes an envelope with its body. Any defect is an error of kind
/// [`ErrorKind::CorruptEntry`](crate::ErrorKind::CorruptEntry).
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

/// Decodes a head-only envelope written by [`encode_head`](super::encode_head).
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
