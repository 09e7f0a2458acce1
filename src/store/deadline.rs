//! Every store call ends within a deadline, retries included: a [`Backend`] wrapper.
//!
//! object_store's own `retry_timeout` only stops *starting* retries, and its request timeout
//! applies per request, so a server that accepts connections and never answers would otherwise
//! hold a call for both added up. The wrapper cuts any call, of any backend, at the deadline.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, ObjectInfo, PutOutcome, PutPayload, StoreError};

/// A backend whose every call ends within `limit`.
#[derive(Debug)]
pub struct DeadlineBackend {
    inner: Arc<dyn Backend>,
    limit: Duration,
}

impl DeadlineBackend {
    pub fn new(inner: Arc<dyn Backend>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    /// Runs one call within the deadline; one cut short is an error naming the call.
    async fn bounded<T>(
        &self,
        op: &'static str,
        key: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Deadline {
                op,
                store: self.inner.location(),
                key: key.to_owned(),
                limit: self.limit,
            }),
        }
    }
}

#[async_trait]
impl Backend for DeadlineBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        self.bounded("put", key, self.inner.put_if_absent(key, data))
            .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.bounded("get", key, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.bounded("get", key, self.inner.get_range(key, range))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.bounded("list", prefix, self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bounded("delete", key, self.inner.delete(key)).await
    }

    async fn delete_many(&self, keys: &[String], concurrency: usize) -> Result<(), StoreError> {
        // Each batch of a thousand (S3's DeleteObjects limit) within the deadline, not all of them.
        for batch in keys.chunks(1000) {
            self.bounded(
                "delete",
                &batch[0],
                self.inner.delete_many(batch, concurrency),
            )
            .await?;
        }
        Ok(())
    }
}
