//! Where cacache keeps an entry's files, so this backend can read content by hash without
//! parsing the index, and remove a key's index bucket instead of appending to it.
//!
//! The formulas are cacache 13's (`content-v2` and `index-v5`); a test checks them against
//! the files cacache writes, so an upgrade that moves them fails loudly.

use std::path::{Path, PathBuf};

use cacache::Integrity;
use sha1::{Digest, Sha1};

/// Whether `integrity` is one SHA-256 digest as this backend writes it; anything else
/// (read from a damaged or foreign index line) must not be turned into a path, because
/// cacache's hex conversion panics on a malformed digest.
pub(crate) fn is_sha256(integrity: &Integrity) -> bool {
    integrity.hashes.first().is_some_and(|hash| {
        hash.algorithm == cacache::Algorithm::Sha256
            && hash.digest.len() == 44
            && hash.digest.ends_with('=')
            && hash.digest[..43]
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
    })
}

/// The file holding the content with this integrity (a SHA-256 one, see [`is_sha256`]).
pub(crate) fn content_path(dir: &Path, integrity: &Integrity) -> PathBuf {
    let (algorithm, hex) = integrity.to_hex();
    dir.join("content-v2")
        .join(algorithm.to_string())
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex[4..])
}

/// The index bucket file of `key` (the SHA-1 of the key, as cacache names it).
pub(crate) fn bucket_path(dir: &Path, key: &str) -> PathBuf {
    let digest = Sha1::digest(key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    dir.join("index-v5")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex[4..])
}

/// The directory of content files.
pub(crate) fn content_root(dir: &Path) -> PathBuf {
    dir.join("content-v2")
}

/// The directory of index buckets.
pub(crate) fn index_root(dir: &Path) -> PathBuf {
    dir.join("index-v5")
}
