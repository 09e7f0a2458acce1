//! Restores, in words every engine shares: where a restore stops ([`point::RestorePoint`]), where
//! it goes ([`target::resolve_target`]), and what it will do ([`summary::PlanSummary`]).
//!
//! Each engine plans its own restores from these, as a pure function of what it read first
//! (`engine/postgres/plan.rs`, `engine/mysql/plan.rs`), and carries them out; the job that ties a
//! source, a target and a point together is `jobs::restore`. This module sits below the engines,
//! so they can speak its types without reaching up.

pub mod point;
pub mod summary;
pub mod target;
