//! [`Conformance`]: the suite as named trials, one per case, for a test target with
//! `harness = false`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};

use super::cases::{CASES, Case, Selection, Threads};
use super::suite::Suite;

/// The name of the trial that checks the skipped cases against
/// [`Conformance::expect_skipped`].
pub const SKIPPED_CHECK: &str = "skipped_cases_are_exactly_the_expected_ones";

type Factory = dyn Fn() -> Pin<Box<dyn Future<Output = Suite>>> + Send + Sync;

/// The conformance suite of one backend as [`libtest_mimic`] trials: one per case, named
/// `{name}::{case}`, plus [`SKIPPED_CHECK`].
///
/// Each trial builds its own backend through the factory, inside a tokio runtime of its
/// own (a multi-threaded one with four workers for the cases that run many tasks at
/// once, a current-thread one for the others), so trials run in parallel without seeing
/// each other's entries, and a filter (`cargo test --test conformance round_trip`,
/// `cargo nextest run -E 'test(/expiry/)'`) runs only the cases it names.
///
/// A case the backend's capabilities leave out is reported as ignored, with the reason,
/// when [`expect_skipped`](Self::expect_skipped) lists it, and fails otherwise; a listed
/// case that the capabilities select fails too. A backend that declares
/// [`stores_bytes`](crate::Capabilities::stores_bytes) fails the corruption and
/// credential cases when the suite has no [raw storage](Suite::with_raw_storage), and one
/// that declares [`streaming`](crate::Capabilities::streaming) fails the streaming cases
/// without a [streaming manager](Suite::with_streaming): what it declares is tested, never
/// skipped. [`SKIPPED_CHECK`] compares the whole
/// list at once (and catches names that are not cases). So a capability declared later
/// is tested the moment it is declared, and one dropped is noticed.
///
/// ```
/// // tests/conformance.rs, with `[[test]] name = "conformance" harness = false`; `open`
/// // builds a fresh backend (the guide, `cache_core::guide`, has a complete one).
/// use std::sync::Arc;
///
/// use cache_core::CacheManager;
/// use cache_core::testkit::libtest_mimic::Conclusion;
/// use cache_core::testkit::{Conformance, Suite};
///
/// fn conformance(open: fn() -> Arc<dyn CacheManager>) -> Conclusion {
///     Conformance::new("mine", move || async move { Suite::new(open()) })
///         .expect_skipped(["tags", "health", "corrupt_entries_become_misses"])
///         .run()
/// }
/// # let _ = conformance;
/// ```
#[must_use]
pub struct Conformance {
    name: String,
    factory: Arc<Factory>,
    expected_skipped: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance")
            .field("name", &self.name)
            .field("expected_skipped", &self.expected_skipped)
            .finish_non_exhaustive()
    }
}

impl Conformance {
    /// The suite of the backend that `factory` builds, its trials named `{name}::{case}`
    /// (just `{case}` when `name` is empty).
    ///
    /// `factory` is called once per trial, inside that trial's runtime: give each call a
    /// backend of its own (a fresh directory, a fresh namespace on a shared server) with
    /// room for a few dozen MiB, and keep what it needs alive with
    /// [`Suite::keep_alive`]. A panic in it fails the trial. The cases store bodies of up
    /// to 4 MiB, and `refused_put_leaves_no_entry` builds one a byte over the declared
    /// [`max_entry_bytes`](crate::Capabilities::max_entry_bytes): configure the backend
    /// with a limit of tens of MiB, not GiB.
    pub fn new<F, Fut>(name: impl Into<String>, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Suite> + 'static,
    {
        Self {
            name: name.into(),
            factory: Arc::new(move || Box::pin(factory())),
            expected_skipped: Arc::default(),
        }
    }

    /// The cases the backend is expected to skip, by name (in any order); every other
    /// case must run. Default: none.
    pub fn expect_skipped<I, S>(mut self, cases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expected_skipped = Arc::new(cases.into_iter().map(Into::into).collect());
        self
    }

    /// The names of every case of the suite, in the order they are reported.
    pub fn case_names() -> impl Iterator<Item = &'static str> {
        CASES.iter().map(|case| case.name)
    }

    /// The trials: one per case, then [`SKIPPED_CHECK`]. Join them with other
    /// backends' (or your own) and hand them to [`libtest_mimic::run`] to run several
    /// suites in one test target.
    pub fn trials(&self) -> Vec<Trial> {
        CASES
            .iter()
            .map(|case| self.case_trial(case))
            .chain(std::iter::once(self.skipped_check()))
            .collect()
    }

