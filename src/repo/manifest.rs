//! Backup manifests (`backups/<id>`): the single source of truth of one backup.
//!
//! Stored as zstd-compressed JSON, sealed as metadata. A manifest is written last, after every pack and
//! index it references is durable, so a manifest that exists is a backup that can be restored.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::ids::ChunkId;
use super::source::SourceName;
use crate::position::{GtidPos, Lsn};

/// The newest manifest version this build reads. Version 2 adds `time_given`; a manifest without
/// it is still written as version 1, which older builds read.
pub const MANIFEST_VERSION: u32 = 2;

/// `YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx`: the start time to the millisecond, then a random tail that
/// keeps ids of one millisecond apart (format 3). Ids of format 1 and 2 repositories,
/// `YYYYMMDDTHHMMSSZ-xxxxxxxx`, parse too. Ids sort by start time but do not decide which backup
/// is the newest: [`newest`] does, from the manifests' own times.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

/// How finely a backup id tells start times apart: milliseconds from repository format 3 on;
/// whole seconds in format 1 and 2 repositories, whose readers know only those ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPrecision {
    Seconds,
    Milliseconds,
}

impl BackupId {
    pub fn new(started: DateTime<Utc>, precision: IdPrecision) -> Self {
        let tail = rand::rngs::OsRng.next_u32();
        let stamp = match precision {
            IdPrecision::Seconds => started.format("%Y%m%dT%H%M%SZ"),
            IdPrecision::Milliseconds => started.format("%Y%m%dT%H%M%S%.3fZ"),
        };
        Self(format!("{stamp}-{tail:08x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let tail = |from: usize| {
            b.len() == from + 9
                && b[from] == b'-'
                && b[from + 1..].iter().all(u8::is_ascii_hexdigit)
        };
        let stamp = b.len() >= 16 && digits(0..8) && b[8] == b'T' && digits(9..15);
        let ok = stamp
            && match b.get(15) {
                Some(b'Z') => tail(16),
                Some(b'.') => b.len() >= 20 && digits(16..19) && b[19] == b'Z' && tail(20),
                _ => false,
            };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a backup id (YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx)"
            ))
        }
    }
}

impl TryFrom<String> for BackupId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

/// The newest of `manifests`: the latest `started` (the instant the backup's data is from: a
/// stream's first byte, a dump's snapshot, a base backup's start), then the latest `finished`, then
/// the greatest id. Never the order of ids alone, which had one-second resolution before format
/// 2's millisecond ids and a random tail.
pub fn newest<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Option<&'a Manifest> {
    manifests.into_iter().max_by(|a, b| a.age_order(b))
}

/// What was backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// A byte stream piped in (`backup --stdin`).
    Stream,
    /// The files of a PostgreSQL data directory, between `pg_backup_start` and `pg_backup_stop`.
    PostgresPhysical,
    /// `pg_dump -Fc` of one database, one file per database.
    PostgresLogical,
    /// `mariadb-dump`/`mysqldump` SQL of a MySQL or MariaDB server, taken in one consistent snapshot.
    MysqlDump,
    /// `mariabackup --backup --stream=xbstream` of a MariaDB data directory, one file.
    MysqlPhysical,
}

/// The kind's stored name (`postgres-physical`).
impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            BackupKind::Stream => "stream",
            BackupKind::PostgresPhysical => "postgres-physical",
            BackupKind::PostgresLogical => "postgres-logical",
            BackupKind::MysqlDump => "mysql-dump",
            BackupKind::MysqlPhysical => "mysql-physical",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub id: BackupId,
    pub source: SourceName,
    pub kind: BackupKind,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub host: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// For PostgreSQL backups: where the backup stands in the cluster's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresPoint>,
    /// For MySQL/MariaDB backups: the binlog coordinates the backup is consistent at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlPoint>,
    /// Directories to create on restore (relative paths), for physical backups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<String>,
    pub files: Vec<FileEntry>,
    /// Present when the backup's time was given (`backup --time`, for history imported from
    /// another tool): `started` is then that time, `finished` that time plus how long the backup
    /// took, and this says when it really ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_given: Option<TimeGiven>,
}

