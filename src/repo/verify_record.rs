//! The record of a `verify`: one object per run, written once when it ends, so that the
//! repository itself says when it was last checked, how much of it was read, and what was found
//! (the audit cites it).

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::crypto::MetaKind;
use super::layout::{verify_record_key, ObjectKind};
use super::{RepoError, Repository};

/// One thing a verify found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoundProblem {
    pub object: String,
    pub problem: String,
}

/// What one verify checked and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRecord {
    pub version: u32,
    /// When the verify began, and when it ended.
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub host: String,
    /// The heirloom-backup version that ran it.
    pub tool_version: String,
    /// What `--read-data` read back: `all`, a part `N/T`, or a share `P%`; `None`: the
    /// structure only (every object listed and opened that is not data).
    pub read_data: Option<String>,
    pub index_files: u64,
    pub packs: u64,
    pub backups: u64,
    pub wal_files: u64,
    pub wal_files_read: u64,
    pub binlog_segments: u64,
    pub binlog_segments_read: u64,
    pub packs_read: u64,
    pub chunks_read: u64,
    pub bytes_read: u64,
    pub unindexed_packs: u64,
    pub unknown_objects: u64,
    pub problems: Vec<FoundProblem>,
}

/// The newest record version this build writes and reads.
pub const VERIFY_RECORD_VERSION: u32 = 1;

impl Repository {
    /// Writes `record` (its time is `record.finished`); returns its key.
    pub async fn record_verify(&self, record: &VerifyRecord) -> Result<String, RepoError> {
        let key = verify_record_key(record.finished, rand::rngs::OsRng.next_u64());
        self.put_sealed_json(MetaKind::VerifyRecord, &key, record)
            .await?;
        Ok(key)
    }

    /// Every verify's record with its key, oldest first.
    pub async fn verify_records(&self) -> Result<Vec<(String, VerifyRecord)>, RepoError> {
        self.sealed_records(
            ObjectKind::VerifyRecord,
            MetaKind::VerifyRecord,
            VERIFY_RECORD_VERSION,
        )
        .await
    }
}
