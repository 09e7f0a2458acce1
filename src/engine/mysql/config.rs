//! A MySQL/MariaDB source or target in `heirloom.yaml`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::{check_url, FieldError, ServerOrDirectory};
use crate::restore::target::Destination;

pub const NAME: &str = "mysql";
pub const SCHEMES: &[&str] = &["mysql", "mariadb"];

/// `{ kind: mysql, url: mysql://user:password@host:port, data_dir: /var/lib/mysql, mode: physical }`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub url: Option<String>,
    /// The data directory: what `mode: physical` copies, and where `binlog-push` finds the binlog.
    pub data_dir: Option<PathBuf>,
    pub mode: Option<Mode>,
}

/// How `backup SOURCE` copies the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `mariabackup` of the data directory.
    Physical,
    /// `mariadb-dump` in one consistent snapshot (the default).
    #[serde(alias = "dump")]
    Logical,
}

impl SourceConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        let Some(url) = &self.url else {
            return Err((
                "url".into(),
                "a MySQL/MariaDB source needs url (mysql://user:password@host:port)".into(),
            ));
        };
        check_url(url, NAME, SCHEMES).map_err(|why| ("url".to_owned(), why))?;
        if self.mode == Some(Mode::Physical) && self.data_dir.is_none() {
            return Err((
                "data_dir".into(),
                "mode: physical runs mariabackup, which reads the data directory: give its path"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `{ kind: mysql, url: mysql://... }` (a running server: the dump loaded, the binlog replayed)
/// or `{ kind: mysql, data_dir: /restore/mysql }` (a physical backup prepared, for a server to
/// start on).
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
