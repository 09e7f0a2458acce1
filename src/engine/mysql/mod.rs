//! MySQL and MariaDB: consistent dumps, the binlog streamed as a replica (or pushed from a data
//! directory), and point-in-time restore by replaying the binlog in one client session.

pub mod binlog;
mod chain;
pub mod dump;
mod error;
mod fill;
pub mod physical;
pub mod plan;
pub mod push;
pub mod restore;
pub mod segment;
pub mod server;
pub mod stream;

pub use error::MyError;
