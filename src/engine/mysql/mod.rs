//! MySQL and MariaDB: consistent dumps, the binlog streamed as a replica (or pushed from a data
//! directory), and point-in-time restore by replaying the binlog in one client session.

pub mod binlog;
mod chain;
mod config;
pub mod coverage;
mod drill;
pub mod dump;
mod error;
mod fill;
pub mod physical;
pub mod plan;
mod private_server;
pub mod push;
pub mod restore;
pub mod resume;
pub mod retention;
pub mod segment;
pub mod server;
mod source;
pub mod stream;
mod tls;

pub use chain::StreamReport;
pub use config::{Mode, SourceConfig, TargetConfig, NAME, SCHEMES};
pub use error::MyError;
pub use source::{open, owns};
