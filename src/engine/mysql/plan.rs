//! Planning a MySQL/MariaDB restore: the newest dump before the point, and the binlog segments
//! from the dump's coordinates to the point, chosen by their recorded positions, event times and
//! GTIDs, never by when they were uploaded. Gaps and failovers inside the range are named.
//!
//! The planner is a pure function of what was read: the manifests, the chain's segment names
//! (which carry positions and event times), and the headers of the segments read so far. When a
//! decision needs a header not yet read, it answers [`Planned::Need`] with the segments to read,
//! and is asked again with them; so it never reads the store, and its tests need none.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::segment::{continues, SegmentMeta, SegmentName};
use super::MyError;
use crate::position::GtidPos;
use crate::repo::manifest::{BackupId, BackupKind, Manifest, MysqlPoint};
use crate::restore::point::RestorePoint;
use crate::restore::summary::Gap;

/// A restore, decided before anything is touched.
#[derive(Debug, Clone, Serialize)]
pub struct MyPlan {
    pub source: String,
    pub point: RestorePoint,
    pub backup: BackupId,
    pub backup_kind: BackupKind,
    pub backup_consistent_at: DateTime<Utc>,
    pub backup_binlog: String,
    pub backup_gtid_pos: GtidPos,
    pub databases: Vec<String>,
    pub dump_bytes: u64,
    /// What the replay stops at, in words.
    pub stop: String,
    /// The segments to replay, in order.
    #[serde(skip)]
    pub segments: Vec<SegmentName>,
    pub segment_count: usize,
    /// The binlog range: first and last segment as `server N file:position`.
    pub binlog_from: Option<String>,
    pub binlog_to: Option<String>,
    pub binlog_bytes: u64,
    /// Where the stored binlog has holes between the dump and the point; a plan with gaps is
    /// refused.
    pub gaps: Vec<Gap>,
    /// Failovers inside the range, and where the new primary lacked transactions stored from the
    /// old one (those are not in the history the restore follows).
    pub forks: Vec<String>,
    /// Per chosen segment: the GTID position a later failover in the range continued from.
    #[serde(skip)]
    pub(super) caps: Vec<Option<GtidPos>>,
    #[serde(skip)]
    pub(super) start_file_pos: Option<(u32, String, u64)>,
}