    /// Runs the trials with the process's arguments (filters, `--list`, `--exact`,
    /// `--test-threads`, as `cargo test` and `cargo nextest` pass them). Call
    /// [`Conclusion::exit`] on the result, or return [`Conclusion::exit_code`] from
    /// `main` when something (a server you started) must be dropped first.
    pub fn run(self) -> Conclusion {
        libtest_mimic::run(&Arguments::from_args(), self.trials())
    }

    fn trial_name(&self, case: &str) -> String {
        if self.name.is_empty() {
            case.to_owned()
        } else {
            format!("{}::{case}", self.name)
        }
    }

    fn case_trial(&self, case: &'static Case) -> Trial {
        let factory = Arc::clone(&self.factory);
        let expected_skipped = self.expected_skipped.contains(case.name);
        Trial::ignorable_test(self.trial_name(case.name), move || {
            in_own_runtime(case.threads, factory.as_ref(), |suite| async move {
                let capabilities = suite.manager.capabilities();
                match (case.needs.select(&suite, &capabilities), expected_skipped) {
                    (Selection::Run, false) => {
                        (case.run)(&suite).await;
                        Ok(Completion::Completed)
                    }
                    (Selection::Run, true) => Err(Failed::from(format!(
                        "{} is in expect_skipped, but the backend's capabilities select it: take it out of the list",
                        case.name
                    ))),
                    (Selection::Skip(reason), true) => Ok(Completion::ignored_with(reason)),
                    (Selection::Skip(reason), false) => Err(Failed::from(format!(
                        "{} is skipped ({reason}) but not in expect_skipped: add it to the list, or give the suite what it needs",
                        case.name
                    ))),
                    (Selection::Missing(message), _) => {
                        Err(Failed::from(format!("{}: {message}", case.name)))
                    }
                }
            })
        })
    }

    fn skipped_check(&self) -> Trial {
        let factory = Arc::clone(&self.factory);
        let expected = Arc::clone(&self.expected_skipped);
        Trial::test(self.trial_name(SKIPPED_CHECK), move || {
            let skipped = in_own_runtime(Threads::One, factory.as_ref(), |suite| async move {
                let capabilities = suite.manager.capabilities();
                Ok(CASES
                    .iter()
                    .filter_map(|case| match case.needs.select(&suite, &capabilities) {
                        Selection::Skip(reason) => Some((case.name, reason)),
                        // A case whose needs are missing fails in its own trial.
                        Selection::Run | Selection::Missing(_) => None,
                    })
                    .collect::<Vec<_>>())
            })?;
            let unknown: Vec<&str> = expected
                .iter()
                .map(String::as_str)
                .filter(|name| !CASES.iter().any(|case| case.name == *name))
                .collect();
            if !unknown.is_empty() {
                return Err(Failed::from(format!(
                    "expect_skipped names cases the suite does not have: {unknown:?}"
                )));
            }
            let skipped_names: BTreeSet<&str> = skipped.iter().map(|(name, _)| *name).collect();
            let expected_names: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
            if skipped_names == expected_names {
                return Ok(());
            }
            let mut message = String::from("the skipped cases differ from expect_skipped\n");
            for (name, reason) in &skipped {
                if !expected_names.contains(name) {
                    let _ = writeln!(message, "  skipped, not expected: {name} ({reason})");
                }
            }
            for name in expected_names.difference(&skipped_names) {
                let _ = writeln!(message, "  expected, not skipped: {name}");
            }
            let _ = write!(
                message,
                "  skipped: {:?}",
                skipped.iter().map(|(name, _)| *name).collect::<Vec<_>>()
            );
            Err(Failed::from(message))
        })
    }
}

/// Builds a runtime for `threads`, a suite in it through `factory`, runs `body` on (a
/// clone of) the suite, and drops the runtime (stopping the backend's background tasks) before the
/// suite.
fn in_own_runtime<T, B, Fut>(threads: Threads, factory: &Factory, body: B) -> Result<T, Failed>
where
    B: FnOnce(Suite) -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Many => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(4);
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|error| Failed::from(format!("cannot build a tokio runtime: {error}")))?;
    let (outcome, suite) = runtime.block_on(async {
        let suite = factory().await;
        let outcome = body(suite.clone()).await;
        (outcome, suite)
    });
    drop(runtime);
    drop(suite);
    outcome
}
