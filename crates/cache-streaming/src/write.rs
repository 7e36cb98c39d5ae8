//! Writing a body: temporary files that clean up after themselves, and a writer that
//! writes and hashes each batch on two blocking lanes while the next one arrives.

use std::collections::{HashSet, VecDeque};
use std::hash::Hasher as _;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cache_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use twox_hash::XxHash3_64 as Xxh3;

use cache_kit::files::remove_file_if_present;
use cache_kit::lock;

use crate::layout::{BodyFacts, Layout};

pub(crate) fn io_error(error: impl Into<cache_core::BoxError>, what: &str, path: &Path) -> Error {
    Error::new(
        ErrorKind::Io,
        crate::NAME,
        format!("{what} {}", path.display()),
    )
    .with_source(error)
}

/// The temporary files being written now, which a sweep must leave alone.
#[derive(Debug, Default)]
pub(crate) struct TempRegistry {
    active: Mutex<HashSet<PathBuf>>,
}

impl TempRegistry {
    pub(crate) fn is_active(&self, path: &Path) -> bool {
        lock(&self.active).contains(path)
    }
}

/// A temporary file that is removed when dropped, unless it was renamed into place.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    registry: Arc<TempRegistry>,
    in_place: bool,
}

impl TempFile {
    /// Creates a new temporary file (blocking).
    pub(crate) fn create(
        layout: &Layout,
        registry: &Arc<TempRegistry>,
    ) -> Result<(Self, std::fs::File)> {
        let path = layout.new_temp_path();
        lock(&registry.active).insert(path.clone());
        let temp = Self {
            path,
            registry: Arc::clone(registry),
            in_place: false,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .map_err(|error| io_error(error, "cannot create", &temp.path))?;
        Ok((temp, file))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now (on a blocking thread), instead of in the background.
    pub(crate) fn remove_now(mut self) {
        // A removal that fails leaves a file the next sweep takes.
        let _ = remove_file_if_present(&self.path);
        self.in_place = true;
    }

    /// Marks the file as renamed away: dropping it no longer removes anything.
    pub(crate) fn renamed(mut self) {
        self.in_place = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        lock(&self.registry.active).remove(&self.path);
        if self.in_place {
            return;
        }
        let path = std::mem::take(&mut self.path);
        // Removal is file I/O: off the executor when there is one. A removal that fails
        // leaves a file the next sweep takes.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(runtime.spawn_blocking(move || remove_file_if_present(&path)));
            }
            Err(_) => {
                let _ = remove_file_if_present(&path);
            }
        }
    }
}

/// SHA-256 (the body's name), xxh3-64 (its read checksum) and length, computed together.
#[derive(Clone)]
pub(crate) struct BodyHasher {
    sha256: Sha256,
    xxh3: Xxh3,
    len: u64,
}

impl BodyHasher {
    pub(crate) fn new() -> Self {
        Self {
            sha256: Sha256::new(),
            xxh3: Xxh3::new(),
            len: 0,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.xxh3.write(bytes);
        self.len += bytes.len() as u64;
    }

    pub(crate) fn update_all(&mut self, chunks: &[Bytes]) {
        for chunk in chunks {
            self.update(chunk);
        }
    }

    pub(crate) fn finish(self) -> BodyFacts {
        BodyFacts {
            digest: self.sha256.finalize().into(),
            xxh3: self.xxh3.finish(),
            len: self.len,
        }
    }
}

/// Batches a lane may hold queued (besides the one it is working on) before the
/// producer waits.
const QUEUED_BATCHES: usize = 1;

/// How long a lane's blocking job waits for the next batch before it gives its thread
/// back. A fast upstream keeps one job running for the whole body; a slow one holds no
/// thread between its batches.
const LINGER: Duration = Duration::from_millis(2);

/// What a lane does with each batch.
type Work<S> = fn(&mut S, &[Bytes]) -> std::io::Result<()>;

/// The part of a lane behind its lock.
struct LaneState<S> {
    queue: VecDeque<Arc<[Bytes]>>,
    /// The lane's state (the file, a hash) while no job holds it.
    state: Option<S>,
    running: bool,
    closed: bool,
    failed: Option<std::io::Error>,
}

struct LaneShared<S> {
    inner: Mutex<LaneState<S>>,
    /// Signalled when a batch is queued or the lane is closed (the job waits on it).
    arrived: Condvar,
    /// Signalled when the job takes a batch or stops (the producer waits on it).
    progressed: Notify,
    work: Work<S>,
}

/// One stage of the write pipeline (the file write, or the hashes): a
/// queue of batches worked through by a blocking job that runs while batches keep coming
/// and stops when none arrives for [`LINGER`]; the next batch starts a new one.
struct Lane<S> {
    shared: Arc<LaneShared<S>>,
}

impl<S: Send + 'static> Lane<S> {
    fn new(state: S, work: Work<S>) -> Self {
        Self {
            shared: Arc::new(LaneShared {
                inner: Mutex::new(LaneState {
                    queue: VecDeque::new(),
                    state: Some(state),
                    running: false,
                    closed: false,
                    failed: None,
                }),
                arrived: Condvar::new(),
                progressed: Notify::new(),
                work,
            }),
        }
    }