/// When a backup whose time was given really ran, by this host's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeGiven {
    pub ran_started: DateTime<Utc>,
    pub ran_finished: DateTime<Utc>,
}

/// The consistency point of a PostgreSQL base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresPoint {
    /// `pg_control_system().system_identifier`, as decimal text (it does not fit JSON numbers).
    pub system_identifier: String,
    pub server_version: u32,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    pub timeline: u32,
    /// LSNs as PostgreSQL prints them (`0/3000028`).
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    /// The first WAL segment recovery needs and the one holding the stop LSN.
    pub start_wal: String,
    pub stop_wal: String,
    /// The server's clock when `pg_backup_stop` returned: the backup is consistent from here on.
    pub consistent_at: DateTime<Utc>,
    /// The `backup_label` and `tablespace_map` contents `pg_backup_stop` returned.
    pub backup_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace_map: Option<String>,
}

/// The consistency point of a MySQL/MariaDB dump, read from the dump itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlPoint {
    /// `@@server_id` and `@@version` of the server dumped.
    pub server_id: u32,
    pub server_version: String,
    /// The binlog file and position of the snapshot (`SHOW MASTER STATUS` at the dump's snapshot).
    pub binlog_file: String,
    pub binlog_pos: u64,
    /// MariaDB's GTID position of the snapshot (`0-1-42,...`; empty before any transaction).
    #[serde(default, with = "crate::position::gtid_text")]
    pub gtid_pos: GtidPos,
    /// A time no earlier than the snapshot: the dump holds nothing committed after it.
    pub consistent_at: DateTime<Utc>,
    /// The databases dumped.
    pub databases: Vec<String>,
}

/// One file (or the one stream) of a backup, as its chunks in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Unix permission bits, for files of physical backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    pub chunks: Vec<ChunkId>,
}

impl Manifest {
    /// A manifest for a backup starting now on this host, without files yet.
    pub fn new(
        source: &SourceName,
        kind: BackupKind,
        labels: BTreeMap<String, String>,
        started: DateTime<Utc>,
        precision: IdPrecision,
    ) -> Self {
        Self {
            version: 1,
            id: BackupId::new(started, precision),
            source: source.clone(),
            kind,
            labels,
            host: crate::host::host_name(),
            started,
            finished: started,
            postgres: None,
            mysql: None,
            directories: Vec::new(),
            files: Vec::new(),
            time_given: None,
        }
    }

    /// The lowest version that holds everything this manifest says: what it is written as, so
    /// that older builds keep reading the manifests that use nothing newer.
    pub fn needed_version(&self) -> u32 {
        if self.time_given.is_some() {
            2
        } else {
            1
        }
    }

