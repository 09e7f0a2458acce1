//! heirloom-backup: backup and point-in-time restore into encrypted, deduplicated object storage.
//!
//! Dependencies point one way: `cli -> jobs -> engine -> (restore, pipeline) -> repo -> store`;
//! `context` (what a job runs with) and `position` (LSNs, GTIDs) are below them all. `unsafe` is
//! forbidden in the whole crate (`[lints]` in Cargo.toml).

pub mod agent;
pub mod audit;
pub mod config;
pub mod context;
pub mod engine;
pub mod host;
pub mod jobs;
pub mod pipeline;
pub mod position;
pub mod progress;
pub mod redact;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod store;
pub mod units;
