//! PostgreSQL: physical base backups (a local data directory, or `pg_basebackup`), logical ones
//! (`pg_dump`), WAL archiving (`wal-push`, `wal-fetch`) and streaming, and point-in-time restore
//! into a data directory or, through a scratch cluster, into a running server.

pub mod basebackup;
pub mod check;
mod config;
pub mod conninfo;
pub mod coverage;
mod datadir;
pub mod delta;
mod drill;
mod error;
pub mod logical;
pub mod names;
pub mod plan;
pub mod restore;
pub mod retention;
pub mod scratch;
pub mod server;
pub mod snapshot;
mod source;
pub mod stream;
mod target_dir;
mod tls;
pub mod wal;
pub mod wal_object;

pub use config::{Mode, SourceConfig, TargetConfig, NAME, SCHEMES};
pub use error::PgError;
pub use source::{open, owns};
