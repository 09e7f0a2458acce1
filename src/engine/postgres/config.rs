//! A PostgreSQL source or target in `heirloom.yaml`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::{check_url, FieldError};
use crate::restore::target::Destination;

pub const NAME: &str = "postgres";
pub const SCHEMES: &[&str] = &["postgres", "postgresql"];

/// `{ kind: postgres, url: postgres://..., data_dir: /var/lib/postgresql/data, mode: physical }`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The connection every backup runs on (and streaming's replication connection).
    pub url: Option<String>,
    /// The data directory, read directly when this host can (else `pg_basebackup` streams it).
    pub data_dir: Option<PathBuf>,
    pub mode: Option<Mode>,
}

/// How `backup SOURCE` copies the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The cluster's files and the WAL that makes them consistent (the default).
    Physical,
    /// `pg_dump -Fc` of the database the URL names.
    Logical,
}

impl SourceConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.url {
            check_url(url, NAME, SCHEMES).map_err(|why| ("url".to_owned(), why))?;
        }
        if self.url.is_none() && self.data_dir.is_none() {
            return Err((
                "url".into(),
                "a PostgreSQL source needs url (every backup runs on a connection), and data_dir to read the files itself".into(),
            ));
        }
        if self.mode == Some(Mode::Logical) && self.url.is_none() {
            return Err((
                "url".into(),
                "mode: logical runs pg_dump, which needs the connection URL".into(),
            ));
        }
        Ok(())
    }
}

/// `{ kind: postgres, data_dir: /restore/pgdata }` (a physical restore, then recovery) or
/// `{ kind: postgres, url: postgres://... }` (a running server: a logical restore, or an instant
/// through a scratch cluster).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl TargetConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        match (&self.url, &self.data_dir) {
            (Some(url), None) => check_url(url, NAME, SCHEMES).map_err(|why| ("url".into(), why)),
            (None, Some(_)) => Ok(()),
            (None, None) => Err((
                String::new(),
                "needs url (a running server) or data_dir (a directory to restore into)".into(),
            )),
            (Some(_), Some(_)) => Err((
                String::new(),
                "give url (a running server) or data_dir (a directory to restore into), not both"
                    .into(),
            )),
        }
    }

    pub fn destination(&self) -> Destination {
        match (&self.data_dir, &self.url) {
            (Some(dir), _) => Destination::Directory(dir.clone()),
            (None, Some(url)) => Destination::Server(url.clone()),
            (None, None) => Destination::Directory(PathBuf::new()),
        }
    }
}
