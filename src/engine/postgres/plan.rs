//! Planning a PostgreSQL restore from what was read before it: the manifests, the archive's
//! listing and its timeline histories. Nothing here reads the store, so every decision is tested
//! on made-up archives (`plan_tests.rs`).
//!
//! Recovery to a backup itself (`--backup`) stays on the backup's timeline
//! (`recovery_target_timeline = 'current'`). Every other point follows
//! `recovery_target_timeline = 'latest'`, as PostgreSQL finds it: from the
//! backup's timeline, the next ones whose `.history` files are archived, one after another. The
//! WAL recovery reads is then, segment by segment, the newest timeline of that path begun at or
//! before the segment (a timeline begins in the segment holding its switch point).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::names::{Lsn, WalFileName};
use super::PgError;
use crate::repo::manifest::{BackupId, BackupKind, Manifest};
use crate::restore::point::RestorePoint;
use crate::restore::summary::Gap;

/// One line of a timeline's history file: timeline `parent` ended at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub parent: u32,
    pub at: Lsn,
}

/// Reads a `.history` file: `parentTLI <tab> switchpoint <tab> reason` lines, `#` comments.
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let bad = || format!("{line:?} is not a timeline history line");
        let parent = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let at = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        out.push(Switch { parent, at });
    }
    Ok(out)
}

/// What the archive of a source holds, as far as planning needs it.
#[derive(Debug, Clone, Default)]
pub struct WalArchive {
    /// Every archived file with its stored size (streamed segments not yet complete included).
    pub files: Vec<(WalFileName, u64)>,
    /// Each archived `.history` file, read: timeline -> its ancestors and where they ended.
    pub histories: BTreeMap<u32, Vec<Switch>>,
}

/// A switch of timeline a recovery crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimelineSwitch {
    pub from: u32,
    pub to: u32,
    pub at: Lsn,
}

/// What a physical restore will do: the base backup, the WAL from it to the point, and every
/// reason it cannot.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub source: String,
    pub point: RestorePoint,
    pub backup: BackupId,
    pub backup_consistent_at: DateTime<Utc>,
    /// The backup's timeline, and the one recovery ends on.
    pub timeline: u32,
    pub target_timeline: u32,
    /// Timeline switches between the backup and the end of recovery.
    pub switches: Vec<TimelineSwitch>,
    /// The first WAL file recovery needs, and the one that makes the backup consistent.
    pub wal_start: String,
    pub wal_consistent: String,
    /// The last WAL file of an unbroken run from `wal_start`, along the timelines recovery takes.
    pub wal_last: Option<String>,
    pub wal_segments: usize,
    /// WAL files the backup cannot do without that are not in the archive.
    pub missing: Vec<String>,
    /// The same, as runs of consecutive segments: first and last of each.
    #[serde(skip)]
    missing_runs: Vec<(String, String)>,
    /// A hole after the backup's consistency point, with WAL archived after it: `gap_at ..=
    /// gap_end` are missing.
    pub gap_at: Option<String>,
    pub gap_end: Option<String>,
    /// Why recovery cannot be shown to reach the point, when it cannot: such a plan is refused.
    pub unreachable: Option<String>,
    pub backup_bytes: u64,
    pub wal_bytes: u64,
}

impl RestorePlan {
    /// The backup can be made consistent and the WAL reaches the point.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unreachable.is_none()
    }

    /// Why the plan cannot be carried out, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !self.missing.is_empty() {
            return Some(format!(
                "backup {} cannot be made consistent: WAL missing from the archive: {}",
                self.backup,
                self.missing.join(", ")
            ));
        }
        self.unreachable.clone()
    }

    /// The holes, each as one range: runs of missing files the backup needs, and the hole after.
    pub fn gaps(&self) -> Vec<Gap> {
        let mut gaps: Vec<Gap> = self
            .missing_runs
            .iter()
            .map(|(first, last)| Gap {
                log: "WAL",
                first: first.clone(),
                last: last.clone(),
                blocking: true,
                why: format!(
                    "backup {} cannot be made consistent without it",
                    self.backup
                ),
            })
            .collect();
        if let (Some(first), Some(last)) = (&self.gap_at, &self.gap_end) {
            gaps.push(Gap {
                log: "WAL",
                first: first.clone(),
                last: last.clone(),
                blocking: self.unreachable.is_some(),
                why: "missing, with WAL archived after it: recovery stops at the hole".into(),
            });
        }
        gaps
    }
}

