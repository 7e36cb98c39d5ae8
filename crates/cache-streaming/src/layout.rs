//! Where the store keeps its files, and the format of an entry's metadata file.
//!
//! ```text
//! <root>/v1/bodies/<2 hex>/<sha-256 of the body, hex>      one file per distinct body
//! <root>/v1/entries/<2 hex>/<sha-256 of the key, hex>      one metadata file per key
//! <root>/v1/tmp/                                           files being written
//! ```
//!
//! A metadata file is a 56-byte header followed by the core codec's head-only envelope
//! (`codec::encode_head`: key, times, status, version, URL, headers, tags, policy and the
//! body length, under its own checksum):
//!
//! ```text
//! offset  size  field
//! 0       4     magic "HCSB"
//! 4       1     format version (1)
//! 5       3     reserved, zero
//! 8       32    SHA-256 of the body (its file name)
//! 40      8     xxh3-64 of the body
//! 48      8     xxh3-64 of bytes 0..48
//! 56      ..    head-only envelope
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cache_core::codec::{self, DecodedHead};
use cache_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_64;

/// The SHA-256 digest of a body.
pub(crate) type BodyDigest = [u8; 32];

const MAGIC: [u8; 4] = *b"HCSB";
const FORMAT_VERSION: u8 = 1;
pub(crate) const METADATA_HEADER_LEN: usize = 56;

/// What identifies and verifies a stored body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyFacts {
    pub(crate) digest: BodyDigest,
    pub(crate) xxh3: u64,
    pub(crate) len: u64,
}

/// A decoded metadata file.
#[derive(Debug)]
pub(crate) struct StoredMetadata {
    pub(crate) body: BodyFacts,
    pub(crate) head: DecodedHead,
}

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    bodies: PathBuf,
    entries: PathBuf,
    tmp: PathBuf,
    temp_counter: std::sync::Arc<AtomicU64>,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        let version = root.join("v1");
        Self {
            bodies: version.join("bodies"),
            entries: version.join("entries"),
            tmp: version.join("tmp"),
            temp_counter: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [&self.bodies, &self.entries, &self.tmp] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    pub(crate) fn bodies_dir(&self) -> &Path {
        &self.bodies
    }

    pub(crate) fn entries_dir(&self) -> &Path {
        &self.entries
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    pub(crate) fn body_path(&self, digest: &BodyDigest) -> PathBuf {
        let hex = to_hex(digest);
        self.bodies.join(&hex[..2]).join(hex)
    }

    pub(crate) fn entry_path(&self, key: &str) -> PathBuf {
        let hex = to_hex(&Sha256::digest(key.as_bytes()).into());
        self.entries.join(&hex[..2]).join(hex)
    }

    /// A fresh path in the temporary directory (unique within this process; files are
    /// created with `create_new`, so another process's file is never reused).
    pub(crate) fn new_temp_path(&self) -> PathBuf {
        let sequence = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        self.tmp
            .join(format!("{}-{sequence}-{nanos:08x}.tmp", std::process::id()))
    }
}

pub(crate) fn to_hex(digest: &BodyDigest) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

/// The digest a body file name spells, or `None` for a name this store did not write.
pub(crate) fn digest_from_hex(name: &str) -> Option<BodyDigest> {
    if name.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, pair) in name.as_bytes().chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        if pair.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        digest[index] = (high * 16 + low) as u8;
    }
    Some(digest)
}

/// The bytes of a metadata file: the header, then the head-only envelope.
pub(crate) fn encode_metadata(body: &BodyFacts, envelope: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(METADATA_HEADER_LEN + envelope.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&[0; 3]);
    bytes.extend_from_slice(&body.digest);
    bytes.extend_from_slice(&body.xxh3.to_le_bytes());
    let header_checksum = XxHash3_64::oneshot(&bytes);
    bytes.extend_from_slice(&header_checksum.to_le_bytes());
    bytes.extend_from_slice(envelope);
    bytes
}

/// Decodes a metadata file; every defect is a [`ErrorKind::CorruptEntry`].
pub(crate) fn decode_metadata(bytes: Bytes) -> Result<StoredMetadata> {
    let corrupt = |message: &str| Error::new(ErrorKind::CorruptEntry, crate::NAME, message);
    if bytes.len() < METADATA_HEADER_LEN {
        return Err(corrupt("the metadata file is truncated"));
    }
    if bytes[0..4] != MAGIC || bytes[4] != FORMAT_VERSION {
        return Err(corrupt("the metadata file is not in this store's format"));
    }
    let stored_checksum = u64::from_le_bytes(read_array(&bytes, 48));
    if XxHash3_64::oneshot(&bytes[..48]) != stored_checksum {
        return Err(corrupt("the metadata header fails its checksum"));
    }
    let digest: BodyDigest = read_array(&bytes, 8);
    let xxh3 = u64::from_le_bytes(read_array(&bytes, 40));
    let head = codec::decode_head(bytes.slice(METADATA_HEADER_LEN..))?;
    Ok(StoredMetadata {
        body: BodyFacts {
            digest,
            xxh3,
            len: head.body_len,
        },
        head,
    })
}

fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(&bytes[offset..offset + N]);
    array
}

/// The regular files two levels below `dir` (`dir/<fan-out>/<file>`), with their names.
pub(crate) fn fanned_out_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for fan in std::fs::read_dir(dir)? {
        let fan = fan?;
        if !fan.file_type()?.is_dir() {
            files.push((fan.path(), fan.file_name().to_string_lossy().into_owned()));
            continue;
        }
        for file in std::fs::read_dir(fan.path())? {
            let file = file?;
            files.push((file.path(), file.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_foreign_names() {
        let digest: BodyDigest = Sha256::digest(b"body").into();
        let hex = to_hex(&digest);
        assert_eq!(digest_from_hex(&hex), Some(digest));
        assert_eq!(digest_from_hex(&hex.to_uppercase()), None);
        assert_eq!(digest_from_hex(&hex[1..]), None);
        assert_eq!(digest_from_hex(&format!("{}zz", &hex[2..])), None);
    }

    #[test]
    fn metadata_header_defects_are_corrupt_entries() {
        let facts = BodyFacts {
            digest: [7; 32],
            xxh3: 99,
            len: 0,
        };
        let encoded = encode_metadata(&facts, b"not an envelope");
        for flip in [0, 4, 8, 40, 48] {
            let mut flipped = encoded.clone();
            flipped[flip] ^= 1;
            let error = decode_metadata(Bytes::from(flipped)).expect_err("flipped header");
            assert_eq!(error.kind(), ErrorKind::CorruptEntry, "byte {flip}");
        }
        let error = decode_metadata(Bytes::from(encoded)).expect_err("bad envelope");
        assert_eq!(error.kind(), ErrorKind::CorruptEntry);
    }
}
