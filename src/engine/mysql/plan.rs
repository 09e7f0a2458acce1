//! Planning a MySQL/MariaDB restore: the newest dump before the target, and the binlog segments
//! from the dump's coordinates to the target, chosen by their recorded positions, event times and
//! GTIDs, never by when they were uploaded. Gaps and failovers inside the range are named.

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::binlog::{Gtid, GtidPos};
use super::segment::{continues, list_segments, read_meta, SegmentName};
use super::MyError;
use crate::repo::manifest::{BackupId, BackupKind, Manifest, MysqlPoint};
use crate::repo::Repository;

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyTarget {
    /// Everything stored.
    Latest,
    /// The state as of this instant (binlog times are whole seconds: transactions logged in the
    /// second holding the instant, or later, are left out).
    Time(DateTime<Utc>),
    /// Up to and including this transaction.
    Gtid(Gtid),
    /// One dump, as it was taken.
    Backup(BackupId),
}

/// A restore, decided before anything is touched.
#[derive(Debug, Clone, Serialize)]
pub struct MyPlan {
    pub source: String,
    pub backup: BackupId,
    pub backup_consistent_at: DateTime<Utc>,
    pub backup_binlog: String,
    pub backup_gtid_pos: String,
    pub databases: Vec<String>,
    pub dump_bytes: u64,
    /// What the replay stops at, in words.
    pub stop: String,
    /// The segments to replay, in order.
    #[serde(skip)]
    pub segments: Vec<SegmentName>,
    pub segment_count: usize,
    /// The binlog range: first and last segment as `server:file:start-end`.
    pub binlog_from: Option<String>,
    pub binlog_to: Option<String>,
    pub binlog_bytes: u64,
    /// Where the stored binlog has holes between the dump and the target; a plan with gaps is
    /// refused.
    pub gaps: Vec<String>,
    /// Failovers inside the range where the new primary lacked transactions stored from the old
    /// one: those are not in the history the restore follows.
    pub forks: Vec<String>,
    /// Per chosen segment: the GTID position a later failover in the range continued from.
    #[serde(skip)]
    pub(super) caps: Vec<Option<GtidPos>>,
    #[serde(skip)]
    pub(super) target: MyTarget,
    #[serde(skip)]
    pub(super) start_gtid: GtidPos,
    #[serde(skip)]
    pub(super) start_file_pos: Option<(u32, String, u64)>,
}