/// The timelines recovery takes from the backup's: each with the LSN it begins at.
struct Path {
    steps: Vec<(u32, Lsn)>,
    /// Why recovery cannot follow the archive's timelines from the backup, when it cannot.
    broken: Option<String>,
}

impl Path {
    fn find(archive: &WalArchive, backup_timeline: u32, consistent: Lsn) -> Path {
        let mut newest = backup_timeline;
        while archive.histories.contains_key(&(newest + 1)) {
            newest += 1;
        }
        let mut path = Path {
            steps: vec![(backup_timeline, Lsn(0))],
            broken: None,
        };
        if let Some(orphan) = archive
            .files
            .iter()
            .filter_map(|(n, _)| match n {
                WalFileName::Segment { timeline, .. } if *timeline == newest + 1 => Some(*timeline),
                _ => None,
            })
            .next()
        {
            path.broken = Some(format!(
                "WAL of timeline {orphan} is archived but {} is not: recovery cannot follow the promotion to timeline {orphan}, and would stop at the end of timeline {newest}",
                WalFileName::History { timeline: orphan }
            ));
        }
        if newest == backup_timeline {
            return path;
        }
        let history = archive.histories.get(&newest).cloned().unwrap_or_default();
        let Some(from) = history.iter().position(|s| s.parent == backup_timeline) else {
            path.broken = Some(format!(
                "timeline {newest}, the newest in the archive, does not descend from timeline {backup_timeline} of the backup: recovery cannot follow it"
            ));
            return path;
        };
        if history[from].at < consistent {
            path.broken = Some(format!(
                "timeline {backup_timeline} of the backup ended at {} in the history of timeline {newest}, before the backup is consistent ({consistent}): the backup is of a branch the archive's newest timeline left",
                history[from].at
            ));
            return path;
        }
        for (i, switch) in history.iter().enumerate().skip(from) {
            let next = history.get(i + 1).map_or(newest, |s| s.parent);
            path.steps.push((next, switch.at));
        }
        path
    }

    /// The timeline a segment is read from.
    fn timeline_of(&self, number: u64, segment_size: u64) -> u32 {
        self.steps
            .iter()
            .rev()
            .find(|(_, begin)| begin.0 / segment_size <= number)
            .map_or(self.steps[0].0, |(tl, _)| *tl)
    }

    fn switches(&self) -> Vec<TimelineSwitch> {
        self.steps
            .windows(2)
            .map(|w| TimelineSwitch {
                from: w[0].0,
                to: w[1].0,
                at: w[1].1,
            })
            .collect()
    }
}

