//! A model-based concurrency test of the stack's coherence promise.
//!
//! Two instances share a bus and a shared tier (a memory cache standing in for Redis, with
//! a value size limit), each over its own local tiers; instance B's middle tier has no tag
//! support (as RocksDB). Every tier is a [`ChaosTier`] that delays operations at random,
//! fails some puts (timeouts, and `TooLarge` for versions over the shared tier's limit),
//! and the driver also drops callers' futures of writes, evicts local copies behind the
//! stack's back, runs fetches that fail or never finish, and waits for quiescence now and
//! then. Schedules run on a paused tokio clock on one thread, so a seed replays exactly.
//!
//! After every quiescence point and at the end, the log is checked against what the stack
//! promises:
//!
//! - a `get` (or `get_or_fetch`) never returns a version that a write which returned `Ok`
//!   before the get started had replaced or removed: on the instance that wrote, from the
//!   moment the write returned; on the other, from the first quiescence point after it (by
//!   then the bus event has been applied). A dropped write counts as done at the next
//!   quiescence point.
//! - no tier holds a copy for longer than its share of the entry's TTL;
//! - the statistics and the in-flight table are exact (for hits and misses, within the
//!   exact range that dropped gets leave open).
//!
//! `CACHE_MODEL_SEED=N` (with `CACHE_MODEL_STEPS=M` for a soak seed) replays one seed.
//! The `soak` test draws new seeds for `CACHE_SOAK_SECONDS` (default 10 s, so every
//! `test-all` also tries schedules no earlier run tried; a failure prints its seed);
//! `cargo xtask soak --minutes N` runs it in release for N minutes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cache_core::bus::InProcessHub;
use cache_core::testkit::chaos::{ChaosTier, Operation, RandomFaults};
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, Capabilities, ErrorKind, KeyPattern, PutOptions};
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{FetchError, Fetched, Tier, TieredBuilder, TieredCache};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The storage TTL of every entry; each tier keeps its share (`scale` times this).
const BASE_TTL: Duration = Duration::from_secs(1000);
/// Entries above this size are refused by the shared tier (as Redis refuses values over
/// its limit); large versions are built above it.
const SHARED_LIMIT: usize = 4096;
const KEYS: [&str; 3] = ["a/0", "a/1", "b/0"];
const TAGS: [&str; 2] = ["t0", "t1"];
const FETCH_TIMEOUT: Duration = Duration::from_millis(50);
/// The schedules `test-all` runs: seeds `0..FIXED_SEEDS` of `FIXED_STEPS` steps.
const FIXED_SEEDS: u64 = 2000;
const FIXED_STEPS: usize = 60;
/// The steps of a soak schedule.
const SOAK_STEPS: usize = 120;
/// How long (on the paused clock) a quiescence point waits for everything to settle.
const SETTLE: Duration = Duration::from_secs(10);

