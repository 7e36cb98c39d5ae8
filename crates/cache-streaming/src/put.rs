//! Streaming puts and the tee: a body is written to a temporary file as it arrives (and
//! handed on to a client), then committed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use cache_core::{
    BoxBody, BoxError, CacheFuture, CachePolicy, Error, ErrorKind, PutOptions, ResponseHead,
    Result, StoredBody, validate_key,
};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use tokio::sync::mpsc;

use crate::NAME;
use crate::core::Inner;
use crate::index::ENTRY_OVERHEAD;
use crate::write::{BodyWriter, TempFile};

/// How many chunks a [`StreamingCache::tee`](crate::StreamingCache::tee) body holds for a
/// slow client before the upstream body is read further.
pub(crate) const TEE_CHANNEL_CHUNKS: usize = 4;

/// The outcome of a [`StreamingCache::tee`]: resolves when the entry is committed, or
/// with the reason it was not. Dropping it does not cancel the copy.
#[derive(Debug)]
pub struct PutHandle {
    pub(crate) task: tokio::task::JoinHandle<Result<StoredBody>>,
}

impl Future for PutHandle {
    type Output = Result<StoredBody>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|error| {
                Err(Error::new(ErrorKind::Backend, NAME, "the tee task failed").with_source(error))
            })
        })
    }
}

pub(crate) async fn forward_rest(
    body: &mut BoxBody,
    client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
) {
    while let Some(sender) = client.as_ref() {
        let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await else {
            return;
        };
        let message = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        if sender.send(Ok(message)).await.is_err() {
            return;
        }
    }
}

/// The body length the response declares, from every `Content-Length` value (a list of
/// equal values counts as one).
fn declared_length(headers: &HeaderMap) -> std::result::Result<Option<u64>, String> {
    let mut declared = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| "the Content-Length header is not text".to_owned())?;
        for part in text.split(',') {
            let length: u64 = part
                .trim()
                .parse()
                .map_err(|_| format!("the Content-Length {text:?} is not a number"))?;
            if declared.is_some_and(|earlier| earlier != length) {
                return Err("the response has conflicting Content-Length values".to_owned());
            }
            declared = Some(length);
        }
    }
    Ok(declared)
}

fn body_error(key: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Body, NAME, message).with_key(key)
}

/// Sends `message` to the tee's client, forgetting a client that went away.
async fn to_client(
    client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    message: Result<Bytes, BoxError>,
) {
    if let Some(sender) = client.as_ref() {
        if sender.send(message).await.is_err() {
            *client = None;
        }
    }
}

impl Inner {
    /// [`Inner::too_large`] on the blocking pool.
    async fn refuse(self: &Arc<Self>, key: &str, needed: u64) -> Error {
        let (inner, key) = (Arc::clone(self), key.to_owned());
        CacheFuture::blocking(NAME, move || Ok(inner.too_large(&key, needed)))
            .await
            .unwrap_or_else(|error| error)
    }

    /// Streams `body` into a temporary file and commits it. With a `client`, every chunk
    /// (and the body's end or failure) is handed on to it as well.
    pub(crate) async fn put_streamed(
        self: &Arc<Self>,
        key: &str,
        head: ResponseHead,
        policy: CachePolicy,
        body: &mut BoxBody,
        options: PutOptions,
        client: &mut Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    ) -> Result<StoredBody> {
        validate_key(NAME, key)?;
        let declared =
            declared_length(&head.headers).map_err(|message| body_error(key, message))?;
        let probe =
            self.ttl_policy
                .entry_metadata(&policy, &head.headers, &options, SystemTime::now());
        if probe.storage_ttl().is_zero() {
            let inner = Arc::clone(self);
            let owned_key = key.to_owned();
            CacheFuture::blocking(NAME, move || inner.delete(&owned_key)).await?;
            if client.is_some() {
                forward_rest(body, client).await;
            }
            return Ok(StoredBody::new(0));
        }
        if let Some(declared) = declared {
            let needed = declared.saturating_add(ENTRY_OVERHEAD);
            if needed > self.capacity_bytes {
                return Err(self.refuse(key, needed).await);
            }
        }
        let (layout, temps) = (self.layout.clone(), Arc::clone(&self.temps));
        let (temp, file) =
            CacheFuture::blocking(NAME, move || TempFile::create(&layout, &temps)).await?;
        let mut writer = BodyWriter::new(file, temp.path(), self.write_batch_bytes);
        let mut received: u64 = 0;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers are not stored.
                    Err(_) => continue,
                },
                Err(error) => {
                    let stored_error = if client.is_some() {
                        let described = error.to_string();
                        to_client(client, Err(error)).await;
                        *client = None;
                        body_error(key, "the body failed").with_source(described)
                    } else {
                        body_error(key, "the body failed").with_source(error)
                    };
                    return Err(stored_error);
                }
            };
            received += data.len() as u64;
            if declared.is_some_and(|declared| received > declared) {
                let message = format!(
                    "the body is longer than its Content-Length of {} bytes",
                    declared.unwrap_or_default()
                );
                to_client(client, Err(Box::new(body_error(key, message.clone())))).await;
                *client = None;
                return Err(body_error(key, message));
            }
            // The client gets the chunk first, so a failure of the store below never
            // leaves a gap in what the client receives (the rest is forwarded by the tee).
            if client.is_some() {
                to_client(client, Ok(data.clone())).await;
            }
            if received.saturating_add(ENTRY_OVERHEAD) > self.capacity_bytes {
                return Err(self
                    .refuse(key, received.saturating_add(ENTRY_OVERHEAD))
                    .await);
            }
            writer
                .push(data)
                .await
                .map_err(|error| error.with_key(key))?;
        }
        if let Some(declared) = declared {
            if received != declared {
                let message = format!(
                    "the body ended after {received} bytes; its Content-Length is {declared}"
                );
                to_client(client, Err(Box::new(body_error(key, message.clone())))).await;
                *client = None;
                return Err(body_error(key, message));
            }
        }
        let (file, facts) = writer.finish().await.map_err(|error| error.with_key(key))?;
        let inner = Arc::clone(self);
        let key = key.to_owned();
        CacheFuture::blocking(NAME, move || {
            inner.commit(&key, &head, &policy, &options, temp, file, facts)
        })
        .await
    }
}
