//! Bounded memory: a 1 GiB body is put and read back in a child process whose peak
//! resident set (VmHWM) stays under 64 MiB.
//!
//! The test binary is its own child: started with `CACHE_STREAMING_MEMORY_CHILD=<dir>` it
//! moves the body and prints its peak RSS instead of running tests.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{BoxError, PutOptions, StreamingCacheManager};
use cache_streaming::{StreamingCache, StreamingConfig};
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use libtest_mimic::{Arguments, Trial};
use xxhash_rust::xxh3::Xxh3;

const CHILD_ENV: &str = "CACHE_STREAMING_MEMORY_CHILD";
const BODY_BYTES: u64 = 1024 * 1024 * 1024;
const CHUNK_BYTES: usize = 256 * 1024;
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// A body generated as it is polled: every chunk is one pattern block with its index
/// written over its first eight bytes, so no two chunks are equal and none is kept.
struct GeneratedBody {
    block: Bytes,
    next_chunk: u64,
    remaining: u64,
    hasher: std::sync::Arc<std::sync::Mutex<Xxh3>>,
}

impl Body for GeneratedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK_BYTES as u64) as usize;
        let mut chunk = BytesMut::from(&self.block[..len]);
        chunk[..8].copy_from_slice(&self.next_chunk.to_le_bytes());
        self.next_chunk += 1;
        self.remaining -= len as u64;
        self.hasher.lock().unwrap().update(&chunk);
        Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn child(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store =
            StreamingCache::open(StreamingConfig::new(dir).with_capacity_bytes(2 * BODY_BYTES))
                .await
                .expect("open");
        let block: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i * 31 % 251) as u8).collect();
        let written = std::sync::Arc::new(std::sync::Mutex::new(Xxh3::new()));
        let generated = GeneratedBody {
            block: Bytes::from(block),
            next_chunk: 0,
            remaining: BODY_BYTES,
            hasher: std::sync::Arc::clone(&written),
        };
        let mut cached = response("https://memory.example/one-gib", Bytes::new());
        cached
            .headers
            .insert("content-length", HeaderValue::from(BODY_BYTES));
        let policy = policy(&cached);
        let (head, _) = cached.into_head_and_body();
        let started = Instant::now();
        let stored = store
            .put_stream(
                "one-gib",
                head,
                policy,
                Box::pin(generated),
                PutOptions::new().with_ttl(Duration::from_secs(600)),
            )
            .await
            .expect("put_stream");
        assert_eq!(stored.len, BODY_BYTES);
        let put_time = started.elapsed();

        let started = Instant::now();
        let mut entry = store
            .get_stream("one-gib")
            .await
            .expect("get_stream")
            .expect("the entry");
        let mut read = Xxh3::new();
        let mut read_len = 0u64;
        while let Some(frame) = std::future::poll_fn(|cx| entry.body.as_mut().poll_frame(cx)).await
        {
            let data = frame.expect("a chunk").into_data().expect("data");
            read_len += data.len() as u64;
            read.update(&data);
        }
        assert_eq!(read_len, BODY_BYTES);
        assert_eq!(
            read.digest(),
            written.lock().unwrap().digest(),
            "the body read back differs"
        );
        println!(
            "put {put_time:?}, get {:?}, vmhwm_kib={}",
            started.elapsed(),
            peak_rss_kib()
        );
    });
}

fn a_one_gib_body_moves_through_in_bounded_memory() -> Result<(), libtest_mimic::Failed> {
    let dir = tempfile::tempdir()?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the child failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let peak_kib: u64 = stdout
        .split("vmhwm_kib=")
        .nth(1)
        .and_then(|rest| rest.trim().parse().ok())
        .ok_or_else(|| format!("no peak in the child's output: {stdout}"))?;
    eprintln!("1 GiB through the store: {}", stdout.trim());
    if peak_kib >= PEAK_LIMIT_KIB {
        return Err(format!("peak RSS {peak_kib} KiB, limit {PEAK_LIMIT_KIB} KiB").into());
    }
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let trials = vec![Trial::test(
        "a_one_gib_body_moves_through_in_bounded_memory",
        a_one_gib_body_moves_through_in_bounded_memory,
    )];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
