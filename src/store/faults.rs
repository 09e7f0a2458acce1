//! Fault injection for tests: a [`Backend`] wrapper that fails puts and truncates reads on command.
//!
//! It lives in the library (not under `tests/`) so that unit and integration tests share it; nothing in
//! the command line uses it.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, ObjectInfo, PutOutcome, PutPayload, StoreError};

/// Which operations fail. Counters start at 1 with the first call of each kind.
#[derive(Debug, Default, Clone)]
pub struct FaultPlan {
    /// Every put after this many successful ones fails (a connection lost mid-backup).
    pub fail_puts_after: Option<u64>,
    /// Every n-th put fails.
    pub fail_every_nth_put: Option<u64>,
    /// Every n-th read returns only half of the asked bytes, as a broken body would.
    pub truncate_every_nth_get: Option<u64>,
    /// Only keys starting with this are affected (e.g. `data/`); `None` means every key.
    pub only_prefix: Option<String>,
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: FaultPlan,
    puts: AtomicU64,
    gets: AtomicU64,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        }
    }

    fn affects(&self, key: &str) -> bool {
        self.plan
            .only_prefix
            .as_deref()
            .is_none_or(|p| key.starts_with(p))
    }

    fn injected(&self, op: &'static str, key: &str) -> StoreError {
        StoreError::Backend {
            op,
            store: self.location(),
            key: key.to_owned(),
            source: "injected fault".into(),
        }
    }

    fn truncate_now(&self, key: &str) -> bool {
        if !self.affects(key) {
            return false;
        }
        let n = self.gets.fetch_add(1, Ordering::SeqCst) + 1;
        self.plan
            .truncate_every_nth_get
            .is_some_and(|k| n.is_multiple_of(k))
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        if self.affects(key) {
            let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
            let after = self.plan.fail_puts_after.is_some_and(|a| n > a);
            let nth = self
                .plan
                .fail_every_nth_put
                .is_some_and(|k| n.is_multiple_of(k));
            if after || nth {
                return Err(self.injected("put", key));
            }
        }
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let data = self.inner.get(key).await?;
        if self.truncate_now(key) {
            return Ok(data.slice(..data.len() / 2));
        }
        Ok(data)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let data = self.inner.get_range(key, range).await?;
        if self.truncate_now(key) {
            return Ok(data.slice(..data.len() / 2));
        }
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}