/// The per-instance configuration that takes the fixes under test.
fn configure(builder: TieredBuilder) -> TieredBuilder {
    builder.with_fetch_timeout(FETCH_TIMEOUT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instance {
    A,
    B,
}

#[derive(Debug, Clone)]
enum Write {
    Put {
        key: &'static str,
        version: u64,
    },
    Delete {
        key: &'static str,
    },
    DeleteTag {
        tag: &'static str,
    },
    DeletePattern {
        prefix: &'static str,
    },
    Clear,
    /// A `get_or_fetch` stored `version` (its put started no earlier than `start`). A
    /// caller may see the version in a tier before the put has reached every tier, so it
    /// counts as done at the next quiescence point only.
    Fetched {
        key: &'static str,
        version: u64,
    },
}

impl Write {
    /// Whether this write, once done, removes or replaces `version` of `key`.
    fn kills(&self, key: &str, version: &Version) -> bool {
        match self {
            Write::Put {
                key: written,
                version: new,
            }
            | Write::Fetched {
                key: written,
                version: new,
            } => *written == key && *new != version.number,
            Write::Delete { key: deleted } => *deleted == key,
            Write::DeleteTag { tag } => version.tags.iter().any(|t| t == tag),
            Write::DeletePattern { prefix } => key.starts_with(prefix),
            Write::Clear => true,
        }
    }
}

#[derive(Debug)]
struct WriteRecord {
    instance: Instance,
    write: Write,
    start: u64,
    /// When the call returned (or, for a dropped one, the quiescence point after it).
    end: Option<u64>,
    ok: bool,
    dropped: bool,
}

#[derive(Debug)]
struct ReadRecord {
    instance: Instance,
    key: &'static str,
    start: u64,
    end: u64,
    version: Option<u64>,
    /// Whether it was a `get_or_fetch` (shown in failure messages).
    #[allow(dead_code, reason = "read through Debug in failure messages")]
    fetch: bool,
}

#[derive(Debug, Clone)]
struct Version {
    number: u64,
    key: &'static str,
    tags: Vec<String>,
    /// Over the shared tier's size limit.
    large: bool,
    /// The index of the write that stored it.
    write: usize,
}

impl Version {
    /// The body of this version: its key and number, padded (past the shared tier's limit
    /// when large).
    fn body(&self) -> Bytes {
        let mut body = format!("{}#{}#", self.key, self.number).into_bytes();
        body.resize(if self.large { SHARED_LIMIT * 2 } else { 64 }, b'.');
        Bytes::from(body)
    }
}

#[derive(Default)]
struct Log {
    writes: Vec<WriteRecord>,
    reads: Vec<ReadRecord>,
    versions: HashMap<u64, Version>,
    syncs: Vec<u64>,
    schedule: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Counts {
    /// Gets and `get_or_fetch` calls that started, and those that returned (the others
    /// were dropped, and may or may not have been counted by the stack).
    gets: u64,
    gets_returned: u64,
    fetch_calls: u64,
    fetch_puts: u64,
    puts: u64,
    published: u64,
}

struct Shared {
    clock: AtomicU64,
    next_version: AtomicU64,
    log: Mutex<Log>,
    counts: Mutex<HashMap<&'static str, Counts>>,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn count(&self, instance: Instance, update: impl FnOnce(&mut Counts)) {
        let name = match instance {
            Instance::A => "A",
            Instance::B => "B",
        };
        update(self.counts.lock().unwrap().entry(name).or_default());
    }

    fn counts(&self, instance: Instance) -> Counts {
        let name = match instance {
            Instance::A => "A",
            Instance::B => "B",
        };
        self.counts
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Allocates a version of `key` and its response (large ones exceed the shared tier's
    /// limit).
    fn new_version(
        &self,
        key: &'static str,
        large: bool,
        tagged: Option<&'static str>,
    ) -> (u64, Bytes) {
        let number = self.next_version.fetch_add(1, Ordering::SeqCst);
        let tags: Vec<String> = tagged.into_iter().map(str::to_owned).collect();
        let version = Version {
            number,
            key,
            tags,
            large,
            write: usize::MAX,
        };
        let body = version.body();
        self.log.lock().unwrap().versions.insert(number, version);
        (number, body)
    }

    fn body_and_tags(&self, number: u64) -> (Bytes, Vec<String>) {
        let log = self.log.lock().unwrap();
        let version = &log.versions[&number];
        (version.body(), version.tags.clone())
    }
}

fn version_of(body: &[u8]) -> u64 {
    let text = std::str::from_utf8(body).expect("bodies are ASCII");
    text.split('#').nth(1).unwrap().parse().unwrap()
}

struct Node {
    instance: Instance,
    stack: TieredCache,
    /// Each tier of the stack with its TTL scale.
    tiers: Vec<(Arc<ChaosTier>, f64, bool)>,
}

/// The operations that fail at random on a local tier: not `clear`, which is what the
/// stack falls back to when a bus event cannot be applied (a local tier that cannot even be
/// cleared leaves the stack nothing to promise, and it counts it in `stale_tiers`).
const LOCAL_FAILURES: [Operation; 3] = [Operation::Put, Operation::Get, Operation::Delete];
/// The shared tier may fail anything: the bus never applies events to it.
const SHARED_FAILURES: [Operation; 6] = [
    Operation::Put,
    Operation::Get,
    Operation::Delete,
    Operation::DeleteTag,
    Operation::DeletePattern,
    Operation::Clear,
];

fn chaos(
    name: &'static str,
    inner: Arc<dyn CacheManager>,
    seed: u64,
    failing: &[Operation],
) -> ChaosTier {
    ChaosTier::new(name, inner).with_random_faults(
        RandomFaults::delays(seed, 0.4, Duration::from_millis(5)).with_failures(
            0.08,
            failing.iter().copied(),
            ErrorKind::Timeout,
        ),
    )
}

fn memory() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::open(MemoryConfig::default().with_capacity_bytes(64 << 20)).unwrap())
}

async fn nodes(seed: u64, hub: &InProcessHub) -> (Node, Node) {
    let shared = memory();
    let shared_tier = |n: u64| {
        Arc::new(
            chaos("shared", shared.clone(), seed ^ n, &SHARED_FAILURES)
                .with_max_entry_bytes(SHARED_LIMIT),
        )
    };
    let a_tiers = vec![
        (
            Arc::new(chaos("a-memory", memory(), seed ^ 0x11, &LOCAL_FAILURES)),
            0.1,
            true,
        ),
        (shared_tier(0x12), 10.0, false),
    ];
    let without_tags = Capabilities::none()
        .with_delete_pattern()
        .with_clear()
        .with_stats();
    let b_tiers = vec![
        (
            Arc::new(chaos("b-memory", memory(), seed ^ 0x21, &LOCAL_FAILURES)),
            0.5,
            true,
        ),
        (
            Arc::new(
                chaos("b-disk", memory(), seed ^ 0x22, &LOCAL_FAILURES)
                    .with_capabilities(without_tags),
            ),
            1.0,
            true,
        ),
        (shared_tier(0x23), 10.0, false),
    ];
    let build = |tiers: &[(Arc<ChaosTier>, f64, bool)]| {
        let mut builder = TieredCache::builder();
        for (tier, scale, local) in tiers {
            let mut layer = Tier::new(tier.clone()).with_ttl_scale(*scale);
            if !local {
                layer = layer.shared();
            }
            builder = builder.tier(layer);
        }
        configure(builder.with_bus(Arc::new(hub.bus())))
    };
    let a = build(&a_tiers).build().await.unwrap();
    let b = build(&b_tiers).build().await.unwrap();
    (
        Node {
            instance: Instance::A,
            stack: a,
            tiers: a_tiers,
        },
        Node {
            instance: Instance::B,
            stack: b,
            tiers: b_tiers,
        },
    )
}

/// `ttl` times `scale`, as the stack scales it (never below a millisecond).
fn share_of(ttl: Duration, scale: f64) -> Duration {
    Duration::from_secs_f64(ttl.as_secs_f64() * scale).max(Duration::from_millis(1))
}

enum Running {
    Awaited(tokio::task::JoinHandle<()>),
    Dropped,
}

struct Driver {
    seed: u64,
    rng: StdRng,
    shared: Arc<Shared>,
    a: Node,
    b: Node,
    running: Vec<Running>,
    /// Each instance's `stale_tiers` at the last quiescence point.
    stale_seen: [u64; 2],
}

impl Driver {
    fn node(&self, instance: Instance) -> &Node {
        match instance {
            Instance::A => &self.a,
            Instance::B => &self.b,
        }
    }

    fn note(&self, line: String) {
        self.shared.log.lock().unwrap().schedule.push(line);
    }

    fn start_write(&mut self, instance: Instance, write: Write, drop_after: Option<Duration>) {
        let stack = self.node(instance).stack.clone();
        let shared = self.shared.clone();
        let index = {
            let mut log = shared.log.lock().unwrap();
            log.writes.push(WriteRecord {
                instance,
                write: write.clone(),
                start: u64::MAX,
                end: None,
                ok: false,
                dropped: drop_after.is_some(),
            });
            log.writes.len() - 1
        };
        if let Write::Put { version, .. } = &write {
            shared
                .log
                .lock()
                .unwrap()
                .versions
                .get_mut(version)
                .unwrap()
                .write = index;
        }
        self.note(format!(
            "{instance:?} {write:?}{}",
            drop_after.map_or(String::new(), |after| format!(" dropped after {after:?}"))
        ));
        let task = tokio::spawn(async move {
            let start = shared.tick();
            shared.log.lock().unwrap().writes[index].start = start;
            let ok = match write {
                Write::Put { key, version } => {
                    shared.count(instance, |c| {
                        c.puts += 1;
                        c.published += 1;
                    });
                    let (body, tags) = shared.body_and_tags(version);
                    let stored = response(&format!("https://example.com/{key}"), body);
                    let stored_policy = policy(&stored);
                    stack
                        .put(
                            key,
                            stored,
                            stored_policy,
                            PutOptions::new().with_ttl(BASE_TTL).with_tags(tags),
                        )
                        .await
                        .is_ok()
                }
                Write::Delete { key } => {
                    shared.count(instance, |c| c.published += 1);
                    stack.delete(key).await.is_ok()
                }
                Write::DeleteTag { tag } => {
                    shared.count(instance, |c| c.published += 1);
                    stack.delete_tag(tag).await.is_ok()
                }
                Write::DeletePattern { prefix } => {
                    shared.count(instance, |c| c.published += 1);
                    let pattern = KeyPattern::new(&format!("{prefix}*")).unwrap();
                    stack.delete_pattern(&pattern).await.is_ok()
                }
                Write::Clear => {
                    shared.count(instance, |c| c.published += 1);
                    stack.clear().await.is_ok()
                }
                Write::Fetched { .. } => unreachable!("fetches are started by get_or_fetch"),
            };
            let end = shared.tick();
            let mut log = shared.log.lock().unwrap();
            log.writes[index].end = Some(end);
            log.writes[index].ok = ok;
        });
        self.finish_or_drop(task, drop_after);
    }

    fn start_read(
        &mut self,
        instance: Instance,
        key: &'static str,
        fetch: Option<FetchKind>,
        drop_after: Option<Duration>,
    ) {
        let stack = self.node(instance).stack.clone();
        let shared = self.shared.clone();
        self.note(format!(
            "{instance:?} get {key}{}",
            match fetch {
                None => String::new(),
                Some(kind) => format!(" or fetch ({kind:?})"),
            }
        ));
        let tagged = TAGS[self.rng.random_range(0..TAGS.len())];
        let large = self.rng.random_bool(0.15);
        let task = tokio::spawn(async move {
            let start = shared.tick();
            shared.count(instance, |c| c.gets += 1);
            let version = match fetch {
                None => match stack.get(key).await {
                    Ok(found) => found.map(|entry| version_of(&entry.response.body)),
                    Err(error) => panic!("a degraded get failed: {error}"),
                },
                Some(kind) => {
                    let fetch_shared = shared.clone();
                    let outcome = stack
                        .get_or_fetch(key, move || async move {
                            fetch_shared.count(instance, |c| c.fetch_calls += 1);
                            match kind {
                                FetchKind::Succeeds => {}
                                FetchKind::Fails => {
                                    return Err::<Fetched, FetchError>(FetchError::Fetch(
                                        Arc::new("the origin failed".into()),
                                    ));
                                }
                                FetchKind::Hangs => std::future::pending::<()>().await,
                            }
                            let (number, body) = fetch_shared.new_version(key, large, Some(tagged));
                            let fetch_start = fetch_shared.tick();
                            {
                                let mut log = fetch_shared.log.lock().unwrap();
                                log.writes.push(WriteRecord {
                                    instance,
                                    write: Write::Fetched {
                                        key,
                                        version: number,
                                    },
                                    start: fetch_start,
                                    end: None,
                                    ok: true,
                                    dropped: false,
                                });
                                let index = log.writes.len() - 1;
                                log.versions.get_mut(&number).unwrap().write = index;
                            }
                            fetch_shared.count(instance, |c| {
                                c.fetch_puts += 1;
                                c.published += 1;
                            });
                            let stored = response(&format!("https://example.com/{key}"), body);
                            let stored_policy = policy(&stored);
                            Ok(Fetched::new(stored, stored_policy).with_options(
                                PutOptions::new().with_ttl(BASE_TTL).with_tags([tagged]),
                            ))
                        })
                        .await;
                    match outcome {
                        Ok(entry) => Some(version_of(&entry.response.body)),
                        Err(FetchError::Fetch(_) | FetchError::Timeout(_)) => None,
                        // The fetched response was stored, but a tier may keep what it
                        // replaced: the fetch's store promises nothing.
                        Err(FetchError::Cache(error))
                            if error.to_string().contains("may still hold") =>
                        {
                            let mut log = shared.log.lock().unwrap();
                            for write in &mut log.writes {
                                if write.instance == instance
                                    && write.end.is_none()
                                    && matches!(write.write, Write::Fetched { key: fetched, .. } if fetched == key)
                                {
                                    write.ok = false;
                                }
                            }
                            None
                        }
                        Err(error) => panic!("get_or_fetch failed: {error}"),
                    }
                }
            };
            let end = shared.tick();
            shared.count(instance, |c| c.gets_returned += 1);
            let mut log = shared.log.lock().unwrap();
            log.reads.push(ReadRecord {
                instance,
                key,
                start,
                end,
                version,
                fetch: fetch.is_some(),
            });
        });
        self.finish_or_drop(task, drop_after);
    }

    /// Keeps `task` to await at the next quiescence point, or aborts it after `drop_after`
    /// (its caller went away).
    fn finish_or_drop(&mut self, task: tokio::task::JoinHandle<()>, drop_after: Option<Duration>) {
        match drop_after {
            None => self.running.push(Running::Awaited(task)),
            Some(after) => {
                let abort = task.abort_handle();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    abort.abort();
                });
                self.running.push(Running::Dropped);
            }
        }
    }

    /// Waits for every call, then for everything the calls left running (dropped writes,
    /// bus deliveries), and checks the log, the tiers and the counts.
    async fn quiesce(&mut self) -> Result<(), String> {
        let running = std::mem::take(&mut self.running);
        let awaited = async {
            for call in running {
                if let Running::Awaited(task) = call {
                    task.await
                        .map_err(|error| format!("a call panicked: {error}"))?;
                }
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(Duration::from_secs(600), awaited).await {
            Ok(result) => result?,
            Err(_) => return Err("calls did not finish within 600 s of the paused clock (a hung fetch holds its key?)".to_owned()),
        }
        tokio::time::sleep(SETTLE).await;
        let sync = self.shared.tick();
        // A dropped write's caller never heard its outcome: it failed if the instance
        // counted a stale tier since the last quiescence point (then none of its dropped
        // writes is taken as done; that only weakens the check).
        let mut stale_now = [0; 2];
        for (index, node) in [&self.a, &self.b].into_iter().enumerate() {
            stale_now[index] = node.stack.stats().stale_tiers;
        }
        {
            let mut log = self.shared.log.lock().unwrap();
            log.syncs.push(sync);
            for write in &mut log.writes {
                if write.end.is_none() {
                    let index = match write.instance {
                        Instance::A => 0,
                        Instance::B => 1,
                    };
                    if write.start == u64::MAX {
                        // Dropped before it was first polled: it never started.
                        write.ok = false;
                    } else if write.dropped {
                        // A dropped write finished (the stack promises it) by now.
                        write.ok = stale_now[index] == self.stale_seen[index];
                    }
                    write.end = Some(sync);
                }
            }
        }
        self.stale_seen = stale_now;
        self.note(format!("-- quiescent at {sync}"));
        self.check_reads()?;
        for node in [&self.a, &self.b] {
            check_tiers(node).await?;
            self.check_counts(node)?;
        }
        Ok(())
    }

    fn check_reads(&self) -> Result<(), String> {
        let log = self.shared.log.lock().unwrap();
        let first_sync_after = |tick: u64| log.syncs.iter().copied().find(|&sync| sync >= tick);
        for read in &log.reads {
            let Some(number) = read.version else { continue };
            let version = &log.versions[&number];
            if version.key != read.key {
                return Err(format!("{read:?} returned a version of {}", version.key));
            }
            let Some(stored) = log.writes.get(version.write) else {
                return Err(format!(
                    "{read:?} returned version {number}, which no write stored"
                ));
            };
            if stored.start > read.end {
                return Err(format!(
                    "{read:?} returned version {number} before it was written"
                ));
            }
            let Some(stored_end) = stored.end else {
                continue;
            };
            for write in &log.writes {
                let Some(end) = write.end else { continue };
                if !write.ok || write.start == u64::MAX || write.start <= stored_end {
                    continue;
                }
                if !write.write.kills(read.key, version) {
                    continue;
                }
                let known_at = if write.instance == read.instance {
                    Some(end)
                } else {
                    first_sync_after(end)
                };
                if known_at.is_some_and(|known| known < read.start) {
                    return Err(format!(
                        "{read:?} returned version {number} ({stored:?}), which {write:?} had removed"
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_counts(&self, node: &Node) -> Result<(), String> {
        let stats = node.stack.stats();
        let counts = self.shared.counts(node.instance);
        let other = match node.instance {
            Instance::A => Instance::B,
            Instance::B => Instance::A,
        };
        let published_by_other = self.shared.counts(other).published;
        let looked_up = stats.hits + stats.misses;
        if looked_up < counts.gets_returned || looked_up > counts.gets {
            return Err(format!(
                "{:?}: hits + misses is {looked_up}, the model says between {} (gets that returned) and {} (gets that started) ({stats:?})",
                node.instance, counts.gets_returned, counts.gets
            ));
        }
        let sum =
            |field: fn(&cache_tiered::TierStats) -> u64| stats.tiers.iter().map(field).sum::<u64>();
        let problems = [
            (stats.in_flight_fetches, 0, "in-flight fetches"),
            (node.stack.in_flight_fetches() as u64, 0, "in-flight table"),
            (stats.fetches, counts.fetch_calls, "fetches"),
            (stats.puts, counts.puts + counts.fetch_puts, "puts"),
            (stats.hits, sum(|tier| tier.hits), "hits (the tiers' sum)"),
            (
                stats.promotions,
                sum(|tier| tier.promotions),
                "promotions (the tiers' sum)",
            ),
            (
                stats.errors,
                sum(|tier| tier.errors),
                "errors (the tiers' sum; the bus never fails)",
            ),
            (
                stats.bus_events_applied + stats.resyncs,
                published_by_other,
                "bus events applied (one per write of the other instance)",
            ),
        ];
        for (got, expected, what) in problems {
            if got != expected {
                return Err(format!(
                    "{:?}: {what} is {got}, the model says {expected} ({stats:?})",
                    node.instance
                ));
            }
        }
        Ok(())
    }
}

async fn check_tiers(node: &Node) -> Result<(), String> {
    for (tier, scale, _) in &node.tiers {
        for key in KEYS {
            let held = tier
                .inner()
                .get(key)
                .await
                .map_err(|error| error.to_string())?;
            if held.is_none() {
                continue;
            }
            if let Some(Some(ttl)) = tier.last_put_ttl(key) {
                let share = share_of(BASE_TTL, *scale);
                if ttl > share + Duration::from_millis(1) {
                    return Err(format!(
                        "{:?}: tier {} was given {key} for {ttl:?}, more than its share {share:?}",
                        node.instance,
                        tier.name()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum FetchKind {
    Succeeds,
    Fails,
    Hangs,
}

/// Runs one schedule of `steps` operations from `seed`; the error names the broken
/// promise, with the schedule.
fn run_schedule(seed: u64, steps: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let hub = InProcessHub::new(4096);
        let (a, b) = nodes(seed, &hub).await;
        let mut driver = Driver {
            seed,
            rng: StdRng::seed_from_u64(seed),
            shared: Arc::new(Shared {
                clock: AtomicU64::new(0),
                next_version: AtomicU64::new(1),
                log: Mutex::default(),
                counts: Mutex::default(),
            }),
            a,
            b,
            running: Vec::new(),
            stale_seen: [0, 0],
        };
        let result = drive(&mut driver, steps).await;
        result.map_err(|problem| {
            let log = driver.shared.log.lock().unwrap();
            let mut text = format!(
                "seed {} broke the model: {problem}\nreplay: CACHE_MODEL_SEED={} CACHE_MODEL_STEPS={steps} cargo test -p cache-tiered --test model\nschedule:\n",
                driver.seed, driver.seed
            );
            for line in &log.schedule {
                let _ = writeln!(text, "  {line}");
            }
            text
        })
    })
}

async fn drive(driver: &mut Driver, steps: usize) -> Result<(), String> {
    for _ in 0..steps {
        let instance = if driver.rng.random_bool(0.5) {
            Instance::A
        } else {
            Instance::B
        };
        let key = KEYS[driver.rng.random_range(0..KEYS.len())];
        let roll = driver.rng.random_range(0..100);
        match roll {
            0..30 => {
                // A tenth of the gets lose their caller on the way (and with it, maybe a
                // promotion under way).
                let dropped = driver
                    .rng
                    .random_bool(0.1)
                    .then(|| Duration::from_millis(driver.rng.random_range(0..6)));
                driver.start_read(instance, key, None, dropped);
            }
            30..50 => {
                let large = driver.rng.random_bool(0.2);
                let tag = TAGS[driver.rng.random_range(0..TAGS.len())];
                let (number, _) = driver.shared.new_version(key, large, Some(tag));
                let dropped = driver
                    .rng
                    .random_bool(0.25)
                    .then(|| Duration::from_millis(driver.rng.random_range(0..6)));
                driver.start_write(
                    instance,
                    Write::Put {
                        key,
                        version: number,
                    },
                    dropped,
                );
            }
            50..58 => {
                let dropped = driver
                    .rng
                    .random_bool(0.25)
                    .then(|| Duration::from_millis(driver.rng.random_range(0..6)));
                driver.start_write(instance, Write::Delete { key }, dropped);
            }
            58..62 => {
                // Only A's stack can delete by tag (B has a tier without tags); B hears
                // of it through the bus.
                let tag = TAGS[driver.rng.random_range(0..TAGS.len())];
                let dropped = driver
                    .rng
                    .random_bool(0.25)
                    .then(|| Duration::from_millis(driver.rng.random_range(0..6)));
                driver.start_write(Instance::A, Write::DeleteTag { tag }, dropped);
            }
            62..66 => {
                let dropped = driver
                    .rng
                    .random_bool(0.25)
                    .then(|| Duration::from_millis(driver.rng.random_range(0..6)));
                driver.start_write(instance, Write::DeletePattern { prefix: "a/" }, dropped);
            }
            66..68 => driver.start_write(instance, Write::Clear, None),
            68..80 => {
                let kind = match driver.rng.random_range(0..10) {
                    0 => FetchKind::Hangs,
                    1 => FetchKind::Fails,
                    _ => FetchKind::Succeeds,
                };
                driver.start_read(instance, key, Some(kind), None);
            }
            80..90 => {
                // An eviction: a local tier drops its copy behind the stack's back.
                let locals: Vec<Arc<ChaosTier>> = driver
                    .node(instance)
                    .tiers
                    .iter()
                    .filter(|(_, _, local)| *local)
                    .map(|(tier, _, _)| tier.clone())
                    .collect();
                let tier = locals[driver.rng.random_range(0..locals.len())].clone();
                driver.note(format!("{instance:?} evict {key} from {}", tier.name()));
                tier.inner().delete(key).await.unwrap();
            }
            _ => driver.quiesce().await?,
        }
        let pause = driver.rng.random_range(0..3);
        if pause == 0 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
    driver.quiesce().await
}

fn seeds_from_env() -> Option<u64> {
    std::env::var("CACHE_MODEL_SEED")
        .ok()
        .map(|seed| seed.parse().expect("CACHE_MODEL_SEED is a number"))
}

#[test]
fn the_stack_keeps_its_promises_over_fixed_seeds() {
    if let Some(seed) = seeds_from_env() {
        let steps = std::env::var("CACHE_MODEL_STEPS")
            .ok()
            .map_or(FIXED_STEPS, |steps| {
                steps.parse().expect("CACHE_MODEL_STEPS is a number")
            });
        if let Err(problem) = run_schedule(seed, steps) {
            panic!("{problem}");
        }
        return;
    }
    let mut failures = Vec::new();
    for seed in 0..FIXED_SEEDS {
        if let Err(problem) = run_schedule(seed, FIXED_STEPS) {
            if std::env::var_os("CACHE_MODEL_REPORT").is_some() {
                eprintln!("FAIL {}", problem.lines().next().unwrap_or_default());
            }
            failures.push((seed, problem));
        }
    }
    if let Some((_, first)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
        panic!(
            "{} of {FIXED_SEEDS} schedules failed (seeds {seeds:?}); the first:\n{first}",
            failures.len()
        );
    }
}

#[test]
fn soak() {
    let seconds: u64 = std::env::var("CACHE_SOAK_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(10);
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let first_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut schedules = 0u64;
    while std::time::Instant::now() < deadline {
        let seed = first_seed.wrapping_add(schedules);
        if let Err(problem) = run_schedule(seed, SOAK_STEPS) {
            panic!("after {schedules} clean schedules:\n{problem}");
        }
        schedules += 1;
    }
    println!(
        "soak: {schedules} schedules of {SOAK_STEPS} steps ran clean in {seconds} s (seeds from {first_seed})"
    );
}
