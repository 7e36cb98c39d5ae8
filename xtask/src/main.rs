//! Workspace automation, run as `cargo xtask TASK` (matklad's xtask pattern: plain Rust,
//! no shell scripts).

use std::collections::BTreeMap;
use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const TASKS: &[(&str, &str)] = &[
    (
        "test-all [--require-redis]",
        "every crate's tests (all features), doc tests, and every example built; starts a throwaway redis-server when REDIS_URL is unset",
    ),
    (
        "lint",
        "cargo fmt --check, cargo clippy -D warnings, cargo deny (licenses, bans, sources) where installed",
    ),
    (
        "bench [FILTER] [--rounds N] [--no-rocksdb]",
        "the criterion benchmarks of cache-bench, then a table of medians and ratios (--no-rocksdb: without the RocksDB bench and its C++ build); `bench peers [--rounds N] [--only TEXT] [--contenders TEXT]`: ours against the peer crates, whole systems",
    ),
    (
        "soak [--minutes N]",
        "the tiered stack's model-based coherence test over new random seeds for N minutes (default 5), release build",
    ),
    ("ci [--require-redis]", "lint, then test-all"),
];

/// Workspace packages whose tests need a Redis server.
const REDIS_PACKAGES: &[&str] = &["cache-redis"];

type TaskResult = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let require_redis = args.iter().any(|arg| arg == "--require-redis");
    let result = match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print_tasks();
            Ok(())
        }
        Some("test-all") => test_all(require_redis),
        Some("lint") => lint(),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("ci") => lint().and_then(|()| test_all(require_redis)),
        Some(other) => {
            print_tasks();
            Err(format!("unknown task `{other}`"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_tasks() {
    println!("usage: cargo xtask TASK\n\ntasks:");
    for (task, what) in TASKS {
        println!("  {task:<30} {what}");
    }
}

/// The workspace `cargo xtask` was run in: found from the current directory at run time,
/// not compiled in, because one target directory can serve several checkouts (`.ci/run`
/// reuses the developers' build) and the xtask binary in it may have been built from
/// another checkout than the one it is asked to test.
fn workspace_root() -> PathBuf {
    if let Ok(current) = env::current_dir() {
        for candidate in current.ancestors() {
            let is_this_workspace = std::fs::read_to_string(candidate.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("[workspace]"))
                && candidate.join("xtask").join("Cargo.toml").is_file();
            if is_this_workspace {
                return candidate.to_path_buf();
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(workspace_root());
    command
}

fn run(mut command: Command) -> TaskResult {
    eprintln!("\n$ {}", describe(&command));
    let status = command
        .status()
        .map_err(|error| format!("cannot start `{}`: {error}", describe(&command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(&command)))
    }
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

fn on_path(binary: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    })
}

fn cargo_subcommand_installed(name: &str) -> bool {
    on_path(&format!("cargo-{name}")).is_some()
}

fn packages_present(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            workspace_root()
                .join("crates")
                .join(name)
                .join("Cargo.toml")
                .is_file()
        })
        .collect()
}

fn test_all(require_redis: bool) -> TaskResult {
    let redis = RedisForTests::find_or_start()?;
    let mut excluded = Vec::new();
    match &redis {
        RedisForTests::Available { url, .. } => eprintln!("xtask: Redis tests use {}", redact(url)),
        RedisForTests::Missing(reason) => {
            let skipped = packages_present(REDIS_PACKAGES);
            let banner = "!".repeat(78);
            eprintln!("\n{banner}");
            eprintln!("!! NO REDIS: {reason}");
            if skipped.is_empty() {
                eprintln!("!! No Redis-backed suite exists yet; nothing is skipped.");
            } else {
                eprintln!("!! SKIPPED test suites: {}", skipped.join(", "));
                eprintln!("!! and every Redis-backed test elsewhere (CACHE_SKIP_REDIS_TESTS=1).");
            }
            eprintln!("!! Set REDIS_URL or put redis-server on PATH to run them.");
            eprintln!("{banner}\n");
            if require_redis {
                return Err("--require-redis was given and no Redis is available".to_owned());
            }
            excluded = skipped;
        }
    }
    let configure = |command: &mut Command| {
        match &redis {
            RedisForTests::Available { url, .. } => {
                command
                    .env("REDIS_URL", url)
                    .env_remove("CACHE_SKIP_REDIS_TESTS");
            }
            RedisForTests::Missing(_) => {
                command
                    .env_remove("REDIS_URL")
                    .env("CACHE_SKIP_REDIS_TESTS", "1");
            }
        }
        for package in &excluded {
            command.args(["--exclude", package]);
        }
    };

    let mut tests = cargo();
    if cargo_subcommand_installed("nextest") {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]);
    } else {
        tests.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    }
    configure(&mut tests);
    run(tests)?;

    // nextest does not run doc tests; cargo test --doc does.
    if cargo_subcommand_installed("nextest") {
        let mut doc_tests = cargo();
        doc_tests.args(["test", "--workspace", "--all-features", "--doc"]);
        configure(&mut doc_tests);
        run(doc_tests)?;
    }

    let mut examples = cargo();
    examples.args(["build", "--workspace", "--all-features", "--examples"]);
    run(examples)?;
    eprintln!("\nxtask: test-all passed");
    Ok(())
}

fn lint() -> TaskResult {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    if cargo_subcommand_installed("deny") {
        // The advisory database cannot be fetched everywhere; licenses, bans and sources
        // need nothing from the network.
        let mut deny = cargo();
        deny.args(["deny", "check", "licenses", "bans", "sources"]);
        run(deny)?;
    } else {
        eprintln!("\nxtask: cargo-deny is not installed; skipping the dependency policy check");
    }
    Ok(())
}

/// Runs the model-based test of the tiered stack (`crates/cache-tiered/tests/model.rs`)
/// over new seeds for a while; a failure prints its seed and schedule.
fn soak(args: &[String]) -> TaskResult {
    let mut minutes = 5u64;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--minutes" {
            minutes = words
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .ok_or("--minutes takes a positive number")?;
        } else {
            return Err(format!("soak does not take `{word}`"));
        }
    }
    let mut command = cargo();
    command
        .args([
            "test",
            "--release",
            "-p",
            "cache-tiered",
            "--test",
            "model",
            "--",
            "--exact",
            "soak",
            "--nocapture",
        ])
        .env("CACHE_SOAK_SECONDS", (minutes * 60).to_string());
    run(command)
}