    /// Queues a batch, waiting while the queue is full; starts a job when none runs.
    /// Fails with the lane's error once a batch failed.
    async fn send(&self, batch: Arc<[Bytes]>) -> std::result::Result<(), LaneError> {
        loop {
            let progressed = self.shared.progressed.notified();
            tokio::pin!(progressed);
            {
                let mut inner = lock(&self.shared.inner);
                if let Some(error) = take_failure(&mut inner) {
                    return Err(error);
                }
                if inner.queue.len() < QUEUED_BATCHES || !inner.running {
                    inner.queue.push_back(batch);
                    if inner.running {
                        self.shared.arrived.notify_one();
                    } else {
                        let Some(state) = inner.state.take() else {
                            return Err(LaneError::Lost);
                        };
                        inner.running = true;
                        let shared = Arc::clone(&self.shared);
                        drop(tokio::task::spawn_blocking(move || {
                            run_lane(&shared, state);
                        }));
                    }
                    return Ok(());
                }
                // Registered before the lock is released: a batch taken in between
                // still wakes this producer.
                progressed.as_mut().enable();
            }
            progressed.await;
        }
    }

    /// Waits until every queued batch is worked through and returns the state.
    async fn finish(&self) -> std::result::Result<S, LaneError> {
        loop {
            let progressed = self.shared.progressed.notified();
            tokio::pin!(progressed);
            {
                let mut inner = lock(&self.shared.inner);
                inner.closed = true;
                if !inner.running {
                    if let Some(error) = take_failure(&mut inner) {
                        return Err(error);
                    }
                    return inner.state.take().ok_or(LaneError::Lost);
                }
                self.shared.arrived.notify_one();
                progressed.as_mut().enable();
            }
            progressed.await;
        }
    }
}

enum LaneError {
    /// A batch failed.
    Io(std::io::Error),
    /// The state is gone (the lane failed or was finished before).
    Lost,
}

/// The failure of a lane, once: its state goes with it, so a later call is `Lost` instead
/// of carrying on without the failed batch. The job records a failure and stops in one
/// critical section, so a recorded failure means no job is running.
fn take_failure<S>(inner: &mut LaneState<S>) -> Option<LaneError> {
    let error = inner.failed.take()?;
    inner.state = None;
    Some(LaneError::Io(error))
}

/// The blocking job of a lane: works through the queue, lingers for more, then puts the
/// state back and stops.
fn run_lane<S>(shared: &LaneShared<S>, mut state: S) {
    let mut inner = lock(&shared.inner);
    loop {
        if let Some(batch) = inner.queue.pop_front() {
            drop(inner);
            shared.progressed.notify_waiters();
            // A panic in the work must not leave the lane marked running forever.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (shared.work)(&mut state, &batch)
            }))
            .unwrap_or_else(|_| Err(std::io::Error::other("a blocking write task panicked")));
            drop(batch);
            inner = lock(&shared.inner);
            if let Err(error) = outcome {
                inner.failed = Some(error);
                inner.queue.clear();
                break;
            }
            continue;
        }
        if inner.closed {
            break;
        }
        let (guard, waited) = shared
            .arrived
            .wait_timeout(inner, LINGER)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner = guard;
        if waited.timed_out() && inner.queue.is_empty() {
            break;
        }
    }
    inner.state = Some(state);
    inner.running = false;
    drop(inner);
    shared.progressed.notify_waiters();
}

fn hash_batch(hasher: &mut BodyHasher, batch: &[Bytes]) -> std::io::Result<()> {
    hasher.update_all(batch);
    Ok(())
}

