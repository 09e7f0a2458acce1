//! Which archived WAL the backups retention keeps need: the WAL after the window's base (or the
//! newest backup kept) on every timeline, and for each older backup kept the segments from its
//! start to its stop. Timeline histories are always kept (one small file per promotion).

use super::names::WalFileName;
use super::PgError;
use crate::engine::retention::{gather, Judged, LogRetention};
use crate::repo::layout::{ObjectKey, ObjectKind};
use crate::repo::manifest::{BackupId, Manifest};
use crate::repo::object_lock::ObjectLock;
use crate::repo::Repository;
use chrono::{DateTime, Utc};

/// The segment size a source's backups recorded (16 MiB unless initdb was told otherwise).
pub fn segment_size<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> u64 {
    crate::repo::manifest::newest(manifests.into_iter().filter(|m| m.postgres.is_some()))
        .and_then(|m| m.postgres.as_ref().map(|p| p.segment_size))
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// One stored WAL object: an archived file, or a snapshot of a segment being streamed.
#[derive(Debug, Clone)]
pub struct WalObject {
    pub key: String,
    /// The WAL file it is, or the segment it is a snapshot of.
    pub name: WalFileName,
    pub bytes: u64,
    pub snapshot: bool,
    /// When the store says it was written.
    pub written: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every WAL object stored for `source`: archived files in name order, then snapshots. Objects
/// under the prefixes that are not WAL are left out (and left alone).
pub async fn wal_objects(repo: &Repository, source: &str) -> Result<Vec<WalObject>, PgError> {
    let prefix = ObjectKind::Wal.source_prefix(source);
    let mut files: Vec<WalObject> = repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(&prefix)?.parse().ok()?;
            Some(WalObject {
                key: o.key,
                name,
                bytes: o.size,
                snapshot: false,
                written: o.last_modified,
            })
        })
        .collect();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    let mut snapshots: Vec<WalObject> = repo
        .store()
        .list(&ObjectKind::WalSnapshot.source_prefix(source))
        .await?
        .into_iter()
        .filter_map(|o| match ObjectKey::parse(&o.key)? {
            ObjectKey::WalSnapshot { segment, .. } => Some(WalObject {
                name: segment.parse().ok()?,
                key: o.key,
                bytes: o.size,
                snapshot: true,
                written: o.last_modified,
            }),
            _ => None,
        })
        .collect();
    snapshots.sort_by(|a, b| a.key.cmp(&b.key));
    files.extend(snapshots);
    Ok(files)
}

/// The WAL segments a backup needs to be consistent: its start to its stop, by segment number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub backup: BackupId,
    pub start: u64,
    pub stop: u64,
}

impl Needs {
    /// What a physical backup's manifest says it needs; `None` for any other backup.
    pub fn of(m: &Manifest, segment_size: u64) -> Option<Needs> {
        let p = m.postgres.as_ref()?;
        let number = |name: &str| {
            name.parse::<WalFileName>()
                .ok()?
                .segment_number(segment_size)
        };
        Some(Needs {
            backup: m.id.clone(),
            start: number(&p.start_wal)?,
            stop: number(&p.stop_wal)?,
        })
    }
}

/// The segment number a WAL file belongs to: a segment's own, and for a `.partial` or `.backup`
/// file the segment its name begins with. `None` for a timeline history.
fn number_of(name: &WalFileName, segment_size: u64) -> Option<u64> {
    match name {
        WalFileName::Segment { .. } => name.segment_number(segment_size),
        WalFileName::History { .. } => None,
        WalFileName::BackupHistory(s) | WalFileName::Partial(s) => s
            .get(..24)?
            .parse::<WalFileName>()
            .ok()?
            .segment_number(segment_size),
    }
}

