//! [`CacheFuture`]: the future every trait method of this crate returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future returned by the methods of [`CacheManager`](crate::CacheManager) and the
/// other traits of this crate: either a value that is already there, or a boxed future.
///
/// The traits are object safe (`Arc<dyn CacheManager>`), so their methods cannot return
/// `impl Future`. Returning a boxed future from every call, as `async-trait` does, costs
/// an allocation per call, twice when a call goes through a forwarding impl such as
/// `Arc<T>`'s; for a memory hit that is most of the work. A backend that answers without
/// waiting (memory) returns [`CacheFuture::ready`] and allocates nothing; a backend that
/// waits (disk, network) wraps its `async` block in [`CacheFuture::new`]; forwarding impls
/// return the inner future as it is.
///
/// A ready future's work happened when the method was called: dropping it without
/// awaiting does not undo a put or a delete. Callers should await every call.
///
/// ```
/// use cache_core::CacheFuture;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ready: CacheFuture<'_, u32> = CacheFuture::ready(7);
/// let waiting: CacheFuture<'_, u32> = CacheFuture::new(async { 6 + 1 });
/// assert_eq!(ready.await, waiting.await);
/// # });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct CacheFuture<'a, T> {
    state: State<'a, T>,
}

enum State<'a, T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> CacheFuture<'a, T> {
    /// A future that is already complete with `value`; allocates nothing.
    pub fn ready(value: T) -> Self {
        Self {
            state: State::Ready(Some(value)),
        }
    }

    /// Boxes `future`.
    pub fn new(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self {
            state: State::Boxed(Box::pin(future)),
        }
    }

    /// The value, when the future was created [`ready`](Self::ready) (its work is done);
    /// otherwise the future itself, untouched. Lets a wrapper (a tiered stack) answer from
    /// a ready inner result without boxing a future of its own.
    ///
    /// ```
    /// use cache_core::CacheFuture;
    ///
    /// assert_eq!(CacheFuture::ready(7).into_ready().ok(), Some(7));
    /// assert!(CacheFuture::new(async { 7 }).into_ready().is_err());
    /// ```
    pub fn into_ready(self) -> Result<T, Self> {
        match self.state {
            State::Ready(Some(value)) => Ok(value),
            state => Err(Self { state }),
        }
    }
}

impl<T: Send + 'static> CacheFuture<'static, crate::Result<T>> {
    /// Runs blocking work (file system, an embedded database) on tokio's blocking pool, so
    /// it never stalls the executor; a panic in `work` becomes an error of `backend`.
    pub fn blocking(
        backend: &'static str,
        work: impl FnOnce() -> crate::Result<T> + Send + 'static,
    ) -> Self {
        Self::new(async move {
            tokio::task::spawn_blocking(work).await.map_err(|error| {
                crate::Error::new(crate::ErrorKind::Backend, backend, "a blocking task failed")
                    .with_source(error)
            })?
        })
    }
}

// The value of a ready future is moved out, never pinned, and the boxed future is pinned
// on the heap: moving a `CacheFuture` never moves pinned data.
impl<T> Unpin for CacheFuture<'_, T> {}

impl<T> Future for CacheFuture<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.state {
            State::Ready(value) => {
                Poll::Ready(value.take().expect("CacheFuture polled after it completed"))
            }
            State::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for CacheFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(Some(_)) => "ready",
            State::Ready(None) => "completed",
            State::Boxed(_) => "boxed",
        };
        f.debug_struct("CacheFuture")
            .field("state", &state)
            .finish()
    }
}
