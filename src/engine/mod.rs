//! Database engines: how a database is backed up into the repository and rebuilt from it.
//!
//! An engine knows its database and nothing of the command line; it talks to the repository only
//! through `repo` and `pipeline`.

pub mod mysql;
pub mod postgres;
pub mod private_dir;
pub mod process;
