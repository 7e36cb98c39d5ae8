//! The envelope's layout constants and the field encodings the encoder and the decoder
//! share.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Version;

use crate::error::{Error, ErrorKind};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"HCSE";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The size of the fixed header before the metadata.
pub const FIXED_HEADER_LEN: usize = 28;

pub(super) const FLAG_BODY_DETACHED: u8 = 1;
pub(super) const CHECKSUM_START: usize = 16;

pub(super) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

pub(super) fn from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

pub(super) fn version_code(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        // HTTP/1.1 and any version `http` adds later are stored as HTTP/1.1.
        _ => 2,
    }
}

pub(super) fn version_from_code(code: u8) -> Option<Version> {
    Some(match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => return None,
    })
}

pub(super) fn corrupt(message: &str) -> Error {
    Error::new(ErrorKind::CorruptEntry, "codec", message)
}
