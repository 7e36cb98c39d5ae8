//! A tier that misbehaves on purpose: [`ChaosTier`] wraps any [`CacheManager`] and holds,
//! delays or fails its operations, so a stack (this workspace's or your own) can be tested
//! under the interleavings and faults production brings.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use cache_core::testkit::chaos::{ChaosTier, Operation, Point};
//! use cache_core::{CacheManager, ErrorKind};
//! # use cache_core::testkit::fixtures::{policy, response};
//! # struct Map(std::sync::Mutex<std::collections::HashMap<String, Arc<cache_core::CacheEntry>>>);
//! # impl CacheManager for Map {
//! #     fn name(&self) -> &'static str { "map" }
//! #     fn get<'a>(&'a self, key: &'a str) -> cache_core::CacheFuture<'a, cache_core::Result<Option<Arc<cache_core::CacheEntry>>>> {
//! #         cache_core::CacheFuture::ready(Ok(self.0.lock().unwrap().get(key).cloned()))
//! #     }
//! #     fn put<'a>(&'a self, key: &'a str, response: cache_core::CachedResponse, policy: cache_core::CachePolicy, options: cache_core::PutOptions) -> cache_core::CacheFuture<'a, cache_core::Result<()>> {
//! #         let metadata = cache_core::TtlPolicy::default().entry_metadata(&policy, &response.headers, &options, std::time::SystemTime::now());
//! #         self.0.lock().unwrap().insert(key.to_owned(), Arc::new(cache_core::CacheEntry::new(response, policy, metadata)));
//! #         cache_core::CacheFuture::ready(Ok(()))
//! #     }
//! #     fn delete<'a>(&'a self, key: &'a str) -> cache_core::CacheFuture<'a, cache_core::Result<()>> {
//! #         self.0.lock().unwrap().remove(key);
//! #         cache_core::CacheFuture::ready(Ok(()))
//! #     }
//! # }
//! # let backend: Arc<dyn CacheManager> = Arc::new(Map(Default::default()));
//! let tier = Arc::new(ChaosTier::new("chaos", backend));
//!
//! // The next put of "k" fails as a timeout would, without writing anything.
//! tier.fail_next(Operation::Put, Some("k"), ErrorKind::Timeout);
//! let stored = response("https://example.com/k", "v1");
//! let failed = tier.put("k", stored.clone(), policy(&stored), Default::default()).await;
//! assert_eq!(failed.unwrap_err().kind(), ErrorKind::Timeout);
//!
//! // The next delete of "k" waits at a gate, after it reached the backend, until opened.
//! let gate = tier.hold_next(Operation::Delete, Some("k"), Point::After);
//! let delete = tokio::spawn({
//!     let tier = tier.clone();
//!     async move { tier.delete("k").await }
//! });
//! gate.reached().await;
//! gate.open();
//! delete.await.unwrap().unwrap();
//! # }
//! ```
//!
//! Random faults ([`RandomFaults`]) come from a seeded generator, so a schedule driven
//! on a paused tokio clock (`start_paused`) replays exactly from its seed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_cache_semantics::CachePolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::entry::{CacheEntry, CachedResponse};
use crate::error::{Error, ErrorKind, Result};
use crate::future::CacheFuture;
use crate::key::KeyPattern;
use crate::manager::{BackendStats, CacheManager, Capabilities, Health};
use crate::ttl::PutOptions;

/// The operations a [`ChaosTier`] can hold, delay or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `get`.
    Get,
    /// `put` and `put_entry`.
    Put,
    /// `delete`.
    Delete,
    /// `delete_tag`.
    DeleteTag,
    /// `delete_pattern`.
    DeletePattern,
    /// `clear`.
    Clear,
}

/// Where in an operation a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Point {
    /// Before the wrapped backend is called: a held or failed operation has not happened.
    Before,
    /// After the wrapped backend answered: the operation happened, its caller has not
    /// heard of it yet (or hears an error, as after a timeout whose write landed).
    After,
}

/// Faults drawn at random for every operation, from a seeded generator.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RandomFaults {
    /// The generator's seed.
    pub seed: u64,
    /// The chance that an operation is delayed (before or after the backend, evenly).
    pub delay_probability: f64,
    /// The longest delay; delays are drawn evenly from 0 to this, in whole milliseconds.
    pub max_delay: Duration,
    /// The chance that an operation listed in `failing` fails.
    pub failure_probability: f64,
    /// The operations that may fail at random.
    pub failing: Vec<Operation>,
    /// The kind of the random failures.
    pub failure_kind: ErrorKind,
}