/// Writes a body to a temporary file. Bytes are gathered into batches; a body that ends
/// within its first batch is written and hashed in one blocking call. A longer one goes
/// through two lanes at once: one writes each batch, the other hashes it (SHA-256 and
/// xxh3 chunk by chunk, while the chunk is in the cache), each ahead of the other as far
/// as its queue allows, while the next batch gathers. A put runs at the pace of the
/// slower lane and holds about four batches at most (the ones the lanes work on or have
/// queued, shared between them, plus the one gathering). A lane's thread is given back
/// when no batch arrives for a moment: a slow upstream holds none.
pub(crate) struct BodyWriter {
    /// The file, until the first batch goes to the lanes.
    file: Option<std::fs::File>,
    lanes: Option<(Lane<std::fs::File>, Lane<BodyHasher>)>,
    pending: Vec<Bytes>,
    pending_len: usize,
    batch_bytes: usize,
    path: PathBuf,
}

impl BodyWriter {
    pub(crate) fn new(file: std::fs::File, path: &Path, batch_bytes: usize) -> Self {
        Self {
            file: Some(file),
            lanes: None,
            pending: Vec::new(),
            pending_len: 0,
            batch_bytes,
            path: path.to_path_buf(),
        }
    }

    /// Adds bytes; once a batch is full it is handed to the lanes, waiting while their
    /// queues are full.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= self.batch_bytes {
            self.send_batch().await?;
        }
        Ok(())
    }

    async fn send_batch(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.lanes.is_none() {
            let Some(file) = self.file.take() else {
                return Err(self.lost());
            };
            self.lanes = Some((
                Lane::new(file, write_chunks),
                Lane::new(BodyHasher::new(), hash_batch),
            ));
        }
        let batch: Arc<[Bytes]> = std::mem::take(&mut self.pending).into();
        self.pending_len = 0;
        let Some((writer, hasher)) = self.lanes.as_ref() else {
            return Err(self.lost());
        };
        writer
            .send(Arc::clone(&batch))
            .await
            .map_err(|error| self.lane_error(error))?;
        hasher
            .send(batch)
            .await
            .map_err(|error| self.lane_error(error))
    }

    /// Writes what is left and returns the file (still open, for an optional sync) and
    /// the body's digest, checksum and length.
    pub(crate) async fn finish(mut self) -> Result<(std::fs::File, BodyFacts)> {
        if self.lanes.is_some() {
            self.send_batch().await?;
            let Some((writer, hasher)) = self.lanes.take() else {
                return Err(self.lost());
            };
            let written = writer.finish().await;
            let hashed = hasher.finish().await;
            let file = written.map_err(|error| self.lane_error(error))?;
            let hasher = hashed.map_err(|error| self.lane_error(error))?;
            return Ok((file, hasher.finish()));
        }
        // The whole body is one batch: write and hash it in one blocking call.
        let Some(mut file) = self.file.take() else {
            return Err(self.lost());
        };
        let batch = std::mem::take(&mut self.pending);
        let written = tokio::task::spawn_blocking(move || {
            write_chunks(&mut file, &batch)?;
            let mut hasher = BodyHasher::new();
            hasher.update_all(&batch);
            Ok::<_, std::io::Error>((file, hasher.finish()))
        })
        .await
        .map_err(|error| self.task_failed(error))?;
        written.map_err(|error| io_error(error, "cannot write", &self.path))
    }

    fn lane_error(&self, error: LaneError) -> Error {
        match error {
            LaneError::Io(error) => io_error(error, "cannot write", &self.path),
            LaneError::Lost => self.lost(),
        }
    }

    fn task_failed(&self, error: tokio::task::JoinError) -> Error {
        Error::new(
            ErrorKind::Backend,
            crate::NAME,
            "a blocking write task failed",
        )
        .with_source(error)
    }

    fn lost(&self) -> Error {
        Error::new(
            ErrorKind::Backend,
            crate::NAME,
            format!(
                "the writer of {} lost its file after an earlier failure",
                self.path.display()
            ),
        )
    }
}

/// Writes every chunk, several per system call where there are many small ones.
fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    const SLICES_PER_CALL: usize = 64;
    for group in chunks.chunks(SLICES_PER_CALL) {
        if let [single] = group {
            file.write_all(single)?;
            continue;
        }
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|chunk| IoSlice::new(chunk)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut slices, written),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}
