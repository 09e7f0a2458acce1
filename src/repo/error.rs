use super::format::ConfigObjectError;
use super::lease::LeaseError;
use crate::store::StoreError;

/// A failure of a repository operation, naming what it was about.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Lease(#[from] LeaseError),

    #[error("no repository at {location}: {key} is missing (run `heirloom-backup init` first)")]
    NotARepository { location: String, key: &'static str },

    #[error("a repository already exists at {location}")]
    AlreadyInitialized { location: String },

    #[error("{key} in {location}: {source}")]
    Config {
        location: String,
        key: &'static str,
        #[source]
        source: ConfigObjectError,
    },

    #[error("no key in {location}/keys opens with {tried_with}: {candidates} {kind} key(s) tried, {others} key(s) of the other kind not tried")]
    WrongKey {
        location: String,
        tried_with: String,
        candidates: usize,
        kind: &'static str,
        others: usize,
    },

    #[error("key {id} not found in {location}/keys")]
    KeyNotFound { location: String, id: String },

    #[error("refusing to remove key {id}: it is the last key, and without it the repository cannot be opened")]
    LastKey { id: String },

    #[error("integrity: {object}: {why}")]
    Corrupt { object: String, why: String },

    #[error("backup {0:?} not found")]
    BackupNotFound(String),

    #[error("backup prefix {prefix:?} is ambiguous: {matches}")]
    AmbiguousBackup { prefix: String, matches: String },

    #[error("the input is empty, so nothing was recorded: a producer that failed before writing looks exactly like this; run it as `backup --source NAME -- COMMAND ARGS...` so its exit status counts, or pass --allow-empty if an empty backup is what you mean")]
    EmptyInput,

    #[error("reading the input: {0}")]
    Input(#[source] std::io::Error),

    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),

    /// A request the repository cannot take (exit code 2).
    #[error("{0}")]
    Invalid(String),

    /// An object that exists with other content: objects are never overwritten.
    #[error("{0} already exists with other content; objects are never overwritten")]
    Conflict(String),

    /// A failure of this program rather than of the request or the data (a worker task that
    /// panicked, a value that would not serialize).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RepoError {
    pub fn corrupt(object: impl Into<String>, why: impl Into<String>) -> Self {
        RepoError::Corrupt {
            object: object.into(),
            why: why.into(),
        }
    }

    /// True for failures that mean stored data is damaged or missing (exit code 3).
    pub fn is_integrity(&self) -> bool {
        matches!(self, RepoError::Corrupt { .. })
            || matches!(self, RepoError::Store(StoreError::Truncated { .. }))
    }

    /// True when the output pipe was closed by its reader: a normal end for `cat | head`.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, RepoError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