fn bench(args: &[String]) -> TaskResult {
    if args.first().map(String::as_str) == Some("peers") {
        // The whole-system comparison keeps its own rounds (alternating order), prints
        // its own table of ops/s and latency percentiles and reads its own options
        // (--rounds, --only, --contenders, --op-seconds, --zipf-seconds).
        let mut command = cargo();
        command.args(["bench", "-p", "cache-bench", "--bench", "peers", "--"]);
        command.args(args);
        return run(command);
    }
    let mut filter = None;
    let mut rounds = 3usize;
    let mut with_rocksdb = true;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--no-rocksdb" {
            with_rocksdb = false;
        } else if word == "--rounds" {
            rounds = words
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .ok_or("--rounds takes a positive number")?;
        } else {
            filter = Some(word.clone());
        }
    }
    // Machines are noisy: each round runs every contender once; the table reports the
    // median over rounds of criterion's median, and the median over rounds of the ratio
    // measured within one round (paired, so drift between rounds cancels out).
    let mut rounds_seen: Vec<Vec<(String, String, f64)>> = Vec::new();
    for round in 1..=rounds {
        eprintln!("\nxtask: benchmark round {round} of {rounds}");
        let started = std::time::SystemTime::now();
        let mut command = cargo();
        command.args(["bench", "-p", "cache-bench"]);
        // Every second round runs each group's contenders in reverse order (for the
        // benchmarks that honour it), so no contender is always the first in its process.
        if round % 2 == 0 {
            command.env("CACHE_BENCH_REVERSED", "1");
        } else {
            command.env_remove("CACHE_BENCH_REVERSED");
        }
        if with_rocksdb {
            command.args(["--features", "rocksdb"]);
        }
        if let Some(filter) = &filter {
            command.args(["--", filter]);
        }
        run(command)?;
        rounds_seen.push(read_criterion_medians(started)?);
    }
    print_bench_table(&rounds_seen);
    Ok(())
}

/// (group, contender, median ns) of every benchmark criterion recorded since `since`.
fn read_criterion_medians(
    since: std::time::SystemTime,
) -> Result<Vec<(String, String, f64)>, String> {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let criterion = target.join("criterion");
    let mut groups: Vec<PathBuf> = Vec::new();
    collect_groups(&criterion, &mut groups);
    let mut medians = Vec::new();
    for group in groups {
        let group_name = group
            .strip_prefix(&criterion)
            .unwrap_or(&group)
            .display()
            .to_string();
        for entry in std::fs::read_dir(&group)
            .map_err(|error| error.to_string())?
            .flatten()
        {
            let latest = entry.path().join("new");
            let fresh = std::fs::metadata(latest.join("estimates.json"))
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified >= since);
            if !fresh {
                continue;
            }
            let estimates = std::fs::read_to_string(latest.join("estimates.json"));
            let benchmark = std::fs::read_to_string(latest.join("benchmark.json"));
            if let (Ok(estimates), Ok(benchmark)) = (estimates, benchmark) {
                if let (Some(median), Some(name)) = (
                    json_median(&estimates),
                    json_string(&benchmark, "function_id"),
                ) {
                    medians.push((group_name.clone(), name, median));
                }
            }
        }
    }
    Ok(medians)
}