impl RandomFaults {
    /// Delays only: `delay_probability` of the operations wait up to `max_delay`.
    pub fn delays(seed: u64, delay_probability: f64, max_delay: Duration) -> Self {
        Self {
            seed,
            delay_probability,
            max_delay,
            failure_probability: 0.0,
            failing: Vec::new(),
            failure_kind: ErrorKind::Timeout,
        }
    }

    /// Also fails `probability` of the `operations`, with `kind` (half of them before
    /// the backend is called, half after it answered).
    #[must_use]
    pub fn with_failures(
        mut self,
        probability: f64,
        operations: impl IntoIterator<Item = Operation>,
        kind: ErrorKind,
    ) -> Self {
        self.failure_probability = probability;
        self.failing = operations.into_iter().collect();
        self.failure_kind = kind;
        self
    }
}

/// A point an operation stops at until the test opens it.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    reached: AtomicBool,
    reached_signal: Notify,
    open: AtomicBool,
    open_signal: Notify,
}

impl Gate {
    fn new() -> Self {
        Self {
            inner: Arc::default(),
        }
    }

    /// Waits until an operation has reached the gate.
    pub async fn reached(&self) {
        wait_for(&self.inner.reached, &self.inner.reached_signal).await;
    }

    /// Whether an operation has reached the gate.
    pub fn is_reached(&self) -> bool {
        self.inner.reached.load(Ordering::Acquire)
    }

    /// Lets the held operation (and any later one at this gate) go on.
    pub fn open(&self) {
        self.inner.open.store(true, Ordering::Release);
        self.inner.open_signal.notify_waiters();
    }

    async fn pass(&self) {
        self.inner.reached.store(true, Ordering::Release);
        self.inner.reached_signal.notify_waiters();
        wait_for(&self.inner.open, &self.inner.open_signal).await;
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("reached", &self.is_reached())
            .field("open", &self.inner.open.load(Ordering::Acquire))
            .finish()
    }
}

/// Waits until `flag` is set, with no lost wake-up between the check and the wait.
async fn wait_for(flag: &AtomicBool, signal: &Notify) {
    loop {
        let notified = signal.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if flag.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

#[derive(Clone)]
enum Action {
    Fail(ErrorKind, Point),
    Delay(Duration, Point),
    Hold(Gate, Point),
}

struct Rule {
    operation: Operation,
    key: Option<String>,
    action: Action,
}

#[derive(Default)]
struct Plan {
    delay_before: Duration,
    delay_after: Duration,
    hold_before: Option<Gate>,
    hold_after: Option<Gate>,
    fail_before: Option<ErrorKind>,
    fail_after: Option<ErrorKind>,
}

impl Plan {
    fn add(&mut self, action: Action) {
        match action {
            Action::Fail(kind, Point::Before) => self.fail_before = Some(kind),
            Action::Fail(kind, Point::After) => self.fail_after = Some(kind),
            Action::Delay(delay, Point::Before) => self.delay_before += delay,
            Action::Delay(delay, Point::After) => self.delay_after += delay,
            Action::Hold(gate, Point::Before) => self.hold_before = Some(gate),
            Action::Hold(gate, Point::After) => self.hold_after = Some(gate),
        }
    }
}

#[derive(Default)]
struct State {
    random: Option<(StdRng, RandomFaults)>,
    /// One-shot rules, applied to the first matching operation and then dropped.
    rules: Vec<Rule>,
    calls: HashMap<Operation, u64>,
    /// The TTL each key's last successful put was given (for checks of what a stack asks
    /// of a tier; a tier may report other metadata, as a shared promoted entry does).
    put_ttls: HashMap<String, Option<Duration>>,
}

/// A [`CacheManager`] around another one that holds, delays and fails operations as told:
/// one-shot rules ([`fail_next`](Self::fail_next), [`delay_next`](Self::delay_next),
/// [`hold_next`](Self::hold_next)) and seeded [`RandomFaults`]. It can also declare fewer
/// capabilities than the backend has (a tier without tags) and refuse entries above a size
/// (as Redis refuses values over its limit), storing nothing.
pub struct ChaosTier {
    name: &'static str,
    inner: Arc<dyn CacheManager>,
    capabilities: Capabilities,
    max_entry_bytes: Option<usize>,
    state: Mutex<State>,
}

impl fmt::Debug for ChaosTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosTier")
            .field("name", &self.name)
            .field("inner", &self.inner.name())
            .field("capabilities", &self.capabilities)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish_non_exhaustive()
    }
}

impl ChaosTier {
    /// Wraps `inner` under `name`, with its capabilities and no faults.
    pub fn new(name: &'static str, inner: Arc<dyn CacheManager>) -> Self {
        Self {
            name,
            capabilities: inner.capabilities(),
            inner,
            max_entry_bytes: None,
            state: Mutex::default(),
        }
    }

