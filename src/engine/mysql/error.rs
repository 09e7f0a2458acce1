use crate::repo::RepoError;
use crate::store::StoreError;

/// A failure of MySQL/MariaDB work, naming the server, segment, file or setting it is about.
#[derive(Debug, thiserror::Error)]
pub enum MyError {
    #[error(transparent)]
    Repo(#[from] RepoError),

    #[error("MySQL server {server}: {source}")]
    Sql {
        server: String,
        #[source]
        source: mysql_async::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),

    #[error("binary logging is off on {server}: start it with log_bin (e.g. --log-bin=binlog) and a server_id, so the binlog can be streamed and replayed")]
    BinlogOff { server: String },

    #[error("binlog segment {key} is damaged: {why}")]
    CorruptSegment { key: String, why: String },

    #[error("{server} is behind the stored binlog (it has {has}, the store {stored}): a replica still catching up, or a new primary that lost the last transactions and has written none since; waiting")]
    Behind {
        server: String,
        has: String,
        stored: String,
    },

    #[error("binlog gap for source {source_name}: {why}")]
    Gap { source_name: String, why: String },
}

impl From<StoreError> for MyError {
    fn from(e: StoreError) -> Self {
        MyError::Repo(RepoError::Store(e))
    }
}

impl MyError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        MyError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub fn sql(server: &str, source: mysql_async::Error) -> Self {
        MyError::Sql {
            server: server.to_owned(),
            source,
        }
    }

    /// Whether the failure is damaged stored data (exit code 3).
    pub fn is_integrity(&self) -> bool {
        match self {
            MyError::Repo(e) => e.is_integrity(),
            MyError::CorruptSegment { .. } => true,
            _ => false,
        }
    }
}

impl crate::context::EngineFailure for MyError {
    fn is_integrity(&self) -> bool {
        MyError::is_integrity(self)
    }
}

impl From<MyError> for crate::context::JobError {
    fn from(e: MyError) -> Self {
        match e {
            MyError::Repo(e) => crate::context::JobError::Repo(e),
            e => crate::context::JobError::Engine(Box::new(e)),
        }
    }
}
