//! Writing a body: temporary files that clean up after themselves, and a writer that
//! writes and hashes each batch on two blocking threads while the next one arrives.

use std::collections::HashSet;
use std::hash::Hasher as _;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cache_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
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

    pub(crate) fn finish(self) -> BodyFacts {
        BodyFacts {
            digest: self.sha256.finalize().into(),
            xxh3: self.xxh3.finish(),
            len: self.len,
        }
    }
}

/// The write of one batch (with the xxh3 of what it wrote) and its SHA-256, running on
/// two blocking threads at once.
struct InFlight {
    writer: JoinHandle<std::io::Result<(std::fs::File, Xxh3)>>,
    hasher: JoinHandle<(Sha256, u64)>,
}

/// Writes a body to a temporary file. Bytes are gathered into batches; a body that ends
/// within its first batch is written and hashed in one blocking call. A longer one has
/// each full batch written (and its xxh3 computed while the bytes are hot) on one
/// blocking thread and hashed with SHA-256 on another, while the next batch gathers, so
/// a put runs at the pace of the slower of the two and holds two batches at most. A
/// thread is held only while a batch is written: a slow upstream holds none.
pub(crate) struct BodyWriter {
    /// The file, the xxh3 and the SHA-256 so far, while no batch is in flight.
    file: Option<(std::fs::File, Xxh3)>,
    sha256: Option<(Sha256, u64)>,
    in_flight: Option<InFlight>,
    batches_sent: bool,
    pending: Vec<Bytes>,
    pending_len: usize,
    batch_bytes: usize,
    path: PathBuf,
}

impl BodyWriter {
    pub(crate) fn new(file: std::fs::File, path: &Path, batch_bytes: usize) -> Self {
        Self {
            file: Some((file, Xxh3::new())),
            sha256: Some((Sha256::new(), 0)),
            in_flight: None,
            batches_sent: false,
            pending: Vec::new(),
            pending_len: 0,
            batch_bytes,
            path: path.to_path_buf(),
        }
    }

    /// Adds bytes; once a batch is full it is handed to the blocking pool, after the
    /// previous batch is written.
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
        self.join_in_flight().await?;
        let (Some((mut file, mut xxh3)), Some((mut sha256, mut len))) =
            (self.file.take(), self.sha256.take())
        else {
            return Err(self.lost());
        };
        let batch: Arc<[Bytes]> = std::mem::take(&mut self.pending).into();
        self.pending_len = 0;
        self.batches_sent = true;
        let hashed = Arc::clone(&batch);
        let writer = tokio::task::spawn_blocking(move || {
            write_chunks(&mut file, &batch)?;
            for chunk in batch.iter() {
                xxh3.write(chunk);
            }
            Ok((file, xxh3))
        });
        let hasher = tokio::task::spawn_blocking(move || {
            for chunk in hashed.iter() {
                sha256.update(chunk);
                len += chunk.len() as u64;
            }
            (sha256, len)
        });
        self.in_flight = Some(InFlight { writer, hasher });
        Ok(())
    }

    /// Waits for the batch in flight, if any, and takes back the file and hashes.
    async fn join_in_flight(&mut self) -> Result<()> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let written = in_flight
            .writer
            .await
            .map_err(|error| self.task_failed(error))?;
        let hashed = in_flight
            .hasher
            .await
            .map_err(|error| self.task_failed(error))?;
        self.file = Some(written.map_err(|error| io_error(error, "cannot write", &self.path))?);
        self.sha256 = Some(hashed);
        Ok(())
    }

    /// Writes what is left and returns the file (still open, for an optional sync) and
    /// the body's digest, checksum and length.
    pub(crate) async fn finish(mut self) -> Result<(std::fs::File, BodyFacts)> {
        if self.batches_sent {
            self.send_batch().await?;
            self.join_in_flight().await?;
            let (Some((file, xxh3)), Some((sha256, len))) = (self.file.take(), self.sha256.take())
            else {
                return Err(self.lost());
            };
            return Ok((
                file,
                BodyFacts {
                    digest: sha256.finalize().into(),
                    xxh3: xxh3.finish(),
                    len,
                },
            ));
        }
        // The whole body is one batch: write and hash it in one blocking call.
        let Some((mut file, _)) = self.file.take() else {
            return Err(self.lost());
        };
        let batch = std::mem::take(&mut self.pending);
        let written = tokio::task::spawn_blocking(move || {
            write_chunks(&mut file, &batch)?;
            let mut hasher = BodyHasher::new();
            for chunk in &batch {
                hasher.update(chunk);
            }
            Ok::<_, std::io::Error>((file, hasher.finish()))
        })
        .await
        .map_err(|error| self.task_failed(error))?;
        written.map_err(|error| io_error(error, "cannot write", &self.path))
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
