//! Any `object_store` implementation (S3, GCS, Azure, memory) as a [`Backend`].

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::{Backend, ObjectInfo, PutOutcome, StoreError};

#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    location: String,
}

impl ObjectStoreBackend {
    /// `prefix` is the folder of the repository inside the bucket ("" for the bucket's root).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, location: String) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        Self {
            inner,
            prefix,
            location,
        }
    }

    fn path(&self, key: &str) -> Path {
        match &self.prefix {
            Some(p) => Path::from(format!("{p}/{key}")),
            None => Path::from(key),
        }
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        // Each cloud names a missing bucket or container in its answer; object_store passes the
        // answer on as text.
        let text = e.to_string();
        if [
            "NoSuchBucket",
            "ContainerNotFound",
            "The specified bucket does not exist",
        ]
        .iter()
        .any(|code| text.contains(code))
        {
            return StoreError::NoBucket {
                store: self.location.clone(),
                source: Box::new(e),
            };
        }
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                store: self.location.clone(),
                key: key.to_owned(),
            },
            other => StoreError::Backend {
                op,
                store: self.location.clone(),
                key: key.to_owned(),
                source: Box::new(other),
            },
        }
    }

    /// Reads `range` (or the whole object). A body that breaks off is resumed by object_store from
    /// the offset reached, after checking that the object's ETag did not change (tests/retries.rs
    /// proves it); what still arrives short is reported as truncated.
    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, StoreError> {
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .inner
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.error("get", key, e))?;
        let expected = result.range.end - result.range.start;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.error("get", key, e))?;
        let wanted = range.map_or(expected, |r| r.end - r.start);
        if bytes.len() as u64 != wanted {
            return Err(StoreError::Truncated {
                store: self.location.clone(),
                key: key.to_owned(),
                expected: wanted,
                got: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }
}

#[async_trait]
impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.inner.put_opts(&self.path(key), data, options).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyExists),
            // A put has no object to miss: what is missing is the bucket or container.
            Err(e @ object_store::Error::NotFound { .. }) => Err(StoreError::NoBucket {
                store: self.location.clone(),
                source: Box::new(e),
            }),
            Err(e) => Err(self.error("put", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.read(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.read(key, Some(range)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_all(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    async fn delete_many(&self, keys: &[String], _concurrency: usize) -> Result<(), StoreError> {
        // A thousand a call: S3's DeleteObjects limit.
        for batch in keys.chunks(1000) {
            let paths: Vec<object_store::Result<Path>> =
                batch.iter().map(|k| Ok(self.path(k))).collect();
            let paths = futures::stream::iter(paths).boxed();
            let mut done = self.inner.delete_stream(paths);
            while let Some(result) = done.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.error("delete", &batch[0], e)),
                }
            }
        }
        Ok(())
    }
}

/// How often a listing whose response body broke off is started again.
const LIST_ATTEMPTS: u32 = 4;

/// A response body that broke off while it was read (the request itself had succeeded).
fn is_broken_body(e: &object_store::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("ResponseBody") || text.contains("IncompleteBody") || text.contains("kind: Body")
}

impl ObjectStoreBackend {
    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        // object_store lists by path segment; list the folder and filter on the full prefix.
        let folder = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let folder_path = match (&self.prefix, folder.is_empty()) {
            (Some(p), true) => Some(p.clone()),
            (Some(p), false) => Some(Path::from(format!("{p}/{folder}"))),
            (None, true) => None,
            (None, false) => Some(Path::from(folder)),
        };
        let strip = self.prefix.as_ref().map(|p| format!("{p}/"));
        // object_store retries a listing request that fails, but not a page whose body breaks
        // off while it is read: start the listing again, a few times (all within the store's deadline).
        let mut attempt = 0;
        let metas: Vec<_> = loop {
            attempt += 1;
            match self
                .inner
                .list(folder_path.as_ref())
                .try_collect::<Vec<_>>()
                .await
            {
                Ok(metas) => break metas,
                Err(e) if attempt < LIST_ATTEMPTS && is_broken_body(&e) => {
                    tracing::debug!(prefix, attempt, error = %e, "listing broke off; listing again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(self.error("list", prefix, e)),
            }
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let key = match &strip {
                    Some(s) => full.strip_prefix(s.as_str())?.to_owned(),
                    None => full,
                };
                key.starts_with(prefix).then_some(ObjectInfo {
                    key,
                    size: m.size,
                    last_modified: Some(m.last_modified),
                })
            })
            .collect())
    }
}
