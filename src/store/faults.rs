//! Fault injection for tests: a [`Backend`] wrapper that fails, stalls, truncates, duplicates and
//! hides store calls on command, as a real store or the network between does.
//!
//! It lives in the library (not under `tests/`) so that unit and integration tests share it; nothing in
//! the command line uses it.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, ObjectInfo, PutOutcome, PutPayload, StoreError};

/// Which operations fail. Counters start at 1 with the first call of each kind (puts, gets and
/// ranged gets together, lists, deletes, and every call for `stall_nth_call`).
#[derive(Debug, Default, Clone)]
pub struct FaultPlan {
    /// Every put after this many successful ones fails (a connection lost mid-backup).
    pub fail_puts_after: Option<u64>,
    /// Every n-th put fails.
    pub fail_every_nth_put: Option<u64>,
    /// Every n-th read returns only half of the asked bytes, as a broken body would.
    pub truncate_every_nth_get: Option<u64>,
    /// The n-th put fails before reaching the store.
    pub fail_nth_put: Option<u64>,
    /// The n-th read (whole or ranged) fails.
    pub fail_nth_get: Option<u64>,
    /// The n-th listing fails.
    pub fail_nth_list: Option<u64>,
    /// The n-th delete fails (each key of a batch counts as one).
    pub fail_nth_delete: Option<u64>,
    /// The n-th read returns half of its bytes.
    pub truncate_nth_get: Option<u64>,
    /// The n-th call, of any kind, waits this long before it goes on: a store that stops
    /// answering, met by the caller's deadline.
    pub stall_nth_call: Option<(u64, Duration)>,
    /// The n-th put is stored, then reported as failed: the answer was lost on its way back.
    pub lose_answer_of_nth_put: Option<u64>,
    /// The n-th put is delivered twice, as a client retrying a request that had arrived does: the
    /// first stores the object, and the caller gets the second's answer, "already exists".
    pub duplicate_nth_put: Option<u64>,
    /// Listings leave out the objects this backend created in its last n puts: a store whose
    /// listings lag behind its writes.
    pub list_lags_puts: Option<usize>,
    /// Only keys starting with this are affected (e.g. `data/`); `None` means every key.
    pub only_prefix: Option<String>,
}

/// How many calls of each kind a backend has seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallCounts {
    pub puts: u64,
    pub gets: u64,
    pub lists: u64,
    pub deletes: u64,
    pub calls: u64,
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: FaultPlan,
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    calls: AtomicU64,
    injected: AtomicU64,
    recent_puts: Mutex<VecDeque<String>>,
    last_fault: Mutex<Option<String>>,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            recent_puts: Mutex::new(VecDeque::new()),
            last_fault: Mutex::new(None),
        }
    }

    /// The calls seen so far, faulty or not.
    pub fn counts(&self) -> CallCounts {
        CallCounts {
            puts: self.puts.load(Ordering::SeqCst),
            gets: self.gets.load(Ordering::SeqCst),
            lists: self.lists.load(Ordering::SeqCst),
            deletes: self.deletes.load(Ordering::SeqCst),
            calls: self.calls.load(Ordering::SeqCst),
        }
    }

    /// How many faults were injected.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The key of the last call a fault hit.
    pub fn last_fault(&self) -> Option<String> {
        self.last_fault.lock().ok().and_then(|k| k.clone())
    }

    fn affects(&self, key: &str) -> bool {
        self.plan
            .only_prefix
            .as_deref()
            .is_none_or(|p| key.starts_with(p))
    }

    fn hit(&self, key: &str) {
        self.injected.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = self.last_fault.lock() {
            *last = Some(key.to_owned());
        }
    }

    fn fault(&self, op: &'static str, key: &str) -> StoreError {
        self.hit(key);
        StoreError::Backend {
            op,
            store: self.location(),
            key: key.to_owned(),
            source: "injected fault".into(),
        }
    }

    /// Counts one call; waits when it is the one planned to stall.
    async fn call(&self, key: &str) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, pause)) = self.plan.stall_nth_call {
            if n == at && self.affects(key) {
                self.hit(key);
                tokio::time::sleep(pause).await;
            }
        }
    }

    fn next(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether the read numbered `n` returns half its bytes.
    fn truncates(&self, n: u64, key: &str) -> bool {
        let every = self
            .plan
            .truncate_every_nth_get
            .is_some_and(|k| n.is_multiple_of(k));
        let once = self.plan.truncate_nth_get == Some(n);
        let hit = self.affects(key) && (every || once);
        if hit {
            self.hit(key);
        }
        hit
    }

    async fn read(
        &self,
        key: &str,
        read: impl std::future::Future<Output = Result<Bytes, StoreError>>,
    ) -> Result<Bytes, StoreError> {
        self.call(key).await;
        let n = Self::next(&self.gets);
        if self.affects(key) && self.plan.fail_nth_get == Some(n) {
            return Err(self.fault("get", key));
        }
        let data = read.await?;
        if self.truncates(n, key) {
            return Ok(data.slice(..data.len() / 2));
        }
        Ok(data)
    }

    fn remember_put(&self, key: &str) {
        let Some(keep) = self.plan.list_lags_puts else {
            return;
        };
        if let Ok(mut recent) = self.recent_puts.lock() {
            recent.push_back(key.to_owned());
            while recent.len() > keep {
                recent.pop_front();
            }
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        self.call(key).await;
        let n = Self::next(&self.puts);
        if !self.affects(key) {
            return self.inner.put_if_absent(key, data).await;
        }
        let after = self.plan.fail_puts_after.is_some_and(|a| n > a);
        let nth = self
            .plan
            .fail_every_nth_put
            .is_some_and(|k| n.is_multiple_of(k));
        if after || nth || self.plan.fail_nth_put == Some(n) {
            return Err(self.fault("put", key));
        }
        if self.plan.lose_answer_of_nth_put == Some(n) {
            self.inner.put_if_absent(key, data).await?;
            self.remember_put(key);
            return Err(self.fault("put", key));
        }
        let outcome = self.inner.put_if_absent(key, data.clone()).await?;
        if outcome == PutOutcome::Created {
            self.remember_put(key);
        }
        if self.plan.duplicate_nth_put == Some(n) {
            self.hit(key);
            return self.inner.put_if_absent(key, data).await;
        }
        Ok(outcome)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.read(key, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.read(key, self.inner.get_range(key, range)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.call(prefix).await;
        let n = Self::next(&self.lists);
        if self.affects(prefix) && self.plan.fail_nth_list == Some(n) {
            return Err(self.fault("list", prefix));
        }
        let mut objects = self.inner.list(prefix).await?;
        if self.plan.list_lags_puts.is_some() {
            let recent = self
                .recent_puts
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            let before = objects.len();
            objects.retain(|o| !recent.contains(&o.key));
            if objects.len() < before {
                self.hit(prefix);
            }
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(key).await;
        let n = Self::next(&self.deletes);
        if self.affects(key) && self.plan.fail_nth_delete == Some(n) {
            return Err(self.fault("delete", key));
        }
        self.inner.delete(key).await
    }
}
