//! Reading a body: a reader per stream reads the file in chunks into reused buffers, a
//! few chunks ahead of the consumer, on a blocking thread it gives back whenever the
//! consumer falls behind; the chunks are verified as they go.

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

/// The blocking side of a stream: reads `facts.len` bytes in chunks and queues them for
/// the consumer. It holds a blocking thread only while it reads: once the queue is full
/// (the consumer is slower than the disk) it parks, handing itself back to the body,
/// which starts it again on a blocking thread when the consumer has taken a chunk. So a
/// stalled consumer holds a file and a few buffers, never a thread.
///
/// With a verifier, the reader checks the body itself (SHA-256, too slow to run on the
/// executor); otherwise the consumer does (xxh3, in parallel with the next read).
struct Reader {
    file: std::fs::File,
    facts: BodyFacts,
    chunk_bytes: usize,
    unread: u64,
    verifier: Option<Verifier>,
    on_corrupt: OnCorrupt,
    pool: Arc<BufferPool>,
    chunks: mpsc::Sender<ReadResult>,
    /// A result read but not yet queued (the queue was full).
    held: Option<ReadResult>,
}

impl Reader {
    /// Reads and queues chunks until the body is read (`None`), the consumer is gone
    /// (`None`), or the queue is full (`Some(self)`, to be started again).
    fn run(mut self) -> Option<Self> {
        loop {
            if let Some(result) = self.held.take() {
                match self.chunks.try_send(result) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(result)) => {
                        self.held = Some(result);
                        return Some(self);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return None,
                }
            }
            if self.unread == 0 {
                return None;
            }
            self.held = Some(self.read_chunk());
        }
    }

    fn read_chunk(&mut self) -> ReadResult {
        let want = self.unread.min(self.chunk_bytes as u64) as usize;
        let mut buffer = self.pool.take(want);
        if let Err(error) = self.file.read_exact(&mut buffer) {
            // Nothing after a failure: the stream ends with it.
            self.unread = 0;
            return if error.kind() == std::io::ErrorKind::UnexpectedEof {
                (self.on_corrupt)();
                ReadResult::Corrupt("the body file is shorter than its entry says")
            } else {
                ReadResult::Failed(error)
            };
        }
        self.unread -= want as u64;
        if let Some(verifier) = self.verifier.as_mut() {
            verifier.update(&buffer);
            if self.unread == 0
                && !self
                    .verifier
                    .take()
                    .is_some_and(|verifier| verifier.matches(&self.facts))
            {
                (self.on_corrupt)();
                return ReadResult::Corrupt("the body does not match its checksum");
            }
        }
        ReadResult::Chunk(Bytes::from_owner(PooledChunk {
            buffer,
            pool: Arc::clone(&self.pool),
        }))
    }
}

/// Where the reader is.
enum ReaderState {
    /// Not started yet, or parked with a full queue.
    Parked(Box<Reader>),
    /// Reading on a blocking thread; hands itself back when it parks.
    Running(JoinHandle<Option<Reader>>),
    /// Done: the whole body is queued, or the stream failed or was dropped.
    Done,
}

/// A stored body, read in chunks of a bounded size. The last chunk is only yielded once
/// the whole body matched its checksum; otherwise the body ends with an error (and the
/// entries using the body are removed before that error is yielded).
pub(crate) struct FileBody {
    reader: ReaderState,
    chunks: mpsc::Receiver<ReadResult>,
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
        let (sender, receiver) = mpsc::channel(READ_AHEAD_CHUNKS);
        let reader = Reader {
            file,
            facts,
            chunk_bytes,
            unread: facts.len,
            verifier: reader_verifier,
            on_corrupt: Arc::clone(&on_corrupt),
            pool: Arc::new(BufferPool::default()),
            chunks: sender,
            held: None,
        };
        Self {
            reader: ReaderState::Parked(Box::new(reader)),
            chunks: receiver,
            verifier,
            removing: None,
            facts,
            remaining: facts.len,
            on_corrupt,
            finished: facts.len == 0,
        }
    }

    /// Collects a reader that parked, and starts a parked reader again while the queue
    /// has room.
    fn drive_reader(&mut self, cx: &mut Context<'_>) {
        if let ReaderState::Running(task) = &mut self.reader {
            if let Poll::Ready(parked) = Pin::new(task).poll(cx) {
                self.reader = match parked {
                    Ok(Some(reader)) => ReaderState::Parked(Box::new(reader)),
                    // Done, or the blocking task panicked: the queue's sender is gone
                    // either way, and the consumer sees the end or the early stop.
                    Ok(None) | Err(_) => ReaderState::Done,
                };
            }
        }
        if matches!(self.reader, ReaderState::Parked(_)) && self.chunks.capacity() > 0 {
            let ReaderState::Parked(reader) =
                std::mem::replace(&mut self.reader, ReaderState::Done)
            else {
                return;
            };
            self.reader = ReaderState::Running(tokio::task::spawn_blocking(move || reader.run()));
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finished = true;
        self.chunks.close();
        self.reader = ReaderState::Done;
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
        self.drive_reader(cx);
        let received = self.chunks.poll_recv(cx);
        // A chunk taken makes room: the reader, if it parked, reads on meanwhile.
        self.drive_reader(cx);
        let Some(result) = ready!(received) else {
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
            self.reader = ReaderState::Done;
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