/// Prints one row per contender: the median of its per-round medians and the median of
/// its per-round ratio to the group's workspace contender (the first, alphabetically,
/// whose name starts with `cache-`).
fn print_bench_table(rounds: &[Vec<(String, String, f64)>]) {
    let mut times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in rounds {
        let mut base: BTreeMap<&str, (&str, f64)> = BTreeMap::new();
        for (group, contender, median) in round {
            if contender.starts_with("cache-") {
                let current = base.entry(group).or_insert((contender, *median));
                if contender.as_str() < current.0 {
                    *current = (contender, *median);
                }
            }
        }
        for (group, contender, median) in round {
            times.entry((group, contender)).or_default().push(*median);
            if let Some((_, base_median)) = base.get(group.as_str()) {
                ratios
                    .entry((group, contender))
                    .or_default()
                    .push(median / base_median);
            }
        }
    }
    let middle = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    println!(
        "\n| benchmark | contender | median of {} rounds | ratio to ours (median of per-round ratios) |\n|---|---|---|---|",
        rounds.len()
    );
    let mut rows: Vec<(&str, &str, f64, Option<f64>)> = times
        .iter()
        .map(|((group, contender), values)| {
            (
                *group,
                *contender,
                middle(values),
                ratios.get(&(*group, *contender)).map(|r| middle(r)),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0).then(a.2.total_cmp(&b.2)));
    for (group, contender, median, ratio) in rows {
        let ratio = ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}x"));
        println!(
            "| {group} | {contender} | {} | {ratio} |",
            format_ns(median)
        );
    }
}

fn collect_groups(dir: &Path, groups: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || path.file_name().is_some_and(|name| name == "report") {
            continue;
        }
        if path.join("new").join("estimates.json").is_file() {
            if !groups.contains(&dir.to_path_buf()) {
                groups.push(dir.to_path_buf());
            }
        } else {
            collect_groups(&path, groups);
        }
    }
}

fn json_median(estimates: &str) -> Option<f64> {
    let median = &estimates[estimates.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn json_string(json: &str, field: &str) -> Option<String> {
    let marker = format!("\"{field}\":\"");
    let start = json.find(&marker)? + marker.len();
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_owned())
}

fn format_ns(nanos: f64) -> String {
    if nanos >= 1_000_000.0 {
        format!("{:.2} ms", nanos / 1_000_000.0)
    } else if nanos >= 1_000.0 {
        format!("{:.2} µs", nanos / 1_000.0)
    } else {
        format!("{nanos:.0} ns")
    }
}

/// A password in a Redis URL never reaches the terminal.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The Redis the tests talk to: the user's (`REDIS_URL`), a throwaway server this task
/// started and stops when dropped, or none.
enum RedisForTests {
    Available {
        url: String,
        _server: Option<ThrowawayRedis>,
    },
    Missing(String),
}

impl RedisForTests {
    fn find_or_start() -> Result<Self, String> {
        if let Ok(url) = env::var("REDIS_URL") {
            return Ok(Self::Available { url, _server: None });
        }
        let Some(binary) = on_path("redis-server") else {
            return Ok(Self::Missing(
                "REDIS_URL is unset and redis-server is not on PATH".to_owned(),
            ));
        };
        let server = ThrowawayRedis::start(&binary)?;
        Ok(Self::Available {
            url: format!("redis://127.0.0.1:{}", server.port),
            _server: Some(server),
        })
    }
}

/// A `redis-server` on a free loopback port that keeps nothing on disk; killed by its pid
/// when dropped, even when the tests fail.
struct ThrowawayRedis {
    child: Child,
    port: u16,
}

impl ThrowawayRedis {
    fn start(binary: &Path) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("cannot find a free port: {error}"))?
            .port();
        let child = Command::new(binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let server = Self { child, port };
        server.wait_until_ready()?;
        eprintln!(
            "xtask: started a throwaway redis-server (pid {}) on 127.0.0.1:{port}",
            server.child.id()
        );
        Ok(server)
    }

    fn wait_until_ready(&self) -> TaskResult {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200))
            {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                if stream.write_all(b"PING\r\n").is_ok() {
                    let mut reply = String::new();
                    if BufReader::new(&mut stream).read_line(&mut reply).is_ok()
                        && reply.starts_with("+PONG")
                    {
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        ))
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "xtask: stopped the throwaway redis-server on port {}",
            self.port
        );
    }
}
