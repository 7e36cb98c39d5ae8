//! The suite as trials: one per case, named, filtered, each on a backend of its own, and
//! the expected skipped list enforced case by case and as a whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cache_core::testkit::libtest_mimic::{self, Arguments, Conclusion};
use cache_core::testkit::{Conformance, RawStorageFns, SKIPPED_CHECK, Suite};
use cache_core::{
    CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities, Error,
    ErrorKind, PutOptions, Result, TtlPolicy, validate_key,
};

/// Decoded entries in a map: the three required operations and nothing else. With a
/// declared `max_entry_bytes`, larger bodies are refused (and the previous version is
/// kept, against the contract, when `keeps_previous_on_refusal`).
#[derive(Default)]
struct MapCache {
    entries: Mutex<HashMap<String, Arc<CacheEntry>>>,
    capabilities: Capabilities,
    keeps_previous_on_refusal: bool,
}

impl CacheManager for MapCache {
    fn name(&self) -> &'static str {
        "map"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        if let Err(error) = validate_key("map", key) {
            return CacheFuture::ready(Err(error));
        }
        let entries = self.entries.lock().unwrap();
        let live = entries
            .get(key)
            .filter(|entry| !entry.metadata.is_expired_at(SystemTime::now()))
            .cloned();
        CacheFuture::ready(Ok(live))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        if let Err(error) = validate_key("map", key) {
            return CacheFuture::ready(Err(error));
        }
        let metadata = TtlPolicy::default().entry_metadata(
            &policy,
            &response.headers,
            &options,
            SystemTime::now(),
        );
        let mut entries = self.entries.lock().unwrap();
        if let Some(limit) = self.capabilities.max_entry_bytes {
            if response.body.len() as u64 > limit {
                if !self.keeps_previous_on_refusal {
                    entries.remove(key);
                }
                let error = Error::new(ErrorKind::TooLarge, "map", "over the limit");
                return CacheFuture::ready(Err(error));
            }
        }
        if metadata.storage_ttl().is_zero() {
            entries.remove(key);
        } else {
            let entry = Arc::new(CacheEntry::new(response, policy, metadata));
            entries.insert(key.to_owned(), entry);
        }
        CacheFuture::ready(Ok(()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        self.entries.lock().unwrap().remove(key);
        CacheFuture::ready(Ok(()))
    }
}

/// What a map with no capability skips: every case that needs one.
const SKIPPED_BY_A_PLAIN_MAP: [&str; 14] = [
    "tags",
    "delete_pattern",
    "entry_count",
    "size_bytes",
    "health",
    "stats",
    "corrupt_entries_become_misses",
    "no_credentials_at_rest",
    "stream_round_trip",
    "stream_body_error_leaves_no_entry",
    "stream_length_mismatch_leaves_no_entry",
    "stream_dropped_put_leaves_no_entry",
    "clear",
    "refused_put_leaves_no_entry",
];

fn plain_map(name: &str) -> Conformance {
    Conformance::new(name, || async { Suite::new(Arc::new(MapCache::default())) })
}

/// Runs the trials with `arguments`, their report written to a file of its own (the
/// trials that are meant to fail here would read as failures in this test's output).
fn run(conformance: &Conformance, arguments: &[&str]) -> Conclusion {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let log = std::env::temp_dir().join(format!(
        "cache-core-conformance-trials-{}-{}.log",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let log_argument = log.to_str().expect("a utf-8 temporary path").to_owned();
    let arguments = Arguments::from_iter(
        ["conformance", "--logfile", &log_argument]
            .into_iter()
            .chain(arguments.iter().copied()),
    );
    let conclusion = libtest_mimic::run(&arguments, conformance.trials());
    let _ = std::fs::remove_file(&log);
    conclusion
}

fn counts(conclusion: &Conclusion) -> (u64, u64, u64, u64) {
    (
        conclusion.num_passed,
        conclusion.num_failed,
        conclusion.num_ignored,
        conclusion.num_filtered_out,
    )
}

#[test]
fn there_is_one_trial_per_case_named_after_the_suite_then_the_skipped_check() {
    let trials = plain_map("map").trials();
    let names: Vec<&str> = trials.iter().map(libtest_mimic::Trial::name).collect();
    let cases: Vec<String> = Conformance::case_names()
        .map(|case| format!("map::{case}"))
        .collect();
    assert_eq!(cases.len(), 29);
    assert_eq!(names.len(), 30);
    assert_eq!(
        names[..29],
        cases.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(names[29], format!("map::{SKIPPED_CHECK}"));
    let unnamed = plain_map("").trials();
    assert_eq!(unnamed[0].name(), "round_trip");
}

#[test]
fn the_expected_skips_are_ignored_and_every_other_case_passes() {
    let conformance = plain_map("map").expect_skipped(SKIPPED_BY_A_PLAIN_MAP);
    let conclusion = run(&conformance, &[]);
    // 15 cases and the skipped check pass; the 14 skipped cases are reported ignored.
    assert_eq!(counts(&conclusion), (16, 0, 14, 0));
}

#[test]
fn a_filter_runs_only_the_cases_it_names() {
    let conformance = plain_map("map").expect_skipped(SKIPPED_BY_A_PLAIN_MAP);
    let conclusion = run(&conformance, &["map::round_trip"]);
    // round_trip, round_trip_empty_body, round_trip_binary_body, round_trip_large_body.
    assert_eq!(counts(&conclusion), (4, 0, 0, 26));
    let conclusion = run(&conformance, &["--exact", "map::expiry"]);
    assert_eq!(counts(&conclusion), (1, 0, 0, 29));
}

#[test]
fn an_unexpected_skip_and_an_expected_skip_that_runs_both_fail() {
    // `tags` is skipped but not listed, `round_trip` is listed but runs: both trials fail,
    // and so does the check of the whole list.
    let expected = SKIPPED_BY_A_PLAIN_MAP
        .into_iter()
        .filter(|name| *name != "tags")
        .chain(["round_trip"]);
    let conformance = plain_map("map").expect_skipped(expected);
    let conclusion = run(&conformance, &[]);
    assert_eq!(counts(&conclusion), (14, 3, 13, 0));
}

#[test]
fn an_expected_name_that_is_no_case_fails_the_check() {
    let expected = SKIPPED_BY_A_PLAIN_MAP.into_iter().chain(["no_such_case"]);
    let conformance = plain_map("map").expect_skipped(expected);
    let conclusion = run(&conformance, &[SKIPPED_CHECK]);
    assert_eq!(counts(&conclusion), (0, 1, 0, 29));
}

#[test]
fn every_trial_builds_a_backend_of_its_own() {
    let built = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&built);
    let conformance = Conformance::new("map", move || {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Suite::new(Arc::new(MapCache::default())) }
    })
    .expect_skipped(SKIPPED_BY_A_PLAIN_MAP);
    let conclusion = run(&conformance, &[]);
    assert_eq!(counts(&conclusion), (16, 0, 14, 0));
    // One per case, skipped or not (a skip is decided on the trial's own backend), and
    // one for the check.
    assert_eq!(built.load(Ordering::Relaxed), 30);
}

#[test]
fn raw_storage_given_runs_the_stored_bytes_cases() {
    // A map of decoded entries has no bytes: raw access that finds none makes the
    // corruption case fail (it must read what was stored), which shows the case ran.
    let conformance =
        Conformance::new("map", || async {
            let raw = RawStorageFns::new(|_key| Ok(None), |_key, _bytes| Ok(()));
            Suite::new(Arc::new(MapCache::default())).with_raw_storage(Arc::new(raw))
        })
        .expect_skipped(SKIPPED_BY_A_PLAIN_MAP.into_iter().filter(|name| {
            !["corrupt_entries_become_misses", "no_credentials_at_rest"].contains(name)
        }));
    let conclusion = run(&conformance, &["corrupt_entries_become_misses"]);
    assert_eq!(counts(&conclusion), (0, 1, 0, 29));
}

#[test]
fn a_backend_that_declares_stored_bytes_without_raw_storage_fails_those_cases() {
    let conformance = Conformance::new("map", || async {
        let cache = MapCache {
            capabilities: Capabilities::none().with_stores_bytes(),
            ..MapCache::default()
        };
        Suite::new(Arc::new(cache))
    })
    // Listing them does not help: what the backend declares is tested, never skipped.
    .expect_skipped(SKIPPED_BY_A_PLAIN_MAP);
    let conclusion = run(&conformance, &[]);
    // The corruption and credential cases fail, and the check of the list (two listed
    // cases are not skipped); the other 12 are skipped as listed.
    assert_eq!(counts(&conclusion), (15, 3, 12, 0));
    let conclusion = run(&conformance, &["--exact", "map::no_credentials_at_rest"]);
    assert_eq!(counts(&conclusion), (0, 1, 0, 29));
}

#[test]
fn a_backend_that_declares_streaming_without_a_streaming_manager_fails_those_cases() {
    let conformance = Conformance::new("map", || async {
        let cache = MapCache {
            capabilities: Capabilities::none().with_streaming(),
            ..MapCache::default()
        };
        Suite::new(Arc::new(cache))
    })
    .expect_skipped(
        SKIPPED_BY_A_PLAIN_MAP
            .into_iter()
            .filter(|name| !name.starts_with("stream_")),
    );
    let conclusion = run(&conformance, &["stream_"]);
    assert_eq!(counts(&conclusion), (0, 4, 0, 26));
}

fn limited_map(keeps_previous_on_refusal: bool) -> Conformance {
    Conformance::new("map", move || async move {
        let cache = MapCache {
            capabilities: Capabilities::none().with_max_entry_bytes(8 << 20),
            keeps_previous_on_refusal,
            ..MapCache::default()
        };
        Suite::new(Arc::new(cache))
    })
    .expect_skipped(
        SKIPPED_BY_A_PLAIN_MAP
            .into_iter()
            .filter(|name| *name != "refused_put_leaves_no_entry"),
    )
}

#[test]
fn a_declared_entry_limit_runs_the_refused_put_case() {
    let conclusion = run(&limited_map(false), &["refused_put"]);
    assert_eq!(counts(&conclusion), (1, 0, 0, 29));
    // A backend that keeps the previous version when it refuses a put fails it.
    let conclusion = run(&limited_map(true), &["refused_put"]);
    assert_eq!(counts(&conclusion), (0, 1, 0, 29));
    // The whole suite, with the limit declared: the case runs, nothing else changes.
    let conclusion = run(&limited_map(false), &[]);
    assert_eq!(counts(&conclusion), (17, 0, 13, 0));
}
