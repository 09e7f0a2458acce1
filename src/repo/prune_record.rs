//! The record of what a prune deleted: one object per prune, written once before anything is
//! deleted, so the repository itself says what went, when and why.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::crypto::MetaKind;
use super::layout::{prune_record_key, ObjectKind};
use super::manifest::BackupId;
use super::source::SourceName;
use super::{RepoError, Repository};

/// One backup a prune deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    pub backup: BackupId,
    pub source: SourceName,
    /// The instant the backup restored to.
    pub backup_time: DateTime<Utc>,
    /// The policy no rule of which kept it.
    pub policy: String,
}

/// A stretch of one source's log a prune deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedLog {
    pub source: SourceName,
    /// `WAL` or `binlog`.
    pub log: String,
    /// The first and last object of the stretch, as the engine names them.
    pub first: String,
    pub last: String,
    pub objects: u64,
    pub bytes: u64,
    pub why: String,
}

/// A pack garbage collection deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedPack {
    /// 64 hex digits.
    pub pack: String,
    pub bytes: u64,
    /// Why it was marked: `unreferenced`, `unindexed` or `repacked`.
    pub why: super::gc::MarkReason,
}

/// What one prune deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRecord {
    pub version: u32,
    /// The instant the policies were applied at.
    pub at: DateTime<Utc>,
    pub host: String,
    pub deleted: Vec<Deleted>,
    /// Version 2: the log deleted (a version 1 record deleted none).
    #[serde(default)]
    pub logs: Vec<DeletedLog>,
    /// Version 2: the packs garbage collection deleted.
    #[serde(default)]
    pub packs: Vec<DeletedPack>,
}

/// The newest record version this build writes and reads.
const RECORD_VERSION: u32 = 2;

/// What a prune is about to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletions {
    pub backups: Vec<Deleted>,
    pub logs: Vec<DeletedLog>,
    pub packs: Vec<DeletedPack>,
}

impl Deletions {
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty() && self.logs.is_empty() && self.packs.is_empty()
    }
}

impl Repository {
    /// Writes the record of a prune about to delete `deletions`; returns its key.
    pub async fn record_prune(
        &self,
        at: DateTime<Utc>,
        deletions: Deletions,
    ) -> Result<String, RepoError> {
        let key = prune_record_key(at, rand::rngs::OsRng.next_u64());
        let record = PruneRecord {
            version: RECORD_VERSION,
            at,
            host: crate::host::host_name(),
            deleted: deletions.backups,
            logs: deletions.logs,
            packs: deletions.packs,
        };
        self.put_sealed_json(MetaKind::PruneRecord, &key, &record)
            .await?;
        Ok(key)
    }

    /// Every prune's record, oldest first.
    pub async fn prune_records(&self) -> Result<Vec<PruneRecord>, RepoError> {
        let records = self
            .sealed_records(
                ObjectKind::PruneRecord,
                MetaKind::PruneRecord,
                RECORD_VERSION,
            )
            .await?;
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::format::InitParams;
    use crate::repo::keys::KeySource;

    #[tokio::test]
    async fn records_are_written_once_and_read_back_in_order() {
        let store = crate::store::open_store("memory://", &Default::default()).unwrap();
        let repo = Repository::init(
            store,
            &KeySource::passphrase("records"),
            &InitParams::default(),
            Utc::now(),
        )
        .await
        .unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let gone = |n: u32| Deleted {
            backup: format!("20260101T000000.000Z-{n:08x}").parse().unwrap(),
            source: "app".parse().unwrap(),
            backup_time: at("2026-01-01T00:00:00Z"),
            policy: "three-year".into(),
        };
        let only = |d: Deleted| Deletions {
            backups: vec![d],
            ..Deletions::default()
        };
        let second = repo
            .record_prune(at("2026-03-01T00:00:00Z"), only(gone(2)))
            .await
            .unwrap();
        let first = repo
            .record_prune(at("2026-02-01T00:00:00Z"), only(gone(1)))
            .await
            .unwrap();
        assert!(first < second);
        let records = repo.prune_records().await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].deleted, [gone(1)]);
        assert_eq!(records[1].at, at("2026-03-01T00:00:00Z"));
    }
}
