//! The record of a restore drill: one object per drill, written once when it ends, passed or
//! failed, so that the repository itself holds the evidence that its backups restore (the audit
//! cites it).

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::crypto::MetaKind;
use super::layout::{drill_record_key, ObjectKind};
use super::manifest::{BackupId, BackupKind};
use super::source::SourceName;
use super::{RepoError, Repository};

/// One drill: what was restored, from what, where, how long it took, and what the checks found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillRecord {
    pub version: u32,
    pub source: SourceName,
    /// The source's engine (`postgres`, `mysql`).
    pub engine: String,
    /// When the drill began (before planning) and ended (after the checks and clean-up).
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub host: String,
    /// The heirloom-backup version that ran it.
    pub tool_version: String,
    /// The point restored to.
    pub point: DrillPoint,
    /// Where it was restored: a scratch server the drill started and removed, or a target.
    pub target: String,
    /// The backup restored first, once the plan chose it.
    pub backup: Option<BackupId>,
    pub backup_kind: Option<BackupKind>,
    pub backup_consistent_at: Option<DateTime<Utc>>,
    /// The log replayed after the backup.
    pub log: Option<DrillLog>,
    /// The commit time of the last transaction the restored database holds, when the server
    /// says it (PostgreSQL's last replayed transaction, MariaDB's last replayed binlog event).
    pub reached: Option<DateTime<Utc>>,
    /// Seconds from the start of planning until the restored server accepted connections with
    /// its recovery ended: the recovery time a real restore of this size takes.
    pub restore_seconds: f64,
    /// Seconds the checks took after that.
    pub check_seconds: f64,
    /// Every check run, in order, with its result.
    pub checks: Vec<DrillCheck>,
    /// Rows of every table of the restored databases.
    pub tables: Vec<TableRows>,
    /// Every check passed and nothing failed on the way.
    pub passed: bool,
    /// Why the drill failed, when it did: the first error, naming its object.
    pub failure: Option<String>,
}

/// The point a drill restored to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillPoint {
    /// `latest` (everything stored) or `time`.
    pub kind: String,
    /// The instant, for `time`.
    pub at: Option<DateTime<Utc>>,
    /// The instant was drawn at random from this point-in-time window (`[from, to]`).
    pub drawn_from: Option<[DateTime<Utc>; 2]>,
}

/// The log a drill replayed: first and last object as their names say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillLog {
    /// `WAL` or `binlog`.
    pub log: String,
    pub first: String,
    pub last: String,
    pub objects: u64,
    /// Transactions replayed, when the engine counts them.
    pub transactions: Option<u64>,
}

/// One check of a restored database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillCheck {
    /// What was checked (`started`, `recovery ended`, `pg_amcheck`, `CHECK TABLE shop.orders`).
    pub name: String,
    pub passed: bool,
    /// What it found, in words.
    pub detail: String,
}

/// A table of the restored database and its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRows {
    /// `database.schema.table` (PostgreSQL) or `database.table` (MariaDB).
    pub table: String,
    pub rows: u64,
}

/// The newest record version this build writes and reads.
pub const DRILL_RECORD_VERSION: u32 = 1;

impl Repository {
    /// Writes `record` (its time is `record.finished`); returns its key.
    pub async fn record_drill(&self, record: &DrillRecord) -> Result<String, RepoError> {
        let key = drill_record_key(
            record.source.as_str(),
            record.finished,
            rand::rngs::OsRng.next_u64(),
        );
        self.put_sealed_json(MetaKind::DrillRecord, &key, record)
            .await?;
        Ok(key)
    }

    /// Every drill's record with its key, oldest first within a source; of `source`, or of all.
    pub async fn drill_records(
        &self,
        source: Option<&SourceName>,
    ) -> Result<Vec<(String, DrillRecord)>, RepoError> {
        let records: Vec<(String, DrillRecord)> = self
            .sealed_records(
                ObjectKind::DrillRecord,
                MetaKind::DrillRecord,
                DRILL_RECORD_VERSION,
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|(_, r)| source.is_none_or(|s| r.source == *s))
            .collect())
    }
}
