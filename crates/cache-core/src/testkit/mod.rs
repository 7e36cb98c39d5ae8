//! The conformance suite every backend runs from its own tests (feature `testkit`).
//!
//! [`Conformance`] turns the suite into named [`libtest_mimic`] trials, one per case, for
//! a test target with `harness = false`: `cargo test` and `cargo nextest` report each
//! case on its own and filter them by name. Each trial builds its own backend through a
//! factory and runs on a tokio runtime of its own; the cases the backend's
//! [`Capabilities`](crate::Capabilities) leave out are reported as ignored, with the
//! reason, and must be exactly the ones the test expects.
//!
//! ```toml
//! # Cargo.toml
//! [dev-dependencies]
//! cache-core = { version = "0.1", features = ["testkit"] }
//!
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```
//! // tests/conformance.rs. `open` builds a fresh backend and `raw_bytes` /
//! // `write_raw_bytes` reach its stored bytes; the guide (`cache_core::guide`) has a
//! // complete backend run this way.
//! use std::sync::Arc;
//!
//! use cache_core::CacheManager;
//! use cache_core::testkit::{Conformance, RawStorageFns, Suite};
//!
//! fn conformance(
//!     open: fn() -> Arc<dyn CacheManager>,
//!     raw_bytes: fn(&str) -> Option<Vec<u8>>,
//!     write_raw_bytes: fn(&str, &[u8]),
//! ) -> cache_core::testkit::libtest_mimic::Conclusion {
//!     // Called once per trial: each case gets a backend of its own.
//!     Conformance::new("mine", move || async move {
//!         let raw = RawStorageFns::new(
//!             move |key| Ok(raw_bytes(key)),
//!             move |key, bytes| {
//!                 write_raw_bytes(key, bytes);
//!                 Ok(())
//!             },
//!         );
//!         Suite::new(open()).with_raw_storage(Arc::new(raw))
//!     })
//!     // What the capabilities leave out; any other skip, or a listed case that runs,
//!     // fails.
//!     .expect_skipped(["tags", "health", "refused_put_leaves_no_entry"])
//!     .run()
//! }
//! # let _ = conformance;
//! ```
//!
//! `cargo test --test conformance` then reports `mine::round_trip ... ok`,
//! `mine::tags ... ignored, no tag support`, and
//! [`mine::skipped_cases_are_exactly_the_expected_ones`](SKIPPED_CHECK);
//! `cargo test --test conformance -- expiry` runs one case. Several suites (two
//! configurations of one backend) share a target by joining their
//! [`Conformance::trials`] and passing them to [`libtest_mimic::run`] (re-exported here,
//! so a backend needs no dependency of its own on it).
//!
//! Each case is also a public async function of this module (`round_trip(&suite)`), for
//! a test that wants one of them in a harness of its own. A case panics with a precise
//! message when the backend breaks the [`CacheManager`](crate::CacheManager) contract.
//! Every case uses its own random key prefix, so suites can share one server.
//!
//! # Parts
//!
//! - `suite`: [`Suite`] and [`RawStorage`], what the cases run against.
//! - `conformance`: [`Conformance`], the cases as trials.
//! - `cases`: the cases, a file per operation, and the table that selects them.
//! - [`fixtures`]: responses, policies and assertions the cases use.
//! - [`chaos`], [`crash`]: a fault-injecting tier and the crash harness disk backends
//!   run.

mod cases;
pub mod chaos;
mod conformance;
pub mod crash;
pub mod fixtures;
mod suite;

pub use cases::*;
pub use conformance::{Conformance, SKIPPED_CHECK};
pub use libtest_mimic;
pub use suite::{RawStorage, RawStorageFns, Suite};