    /// Declares `capabilities` instead of the backend's; operations left out return
    /// `Unsupported`. Default: the backend's.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Refuses puts of entries whose [`CacheEntry::approximate_size`] exceeds `bytes` with
    /// `TooLarge`, writing nothing (the previous entry stays). The limit is not declared in
    /// the capabilities: this is a tier that refuses what a stack sends it (declare one
    /// with [`with_capabilities`](Self::with_capabilities) to have the stack skip the
    /// tier instead). Default: no limit.
    #[must_use]
    pub fn with_max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = Some(bytes);
        self
    }

    /// Draws faults for every operation from `faults`.
    #[must_use]
    pub fn with_random_faults(self, faults: RandomFaults) -> Self {
        lock(&self.state).random = Some((StdRng::seed_from_u64(faults.seed), faults));
        self
    }

    /// The wrapped backend, for reading what it holds without faults.
    pub fn inner(&self) -> &Arc<dyn CacheManager> {
        &self.inner
    }

    /// The next `operation` (on `key`, when given) fails with `kind` before reaching the
    /// backend.
    pub fn fail_next(&self, operation: Operation, key: Option<&str>, kind: ErrorKind) {
        self.add_rule(operation, key, Action::Fail(kind, Point::Before));
    }

    /// The next `operation` (on `key`, when given) reaches the backend and then fails with
    /// `kind`, as a timeout whose write landed does.
    pub fn fail_next_after(&self, operation: Operation, key: Option<&str>, kind: ErrorKind) {
        self.add_rule(operation, key, Action::Fail(kind, Point::After));
    }

    /// The next `operation` (on `key`, when given) waits `delay` at `point`.
    pub fn delay_next(
        &self,
        operation: Operation,
        key: Option<&str>,
        delay: Duration,
        point: Point,
    ) {
        self.add_rule(operation, key, Action::Delay(delay, point));
    }

    /// The next `operation` (on `key`, when given) stops at `point` until the returned
    /// gate is opened.
    pub fn hold_next(&self, operation: Operation, key: Option<&str>, point: Point) -> Gate {
        let gate = Gate::new();
        self.add_rule(operation, key, Action::Hold(gate.clone(), point));
        gate
    }

    /// How many times `operation` was called (whatever its outcome).
    pub fn calls(&self, operation: Operation) -> u64 {
        lock(&self.state)
            .calls
            .get(&operation)
            .copied()
            .unwrap_or(0)
    }

    /// The TTL the last successful put (or `put_entry`) of `key` was given, while no later
    /// successful `delete` or `clear` removed it: `Some(None)` for a put without a TTL
    /// override. Tag and pattern deletions leave it; read it for keys the backend holds.
    pub fn last_put_ttl(&self, key: &str) -> Option<Option<Duration>> {
        lock(&self.state).put_ttls.get(key).copied()
    }

    fn add_rule(&self, operation: Operation, key: Option<&str>, action: Action) {
        lock(&self.state).rules.push(Rule {
            operation,
            key: key.map(str::to_owned),
            action,
        });
    }

    /// Counts the call and decides its faults: the first matching one-shot rule, then the
    /// random draws.
    fn plan(&self, operation: Operation, key: Option<&str>) -> Plan {
        let mut state = lock(&self.state);
        *state.calls.entry(operation).or_insert(0) += 1;
        let mut plan = Plan::default();
        if let Some(position) = state.rules.iter().position(|rule| {
            rule.operation == operation && (rule.key.is_none() || rule.key.as_deref() == key)
        }) {
            plan.add(state.rules.remove(position).action);
        }
        if let Some((rng, faults)) = &mut state.random {
            if rng.random_bool(faults.delay_probability.clamp(0.0, 1.0)) {
                let millis = u64::try_from(faults.max_delay.as_millis()).unwrap_or(u64::MAX);
                let delay = Duration::from_millis(rng.random_range(0..=millis));
                let point = if rng.random_bool(0.5) {
                    Point::Before
                } else {
                    Point::After
                };
                plan.add(Action::Delay(delay, point));
            }
            if faults.failing.contains(&operation)
                && rng.random_bool(faults.failure_probability.clamp(0.0, 1.0))
            {
                let point = if rng.random_bool(0.5) {
                    Point::Before
                } else {
                    Point::After
                };
                plan.add(Action::Fail(faults.failure_kind, point));
            }
        }
        plan
    }

    fn error(&self, kind: ErrorKind, operation: Operation, key: Option<&str>) -> Error {
        let error = Error::new(
            kind,
            self.name,
            format!("chaos: {operation:?} failed on purpose"),
        );
        match key {
            Some(key) => error.with_key(key),
            None => error,
        }
    }

    /// Runs `work` under the faults planned for `operation`. The backend is called only
    /// when `work` is: a backend that answers at once (memory) does its work when called,
    /// not when its future is awaited.
    async fn run<T, F>(
        &self,
        operation: Operation,
        key: Option<&str>,
        work: impl FnOnce() -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if !self.supports(operation) {
            return Err(Error::unsupported(self.name, &format!("{operation:?}")));
        }
        let plan = self.plan(operation, key);
        if !plan.delay_before.is_zero() {
            tokio::time::sleep(plan.delay_before).await;
        }
        if let Some(gate) = &plan.hold_before {
            gate.pass().await;
        }
        if let Some(kind) = plan.fail_before {
            return Err(self.error(kind, operation, key));
        }
        let result = work().await;
        if let Some(gate) = &plan.hold_after {
            gate.pass().await;
        }
        if !plan.delay_after.is_zero() {
            tokio::time::sleep(plan.delay_after).await;
        }
        if let Some(kind) = plan.fail_after {
            return Err(self.error(kind, operation, key));
        }
        result
    }

    fn supports(&self, operation: Operation) -> bool {
        match operation {
            Operation::Get | Operation::Put | Operation::Delete => true,
            Operation::DeleteTag => self.capabilities.tags,
            Operation::DeletePattern => self.capabilities.delete_pattern,
            Operation::Clear => self.capabilities.clear,
        }
    }

    fn too_large(&self, key: &str, size: usize) -> Option<Error> {
        let max = self.max_entry_bytes?;
        (size > max).then(|| {
            Error::new(
                ErrorKind::TooLarge,
                self.name,
                format!("the entry of {size} bytes is over this tier's limit of {max}"),
            )
            .with_key(key)
        })
    }

    fn record_put(&self, key: &str, ttl: Option<Duration>) {
        lock(&self.state).put_ttls.insert(key.to_owned(), ttl);
    }

    fn forget_put(&self, key: &str) {
        lock(&self.state).put_ttls.remove(key);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CacheManager for ChaosTier {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        CacheFuture::new(self.run(Operation::Get, Some(key), || self.inner.get(key)))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        CacheFuture::new(self.run(Operation::Put, Some(key), move || async move {
            let size = CacheEntry::approximate_size_of(&response, options.tags());
            if let Some(error) = self.too_large(key, size) {
                return Err(error);
            }
            let ttl = options.ttl();
            self.inner.put(key, response, policy, options).await?;
            self.record_put(key, ttl);
            Ok(())
        }))
    }

    fn put_entry<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CacheEntry>,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        CacheFuture::new(self.run(Operation::Put, Some(key), move || async move {
            if let Some(error) = self.too_large(key, entry.approximate_size()) {
                return Err(error);
            }
            let ttl = options.ttl();
            self.inner.put_entry(key, entry, options).await?;
            self.record_put(key, ttl);
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        CacheFuture::new(self.run(Operation::Delete, Some(key), move || async move {
            self.inner.delete(key).await?;
            self.forget_put(key);
            Ok(())
        }))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(self.run(Operation::DeleteTag, None, || self.inner.delete_tag(tag)))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a KeyPattern) -> CacheFuture<'a, Result<u64>> {
        CacheFuture::new(self.run(Operation::DeletePattern, None, || {
            self.inner.delete_pattern(pattern)
        }))
    }

    fn clear(&self) -> CacheFuture<'_, Result<()>> {
        CacheFuture::new(self.run(Operation::Clear, None, move || async move {
            self.inner.clear().await?;
            lock(&self.state).put_ttls.clear();
            Ok(())
        }))
    }

    fn entry_count(&self) -> CacheFuture<'_, Result<u64>> {
        if !self.capabilities.entry_count {
            return CacheFuture::ready(Err(Error::unsupported(self.name, "entry_count")));
        }
        self.inner.entry_count()
    }

    fn size_bytes(&self) -> CacheFuture<'_, Result<u64>> {
        if !self.capabilities.size_bytes {
            return CacheFuture::ready(Err(Error::unsupported(self.name, "size_bytes")));
        }
        self.inner.size_bytes()
    }

    fn health(&self) -> CacheFuture<'_, Result<Health>> {
        if !self.capabilities.health {
            return CacheFuture::ready(Err(Error::unsupported(self.name, "health")));
        }
        self.inner.health()
    }

    fn stats(&self) -> Result<BackendStats> {
        if !self.capabilities.stats {
            return Err(Error::unsupported(self.name, "stats"));
        }
        self.inner.stats()
    }
}
