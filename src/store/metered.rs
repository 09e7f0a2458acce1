//! A [`Backend`] wrapper that counts what goes to and from the store: requests by operation,
//! failures, and bytes written and read. The agent serves the counts as metrics.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, ObjectInfo, PutOutcome, PutPayload, StoreError};

/// The store operations counted, in the order [`StoreMeter::counts`] gives them.
pub const OPERATIONS: [&str; 4] = ["put", "get", "list", "delete"];

/// Counts shared by every clone of the store they were made for.
#[derive(Debug, Default)]
pub struct StoreMeter {
    requests: [AtomicU64; 4],
    failures: [AtomicU64; 4],
    written: AtomicU64,
    read: AtomicU64,
}

/// What a [`StoreMeter`] has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Requests, and requests that failed (a missing object is not a failure), by [`OPERATIONS`].
    pub requests: [u64; 4],
    pub failures: [u64; 4],
    /// Bytes of objects created (a put that found the object already there writes nothing).
    pub written: u64,
    pub read: u64,
}

impl StoreMeter {
    pub fn counts(&self) -> StoreCounts {
        let load = |a: &[AtomicU64; 4]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
        StoreCounts {
            requests: load(&self.requests),
            failures: load(&self.failures),
            written: self.written.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
        }
    }

    /// Counts a read and the bytes it brought.
    fn read(&self, result: Result<Bytes, StoreError>) -> Result<Bytes, StoreError> {
        self.count(GET, &result);
        if let Ok(data) = &result {
            self.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        result
    }

    /// Counts a request; a missing object is an answer, not a failure.
    fn count<T>(&self, op: usize, result: &Result<T, StoreError>) {
        self.requests[op].fetch_add(1, Ordering::Relaxed);
        if result.as_ref().is_err_and(|e| !e.is_not_found()) {
            self.failures[op].fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
    meter: Arc<StoreMeter>,
}

impl MeteredBackend {
    pub fn new(inner: Arc<dyn Backend>, meter: Arc<StoreMeter>) -> Self {
        Self { inner, meter }
    }
}

const PUT: usize = 0;
const GET: usize = 1;
const LIST: usize = 2;
const DELETE: usize = 3;

#[async_trait]
impl Backend for MeteredBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        let size = data.content_length() as u64;
        let result = self.inner.put_if_absent(key, data).await;
        self.meter.count(PUT, &result);
        if matches!(result, Ok(PutOutcome::Created)) {
            self.meter.written.fetch_add(size, Ordering::Relaxed);
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.meter.read(self.inner.get(key).await)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.meter.read(self.inner.get_range(key, range).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let result = self.inner.list(prefix).await;
        self.meter.count(LIST, &result);
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let result = self.inner.delete(key).await;
        self.meter.count(DELETE, &result);
        result
    }

    async fn delete_many(&self, keys: &[String], concurrency: usize) -> Result<(), StoreError> {
        // Counted as one request a batch of up to a thousand keys, as S3 takes them.
        let result = self.inner.delete_many(keys, concurrency).await;
        let batches = keys.len().div_ceil(1000) as u64;
        self.meter.requests[DELETE].fetch_add(batches, Ordering::Relaxed);
        if result.is_err() {
            self.meter.failures[DELETE].fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalBackend, Store};

    #[tokio::test]
    async fn counts_requests_failures_and_the_bytes_of_created_objects() {
        let dir = tempfile::tempdir().unwrap();
        let meter = Arc::new(StoreMeter::default());
        let store = Store::new(Arc::new(LocalBackend::new(dir.path().to_path_buf())))
            .metered(meter.clone());
        store.put_if_absent("a/1", b"hello".to_vec()).await.unwrap();
        // Already there: a request, no bytes written.
        store.put_if_absent("a/1", b"hello".to_vec()).await.unwrap();
        assert_eq!(store.get("a/1").await.unwrap().len(), 5);
        assert!(store.get("a/missing").await.is_err());
        store.list("a/").await.unwrap();
        store.delete_many(&["a/1".to_owned()], 2).await.unwrap();
        let counts = meter.counts();
        assert_eq!(counts.requests, [2, 2, 1, 1]);
        // A missing object is an answer, not a failure.
        assert_eq!(counts.failures, [0, 0, 0, 0]);
        assert_eq!((counts.written, counts.read), (5, 5));
    }
}
