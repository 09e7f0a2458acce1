//! What a restore will do, in one shape every engine fills: printed by `--dry-run`, written by
//! `--json`, and read by the audit and restore drills.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::point::RestorePoint;
use crate::repo::manifest::{BackupId, BackupKind};
use crate::repo::source::SourceName;

/// A restore decided before anything is touched.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub source: SourceName,
    /// The engine (`postgres`, `mysql`).
    pub engine: &'static str,
    /// The point asked for, as understood.
    pub point: RestorePoint,
    /// Where the restore goes (passwords removed), and how it gets there.
    pub into: String,
    pub method: String,
    /// The backup restored first.
    pub backup: BackupId,
    pub backup_kind: BackupKind,
    pub backup_consistent_at: DateTime<Utc>,
    /// The log replayed after the backup: first and last object, as their names say.
    pub log: Option<LogRange>,
    /// Bytes read from the repository: the backup's files, then the log.
    pub backup_bytes: u64,
    pub log_bytes: u64,
    /// Every hole in the log between the backup and the point, with its exact range.
    pub gaps: Vec<Gap>,
    /// Timeline switches (PostgreSQL) or failovers (MySQL/MariaDB) the replay crosses.
    pub crossings: Vec<String>,
    /// Why the restore cannot be carried out, when it cannot: such a plan is refused, and
    /// `--dry-run` exits 3.
    pub problem: Option<String>,
    /// The engine's own plan, field by field.
    pub detail: serde_json::Value,
}

/// The span of log objects a restore replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRange {
    /// `WAL` or `binlog`.
    pub log: &'static str,
    pub first: String,
    pub last: String,
    /// How many objects (WAL segments, binlog segments) the range holds.
    pub objects: usize,
}

/// A hole in a log: `first ..= last` are missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub log: &'static str,
    pub first: String,
    pub last: String,
    /// The restore cannot be done across it (a hole the backup or the point needs).
    pub blocking: bool,
    pub why: String,
}

impl PlanSummary {
    /// The restore can be carried out as planned.
    pub fn is_complete(&self) -> bool {
        self.problem.is_none()
    }
}
