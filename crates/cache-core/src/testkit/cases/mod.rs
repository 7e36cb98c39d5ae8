//! The conformance cases, by operation, and [`CASES`], the table that says in which order
//! they are reported, what each needs from the backend and whether it needs a
//! multi-threaded runtime.
//!
//! Each case is a public async function that takes the [`Suite`] and panics with a
//! precise message when the contract is broken.

mod concurrency;
mod delete;
mod expiry;
mod introspection;
mod limits;
mod round_trip;
mod stored_bytes;
mod streaming;
mod support;
mod tags;

use std::future::Future;
use std::pin::Pin;

pub use concurrency::{concurrent_distinct_keys, concurrent_same_key};
pub use delete::{clear, delete};
pub use expiry::{expiry, responses_not_to_store_are_not_stored, zero_ttl_stores_nothing};
pub use introspection::{entry_count, health, size_bytes, stats, unsupported_operations_say_so};
pub use limits::refused_put_leaves_no_entry;
pub use round_trip::{
    hostile_keys, key_too_long, miss, overwrite, round_trip, round_trip_binary_body,
    round_trip_empty_body, round_trip_large_body,
};
pub use stored_bytes::{corrupt_entries_become_misses, no_credentials_at_rest};
pub use streaming::{
    stream_body_error_leaves_no_entry, stream_dropped_put_leaves_no_entry,
    stream_length_mismatch_leaves_no_entry, stream_round_trip,
};
pub use tags::{delete_pattern, tags};

use crate::manager::Capabilities;
use crate::testkit::suite::Suite;

/// A case's future, boxed so that the table can hold every case.
pub(crate) type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// What a case needs from the backend (its capabilities and the suite's parts) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    Nothing,
    Tags,
    DeletePattern,
    Clear,
    EntryCount,
    SizeBytes,
    Health,
    Stats,
    EntryLimit,
    StoredBytes,
    Streaming,
}

/// Whether a case runs, against a given backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// It runs.
    Run,
    /// The backend does not do what it tests, for this reason.
    Skip(&'static str),
    /// The backend declares what the case tests, but the suite lacks what the case needs
    /// to test it: the trial fails with this message.
    Missing(&'static str),
}

impl Needs {
    /// Whether a case with these needs runs against `suite`, whose manager declares
    /// `capabilities`.
    pub(crate) fn select(self, suite: &Suite, capabilities: &Capabilities) -> Selection {
        let when = |declared: bool, reason: &'static str| {
            if declared {
                Selection::Run
            } else {
                Selection::Skip(reason)
            }
        };
        match self {
            Self::Nothing => Selection::Run,
            Self::Tags => when(capabilities.tags, "no tag support"),
            Self::DeletePattern => when(capabilities.delete_pattern, "no pattern deletion"),
            Self::Clear => when(capabilities.clear, "no clear"),
            Self::EntryCount => when(capabilities.entry_count, "no entry count"),
            Self::SizeBytes => when(capabilities.size_bytes, "no size"),
            Self::Health => when(capabilities.health, "no health check"),
            Self::Stats => when(capabilities.stats, "no statistics"),
            Self::EntryLimit => when(
                capabilities.max_entry_bytes.is_some(),
                "no declared max_entry_bytes",
            ),
            Self::StoredBytes => match (suite.raw.is_some(), capabilities.stores_bytes) {
                (true, _) => Selection::Run,
                (false, true) => Selection::Missing(
                    "the backend declares Capabilities::stores_bytes but the suite has no raw storage: give it Suite::with_raw_storage, so that the corruption and credential cases can read, corrupt and grep the stored bytes",
                ),
                (false, false) => {
                    Selection::Skip("no raw storage access: entries are not stored as bytes")
                }
            },
            Self::Streaming => match (capabilities.streaming, suite.streaming.is_some()) {
                (true, true) => Selection::Run,
                (true, false) => Selection::Missing(
                    "the backend declares Capabilities::streaming but the suite has no streaming manager: give it Suite::with_streaming",
                ),
                (false, _) => Selection::Skip("not a streaming backend"),
            },
        }
    }
}

/// The runtime a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// A current-thread runtime: the case awaits one operation at a time.
    One,
    /// A multi-threaded runtime with four workers: the case's tasks run in parallel.
    Many,
}

/// One row of the table.
pub(crate) struct Case {
    /// The case's name: its function's, and its trial's.
    pub(crate) name: &'static str,
    pub(crate) needs: Needs,
    pub(crate) threads: Threads,
    pub(crate) run: for<'a> fn(&'a Suite) -> CaseFuture<'a>,
}

macro_rules! cases {
    ($($name:ident: $needs:ident, $threads:ident;)+) => {
        /// Every case, in the order they are reported.
        pub(crate) const CASES: &[Case] = &[$({
            fn run(suite: &Suite) -> CaseFuture<'_> {
                Box::pin($name(suite))
            }
            Case {
                name: stringify!($name),
                needs: Needs::$needs,
                threads: Threads::$threads,
                run,
            }
        }),+];
    };
}

cases! {
    round_trip: Nothing, One;
    round_trip_empty_body: Nothing, One;
    round_trip_binary_body: Nothing, One;
    round_trip_large_body: Nothing, One;
    miss: Nothing, One;
    overwrite: Nothing, One;
    delete: Nothing, One;
    zero_ttl_stores_nothing: Nothing, One;
    responses_not_to_store_are_not_stored: Nothing, One;
    concurrent_distinct_keys: Nothing, Many;
    concurrent_same_key: Nothing, Many;
    hostile_keys: Nothing, One;
    key_too_long: Nothing, One;
    refused_put_leaves_no_entry: EntryLimit, One;
    unsupported_operations_say_so: Nothing, One;
    tags: Tags, One;
    delete_pattern: DeletePattern, One;
    entry_count: EntryCount, One;
    size_bytes: SizeBytes, One;
    health: Health, One;
    stats: Stats, One;
    corrupt_entries_become_misses: StoredBytes, One;
    no_credentials_at_rest: StoredBytes, One;
    stream_round_trip: Streaming, One;
    stream_body_error_leaves_no_entry: Streaming, One;
    stream_length_mismatch_leaves_no_entry: Streaming, One;
    stream_dropped_put_leaves_no_entry: Streaming, One;
    clear: Clear, One;
    expiry: Nothing, One;
}
