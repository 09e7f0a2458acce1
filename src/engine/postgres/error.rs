use crate::repo::RepoError;
use crate::store::StoreError;

/// A failure of PostgreSQL work, naming the server, file, segment or setting it is about.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Repo(#[from] RepoError),

    #[error("PostgreSQL at {server}: {source}")]
    Sql {
        server: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),

    #[error("WAL from another cluster: {file} has system identifier {found}, but source {source_name} is cluster {expected}")]
    OtherCluster {
        file: String,
        found: String,
        source_name: String,
        expected: String,
    },

    #[error("{name} is already archived for source {source_name} with different contents; the stored copy is left untouched")]
    WalConflict { name: String, source_name: String },

    #[error("{name} is not in the archive of source {source_name}")]
    WalNotFound { name: String, source_name: String },

    /// The repository does not hold what a restore needs (an integrity failure, exit code 3).
    #[error("{0}")]
    Unrestorable(String),
}

impl From<StoreError> for PgError {
    fn from(e: StoreError) -> Self {
        PgError::Repo(RepoError::Store(e))
    }
}

impl PgError {
    /// True when stored data is damaged or missing (exit code 3).
    pub fn is_integrity(&self) -> bool {
        match self {
            PgError::Repo(e) => e.is_integrity(),
            PgError::Unrestorable(_) => true,
            _ => false,
        }
    }

    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        PgError::Io {
            path: path.to_string(),
            source,
        }
    }
}

impl crate::context::EngineFailure for PgError {
    fn is_integrity(&self) -> bool {
        PgError::is_integrity(self)
    }
}

impl From<PgError> for crate::context::JobError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Repo(e) => crate::context::JobError::Repo(e),
            e => crate::context::JobError::Engine(Box::new(e)),
        }
    }
}