/// Chooses the backup and checks the WAL, from the manifests and the archive alone.
pub fn plan(
    source: &str,
    manifests: &[Manifest],
    archive: &WalArchive,
    point: &RestorePoint,
) -> Result<RestorePlan, PgError> {
    let backups: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| {
            m.source == source && m.kind == BackupKind::PostgresPhysical && m.postgres.is_some()
        })
        .collect();
    let consistent = |m: &Manifest| m.postgres.as_ref().map(|p| p.consistent_at);
    let chosen = match point {
        RestorePoint::Latest | RestorePoint::Name(_) => {
            // Where a restore point lies is known only to the WAL: the newest backup, replayed to it.
            backups.iter().max_by_key(|m| consistent(m))
        }
        RestorePoint::Time(t) => backups
            .iter()
            .filter(|m| consistent(m).is_some_and(|c| c <= t.at))
            .max_by_key(|m| consistent(m)),
        RestorePoint::Backup(id) => backups.iter().find(|m| &m.id == id),
        RestorePoint::Lsn(target) => backups
            .iter()
            .filter(|m| m.postgres.as_ref().is_some_and(|p| p.stop_lsn <= *target))
            .max_by_key(|m| consistent(m)),
        RestorePoint::Gtid(_) => {
            return Err(PgError::Invalid(
                "--gtid is for MySQL/MariaDB sources".into(),
            ))
        }
    }
    .copied();
    let Some(backup) = chosen else {
        let earliest = backups.iter().filter_map(|m| consistent(m)).min();
        return Err(PgError::Invalid(match (point, earliest) {
            (_, None) => format!("source {source} has no PostgreSQL base backup"),
            (RestorePoint::Time(t), Some(e)) => format!(
                "no backup of {source} is consistent at or before {t}: the earliest is consistent at {}",
                e.to_rfc3339()
            ),
            (RestorePoint::Backup(id), Some(_)) => {
                format!("backup {id} is not a PostgreSQL backup of {source}")
            }
            (RestorePoint::Lsn(lsn), Some(_)) => format!(
                "no backup of {source} is consistent at or before LSN {lsn}: the earliest ends after it"
            ),
            (_, Some(_)) => format!("source {source} has no usable backup"),
        }));
    };
    let pg = backup
        .postgres
        .as_ref()
        .ok_or_else(|| PgError::Invalid("no PostgreSQL point".into()))?;
    let size = pg.segment_size;
    let start: WalFileName = pg.start_wal.parse().map_err(PgError::Invalid)?;
    let stop: WalFileName = pg.stop_wal.parse().map_err(PgError::Invalid)?;
    let (Some(start_no), Some(stop_no)) = (start.segment_number(size), stop.segment_number(size))
    else {
        return Err(PgError::Invalid(format!(
            "backup {}: {} .. {} are not WAL segments",
            backup.id, pg.start_wal, pg.stop_wal
        )));
    };
    let immediate = matches!(point, RestorePoint::Backup(_));
    let path = Path::find(archive, pg.timeline, pg.stop_lsn);

    // Archived segments on the path: those of the timeline recovery reads at their number.
    let present: HashMap<(u32, u64), u64> = archive
        .files
        .iter()
        .filter_map(|(n, size_of)| Some(((n.timeline()?, n.segment_number(size)?), *size_of)))
        .collect();
    let on_path = |&(tl, no): &(u32, u64)| path.timeline_of(no, size) == tl;
    let last_on_path = present
        .keys()
        .filter(|k| on_path(k))
        .map(|(_, no)| *no)
        .max();

    let mut missing = Vec::new();
    let mut missing_runs: Vec<(String, String, u64)> = Vec::new();
    let (mut wal_last, mut wal_segments, mut wal_bytes) = (None, 0, 0);
    let (mut gap_at, mut gap_end) = (None, None);
    let mut no = start_no;
    loop {
        let tl = path.timeline_of(no, size);
        let name = WalFileName::segment(tl, no, size);
        match present.get(&(tl, no)) {
            Some(bytes) => {
                wal_bytes += bytes;
                wal_segments += 1;
                wal_last = Some(name.to_string());
            }
            None if no <= stop_no => {
                missing.push(name.to_string());
                match missing_runs.last_mut() {
                    Some(run) if run.2 + 1 == no => {
                        run.1 = name.to_string();
                        run.2 = no;
                    }
                    _ => missing_runs.push((name.to_string(), name.to_string(), no)),
                }
            }
            None => {
                // Past the consistency point: the end of the archive, or a hole before more.
                let resumes = present
                    .keys()
                    .filter(|k| on_path(k) && k.1 > no)
                    .map(|(_, n)| *n)
                    .min();
                if let Some(resumes) = resumes {
                    gap_at = Some(name.to_string());
                    let before = resumes - 1;
                    gap_end = Some(
                        WalFileName::segment(path.timeline_of(before, size), before, size)
                            .to_string(),
                    );
                }
                break;
            }
        }
        if immediate && no >= stop_no {
            break;
        }
        no += 1;
        if no > stop_no.max(last_on_path.unwrap_or(0)) {
            break;
        }
    }
    let gap_no = gap_at
        .as_deref()
        .and_then(|g| g.parse::<WalFileName>().ok())
        .and_then(|g| g.segment_number(size));
    let last_no = wal_last
        .as_deref()
        .and_then(|g| g.parse::<WalFileName>().ok())
        .and_then(|g| g.segment_number(size));
    let unreachable = if immediate {
        None
    } else {
        path.broken.clone().or_else(|| {
            unreachable(
                point,
                gap_at.as_deref(),
                gap_no,
                last_no,
                &path,
                size,
                &backups,
            )
        })
    };
    let (target_timeline, switches) = if immediate {
        (pg.timeline, Vec::new())
    } else {
        (
            path.steps.last().map_or(pg.timeline, |(tl, _)| *tl),
            path.switches(),
        )
    };
    Ok(RestorePlan {
        source: source.to_owned(),
        point: point.clone(),
        backup: backup.id.clone(),
        backup_consistent_at: pg.consistent_at,
        timeline: pg.timeline,
        target_timeline,
        switches,
        wal_start: pg.start_wal.clone(),
        wal_consistent: pg.stop_wal.clone(),
        wal_last,
        wal_segments,
        missing,
        missing_runs: missing_runs.into_iter().map(|(a, b, _)| (a, b)).collect(),
        gap_at,
        gap_end,
        unreachable,
        backup_bytes: backup.size(),
        wal_bytes,
    })
}

