//! What each backup costs in the store, and how a source grows month by month.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{BackupAudit, MonthGrowth};
use crate::repo::ids::ChunkId;
use crate::repo::index::Index;
use crate::repo::manifest::{BackupId, Manifest};

/// A backup's bytes as stored: its distinct chunks, and those of them no older backup (of any
/// source) has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupBytes {
    pub stored: u64,
    pub added: u64,
}

/// The stored and added bytes of every one of `manifests` (any order): oldest first by start,
/// each chunk is added by the first backup that has it. A delta chunk counts its base too, which
/// restoring it needs. A chunk the index does not know counts 0 (verify names it).
pub fn backup_bytes(manifests: &[&Manifest], index: &Index) -> HashMap<BackupId, BackupBytes> {
    let mut order: Vec<&Manifest> = manifests.to_vec();
    order.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut out = HashMap::with_capacity(order.len());
    for m in order {
        let mut mine: HashSet<ChunkId> = HashSet::new();
        for chunk in m.files.iter().flat_map(|f| f.chunks.iter()) {
            if mine.insert(*chunk) {
                if let Some(base) = index.base_of(chunk) {
                    mine.insert(base);
                }
            }
        }
        let mut bytes = BackupBytes::default();
        for chunk in mine {
            let length = index.get(&chunk).map_or(0, |l| u64::from(l.length));
            bytes.stored += length;
            if seen.insert(chunk) {
                bytes.added += length;
            }
        }
        out.insert(m.id.clone(), bytes);
    }
    out
}

/// What `backups` added per calendar month of `zone` they were taken in, oldest first.
pub fn growth(backups: &[BackupAudit], zone: chrono_tz::Tz) -> Vec<MonthGrowth> {
    let mut months: BTreeMap<String, MonthGrowth> = BTreeMap::new();
    for b in backups {
        let month = month_of(b.started, zone);
        let entry = months.entry(month.clone()).or_insert_with(|| MonthGrowth {
            month,
            backups: 0,
            logical_bytes: 0,
            added_bytes: 0,
        });
        entry.backups += 1;
        entry.logical_bytes += b.logical_bytes;
        entry.added_bytes += b.added_bytes;
    }
    months.into_values().collect()
}

/// `YYYY-MM` of `t` in `zone`.
pub fn month_of(t: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    t.with_timezone(&zone).format("%Y-%m").to_string()
}
