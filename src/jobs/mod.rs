//! The library's entry points: back up or stream a named source, verify; called alike by the command
//! line and, next, by the agent. A job takes one [`JobContext`] (the open repository, how much to do
//! at once, where progress goes) and the config; it chooses the engine and the mode, and the caller
//! only prints or records what it returns.

mod backup;
mod stream;
mod verify;

use std::time::Duration;

use crate::engine::mysql::MyError;
use crate::engine::postgres::PgError;
use crate::pipeline::Concurrency;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};

pub use backup::{backup_source, BackupRequest};
pub use stream::{stream_source, StreamOutcome, StreamRequest};
pub use verify::verify;

/// What every job needs.
#[derive(Clone)]
pub struct JobContext {
    pub repo: Repository,
    pub concurrency: Concurrency,
    pub progress: Progress,
}

impl JobContext {
    pub fn new(repo: Repository, concurrency: Concurrency) -> Self {
        Self {
            repo,
            concurrency,
            progress: Progress::none(),
        }
    }

    /// The same context, reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Mysql(#[from] MyError),
    /// The job was asked for something the config or the request does not allow (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl JobError {
    /// True when stored data is damaged or missing (exit code 3).
    pub fn is_integrity(&self) -> bool {
        match self {
            JobError::Repo(e) => e.is_integrity(),
            JobError::Postgres(e) => e.is_integrity(),
            JobError::Mysql(e) => e.is_integrity(),
            JobError::Usage(_) => false,
        }
    }

    /// True for a misuse rather than a failure (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            JobError::Usage(_) | JobError::Repo(RepoError::Invalid(_))
        )
    }
}

/// The PostgreSQL archive's default wait for a backup's last WAL segment, as pgBackRest's.
pub const DEFAULT_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);
