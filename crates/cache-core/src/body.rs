//! Small helpers for [`BoxBody`]: build one from bytes or chunks, and
//! collect one with a size limit.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::manager::BoxBody;

/// A body that yields `bytes` in one frame.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    from_chunks([Ok(bytes.into())])
}

/// A body that yields the given chunks, or errors, in order.
pub fn from_chunks(chunks: impl IntoIterator<Item = Result<Bytes, BoxError>>) -> BoxBody {
    Box::pin(ChunkBody {
        chunks: chunks.into_iter().collect(),
    })
}

struct ChunkBody {
    chunks: VecDeque<Result<Bytes, BoxError>>,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunks.iter().all(Result::is_ok) {
            let len = self
                .chunks
                .iter()
                .map(|chunk| chunk.as_ref().map_or(0, |bytes| bytes.len() as u64))
                .sum();
            SizeHint::with_exact(len)
        } else {
            SizeHint::default()
        }
    }
}

/// Reads a whole body into memory, failing with [`ErrorKind::TooLarge`] past `limit` bytes
/// and with [`ErrorKind::Body`] when the body fails.
pub async fn collect(mut body: BoxBody, limit: usize) -> Result<Bytes> {
    let mut collected = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|error| {
            Error::new(ErrorKind::Body, "body", "the body failed").with_source(error)
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    "body",
                    format!("the body is larger than {limit} bytes"),
                ));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// A body fed by a channel: it yields what is sent and ends when the sender is dropped.
pub fn from_receiver(receiver: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>) -> BoxBody {
    Box::pin(ReceiverBody { receiver })
}

struct ReceiverBody {
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for ReceiverBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}
