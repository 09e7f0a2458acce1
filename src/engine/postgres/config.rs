//! A PostgreSQL source or target in `heirloom.yaml`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::{check_url, FieldError, ServerOrDirectory};
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
#[serde(transparent)]
pub struct TargetConfig(pub ServerOrDirectory);

impl TargetConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        self.0.check(NAME, SCHEMES)
    }

    pub fn destination(&self) -> Destination {
        self.0.destination()
    }
}
