//! Writing a body: temporary files that clean up after themselves, and a writer that
//! hashes one batch of bytes while it writes it, on two blocking threads, while the next
//! batch arrives.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cache_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use xxhash_rust::xxh3::Xxh3;

use crate::layout::{BodyFacts, Layout, remove_file_if_present};

pub(crate) fn io_error(error: impl Into<cache_core::BoxError>, what: &str, path: &Path) -> Error {
    Error::new(
        ErrorKind::Io,
        crate::NAME,
        format!("{what} {}", path.display()),
    )
    .with_source(error)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a panic elsewhere while the
    // lock was held does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.xxh3.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub(crate) fn finish(self) -> BodyFacts {
        BodyFacts {
            digest: self.sha256.finalize().into(),
            xxh3: self.xxh3.digest(),
            len: self.len,
        }
    }
}

type InFlight = (
    JoinHandle<std::io::Result<std::fs::File>>,
    JoinHandle<BodyHasher>,
);

/// Writes a body to a temporary file in batches: batch N is written on one blocking
/// thread and hashed on another while batch N + 1 is gathered, so a put runs at the pace
/// of the slower of writing and hashing, and holds about two batches.
pub(crate) struct BodyWriter {
    file: Option<std::fs::File>,
    hasher: Option<BodyHasher>,
    pending: Vec<Bytes>,
    pending_len: usize,
    batch_bytes: usize,
    in_flight: Option<InFlight>,
    path: PathBuf,
}

impl BodyWriter {
    pub(crate) fn new(file: std::fs::File, path: &Path, batch_bytes: usize) -> Self {
        Self {
            file: Some(file),
            hasher: Some(BodyHasher::new()),
            pending: Vec::new(),
            pending_len: 0,
            batch_bytes,
            in_flight: None,
            path: path.to_path_buf(),
        }
    }

    /// Adds bytes; once a batch is full it waits for the previous one and starts it.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= self.batch_bytes {
            self.start_batch().await?;
        }
        Ok(())
    }

    async fn start_batch(&mut self) -> Result<()> {
        self.wait().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let (Some(mut file), Some(mut hasher)) = (self.file.take(), self.hasher.take()) else {
            return Err(self.lost());
        };
        let to_hash = batch.clone();
        let write = tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            Ok(file)
        });
        let hash = tokio::task::spawn_blocking(move || {
            for chunk in &to_hash {
                hasher.update(chunk);
            }
            hasher
        });
        self.in_flight = Some((write, hash));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some((write, hash)) = self.in_flight.take() {
            let file = write
                .await
                .map_err(|error| self.task_failed(error))?
                .map_err(|error| io_error(error, "cannot write", &self.path))?;
            let hasher = hash.await.map_err(|error| self.task_failed(error))?;
            self.file = Some(file);
            self.hasher = Some(hasher);
        }
        Ok(())
    }

    /// Writes what is left and returns the file (still open, for an optional sync) and
    /// the body's digest, checksum and length.
    pub(crate) async fn finish(mut self) -> Result<(std::fs::File, BodyFacts)> {
        self.start_batch().await?;
        self.wait().await?;
        match (self.file.take(), self.hasher.take()) {
            (Some(file), Some(hasher)) => Ok((file, hasher.finish())),
            _ => Err(self.lost()),
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
