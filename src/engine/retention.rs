//! What retention keeps of a source's log: the engine-neutral half. Each engine decides which of
//! its log objects a set of kept backups needs; the job deletes the rest and records it.

use serde::Serialize;

use crate::repo::manifest::BackupId;

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
}

/// Gathers judged objects, in the log's order, into stretches of one fate and one reason.
pub fn gather(log: &'static str, objects: Vec<Judged>, deleted_why: &str) -> LogRetention {
    let mut out = LogRetention {
        log,
        ..LogRetention::default()
    };
    // The group and fate of the stretch being gathered: kept (with why) or deleted.
    let mut current: Option<(u64, bool, String)> = None;
    for object in objects {
        let (keep, why) = match object.kept {
            Some(why) => (true, why),
            None => (false, deleted_why.to_owned()),
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
            }
            _ => list.push(LogStretch {
                first: object.name.clone(),
                last: object.name,
                objects: 1,
                bytes: object.bytes,
                why: why.clone(),
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
}