    /// Oldest first, in the order [`newest`] uses.
    pub fn age_order(&self, other: &Self) -> std::cmp::Ordering {
        (self.started, self.finished, &self.id).cmp(&(other.started, other.finished, &other.id))
    }

    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn chunk_count(&self) -> usize {
        self.files.iter().map(|f| f.chunks.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_time_is_version_2_and_a_newer_version_is_refused_before_its_fields() {
        use crate::repo::crypto::MetaKind;
        use crate::repo::format::InitParams;
        use crate::repo::keys::KeySource;
        let store = crate::store::open_store("memory://", &Default::default()).unwrap();
        let key = KeySource::passphrase("manifest test");
        let repo = super::super::Repository::init(store, &key, &InitParams::default(), Utc::now())
            .await
            .unwrap();
        let at = DateTime::parse_from_rfc3339("2024-01-07T03:00:00Z")
            .unwrap()
            .to_utc();
        let mut m = repo.new_manifest(
            &"app".parse().unwrap(),
            BackupKind::Stream,
            Default::default(),
            at,
        );
        assert_eq!((m.version, m.needed_version()), (1, 1));
        m.time_given = Some(TimeGiven {
            ran_started: Utc::now(),
            ran_finished: Utc::now(),
        });
        // A manifest marked older than what it holds is not written.
        let e = repo.save_manifest(&m).await.unwrap_err().to_string();
        assert!(e.contains("needs 2"), "{e}");
        m.version = m.needed_version();
        repo.save_manifest(&m).await.unwrap();
        assert_eq!(repo.manifest(&m.id).await.unwrap(), m);
        // Version 3 with a field this build does not know: the version is what is named.
        let mut json = serde_json::to_value(&m).unwrap();
        json["version"] = 3.into();
        json["from_the_future"] = true.into();
        let sealed = repo.keys().seal_meta(
            MetaKind::Manifest,
            &zstd::bulk::compress(&serde_json::to_vec(&json).unwrap(), 3).unwrap(),
        );
        let e = repo
            .open_manifest(&m.id.key(), &sealed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("manifest version 3 is newer than this build reads"),
            "{e}"
        );
    }

    #[test]
    fn a_kind_prints_as_it_is_stored() {
        for kind in [
            BackupKind::Stream,
            BackupKind::PostgresPhysical,
            BackupKind::PostgresLogical,
            BackupKind::MysqlDump,
            BackupKind::MysqlPhysical,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.to_string());
        }
    }

    #[test]
    fn backup_ids_parse_and_sort_by_time() {
        let t1 = DateTime::parse_from_rfc3339("2026-11-20T14:03:00Z")
            .unwrap()
            .to_utc();
        let t2 = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .to_utc();
        let a = BackupId::new(t1, IdPrecision::Seconds);
        let b = BackupId::new(t2, IdPrecision::Seconds);
        assert!(a < b);
        assert_eq!(a.as_str().parse::<BackupId>().unwrap(), a);
        assert!(a.as_str().starts_with("20261120T140300Z-"));
        assert!("2026-11-20".parse::<BackupId>().is_err());
    }

    #[test]
    fn ids_have_milliseconds_and_old_ids_still_parse() {
        let t = DateTime::parse_from_rfc3339("2026-11-20T14:03:00.123456Z")
            .unwrap()
            .to_utc();
        let id = BackupId::new(t, IdPrecision::Milliseconds);
        assert!(id.as_str().starts_with("20261120T140300.123Z-"), "{id}");
        assert_eq!(id.as_str().len(), 29);
        assert_eq!(id.as_str().parse::<BackupId>().unwrap(), id);
        assert!("20261120T140300Z-0a1b2c3d".parse::<BackupId>().is_ok());
        for bad in [
            "20261120T140300.12Z-0a1b2c3d",
            "20261120T140300.123-0a1b2c3d",
            "20261120T140300.123Z-0a1b2c3",
            "20261120T140300Z-0a1b2c3g",
            "20261120T140300.123Z-0a1b2c3d/",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
        let later = BackupId::new(
            t + chrono::Duration::milliseconds(1),
            IdPrecision::Milliseconds,
        );
        assert!(id < later);
    }

    #[test]
    fn the_newest_backup_is_decided_by_its_times_not_its_id() {
        let t = DateTime::parse_from_rfc3339("2026-11-20T14:03:00Z")
            .unwrap()
            .to_utc();
        let source: SourceName = "s".parse().unwrap();
        let at = |started_ms: i64, finished_ms: i64, id: &str| {
            let mut m = Manifest::new(
                &source,
                BackupKind::Stream,
                BTreeMap::new(),
                t,
                IdPrecision::Seconds,
            );
            m.id = id.parse().unwrap();
            m.started = t + chrono::Duration::milliseconds(started_ms);
            m.finished = t + chrono::Duration::milliseconds(finished_ms);
            m
        };
        // Old one-second ids whose random tails sort against their times.
        let a = at(100, 200, "20261120T140300Z-ffffffff");
        let b = at(300, 400, "20261120T140300Z-00000000");
        assert_eq!(newest([&a, &b]).unwrap().id, b.id);
        // The same start: the later finish wins; then the greater id.
        let c = at(300, 500, "20261120T140300Z-00000001");
        assert_eq!(newest([&a, &b, &c]).unwrap().id, c.id);
        let d = at(300, 500, "20261120T140300Z-00000002");
        assert_eq!(newest([&d, &c, &a]).unwrap().id, d.id);
    }
}
