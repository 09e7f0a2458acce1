//! PostgreSQL: physical base backups of a local data directory, WAL archiving (`wal-push`,
//! `wal-fetch`), and point-in-time restore into a data directory.

pub mod basebackup;
pub mod check;
pub mod conninfo;
mod datadir;
mod error;
pub mod logical;
pub mod names;
pub mod restore;
pub mod scratch;
pub mod server;
pub mod snapshot;
pub mod stream;
pub mod wal;
mod wal_object;

pub use error::PgError;
