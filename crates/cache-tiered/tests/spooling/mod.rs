//! A streaming backend for the stack's tests: it spools a body to memory before
//! committing it and streams it out in 4 KiB chunks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cache_core::{
    BoxBody, CacheEntry, CacheFuture, CacheManager, CachePolicy, CachedResponse, Capabilities,
    Error, ErrorKind, PutOptions, ResponseHead, Result, StoredBody, StreamedEntry,
    StreamingCacheManager, TtlPolicy, body,
};

/// A streaming backend for tests: it spools a body to memory before committing it (so an
/// error, a length mismatch or a dropped future commits nothing) and streams it out in
/// 4 KiB chunks.
#[derive(Default)]
pub(crate) struct SpoolingStore {
    entries: Mutex<HashMap<String, Arc<CacheEntry>>>,
}

impl CacheManager for SpoolingStore {
    fn name(&self) -> &'static str {
        "spooling"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_streaming()
    }

    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Arc<CacheEntry>>>> {
        let mut entries = self.entries.lock().unwrap();
        let live = entries
            .get(key)
            .filter(|entry| !entry.metadata.is_expired_at(SystemTime::now()))
            .cloned();
        if live.is_none() {
            entries.remove(key);
        }
        CacheFuture::ready(Ok(live))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
        policy: CachePolicy,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<()>> {
        let metadata = TtlPolicy::default().entry_metadata(
            &policy,
            &response.headers,
            &options,
            SystemTime::now(),
        );
        let mut entries = self.entries.lock().unwrap();
        if metadata.storage_ttl().is_zero() {
            entries.remove(key);
        } else {
            entries.insert(
                key.to_owned(),
                Arc::new(CacheEntry::new(response, policy, metadata)),
            );
        }
        CacheFuture::ready(Ok(()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<()>> {
        self.entries.lock().unwrap().remove(key);
        CacheFuture::ready(Ok(()))
    }
}

impl StreamingCacheManager for SpoolingStore {
    fn put_stream<'a>(
        &'a self,
        key: &'a str,
        head: ResponseHead,
        policy: CachePolicy,
        body: BoxBody,
        options: PutOptions,
    ) -> CacheFuture<'a, Result<StoredBody>> {
        CacheFuture::new(async move {
            let bytes = body::collect(body, usize::MAX).await?;
            let declared = head
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|declared| declared != bytes.len() as u64) {
                return Err(Error::new(
                    ErrorKind::Body,
                    "spooling",
                    "the body does not match its content-length",
                ));
            }
            let len = bytes.len() as u64;
            self.put(
                key,
                CachedResponse::from_head_and_body(head, bytes),
                policy,
                options,
            )
            .await?;
            Ok(StoredBody::new(len))
        })
    }

    fn get_stream<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<StreamedEntry>>> {
        CacheFuture::new(async move {
            let Some(entry) = self.get(key).await? else {
                return Ok(None);
            };
            let (head, bytes) = entry.response.clone().into_head_and_body();
            let chunks: Vec<_> = bytes
                .chunks(4096)
                .map(|chunk| Ok(bytes.slice_ref(chunk)))
                .collect();
            Ok(Some(StreamedEntry::new(
                head,
                entry.policy().clone(),
                entry.metadata.clone(),
                bytes.len() as u64,
                body::from_chunks(chunks),
            )))
        })
    }
}
