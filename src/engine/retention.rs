//! What retention keeps of a source's log: the engine-neutral half. Each engine decides which of
//! its log objects a set of kept backups needs; the job deletes the rest and records it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::manifest::BackupId;
use crate::repo::object_lock::ObjectLock;

/// What the kept backups ask of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogKeep {
    /// The log from this backup's start on is kept whole: the point-in-time window's base, or,
    /// without a window, the newest backup kept that log replay can start from. `None` (no such
    /// backup) keeps the whole log.
    pub from: Option<BackupId>,
    /// The other backups kept: each keeps the log that makes it consistent (PostgreSQL: from its
    /// start to its stop; a dump needs none).
    pub points: Vec<BackupId>,
    /// The bucket's Object Lock and the instant judged at: an object still locked then is kept,
    /// whatever else says, and deleted by a later prune.
    pub lock: Option<(ObjectLock, DateTime<Utc>)>,
}

/// A stretch of consecutive log objects with one fate, as their names say (first and last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStretch {
    pub first: String,
    pub last: String,
    pub objects: u64,
    /// Stored bytes.
    pub bytes: u64,
    /// Why it is kept, or why it may go.
    pub why: String,
    /// For a stretch kept because the bucket still locks it: when its last object's lock ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

/// One source's log under retention.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogRetention {
    /// `WAL` or `binlog`.
    pub log: &'static str,
    /// Oldest first.
    pub kept: Vec<LogStretch>,
    pub deleted: Vec<LogStretch>,
    /// The keys of the objects to delete.
    #[serde(skip)]
    pub keys: Vec<String>,
}

impl LogRetention {
    pub fn bytes_deleted(&self) -> u64 {
        self.deleted.iter().map(|s| s.bytes).sum()
    }

    pub fn objects_deleted(&self) -> u64 {
        self.deleted.iter().map(|s| s.objects).sum()
    }
}

/// One log object and its fate: `why` it is kept, or `None` when nothing needs it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub key: String,
    /// The object's name as the engine prints it.
    pub name: String,
    pub bytes: u64,
    /// Objects of different groups never share a stretch (a WAL timeline, snapshots).
    pub group: u64,
    pub kept: Option<String>,
    /// When the store says it was written (Object Lock counts from it).
    pub written: Option<DateTime<Utc>>,
}

/// Why an object nothing else keeps stays: the bucket still locks it.
pub const LOCKED: &str = "under the bucket's Object Lock";

/// Gathers judged objects, in the log's order, into stretches of one fate and one reason. An
/// object nothing keeps that `lock` still locks is kept as [`LOCKED`].
pub fn gather(
    log: &'static str,
    objects: Vec<Judged>,
    deleted_why: &str,
    lock: Option<(ObjectLock, DateTime<Utc>)>,
) -> LogRetention {
    let mut out = LogRetention {
        log,
        ..LogRetention::default()
    };
    // The group and fate of the stretch being gathered: kept (with why) or deleted.
    let mut current: Option<(u64, bool, String)> = None;
    for object in objects {
        let locked = lock.and_then(|(lock, now)| lock.locked_until(object.written, now));
        let (keep, why, locked) = match (object.kept, locked) {
            (Some(why), _) => (true, why, None),
            (None, Some(until)) => (true, LOCKED.to_owned(), Some(until)),
            (None, None) => (false, deleted_why.to_owned(), None),
        };
        if !keep {
            out.keys.push(object.key);
        }
        let list = if keep {
            &mut out.kept
        } else {
            &mut out.deleted
        };
        let same = current.as_ref() == Some(&(object.group, keep, why.clone()));
        match list.last_mut() {
            Some(stretch) if same => {
                stretch.last = object.name;
                stretch.objects += 1;
                stretch.bytes += object.bytes;
                stretch.locked_until = stretch.locked_until.max(locked);
            }
            _ => list.push(LogStretch {
                first: object.name.clone(),
                last: object.name,
                objects: 1,
                bytes: object.bytes,
                why: why.clone(),
                locked_until: locked,
            }),
        }
        current = Some((object.group, keep, why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(name: &str, kept: Option<&str>) -> Judged {
        Judged {
            key: format!("wal/app/{name}"),
            name: name.into(),
            bytes: 10,
            group: 0,
            kept: kept.map(str::to_owned),
            written: None,
        }
    }

    #[test]
    fn stretches_break_where_the_fate_or_the_reason_changes() {
        let got = gather(
            "WAL",
            vec![
                judged("1", None),
                judged("2", None),
                judged("3", Some("archival point b1")),
                judged("4", None),
                judged("5", Some("window")),
                judged("6", Some("window")),
            ],
            "needed by no kept backup",
            None,
        );
        assert_eq!(got.keys, ["wal/app/1", "wal/app/2", "wal/app/4"]);
        let spans = |v: &[LogStretch]| {
            v.iter()
                .map(|s| (s.first.clone(), s.last.clone(), s.objects))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            spans(&got.deleted),
            [("1".into(), "2".into(), 2), ("4".into(), "4".into(), 1)]
        );
        assert_eq!(
            spans(&got.kept),
            [("3".into(), "3".into(), 1), ("5".into(), "6".into(), 2)]
        );
        assert_eq!(got.bytes_deleted(), 30);
        assert_eq!(got.objects_deleted(), 3);
    }

    #[test]
    fn what_the_bucket_still_locks_is_kept_and_says_until_when() {
        use crate::repo::object_lock::LockMode;
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .to_utc();
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            days: 1,
        };
        let at = |hours_ago: i64, name: &str| Judged {
            written: Some(now - chrono::Duration::hours(hours_ago)),
            ..judged(name, None)
        };
        let got = gather(
            "WAL",
            vec![at(50, "1"), at(30, "2"), at(20, "3"), at(10, "4")],
            "needed by no kept backup",
            Some((lock, now)),
        );
        assert_eq!(got.keys, ["wal/app/1", "wal/app/2"]);
        assert_eq!(got.kept.len(), 1);
        assert_eq!(got.kept[0].why, LOCKED);
        assert_eq!(
            (got.kept[0].first.as_str(), got.kept[0].last.as_str()),
            ("3", "4")
        );
        assert_eq!(
            got.kept[0].locked_until,
            Some(now - chrono::Duration::hours(10) + chrono::Duration::days(1))
        );
        assert!(got.deleted.iter().all(|s| s.locked_until.is_none()));
    }
}