impl MyPlan {
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
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

/// Chooses the dump and the binlog segments for `target`.
pub async fn plan(
    repo: &Repository,
    source: &str,
    target: &MyTarget,
    kind: BackupKind,
) -> Result<MyPlan, MyError> {
    let manifests = repo.manifests(Some(source)).await?;
    let dumps: Vec<(&Manifest, &MysqlPoint)> = manifests
        .iter()
        .filter(|m| m.kind == kind)
        .filter_map(|m| Some((m, m.mysql.as_ref()?)))
        .collect();
    if dumps.is_empty() {
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
    let chosen = match target {
        MyTarget::Backup(id) => dumps.iter().find(|(m, _)| &m.id == id).copied().ok_or_else(|| {
            MyError::Invalid(format!("{id} is not a MySQL dump of source {source}"))
        })?,
        MyTarget::Latest => newest(dumps.clone())
            .ok_or_else(|| MyError::Invalid(format!("source {source} has no MySQL dumps")))?,
        MyTarget::Time(t) => newest(
            dumps
                .iter()
                .filter(|(_, p)| p.consistent_at <= *t)
                .copied()
                .collect(),
        )
        .ok_or_else(|| {
            let first = dumps
                .iter()
                .map(|(_, p)| p.consistent_at)
                .min()
                .unwrap_or(*t);
            MyError::Invalid(format!(
                "{} is before the first dump of source {source} (consistent at {}): nothing to restore from",
                t.to_rfc3339(),
                first.to_rfc3339()
            ))
        })?,
        MyTarget::Gtid(g) => newest(
            dumps
                .iter()
                .filter(|(_, p)| {
                    GtidPos::parse(&p.gtid_pos)
                        .map(|pos| pos.0.get(&g.domain).is_none_or(|have| have.seq <= g.seq))
                        .unwrap_or(false)
                })
                .copied()
                .collect(),
        )
        .ok_or_else(|| {
            MyError::Invalid(format!(
                "every dump of source {source} is past GTID {g}: nothing to restore from"
            ))
        })?,
    };
    let (chosen, p) = chosen;
    let p = p.clone();
    let start_gtid = GtidPos::parse(&p.gtid_pos).map_err(MyError::Invalid)?;
    let mut plan = MyPlan {
        source: source.to_owned(),
        backup: chosen.id.clone(),
        backup_consistent_at: p.consistent_at,
        backup_binlog: format!("{}:{}", p.binlog_file, p.binlog_pos),
        backup_gtid_pos: p.gtid_pos.clone(),
        databases: p.databases.clone(),
        dump_bytes: chosen.size(),
        stop: String::new(),
        segments: Vec::new(),
        segment_count: 0,
        binlog_from: None,
        binlog_to: None,
        binlog_bytes: 0,
        gaps: Vec::new(),
        forks: Vec::new(),
        caps: Vec::new(),
        target: target.clone(),
        start_gtid,
        start_file_pos: Some((p.server_id, p.binlog_file.clone(), p.binlog_pos)),
    };
    if matches!(target, MyTarget::Backup(_)) {
        plan.stop = format!(
            "the dump itself (consistent at {})",
            p.consistent_at.to_rfc3339()
        );
        return Ok(plan);
    }

    let names = list_segments(repo, source).await?;
    // Where the dump's point falls in the chain: by file and position on the dumped server, else
    // by GTID position.
    let by_pos = names.iter().position(|n| {
        n.server_id == p.server_id
            && n.file == p.binlog_file
            && n.start <= p.binlog_pos
            && p.binlog_pos < n.end
    });
    let first = match by_pos {
        Some(i) => Some(i),
        None => {
            // The dump's point is at the end of a segment, or on another server: the first
            // segment whose GTID position goes past the dump's.
            let mut found = names
                .iter()
                .position(|n| {
                    n.server_id == p.server_id && n.file == p.binlog_file && n.end == p.binlog_pos
                })
                .map(|i| i + 1);
            if found.is_none() && !plan.start_gtid.is_empty() {
                // The chain's GTID position only grows (but at a failover that lost
                // transactions): the first segment whose end holds the dump's position, found by
                // bisection over the headers.
                let (mut lo, mut hi) = (0usize, names.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let meta = read_meta(repo, source, &names[mid]).await?;
                    if meta.gtid_pos.contains(&plan.start_gtid) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                if lo < names.len() {
                    let meta = read_meta(repo, source, &names[lo]).await?;
                    // Ending exactly at the dump's position, it holds nothing to replay.
                    found = Some(if meta.gtid_pos == plan.start_gtid {
                        lo + 1
                    } else {
                        lo
                    });
                }
            }
            found
        }
    };
    let stop_second = match target {
        MyTarget::Time(t) => Some(t.timestamp()),
        _ => None,
    };
    let Some(first) = first.filter(|&i| i < names.len()) else {
        // Nothing stored after the dump.
        match target {
            MyTarget::Latest => {
                plan.stop = "the end of the dump: no binlog stored after it".into();
                return Ok(plan);
            }
            _ => {
                plan.gaps.push(format!(
                    "no binlog stored after the dump's point ({} / GTID {}){}",
                    plan.backup_binlog,
                    p.gtid_pos,
                    names
                        .last()
                        .map(|n| format!("; the stored binlog ends at {}", describe(n, false)))
                        .unwrap_or_default()
                ));
                plan.stop = describe_stop(target);
                return Ok(plan);
            }
        }
    };
    let mut chosen_names = Vec::new();
    let mut forks: Vec<(usize, GtidPos)> = Vec::new();
    let mut reached = false;
    for (k, name) in names[first..].iter().enumerate() {
        if k > 0 {
            let prev = &names[first + k - 1];
            if !continues(prev, name) {
                let meta = read_meta(repo, source, name).await?;
                if meta.resumed_by != "gtid" {
                    plan.gaps.push(format!(
                        "between {} and {}",
                        describe(prev, false),
                        describe(name, true)
                    ));
                }
                if let Some(from) = meta.resumed_from {
                    let before = read_meta(repo, source, prev).await?.gtid_pos;
                    if !from.contains(&before) {
                        plan.forks.push(format!(
                            "server {} continued from GTID {from}, not {before}: transactions \
                             stored after {from} from server {} are not in its history",
                            name.server_id, prev.server_id
                        ));
                    }
                    forks.push((k, from));
                }
            }
        }
        chosen_names.push(name.clone());
        match target {
            MyTarget::Time(_) if stop_second.is_some_and(|s| name.last_time >= s) => {
                reached = true;
                break;
            }
            MyTarget::Gtid(g) => {
                let meta = read_meta(repo, source, name).await?;
                if meta.gtid_pos.contains_gtid(g) {
                    reached = true;
                    break;
                }
            }
            _ => {}
        }
    }
    if !reached && !matches!(target, MyTarget::Latest) {
        let end = names.last().map(|n| describe(n, false)).unwrap_or_default();
        let last_time = names
            .last()
            .and_then(|n| Utc.timestamp_opt(n.last_time, 0).single())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        plan.gaps.push(format!(
            "the stored binlog ends at {end} (last event {last_time}), before the target; \
             restore --latest, or wait for the streamer to store more"
        ));
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
                Some(c) => lower(&c, from),
            });
        }
    }
    plan.segments = chosen_names;
    plan.stop = describe_stop(target);
    Ok(plan)
}

/// Per domain, the lower of two positions (a domain missing from either is missing).
fn lower(a: &GtidPos, b: &GtidPos) -> GtidPos {
    let mut out = GtidPos::default();
    for (d, ga) in &a.0 {
        if let Some(gb) = b.0.get(d) {
            out.apply(if ga.seq <= gb.seq { *ga } else { *gb });
        }
    }
    out
}

fn describe_stop(target: &MyTarget) -> String {
    match target {
        MyTarget::Latest => "the end of the stored binlog".into(),
        MyTarget::Time(t) => format!(
            "before the first transaction logged at or after {} (binlog times are whole seconds)",
            Utc.timestamp_opt(t.timestamp(), 0)
                .single()
                .unwrap_or(*t)
                .to_rfc3339()
        ),
        MyTarget::Gtid(g) => format!("after transaction {g}"),
        MyTarget::Backup(id) => format!("the dump {id}"),
    }
}

fn newest<'a>(
    candidates: Vec<(&'a Manifest, &'a MysqlPoint)>,
) -> Option<(&'a Manifest, &'a MysqlPoint)> {
    candidates.into_iter().max_by_key(|(_, p)| p.consistent_at)
}
