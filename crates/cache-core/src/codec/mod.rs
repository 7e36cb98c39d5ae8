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
//!
//! # Parts
//!
//! - `format`: the layout's constants and the field encodings both directions share.
//! - `encode`: writing envelopes, whole, behind a prefix, with a borrowed body, head-only.
//! - `decode`: reading them, every length bounds-checked, the checksum verified first.
//! - `redact`: the policy's serialized form, with the request's credentials redacted,
//!   and URLs without userinfo.

mod decode;
mod encode;
mod format;
mod redact;

pub use decode::{DecodedEntry, DecodedHead, decode, decode_for_key, decode_head, peek_expires_at};
pub use encode::{
    BorrowedEnvelope, encode, encode_head, encode_parts, encode_parts_borrowed,
    encode_parts_with_prefix,
};
pub use format::{FIXED_HEADER_LEN, FORMAT_VERSION, MAGIC};
pub use redact::{decode_policy, encode_policy};
