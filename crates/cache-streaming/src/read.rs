//! Reading a body: chunks read on the blocking pool, one read ahead of the consumer,
//! verified as they go.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cache_core::{BoxError, Error, ErrorKind};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use xxhash_rust::xxh3::Xxh3;

use crate::config::ReadVerification;
use crate::layout::BodyFacts;

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
            Self::Checksum(xxh3) => xxh3.update(bytes),
            Self::Sha256(sha256) => sha256.update(bytes),
        }
    }

    pub(crate) fn matches(self, facts: &BodyFacts) -> bool {
        match self {
            Self::Checksum(xxh3) => xxh3.digest() == facts.xxh3,
            Self::Sha256(sha256) => <[u8; 32]>::from(sha256.finalize()) == facts.digest,
        }
    }
}

/// Called (on the blocking pool) when a body turns out not to be what was stored.
pub(crate) type OnCorrupt = Arc<dyn Fn() + Send + Sync>;

struct ReadState {
    file: std::fs::File,
    verifier: Option<Verifier>,
    facts: BodyFacts,
    remaining: u64,
    chunk_bytes: usize,
    on_corrupt: OnCorrupt,
}

type ReadOutcome = (ReadState, Result<Bytes, BoxError>);

fn read_next(mut state: ReadState) -> ReadOutcome {
    let want = state.remaining.min(state.chunk_bytes as u64);
    let mut chunk = Vec::with_capacity(want as usize);
    let result = (&mut state.file).take(want).read_to_end(&mut chunk);
    let outcome = match result {
        Ok(read) if read as u64 == want => {
            state.remaining -= want;
            if let Some(verifier) = state.verifier.as_mut() {
                verifier.update(&chunk);
            }
            if state.remaining == 0 {
                let verifier = state.verifier.take();
                if verifier.is_some_and(|verifier| verifier.matches(&state.facts)) {
                    Ok(Bytes::from(chunk))
                } else {
                    Err(corrupt(&state, "the body does not match its checksum"))
                }
            } else {
                Ok(Bytes::from(chunk))
            }
        }
        Ok(_) => Err(corrupt(
            &state,
            "the body file is shorter than its entry says",
        )),
        Err(error) => Err(Box::new(
            Error::new(ErrorKind::Io, crate::NAME, "cannot read the body").with_source(error),
        ) as BoxError),
    };
    (state, outcome)
}

fn corrupt(state: &ReadState, message: &str) -> BoxError {
    (state.on_corrupt)();
    Box::new(Error::new(
        ErrorKind::CorruptEntry,
        crate::NAME,
        format!("{message}; the entries using it were removed"),
    ))
}

/// A stored body, read in chunks of a bounded size. The last chunk is only yielded once
/// the whole body matched its checksum; otherwise the body ends with an error.
pub(crate) struct FileBody {
    idle: Option<ReadState>,
    in_flight: Option<JoinHandle<ReadOutcome>>,
    remaining: u64,
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
        Self {
            idle: Some(ReadState {
                file,
                verifier: Some(Verifier::new(verification)),
                facts,
                remaining: facts.len,
                chunk_bytes,
                on_corrupt,
            }),
            in_flight: None,
            remaining: facts.len,
            finished: facts.len == 0,
        }
    }

    fn start_read(&mut self) {
        if let Some(state) = self.idle.take() {
            if state.remaining > 0 {
                self.in_flight = Some(tokio::task::spawn_blocking(move || read_next(state)));
            } else {
                self.idle = Some(state);
            }
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.in_flight.is_none() {
            self.start_read();
        }
        let Some(in_flight) = self.in_flight.as_mut() else {
            self.finished = true;
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(in_flight).poll(cx));
        self.in_flight = None;
        let (state, outcome) = match joined {
            Ok(done) => done,
            Err(error) => {
                self.finished = true;
                return Poll::Ready(Some(Err(Box::new(
                    Error::new(
                        ErrorKind::Backend,
                        crate::NAME,
                        "a blocking read task failed",
                    )
                    .with_source(error),
                ))));
            }
        };
        match outcome {
            Ok(chunk) => {
                self.remaining = state.remaining;
                self.idle = Some(state);
                if self.remaining == 0 {
                    self.finished = true;
                } else {
                    // Read ahead while the consumer handles this chunk.
                    self.start_read();
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(error) => {
                self.finished = true;
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
