//! heirloom-backup: backup and point-in-time restore into encrypted, deduplicated object storage.
//!
//! Dependencies point one way: `cli -> jobs -> engine -> pipeline -> repo -> store`. `unsafe` is forbidden in
//! the whole crate (`[lints]` in Cargo.toml).

pub mod config;
pub mod engine;
pub mod jobs;
pub mod pipeline;
pub mod progress;
pub mod redact;
pub mod repo;
pub mod store;
