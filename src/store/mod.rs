//! Object stores: one small trait ([`Backend`]) that every store implements, opened from a URL.
//!
//! The repository talks only to [`Store`]. Behaviour is added by wrapping a backend (fault injection in
//! tests), not by flags threaded through every call. Every write is create-if-absent: nothing that is
//! stored is ever overwritten in place.

pub mod deadline;
mod error;
pub mod faults;
mod local;
pub mod metered;
mod object;
mod open;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
pub use object_store::PutPayload;

pub use error::StoreError;
pub use local::LocalBackend;
pub use object::ObjectStoreBackend;
pub use open::{check_url_shape, open_store, parse_duration, StoreOptions};

/// What a create-if-absent put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and is now durably stored.
    Created,
    /// An object already existed under that key; it was left untouched.
    AlreadyExists,
}

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key relative to the repository root, with `/` separators.
    pub key: String,
    pub size: u64,
    /// When the object was written, as the store says (a file's modification time); `None` where
    /// it says nothing. Object Lock's retention counts from it.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// The operations the repository needs from a store, on keys relative to the repository root.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A human-readable location, used in messages (`s3://bucket/prefix`).
    fn location(&self) -> String;

    /// Stores `data` (the concatenation of its parts) under `key` unless an object is already there.
    /// Returns only once the object is durable.
    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError>;

    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Reads `range` of an object; a short answer is an error.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// Lists every object whose key starts with `prefix` (a folder such as `index/`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes `keys` (missing ones are not an error): in batches where the store has a batch
    /// call (S3's DeleteObjects takes a thousand keys a request), else one by one, `concurrency`
    /// at a time.
    async fn delete_many(&self, keys: &[String], concurrency: usize) -> Result<(), StoreError> {
        use futures::{StreamExt, TryStreamExt};
        for batch in keys.chunks(1000) {
            let deletes: Vec<_> = batch.iter().map(|key| self.delete(key)).collect();
            futures::stream::iter(deletes)
                .buffer_unordered(concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(())
    }
}

/// How long a lease taken through a store lasts unless renewed, unless `lease_ttl` says otherwise.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A cheaply clonable handle on a backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    lease_ttl: std::time::Duration,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// Leases taken through this store last `ttl` unless renewed (renewed every third of it).
    pub fn with_lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The same store, its requests and bytes counted in `meter`.
    pub fn metered(self, meter: Arc<metered::StoreMeter>) -> Self {
        Self {
            backend: Arc::new(metered::MeteredBackend::new(self.backend, meter)),
            lease_ttl: self.lease_ttl,
        }
    }

    /// How long a lease lasts unless renewed (`lease_ttl`, 5 minutes by default).
    pub fn lease_ttl(&self) -> std::time::Duration {
        self.lease_ttl
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    pub async fn put_if_absent(
        &self,
        key: &str,
        data: impl Into<PutPayload>,
    ) -> Result<PutOutcome, StoreError> {
        self.backend.put_if_absent(key, data.into()).await
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.backend.get(key).await
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.backend.get_range(key, range).await
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = self.backend.list(prefix).await?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.backend.delete(key).await
    }

    /// Deletes `keys`, in batches where the store can (see [`Backend::delete_many`]).
    pub async fn delete_many(&self, keys: &[String], concurrency: usize) -> Result<(), StoreError> {
        self.backend.delete_many(keys, concurrency).await
    }
}
