use std::io;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failure of the object store, naming the store and the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found in {store}")]
    NotFound { store: String, key: String },

    #[error("object {key} in {store} is truncated: expected {expected} bytes, got {got}")]
    Truncated {
        store: String,
        key: String,
        expected: u64,
        got: u64,
    },

    #[error("{op} of {key} in {store} failed: {source}")]
    Backend {
        op: &'static str,
        store: String,
        key: String,
        #[source]
        source: BoxError,
    },

    #[error("{op} of {key} in {store} failed: {source}")]
    Io {
        op: &'static str,
        store: String,
        key: String,
        #[source]
        source: io::Error,
    },

    #[error("{op} of {key} in {store} did not finish within {limit:?} (the store's retry_timeout): the store is not answering")]
    Deadline {
        op: &'static str,
        store: String,
        key: String,
        limit: std::time::Duration,
    },

    #[error("the bucket or container of {store} does not exist, or cannot be reached with these credentials: {source}")]
    NoBucket {
        store: String,
        #[source]
        source: BoxError,
    },

    #[error("repository URL {url:?}: {why}")]
    BadUrl { url: String, why: String },

    #[error("repository option {option:?}: {why}")]
    BadOption { option: String, why: String },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
