//! A large body through the streaming store: generated as it is sent, stored while a
//! "client" reads it (a tee), streamed back from disk, with sizes, times and the peak
//! memory of the process.
//!
//! ```sh
//! cargo run --release --example streaming_large_body        # 512 MiB
//! cargo run --release --example streaming_large_body 2048   # 2 GiB
//! ```
//!
//! The store lives in a temporary directory that is removed at the end.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cache_core::{BoxError, CachePolicy, PutOptions, ResponseHead, StreamingCacheManager};
use cache_streaming::{StreamingCache, StreamingConfig};
use http::{HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};

const CHUNK_BYTES: usize = 256 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

/// A body made up as it is polled, like a download arriving from an origin: only the
/// chunk in hand exists in memory.
struct GeneratedBody {
    pattern: Bytes,
    next_chunk: u64,
    remaining: u64,
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
        let mut chunk = BytesMut::from(&self.pattern[..len]);
        chunk[..8].copy_from_slice(&self.next_chunk.to_le_bytes());
        self.next_chunk += 1;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Drains a body, returning how many bytes it yielded.
async fn drain(mut body: cache_core::BoxBody) -> Result<u64, BoxError> {
    let mut len = 0;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}

/// The peak resident set of this process (Linux), in MiB.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or_else(
            || "unknown (no /proc/self/status)".to_owned(),
            |kib| format!("{:.1} MiB", kib / 1024.0),
        )
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{:.0} MiB in {:.2} s ({:.0} MiB/s)",
        bytes as f64 / MIB,
        elapsed.as_secs_f64(),
        bytes as f64 / MIB / elapsed.as_secs_f64()
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mib: u64 = match std::env::args().nth(1) {
        Some(argument) => argument.parse()?,
        None => 512,
    };
    let body_len = mib * 1024 * 1024;
    let dir = tempfile::tempdir()?;
    let store = StreamingCache::open(
        StreamingConfig::new(dir.path()).with_capacity_bytes(2 * body_len + (64 << 20)),
    )
    .await?;
    println!(
        "A {mib} MiB body through the streaming store in {}",
        dir.path().display()
    );

    let url: url::Url = "https://downloads.example/dataset.bin".parse()?;
    let request = http::Request::get(url.as_str()).body(())?;
    let response = http::Response::builder()
        .status(StatusCode::OK)
        .header("cache-control", "public, max-age=86400")
        .header("content-type", "application/octet-stream")
        .header("content-length", HeaderValue::from(body_len))
        .body(())?;
    let policy = CachePolicy::new(&request, &response);
    let head = ResponseHead::new(url, StatusCode::OK).with_headers(response.headers().clone());
    let pattern: Vec<u8> = (0..CHUNK_BYTES).map(|n| (n % 251) as u8).collect();
    let upstream = GeneratedBody {
        pattern: Bytes::from(pattern),
        next_chunk: 0,
        remaining: body_len,
    };

    // The client reads the body while the store writes it.
    let started = Instant::now();
    let (to_client, stored) = store.tee(
        "GET:https://downloads.example/dataset.bin",
        head,
        policy,
        Box::pin(upstream),
        PutOptions::new(),
    );
    let served = drain(to_client).await?;
    let stored = stored.await?;
    println!(
        "stored while serving: {} to the client, {} bytes committed",
        rate(served, started.elapsed()),
        stored.len
    );
    println!("  distinct bodies on disk: {}", store.body_count());

    let started = Instant::now();
    let entry = store
        .get_stream("GET:https://downloads.example/dataset.bin")
        .await?
        .ok_or("the entry just stored is missing")?;
    println!(
        "served from disk: status {}, {} byte body",
        entry.head.status, entry.body_len
    );
    let read = drain(entry.body).await?;
    println!(
        "  streamed back and verified: {}",
        rate(read, started.elapsed())
    );
    assert_eq!(read, body_len);

    println!("peak memory of this process: {}", peak_memory());
    Ok(())
}