/// Judges every object (in the order given): kept with why, or needed by nothing kept.
/// `from` keeps everything from its start segment on, on every timeline (a timeline that
/// branched later continues from it); `None` keeps everything. What `lock` still locks is kept.
pub fn wal_retention(
    objects: Vec<WalObject>,
    segment_size: u64,
    from: Option<(&Needs, &str)>,
    points: &[Needs],
    lock: Option<(ObjectLock, DateTime<Utc>)>,
) -> LogRetention {
    let judged = objects
        .into_iter()
        .map(|o| {
            let number = number_of(&o.name, segment_size);
            let kept = match (number, from) {
                (None, _) => Some("timeline history".to_owned()),
                (_, None) => Some("no kept backup to start replay from: the whole log".to_owned()),
                (Some(n), Some((base, why))) if n >= base.start => Some(why.to_owned()),
                (Some(n), Some(_)) => points
                    .iter()
                    .find(|p| p.start <= n && n <= p.stop)
                    .map(|p| format!("makes backup {} consistent", p.backup)),
            };
            // Stretches stay within a timeline, and snapshots apart from whole files.
            let timeline = o.name.timeline().unwrap_or(0);
            Judged {
                name: if o.snapshot {
                    format!("{} (snapshot)", o.name)
                } else {
                    o.name.to_string()
                },
                key: o.key,
                bytes: o.bytes,
                group: u64::from(timeline) | (u64::from(o.snapshot) << 32),
                kept,
                written: o.written,
            }
        })
        .collect();
    gather(
        "WAL",
        judged,
        "needed by no backup kept and before the window",
        lock,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 16 << 20;

    fn seg(tl: u32, n: u64) -> WalObject {
        let name = WalFileName::segment(tl, n, SIZE);
        WalObject {
            key: format!("wal/app/{name}"),
            name,
            bytes: 100,
            snapshot: false,
            written: None,
        }
    }

    fn needs(id: u32, start: u64, stop: u64) -> Needs {
        Needs {
            backup: format!("20260101T000000.000Z-{id:08x}").parse().unwrap(),
            start,
            stop,
        }
    }

    #[test]
    fn keeps_the_window_from_its_base_and_each_older_backup_start_to_stop() {
        let mut objects: Vec<WalObject> = (1..=12).map(|n| seg(1, n)).collect();
        // Timeline 2 branched at segment 10, and its history.
        objects.push(seg(2, 10));
        objects.push(seg(2, 11));
        objects.push(WalObject {
            key: "wal/app/00000002.history".into(),
            name: "00000002.history".parse().unwrap(),
            bytes: 40,
            snapshot: false,
            written: None,
        });
        let base = needs(9, 8, 9);
        let points = [needs(1, 2, 3), needs(2, 5, 5)];
        let got = wal_retention(objects, SIZE, Some((&base, "window")), &points, None);
        let names: Vec<String> = got
            .keys
            .iter()
            .map(|k| k.trim_start_matches("wal/app/").to_owned())
            .collect();
        assert_eq!(
            names,
            [1, 4, 6, 7]
                .map(|n| WalFileName::segment(1, n, SIZE).to_string())
                .to_vec()
        );
        assert_eq!(got.deleted.len(), 3, "{:?}", got.deleted);
        assert_eq!(got.bytes_deleted(), 400);
        assert!(got.kept.iter().any(|s| s.why == "timeline history"));
        assert!(
            got.kept
                .iter()
                .any(|s| s.first == WalFileName::segment(2, 10, SIZE).to_string()
                    && s.why == "window")
        );
        assert!(got.kept.iter().any(|s| s.objects == 2
            && s.why
                .starts_with("makes backup 20260101T000000.000Z-00000001")));
    }

    #[test]
    fn without_a_backup_to_start_from_the_whole_log_stays() {
        let objects: Vec<WalObject> = (1..=3).map(|n| seg(1, n)).collect();
        let got = wal_retention(objects, SIZE, None, &[], None);
        assert!(got.keys.is_empty());
        assert_eq!(got.kept.len(), 1);
        assert_eq!(got.kept[0].objects, 3);
    }

    #[test]
    fn partial_and_backup_history_files_follow_their_segment() {
        let partial: WalFileName = "000000010000000000000002.partial".parse().unwrap();
        let label: WalFileName = "000000010000000000000007.00000028.backup".parse().unwrap();
        assert_eq!(number_of(&partial, SIZE), Some(2));
        assert_eq!(number_of(&label, SIZE), Some(7));
        assert_eq!(number_of(&"00000003.history".parse().unwrap(), SIZE), None);
    }
}
