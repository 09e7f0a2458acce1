//! Evidence that every promise holds: per source what is restorable, from when to when, whether
//! its retention policy is met and that restores work, as one JSON document (the schema below,
//! documented in docs/AUDIT.md) that Markdown and HTML are rendered from.
//!
//! [`jobs::audit`](crate::jobs::audit) gathers the facts from the repository; [`checks`] judges
//! them as of an instant, without a store or a clock, so that three years are judged in a test.

pub mod checks;
pub mod html;
pub mod markdown;
pub mod storage;
pub mod windows;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::{LogGap, LogRun};
use windows::Window;

/// What the JSON calls itself, and its version: a reader refuses a version above the one it knows.
pub const AUDIT_SCHEMA: &str = "heirloom-backup-audit";
pub const AUDIT_VERSION: u32 = 1;

/// An audit of a repository as of `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub schema: String,
    pub version: u32,
    /// The instant judged at (`audit --at`, else when the audit ran).
    pub at: DateTime<Utc>,
    pub tool_version: String,
    /// Every check passed, of the repository and of each source.
    pub passed: bool,
    /// The failed checks, as `<source>: <check id>` (`repository: <check id>`).
    pub failed: Vec<String>,
    pub repository: RepositoryAudit,
    pub sources: Vec<SourceAudit>,
}

/// What holds for the repository as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryAudit {
    /// Where it is, as the store names it.
    pub location: String,
    pub format_version: u32,
    pub storage: Storage,
    pub verifies: Verifies,
    pub checks: Vec<Check>,
}

/// The bytes the repository holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    /// Every object in the store, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// What the backups restore to (the sum of their sizes).
    pub logical_bytes: u64,
    /// The distinct chunks, before compression, and as stored.
    pub unique_bytes: u64,
    pub stored_chunk_bytes: u64,
    pub pack_bytes: u64,
    /// WAL files, binlog segments and WAL snapshots, as stored.
    pub log_bytes: u64,
    /// logical / unique, and unique / stored.
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
}

/// The recorded verifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verifies {
    pub newest: Option<VerifyEntry>,
    /// When every stored byte had last been read back: the end of the newest `--read-data` (all)
    /// verify, or of the last part of the newest full set of `--read-data N/T` parts.
    pub last_full_read: Option<FullRead>,
    /// Newest first.
    pub history: Vec<VerifyEntry>,
}

/// A read of every stored byte: the parts of it were read from `since` to `completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullRead {
    pub since: DateTime<Utc>,
    pub completed: DateTime<Utc>,
    /// `verify --read-data`, or the parts of `--read-data --subset N/T`.
    pub how: String,
}

/// One recorded verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyEntry {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// What was read back whole: `all`, a part `N/T`, a share `P%`; `None`: the structure only.
    pub read_data: Option<String>,
    pub backups: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    pub log_objects: u64,
    pub problems: u64,
    /// The first problems found (at most 10), as `<object>: <problem>`.
    pub first_problems: Vec<String>,
}

/// One source: its backups, its windows, its drills and its policy's checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceAudit {
    pub source: String,
    /// `postgres`, `mysql`, or `stream` (backups piped in, no log).
    pub engine: String,
    pub policy: PolicySummary,
    /// The oldest backup the repository has held of the source: kept, or deleted by a prune (its
    /// record says when it was taken).
    pub first_backup: Option<DateTime<Utc>>,
    /// Oldest first.
    pub backups: Vec<BackupAudit>,
    /// `None` for a source without a log.
    pub log: Option<LogAudit>,
    /// Every instant of each is restorable; oldest first.
    pub windows: Vec<Window>,
    pub drills: Drills,
    pub growth: Vec<MonthGrowth>,
    pub checks: Vec<Check>,
}

/// The policy a source is judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub name: String,
    pub description: Option<String>,
    pub zone: String,
    pub point_in_time: Option<String>,
    /// `daily 35, weekly 13, ...`: the counts that are not 0.
    pub keep: String,
    pub immutability: Option<String>,
    pub max_backup_age: String,
    pub verify_within: String,
    pub drill_within: String,
    pub max_log_age: Option<String>,
}

