//! Reading a body: one blocking reader per stream reads the file in chunks into reused
//! buffers, a few chunks ahead of the consumer, and the chunks are verified as they go.

use std::hash::Hasher as _;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cache_core::{BoxError, Error, ErrorKind};
use cache_kit::lock;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use twox_hash::XxHash3_64 as Xxh3;

use crate::config::ReadVerification;
use crate::layout::BodyFacts;

/// Chunks the reader may have read before the consumer takes them. Few: the buffers a
/// stream cycles through should stay in the reader's core cache. Measured on the 2-core
/// VM over 64 MiB (time relative to a raw read into one reused buffer, medians of 3-4
/// rounds): 8 ahead with the consumer woken once per 4 chunks, 0.46-0.55x; 4 ahead woken
/// per 2, 0.56-0.64x; 3 ahead woken per chunk, 0.69-0.70x; 2 ahead, 0.63x.
const READ_AHEAD_CHUNKS: usize = 3;
/// Buffers a stream keeps for reuse (a chunk the consumer dropped is read into again).
const POOLED_BUFFERS: usize = READ_AHEAD_CHUNKS + 2;

/// Checks a body against what was recorded when it was stored.
pub(crate) enum Verifier {
    Checksum(Box<Xxh3>),
    Sha256(Sha256),
}

impl Verifier {
    pub(crate) fn new(verification: ReadVerification) -> Self {
        match verification {
            ReadVerification::Sha256 => Self::Sha256(Sha256::new()),
            _ => Self::Checksum(Box::new(Xxh3::new())),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Checksum(xxh3) => xxh3.write(bytes),
            Self::Sha256(sha256) => sha256.update(bytes),
        }
    }

    pub(crate) fn matches(self, facts: &BodyFacts) -> bool {
        match self {
            Self::Checksum(xxh3) => xxh3.finish() == facts.xxh3,
            Self::Sha256(sha256) => <[u8; 32]>::from(sha256.finalize()) == facts.digest,
        }
    }
}

/// Called (on the blocking pool) when a body turns out not to be what was stored.
pub(crate) type OnCorrupt = Arc<dyn Fn() + Send + Sync>;

/// The read buffers of one stream. A chunk handed to the consumer owns its buffer; when
/// the consumer drops the chunk, the buffer comes back here and the next read reuses it,
/// so a stream touches the same few buffers instead of fresh memory for every chunk.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A buffer of exactly `len` initialized bytes, reused when one is free.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buffer = lock(&self.free).pop().unwrap_or_default();
        // A reused buffer is already this long (every chunk but the last has the same
        // length), so this only initializes memory the first time.
        buffer.resize(len, 0);
        buffer
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut free = lock(&self.free);
        if free.len() < POOLED_BUFFERS {
            free.push(buffer);
        }
    }
}

