//! Raw access to the stored values, for the conformance suite's corruption and
//! credential cases and the backend's own damage tests.

use cache_core::{Error, ErrorKind, Result};
use rocksdb::{IteratorMode, WriteBatch};

use crate::backend::RocksDbCache;
use crate::core::{NAME, SEQUENCE_LEN, db_error, scan_options};

/// Direct access to the stored values, for tests that corrupt or inspect them.
#[derive(Debug, Clone)]
pub struct RawAccess {
    cache: RocksDbCache,
}

impl RawAccess {
    /// The stored envelope of `key` (without the sequence prefix).
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let inner = &self.cache.inner;
        let value = inner
            .db
            .get_cf(inner.entries(), key.as_bytes())
            .map_err(|error| db_error(error, "cannot read an entry"))?;
        Ok(value.map(|value| value.get(SEQUENCE_LEN..).unwrap_or_default().to_vec()))
    }

    /// Replaces the stored envelope of `key`, keeping its sequence prefix.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let inner = &self.cache.inner;
        let mut slots = inner.key_locks.lock(key);
        let old = inner
            .db
            .get_cf(inner.entries(), key.as_bytes())
            .map_err(|error| db_error(error, "cannot read an entry"))?
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, NAME, "no entry to overwrite").with_key(key)
            })?;
        let mut value = old[..SEQUENCE_LEN.min(old.len())].to_vec();
        value.extend_from_slice(bytes);
        inner
            .db
            .put_cf(inner.entries(), key.as_bytes(), &value)
            .map_err(|error| db_error(error, "cannot write an entry"))?;
        if let Some(slot) = slots.get_mut(key.as_bytes()) {
            let stored_bytes = (key.len() + value.len()) as u64;
            inner.accounting.subtract(slot.stored_bytes);
            inner.accounting.add(stored_bytes);
            slot.stored_bytes = stored_bytes;
        }
        Ok(())
    }

    /// Flushes the memtables to table files (so tests can damage the files).
    pub fn flush(&self) -> Result<()> {
        let inner = &self.cache.inner;
        for column_family in [inner.entries(), inner.write_order()] {
            inner
                .db
                .flush_cf(column_family)
                .map_err(|error| db_error(error, "cannot flush"))?;
        }
        Ok(())
    }

    /// Removes every write-order record, as a repair that lost the write-order table
    /// would; the entries stay.
    pub fn remove_write_order(&self) -> Result<()> {
        let inner = &self.cache.inner;
        let mut batch = WriteBatch::default();
        for item in
            inner
                .db
                .iterator_cf_opt(inner.write_order(), scan_options(), IteratorMode::Start)
        {
            let (sequence, _) = item.map_err(|error| db_error(error, "cannot scan"))?;
            batch.delete_cf(inner.write_order(), sequence);
        }
        inner
            .db
            .write(batch)
            .map_err(|error| db_error(error, "cannot delete"))
    }
}

impl RocksDbCache {
    /// Raw access to the stored values, for corruption and credential tests.
    pub fn raw_access(&self) -> RawAccess {
        RawAccess {
            cache: self.clone(),
        }
    }
}