/// A backup and its fate under the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupAudit {
    pub id: String,
    pub kind: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// The instant it restores to: its consistency point (a stream backup's start).
    pub consistent_at: DateTime<Utc>,
    pub files: u64,
    /// What it restores to.
    pub logical_bytes: u64,
    /// Its distinct chunks as stored, and those of them no older backup has.
    pub stored_bytes: u64,
    pub added_bytes: u64,
    /// `kept`, `locked` (no rule keeps it; the bucket's Object Lock does) or `expires` (the next
    /// prune deletes it).
    pub status: String,
    /// Every rule that keeps it, in words (`daily 2026-11-30`, `point-in-time window`, ...).
    pub kept_by: Vec<String>,
    pub holds: Vec<HoldEntry>,
    /// The end of the newest verify that checked the repository after the backup was taken.
    pub last_verified: Option<DateTime<Utc>>,
}

/// A hold on a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldEntry {
    pub reason: String,
    pub created: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub released: Option<DateTime<Utc>>,
    /// It keeps the backup at the audit's instant.
    pub active: bool,
}

/// The source's log, its breaks, and how old its newest object is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogAudit {
    /// `WAL` or `binlog`.
    pub log: String,
    pub objects: u64,
    pub bytes: u64,
    pub runs: Vec<LogRun>,
    pub gaps: Vec<GapEntry>,
    /// The data-loss window: the newest stored log, when it was stored (WAL: as the store dates
    /// the object) or written (binlog: its last event), and its age at the audit's instant.
    pub newest: Option<NewestLog>,
}

/// A break in the log, with the instants around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapEntry {
    #[serde(flatten)]
    pub gap: LogGap,
    /// The last dated instant before the break and the first after it, where known.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// A prune record says it deleted the log missing there: retention, not a loss.
    pub pruned: bool,
}

/// The newest stored log object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewestLog {
    pub object: String,
    pub at: DateTime<Utc>,
    pub age_seconds: i64,
}

/// The source's recorded drills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drills {
    pub last_passed: Option<DrillEntry>,
    /// Newest first.
    pub history: Vec<DrillEntry>,
}

/// One recorded drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillEntry {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// `latest`, or the instant restored to.
    pub point: String,
    pub backup: Option<String>,
    pub reached: Option<DateTime<Utc>>,
    /// The restore time objective it achieved: until the server was up, recovery ended.
    pub restore_seconds: f64,
    pub check_seconds: f64,
    pub tables: u64,
    pub rows: u64,
    pub passed: bool,
    pub failure: Option<String>,
}

/// What the source's backups added, per calendar month (the policy's zone) they were taken in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthGrowth {
    /// `YYYY-MM`.
    pub month: String,
    pub backups: u64,
    pub logical_bytes: u64,
    pub added_bytes: u64,
}

/// One promise, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable: `monthly-points`, `window-continuous`, `backup-age`, `log-age`, `immutability`,
    /// `drill-recent`, `drill-passed`; the repository's `encryption`, `verify-recent`.
    pub id: String,
    pub title: String,
    pub status: CheckStatus,
    /// What it was judged on, each a sentence naming the objects, instants and counts.
    pub evidence: Vec<String>,
}

/// A check's outcome: `not-asked` when the policy asks nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    NotAsked,
}

impl Check {
    pub fn new(id: &str, title: impl Into<String>, passed: bool, evidence: Vec<String>) -> Self {
        Self {
            id: id.to_owned(),
            title: title.into(),
            status: if passed {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            },
            evidence,
        }
    }

    pub fn not_asked(id: &str, title: impl Into<String>, why: String) -> Self {
        Self {
            id: id.to_owned(),
            title: title.into(),
            status: CheckStatus::NotAsked,
            evidence: vec![why],
        }
    }

    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Fail
    }
}

impl Audit {
    /// Reads an audit's JSON, refusing another schema or a newer version.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let schema = value.get("schema").and_then(|v| v.as_str());
        if schema != Some(AUDIT_SCHEMA) {
            return Err(format!("not a {AUDIT_SCHEMA} document (schema {schema:?})"));
        }
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > u64::from(AUDIT_VERSION) {
            return Err(format!(
                "audit version {version} is newer than this build reads ({AUDIT_VERSION})"
            ));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// Bytes in binary units, as the reports print them: `512 B`, `1.5 KiB`, `3.25 GiB`.
pub fn bytes_text(n: u64) -> String {
    crate::units::binary_bytes(n, 2)
}
