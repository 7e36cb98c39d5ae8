//! Running a backend's synchronous work on tokio's blocking pool.
//!
//! A disk backend's methods all have the same opening: validate the key, clone the shared
//! state and the key into the closure, run it on the blocking pool, map a panic to an
//! error. [`keyed`] and [`run`] are that opening, so a `CacheManager` impl stays one line
//! per method:
//!
//! ```
//! use std::sync::Arc;
//!
//! use cache_core::{CacheFuture, Result};
//!
//! struct Store;
//!
//! impl Store {
//!     fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
//!         Ok(Some(key.as_bytes().to_vec()))
//!     }
//! }
//!
//! fn get(inner: &Arc<Store>, key: &str) -> CacheFuture<'static, Result<Option<Vec<u8>>>> {
//!     cache_kit::blocking::keyed("my-store", inner, key, |store, key| store.read(key))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let inner = Arc::new(Store);
//! assert_eq!(get(&inner, "k").await.unwrap(), Some(b"k".to_vec()));
//! // An invalid key (here one over the length limit) is refused before anything is spawned.
//! let too_long = "k".repeat(cache_core::MAX_KEY_LEN + 1);
//! assert!(get(&inner, &too_long).into_ready().is_ok_and(|refused| refused.is_err()));
//! # });
//! ```

use std::sync::Arc;

use cache_core::{CacheFuture, Result, validate_key};

/// Validates `key` (an invalid one is a ready error, nothing spawned), then runs
/// `work(inner, key)` on tokio's blocking pool. A panic in `work` becomes an error of
/// `backend`.
pub fn keyed<I, T>(
    backend: &'static str,
    inner: &Arc<I>,
    key: &str,
    work: impl FnOnce(&I, &str) -> Result<T> + Send + 'static,
) -> CacheFuture<'static, Result<T>>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
{
    if let Err(error) = validate_key(backend, key) {
        return CacheFuture::ready(Err(error));
    }
    let (inner, key) = (Arc::clone(inner), key.to_owned());
    CacheFuture::blocking(backend, move || work(&inner, &key))
}

/// Runs `work(inner)` on tokio's blocking pool (for work not about one key: a tag, a
/// pattern, the whole store). A panic in `work` becomes an error of `backend`.
pub fn run<I, T>(
    backend: &'static str,
    inner: &Arc<I>,
    work: impl FnOnce(&I) -> Result<T> + Send + 'static,
) -> CacheFuture<'static, Result<T>>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
{
    let inner = Arc::clone(inner);
    CacheFuture::blocking(backend, move || work(&inner))
}

#[cfg(test)]
mod tests {
    use cache_core::ErrorKind;

    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_of_the_backend() {
        let inner = Arc::new(());
        let error = run("kit-test", &inner, |()| -> Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Backend);
        assert_eq!(error.backend(), "kit-test");
    }

    #[tokio::test]
    async fn an_invalid_key_is_refused_without_running_the_work() {
        let inner = Arc::new(());
        let too_long = "k".repeat(cache_core::MAX_KEY_LEN + 1);
        let error = keyed("kit-test", &inner, &too_long, |(), _| -> Result<()> {
            unreachable!("the work of an invalid key ran")
        })
        .await
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidKey);
    }
}
