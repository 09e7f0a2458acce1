//! Retention: policies (what a source keeps, for how long), and the selection of what they keep,
//! as a pure function of the backups, the log, the holds, the policy and the instant.
//!
//! Still to come on top of this (issue 11): holds stored in the repository, the log objects that
//! follow the selection, prune with two-phase garbage collection, and Object Lock.

pub mod policy;
pub mod select;