impl MyPlan {
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Why the plan cannot be carried out, if it cannot.
    pub fn problem(&self) -> Option<String> {
        (!self.gaps.is_empty()).then(|| {
            self.gaps
                .iter()
                .map(|g| g.why.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The GTID position the replay starts after: the dump's.
    pub fn start_gtid(&self) -> &GtidPos {
        &self.backup_gtid_pos
    }
}

/// What the planner answers.
#[derive(Debug)]
pub enum Planned {
    Plan(Box<MyPlan>),
    /// Read these segments' headers and ask again.
    Need(Vec<SegmentName>),
}

/// The binlog a source has stored: every segment by name, and the headers read so far, by
/// sequence number.
#[derive(Debug, Clone, Default)]
pub struct BinlogCoverage {
    pub segments: Vec<SegmentName>,
    pub metas: BTreeMap<u64, SegmentMeta>,
}

/// At most this many headers are asked for at once while walking towards a GTID.
const BATCH: usize = 64;

/// The headers the planner has, and the ones it found it needs.
struct Headers<'a> {
    have: &'a BTreeMap<u64, SegmentMeta>,
    need: Vec<SegmentName>,
}

impl<'a> Headers<'a> {
    fn get(&mut self, name: &SegmentName) -> Option<&'a SegmentMeta> {
        let meta = self.have.get(&name.seq);
        if meta.is_none() && !self.need.iter().any(|n| n.seq == name.seq) {
            self.need.push(name.clone());
        }
        meta
    }
}

fn describe(n: &SegmentName, at_start: bool) -> String {
    format!(
        "server {} {}:{}",
        n.server_id,
        n.file,
        if at_start { n.start } else { n.end }
    )
}

/// Chooses the backup of `kind` and the binlog segments for `point`.
pub fn plan(
    source: &str,
    manifests: &[Manifest],
    kind: BackupKind,
    point: &RestorePoint,
    coverage: &BinlogCoverage,
) -> Result<Planned, MyError> {
    let (chosen, p) = choose_backup(source, manifests, kind, point)?;
    let mut plan = MyPlan {
        source: source.to_owned(),
        point: point.clone(),
        backup: chosen.id.clone(),
        backup_kind: chosen.kind,
        backup_consistent_at: p.consistent_at,
        backup_binlog: format!("{}:{}", p.binlog_file, p.binlog_pos),
        backup_gtid_pos: p.gtid_pos.clone(),
        databases: p.databases.clone(),
        dump_bytes: chosen.size(),
        stop: describe_stop(point),
        segments: Vec::new(),
        segment_count: 0,
        binlog_from: None,
        binlog_to: None,
        binlog_bytes: 0,
        gaps: Vec::new(),
        forks: Vec::new(),
        caps: Vec::new(),
        start_file_pos: Some((p.server_id, p.binlog_file.clone(), p.binlog_pos)),
    };
    if matches!(point, RestorePoint::Backup(_)) {
        plan.stop = format!(
            "the backup itself (consistent at {})",
            p.consistent_at.to_rfc3339()
        );
        return Ok(Planned::Plan(Box::new(plan)));
    }
    if let RestorePoint::Gtid(g) = point {
        if p.gtid_pos.contains_gtid(g) {
            plan.stop = format!("the backup itself, which already holds transaction {g}");
            return Ok(Planned::Plan(Box::new(plan)));
        }
    }
    let names = &coverage.segments;
    let mut headers = Headers {
        have: &coverage.metas,
        need: Vec::new(),
    };
    let first = match first_after(names, p, &mut headers) {
        Ok(first) => first,
        Err(()) => return Ok(Planned::Need(headers.need)),
    };
    let Some(first) = first.filter(|&i| i < names.len()) else {
        // Nothing stored after the backup.
        if matches!(point, RestorePoint::Latest) {
            plan.stop = "the end of the backup: no binlog stored after it".into();
        } else {
            let stored_end = names.last().map(|n| describe(n, false));
            plan.gaps.push(Gap {
                log: "binlog",
                first: format!("{} (GTID {})", plan.backup_binlog, p.gtid_pos),
                last: "the point".into(),
                blocking: true,
                why: format!(
                    "no binlog stored after the backup's point ({} / GTID {}){}",
                    plan.backup_binlog,
                    p.gtid_pos,
                    stored_end
                        .map(|e| format!("; the stored binlog ends at {e}"))
                        .unwrap_or_default()
                ),
            });
        }
        return Ok(Planned::Plan(Box::new(plan)));
    };

    let stop_second = point.time().map(|t| t.timestamp());
    let mut chosen_names = Vec::new();
    let mut forks: Vec<(usize, GtidPos)> = Vec::new();
    let mut reached = false;
    for (k, name) in names[first..].iter().enumerate() {
        if k > 0 {
            let prev = &names[first + k - 1];
            if !continues(prev, name) {
                match (headers.get(name), headers.get(prev)) {
                    (Some(meta), Some(before)) => {
                        if meta.resumed_by != "gtid" {
                            plan.gaps.push(Gap {
                                log: "binlog",
                                first: describe(prev, false),
                                last: describe(name, true),
                                blocking: true,
                                why: format!(
                                    "the binlog between {} and {} is not stored",
                                    describe(prev, false),
                                    describe(name, true)
                                ),
                            });
                        }
                        if let Some(from) = &meta.resumed_from {
                            if name.server_id != prev.server_id {
                                plan.forks.push(format!(
                                    "failover from server {} to server {} at GTID {from}",
                                    prev.server_id, name.server_id
                                ));
                            }
                            if !from.contains(&before.gtid_pos) {
                                plan.forks.push(format!(
                                    "server {} continued from GTID {from}, not {}: transactions \
                                     stored after {from} from server {} are not in its history",
                                    name.server_id, before.gtid_pos, prev.server_id
                                ));
                            }
                            forks.push((k, from.clone()));
                        }
                    }
                    _ if headers.need.len() >= BATCH => break,
                    _ => {}
                }
            }
        }
        chosen_names.push(name.clone());
        match point {
            RestorePoint::Time(_) if stop_second.is_some_and(|s| name.last_time >= s) => {
                reached = true;
                break;
            }
            RestorePoint::Gtid(g) => match headers.get(name) {
                Some(meta) if meta.gtid_pos.contains_gtid(g) => {
                    reached = true;
                    break;
                }
                None if headers.need.len() >= BATCH => break,
                _ => {}
            },
            _ => {}
        }
    }
    if !headers.need.is_empty() {
        return Ok(Planned::Need(headers.need));
    }
    if !reached && !matches!(point, RestorePoint::Latest) {
        let end = names.last().map(|n| describe(n, false)).unwrap_or_default();
        let last_time = names
            .last()
            .and_then(|n| Utc.timestamp_opt(n.last_time, 0).single())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        plan.gaps.push(Gap {
            log: "binlog",
            first: end.clone(),
            last: "the point".into(),
            blocking: true,
            why: format!(
                "the stored binlog ends at {end} (last event {last_time}), before the point; \
                 restore --latest, or wait for the streamer to store more"
            ),
        });
    }
    plan.binlog_bytes = chosen_names.iter().map(|n| n.end - n.start).sum();
    plan.binlog_from = chosen_names.first().map(|n| describe(n, true));
    plan.binlog_to = chosen_names.last().map(|n| describe(n, false));
    plan.segment_count = chosen_names.len();
    plan.caps = vec![None; chosen_names.len()];
    let mut cap: Option<GtidPos> = None;
    for i in (0..chosen_names.len()).rev() {
        plan.caps[i] = cap.clone();
        if let Some((_, from)) = forks.iter().find(|(k, _)| *k == i) {
            cap = Some(match cap {
                None => from.clone(),
                Some(c) => c.lower(from),
            });
        }
    }
    plan.segments = chosen_names;
    Ok(Planned::Plan(Box::new(plan)))
}

/// The newest backup of `kind` the point can start from.
fn choose_backup<'a>(
    source: &str,
    manifests: &'a [Manifest],
    kind: BackupKind,
    point: &RestorePoint,
) -> Result<(&'a Manifest, &'a MysqlPoint), MyError> {
    let backups: Vec<(&Manifest, &MysqlPoint)> = manifests
        .iter()
        .filter(|m| m.kind == kind && m.source == source)
        .filter_map(|m| Some((m, m.mysql.as_ref()?)))
        .collect();
    if backups.is_empty() {
        return Err(MyError::Invalid(match kind {
            BackupKind::MysqlPhysical => format!(
                "source {source} has no physical backups to restore into a directory: run \
                 `heirloom-backup backup {source}` with mode: physical, or restore into a server URL"
            ),
            _ => format!(
                "source {source} has no MySQL dumps to restore into a server: run \
                 `heirloom-backup backup {source}` first"
            ),
        }));
    }
    let noun = match kind {
        BackupKind::MysqlDump => "dump",
        _ => "physical backup",
    };
    let newest = |candidates: Vec<(&'a Manifest, &'a MysqlPoint)>| {
        candidates.into_iter().max_by_key(|(_, p)| p.consistent_at)
    };
    match point {
        RestorePoint::Backup(id) => backups
            .iter()
            .find(|(m, _)| &m.id == id)
            .copied()
            .ok_or_else(|| {
                MyError::Invalid(format!("{id} is not a {kind:?} backup of source {source}"))
            }),
        RestorePoint::Latest => newest(backups)
            .ok_or_else(|| MyError::Invalid(format!("source {source} has no backups"))),
        RestorePoint::Time(t) => {
            let first = backups.iter().map(|(_, p)| p.consistent_at).min();
            newest(backups.iter().filter(|(_, p)| p.consistent_at <= t.at).copied().collect())
                .ok_or_else(|| {
                    MyError::Invalid(format!(
                        "{t} is before the first {noun} of source {source} (consistent at {}): nothing to restore from",
                        first.map(|f| f.to_rfc3339()).unwrap_or_default()
                    ))
                })
        }
        RestorePoint::Gtid(g) => newest(
            backups
                .iter()
                .filter(|(_, p)| {
                    p.gtid_pos
                        .0
                        .get(&g.domain)
                        .is_none_or(|have| have.seq <= g.seq)
                })
                .copied()
                .collect(),
        )
        .ok_or_else(|| {
            MyError::Invalid(format!(
                "every {noun} of source {source} is past GTID {g}: nothing to restore from"
            ))
        }),
        RestorePoint::Lsn(_) | RestorePoint::Name(_) => Err(MyError::Invalid(format!(
            "{} is for PostgreSQL sources",
            point.flag()
        ))),
    }
}

/// The index of the first segment holding something after the backup's point: by file and
/// position on the backup's server, else by GTID position. `Err` when a header is needed first.
/// The index in `names` of the first segment a replay from the backup at `p` needs (`names.len()`
/// when none stored yet is); `Ok(None)` when neither the names nor the headers place it. `Err`
/// names the headers to read first.
pub fn first_needed(
    names: &[SegmentName],
    p: &MysqlPoint,
    metas: &BTreeMap<u64, SegmentMeta>,
) -> Result<Option<usize>, Vec<SegmentName>> {
    let mut headers = Headers {
        have: metas,
        need: Vec::new(),
    };
    first_after(names, p, &mut headers).map_err(|()| headers.need)
}

fn first_after(
    names: &[SegmentName],
    p: &MysqlPoint,
    headers: &mut Headers<'_>,
) -> Result<Option<usize>, ()> {
    if let Some(i) = names.iter().position(|n| {
        n.server_id == p.server_id
            && n.file == p.binlog_file
            && n.start <= p.binlog_pos
            && p.binlog_pos < n.end
    }) {
        return Ok(Some(i));
    }
    // The point is at the end of a segment, or on another server.
    if let Some(i) = names.iter().position(|n| {
        n.server_id == p.server_id && n.file == p.binlog_file && n.end == p.binlog_pos
    }) {
        return Ok(Some(i + 1));
    }
    if p.gtid_pos.is_empty() {
        return Ok(None);
    }
    // The chain's GTID position only grows (but at a failover that lost transactions): the first
    // segment whose end holds the backup's position, found by bisection over the headers.
    let (mut lo, mut hi) = (0usize, names.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let meta = headers.get(&names[mid]).ok_or(())?;
        if meta.gtid_pos.contains(&p.gtid_pos) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if lo == names.len() {
        return Ok(None);
    }
    let meta = headers.get(&names[lo]).ok_or(())?;
    // Ending exactly at the backup's position, it holds nothing to replay.
    Ok(Some(if meta.gtid_pos == p.gtid_pos {
        lo + 1
    } else {
        lo
    }))
}

fn describe_stop(point: &RestorePoint) -> String {
    match point {
        RestorePoint::Time(t) => format!(
            "before the first transaction logged at or after {} (binlog times are whole seconds)",
            Utc.timestamp_opt(t.at.timestamp(), 0)
                .single()
                .unwrap_or(t.at)
                .to_rfc3339()
        ),
        RestorePoint::Gtid(g) => format!("after transaction {g}"),
        RestorePoint::Backup(id) => format!("the backup {id}"),
        _ => "the end of the stored binlog".into(),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