/// Why the WAL after the backup cannot be shown to carry recovery to `point`, if it cannot.
///
/// With no hole after the backup, recovery runs to the end of the archive, and PostgreSQL itself
/// stops with an error if a time or restore point lies beyond it. A hole (a missing segment with
/// WAL archived after it) ends recovery early: for `--latest` that would silently drop what
/// follows; for an LSN the segment it lies in says which side of the hole it is; for a time, a
/// later backup on the path that is consistent after that time and ends before the hole proves
/// the time lies before it (WAL positions only grow with time); otherwise nothing in the archive
/// tells, and the plan is refused rather than guessed.
fn unreachable(
    point: &RestorePoint,
    gap: Option<&str>,
    gap_no: Option<u64>,
    last_no: Option<u64>,
    path: &Path,
    size: u64,
    backups: &[&Manifest],
) -> Option<String> {
    let advice =
        "restore an earlier instant, or --lsn up to the end of the last segment before the hole";
    match (point, gap, gap_no) {
        (RestorePoint::Backup(_) | RestorePoint::Gtid(_), ..) => None,
        (RestorePoint::Lsn(lsn), ..) => {
            let needed_no = lsn.0 / size;
            let needed = WalFileName::segment(path.timeline_of(needed_no, size), needed_no, size);
            match (gap, gap_no, last_no) {
                (Some(g), Some(g_no), _) if needed_no >= g_no => Some(format!(
                    "LSN {lsn} lies in WAL {needed}, past {g}, which is missing from the archive: recovery cannot reach it"
                )),
                (None, _, Some(last)) if needed_no > last => Some(format!(
                    "LSN {lsn} lies in WAL {needed}, and the archive ends at {}",
                    WalFileName::segment(path.timeline_of(last, size), last, size)
                )),
                _ => None,
            }
        }
        (_, None, _) | (_, _, None) => None,
        (RestorePoint::Latest, Some(g), _) => Some(format!(
            "WAL {g} is missing from the archive, and WAL was archived after it: recovery would stop at the hole and lose everything after it; {advice}"
        )),
        (RestorePoint::Name(name), Some(g), _) => Some(format!(
            "WAL {g} is missing from the archive, and whether restore point {name:?} lies before it cannot be told: recovery would stop at the hole; {advice}"
        )),
        (RestorePoint::Time(t), Some(g), Some(g_no)) => {
            let before_hole = backups.iter().any(|m| {
                m.postgres.as_ref().is_some_and(|p| {
                    let stop_no = p.stop_lsn.0 / size;
                    p.consistent_at > t.at
                        && path.timeline_of(stop_no, size) == p.timeline
                        && path.steps.iter().any(|(tl, _)| *tl == p.timeline)
                        && stop_no < g_no
                })
            });
            (!before_hole).then(|| format!(
                "WAL {g} is missing from the archive, with WAL archived after it, and nothing shows that {t} lies before the hole: recovery could stop short of it; {advice}"
            ))
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
