//! heirloom-backup: backup and point-in-time restore into encrypted, deduplicated object storage.
//!
//! Dependencies point one way: `cli -> pipeline -> repo -> store`.

#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod pipeline;
pub mod redact;
pub mod repo;
pub mod store;
