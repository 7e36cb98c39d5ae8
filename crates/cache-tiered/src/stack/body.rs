//! A body for `put_stream` that fails once the caller's future is dropped, so a detached
//! write stores nothing whose body the caller stopped sending.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use cache_core::{BoxBody, BoxError};
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};

#[derive(Default)]
struct Dropped {
    flag: AtomicBool,
    waker: AtomicWaker,
}

/// Held by the caller's future; dropping it fails the body from its next poll on.
pub(crate) struct CallerGuard {
    dropped: Arc<Dropped>,
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        self.dropped.flag.store(true, Ordering::Release);
        self.dropped.waker.wake();
    }
}

struct UntilDropped {
    inner: BoxBody,
    dropped: Arc<Dropped>,
}

/// `body`, failing with an error once the returned guard is dropped.
pub(crate) fn until_dropped(body: BoxBody) -> (BoxBody, CallerGuard) {
    let dropped = Arc::new(Dropped::default());
    let guarded = UntilDropped {
        inner: body,
        dropped: Arc::clone(&dropped),
    };
    (Box::pin(guarded), CallerGuard { dropped })
}

impl Body for UntilDropped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.dropped.waker.register(cx.waker());
        if self.dropped.flag.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(
                "the caller of put_stream went away before the body ended".into(),
            )));
        }
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        !self.dropped.flag.load(Ordering::Acquire) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
