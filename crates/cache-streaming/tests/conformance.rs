//! The streaming store against the conformance suite, buffered and streaming cases, one
//! trial per case, each in a directory of its own: once verifying reads by checksum
//! (`checksum::*`), once by SHA-256 (`sha256::*`).

use std::sync::Arc;

use cache_core::testkit::libtest_mimic::{self, Arguments};
use cache_core::testkit::{Conformance, RawStorageFns, Suite};
use cache_streaming::{ReadVerification, StreamingCache, StreamingConfig};

fn suite(name: &str, verification: ReadVerification) -> Conformance {
    Conformance::new(name, move || async move {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = StreamingCache::open(
            StreamingConfig::new(dir.path())
                .with_capacity_bytes(64 << 20)
                .with_read_verification(verification),
        )
        .await
        .expect("open the store");
        let (reader, writer) = (store.raw_access(), store.raw_access());
        let raw = RawStorageFns::new(
            move |key| reader.read(key),
            move |key, bytes| writer.write(key, bytes),
        );
        Suite::new(Arc::new(store.clone()))
            .with_streaming(Arc::new(store))
            .with_raw_storage(Arc::new(raw))
            .keep_alive(dir)
    })
    .expect_skipped(["health"])
}

fn main() {
    let trials = [
        suite("checksum", ReadVerification::Checksum).trials(),
        suite("sha256", ReadVerification::Sha256).trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}
