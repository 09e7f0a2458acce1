//! Which binlog segments the backups retention keeps need: every segment a replay from the
//! window's base (or the newest backup kept) reads, and the chain's last segment, which the next
//! one continues. A dump is consistent by itself, so older dumps keep no binlog. The claims of
//! chain numbers below what is kept go with their segments.

use std::collections::BTreeMap;

use super::plan::first_needed;
use super::segment::{read_metas, segments_prefix, SegmentName};
use super::MyError;
use crate::engine::retention::{gather, Judged, LogKeep, LogRetention};
use crate::repo::layout::ObjectKind;
use crate::repo::manifest::Manifest;
use crate::repo::object_lock::ObjectLock;
use crate::repo::Repository;
use chrono::{DateTime, Utc};

/// One stored segment: its name, key and stored size.
#[derive(Debug, Clone)]
pub struct Stored {
    pub name: SegmentName,
    pub key: String,
    pub bytes: u64,
    /// When the store says it was written.
    pub written: Option<DateTime<Utc>>,
}

/// Judges the chain (in sequence order): segments from `cut` on are kept (`why`), so is the last;
/// `None` keeps every segment. What `lock` still locks is kept.
pub fn judge(
    chain: Vec<Stored>,
    cut: Option<u64>,
    why: &str,
    lock: Option<(ObjectLock, DateTime<Utc>)>,
) -> LogRetention {
    let last = chain.last().map(|s| s.name.seq);
    let judged = chain
        .into_iter()
        .map(|s| {
            let kept = match cut {
                None => Some("no kept backup to start replay from: the whole log".to_owned()),
                Some(c) if s.name.seq >= c => Some(why.to_owned()),
                _ if Some(s.name.seq) == last => {
                    Some("the chain's end, which the next segment continues".to_owned())
                }
                _ => None,
            };
            Judged {
                name: format!(
                    "#{} server {} {}:{}",
                    s.name.seq, s.name.server_id, s.name.file, s.name.start
                ),
                key: s.key,
                bytes: s.bytes,
                group: 0,
                kept,
                written: s.written,
            }
        })
        .collect();
    gather(
        "binlog",
        judged,
        "before the window's base, and no dump needs binlog",
        lock,
    )
}

/// Reads the chain and the backups' points, and judges the chain (see [`judge`]).
pub async fn binlog_retention(
    repo: &Repository,
    source: &str,
    manifests: &[&Manifest],
    keep: &LogKeep,
) -> Result<LogRetention, MyError> {
    let prefix = segments_prefix(source);
    let mut chain = Vec::new();
    for info in repo.store().list(&prefix).await? {
        let name = SegmentName::parse(&info.key[prefix.len()..]).ok_or_else(|| {
            MyError::CorruptSegment {
                key: info.key.clone(),
                why: "not a segment name".into(),
            }
        })?;
        chain.push(Stored {
            name,
            key: info.key,
            bytes: info.size,
            written: info.last_modified,
        });
    }
    chain.sort_by_key(|s| s.name.seq);
    let names: Vec<SegmentName> = chain.iter().map(|s| s.name.clone()).collect();
    let from = keep
        .from
        .as_ref()
        .and_then(|id| manifests.iter().find(|m| &m.id == id))
        .and_then(|m| Some((m.id.clone(), m.mysql.as_ref()?)));
    let mut metas = BTreeMap::new();
    let cut = match &from {
        None => None,
        Some((_, point)) => loop {
            match first_needed(&names, point, &metas) {
                Ok(first) => {
                    // Needing none stored yet, it needs none of what is stored.
                    break first.map(|i| names.get(i).map_or(u64::MAX, |n| n.seq));
                }
                Err(need) => read_metas(repo, source, need, &mut metas).await?,
            }
        },
    };
    let why = from
        .map(|(id, _)| format!("the log from backup {id} on"))
        .unwrap_or_default();
    // The lowest number kept: the cut, or the chain's last segment when the cut lies past it.
    let lowest_kept = cut.zip(names.last()).map(|(c, last)| c.min(last.seq));
    let mut out = judge(chain, cut, &why, keep.lock);
    if let Some(lowest) = lowest_kept {
        let claims = ObjectKind::BinlogClaim.source_prefix(source);
        for info in repo.store().list(&claims).await? {
            let locked = keep
                .lock
                .and_then(|(lock, now)| lock.locked_until(info.last_modified, now));
            if locked.is_none()
                && info.key[claims.len()..]
                    .parse::<u64>()
                    .is_ok_and(|seq| seq < lowest)
            {
                out.keys.push(info.key);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64) -> Stored {
        let name = SegmentName {
            seq,
            first_time: 1_800_000_000 + seq as i64,
            last_time: 1_800_000_000 + seq as i64,
            server_id: 1,
            start: 4 + seq * 100,
            end: 104 + seq * 100,
            file: "binlog.000001".into(),
        };
        Stored {
            key: name.key("db"),
            name,
            bytes: 50,
            written: None,
        }
    }

    #[test]
    fn keeps_from_the_cut_and_always_the_chain_end() {
        let chain: Vec<Stored> = (0..6).map(stored).collect();
        let got = judge(chain.clone(), Some(3), "window", None);
        assert_eq!(got.keys.len(), 3);
        assert_eq!(got.deleted[0].objects, 3);
        assert_eq!(got.kept[0].why, "window");
        assert_eq!(got.kept[0].objects, 3);
        // A cut past the chain's end still keeps its last segment.
        let got = judge(chain.clone(), Some(u64::MAX), "window", None);
        assert_eq!(got.keys.len(), 5);
        assert!(got.kept[0].why.starts_with("the chain's end"));
        // No cut: everything stays.
        assert!(judge(chain, None, "", None).keys.is_empty());
    }
}