/// A chunk's bytes: returns its buffer to the pool when the last `Bytes` of it is dropped.
struct PooledChunk {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

/// What the reader hands the consumer.
enum ReadResult {
    Chunk(Bytes),
    /// The file is shorter than the entry says, or (when the reader verifies) the body
    /// does not match; the entries using the body were removed.
    Corrupt(&'static str),
    Failed(std::io::Error),
}

/// The blocking side of a stream: reads `facts.len` bytes in chunks and sends them until
/// the body ends, a read fails or the consumer is gone. With a verifier, the reader checks
/// the body itself (SHA-256, too slow to run on the executor); otherwise the consumer
/// does (xxh3, in parallel with the next read).
fn read_chunks(
    mut file: std::fs::File,
    facts: BodyFacts,
    chunk_bytes: usize,
    mut verifier: Option<Verifier>,
    on_corrupt: &OnCorrupt,
    chunks: &mpsc::Sender<ReadResult>,
) {
    let pool = Arc::new(BufferPool::default());
    let mut remaining = facts.len;
    while remaining > 0 {
        let want = remaining.min(chunk_bytes as u64) as usize;
        let mut buffer = pool.take(want);
        if let Err(error) = file.read_exact(&mut buffer) {
            let result = if error.kind() == std::io::ErrorKind::UnexpectedEof {
                on_corrupt();
                ReadResult::Corrupt("the body file is shorter than its entry says")
            } else {
                ReadResult::Failed(error)
            };
            let _ = chunks.blocking_send(result);
            return;
        }
        remaining -= want as u64;
        if let Some(reader_verifier) = verifier.as_mut() {
            reader_verifier.update(&buffer);
            if remaining == 0
                && !verifier
                    .take()
                    .is_some_and(|verifier| verifier.matches(&facts))
            {
                on_corrupt();
                let _ = chunks
                    .blocking_send(ReadResult::Corrupt("the body does not match its checksum"));
                return;
            }
        }
        let chunk = Bytes::from_owner(PooledChunk {
            buffer,
            pool: Arc::clone(&pool),
        });
        if chunks.blocking_send(ReadResult::Chunk(chunk)).is_err() {
            // The consumer dropped the body.
            return;
        }
    }
}

/// Everything the reader needs, until the first poll starts it.
struct PendingRead {
    file: std::fs::File,
    chunk_bytes: usize,
    reader_verifier: Option<Verifier>,
}

/// A stored body, read in chunks of a bounded size. The last chunk is only yielded once
/// the whole body matched its checksum; otherwise the body ends with an error (and the
/// entries using the body are removed before that error is yielded).
pub(crate) struct FileBody {
    pending: Option<PendingRead>,
    chunks: Option<mpsc::Receiver<ReadResult>>,
    /// The consumer-side verifier (xxh3), when the reader does not verify.
    verifier: Option<Verifier>,
    /// The removal of a body found corrupt on this side, awaited before the error.
    removing: Option<JoinHandle<()>>,
    facts: BodyFacts,
    remaining: u64,
    on_corrupt: OnCorrupt,
    finished: bool,
}

impl FileBody {
    pub(crate) fn new(
        file: std::fs::File,
        facts: BodyFacts,
        verification: ReadVerification,
        chunk_bytes: usize,
        on_corrupt: OnCorrupt,
    ) -> Self {
        let verifier = Verifier::new(verification);
        let (reader_verifier, verifier) = match verifier {
            Verifier::Sha256(_) => (Some(verifier), None),
            Verifier::Checksum(_) => (None, Some(verifier)),
        };
        Self {
            pending: Some(PendingRead {
                file,
                chunk_bytes,
                reader_verifier,
            }),
            chunks: None,
            verifier,
            removing: None,
            facts,
            remaining: facts.len,
            on_corrupt,
            finished: facts.len == 0,
        }
    }

    fn start_reader(&mut self) {
        if let Some(pending) = self.pending.take() {
            let (sender, receiver) = mpsc::channel(READ_AHEAD_CHUNKS);
            let (facts, on_corrupt) = (self.facts, Arc::clone(&self.on_corrupt));
            // The reader ends by itself when the body is read or the receiver is dropped.
            drop(tokio::task::spawn_blocking(move || {
                read_chunks(
                    pending.file,
                    facts,
                    pending.chunk_bytes,
                    pending.reader_verifier,
                    &on_corrupt,
                    &sender,
                );
            }));
            self.chunks = Some(receiver);
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finished = true;
        self.chunks = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

fn corrupt_error(message: &str) -> Error {
    Error::new(
        ErrorKind::CorruptEntry,
        crate::NAME,
        format!("{message}; the entries using it were removed"),
    )
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(removing) = self.removing.as_mut() {
            // The removal's outcome does not change the answer: a removal that failed
            // leaves entries whose next read fails the same way and tries again.
            let _ = ready!(Pin::new(removing).poll(cx));
            self.removing = None;
            return self.fail(corrupt_error("the body does not match its checksum"));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        self.start_reader();
        let Some(chunks) = self.chunks.as_mut() else {
            self.finished = true;
            return Poll::Ready(None);
        };
        let Some(result) = ready!(chunks.poll_recv(cx)) else {
            return self.fail(Error::new(
                ErrorKind::Backend,
                crate::NAME,
                "the blocking body reader stopped before the body ended",
            ));
        };
        let chunk = match result {
            ReadResult::Chunk(chunk) => chunk,
            ReadResult::Corrupt(message) => return self.fail(corrupt_error(message)),
            ReadResult::Failed(error) => {
                return self.fail(
                    Error::new(ErrorKind::Io, crate::NAME, "cannot read the body")
                        .with_source(error),
                );
            }
        };
        self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        if let Some(verifier) = self.verifier.as_mut() {
            verifier.update(&chunk);
        }
        if self.remaining == 0 {
            self.finished = true;
            self.chunks = None;
            if let Some(verifier) = self.verifier.take() {
                if !verifier.matches(&self.facts) {
                    // Removing the entries is file I/O: on the blocking pool, and the
                    // error is yielded once they are gone.
                    let on_corrupt = Arc::clone(&self.on_corrupt);
                    self.removing = Some(tokio::task::spawn_blocking(move || on_corrupt()));
                    self.finished = false;
                    return self.poll_frame(cx);
                }
            }
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.removing.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
