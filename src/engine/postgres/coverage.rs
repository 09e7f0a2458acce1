//! What WAL the archive holds, as unbroken runs: the log coverage retention and the audit read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::names::WalFileName;
use super::plan::WalArchive;
use crate::engine::{LogCoverage, LogGap, LogRun};

/// A run being gathered: segment numbers `first..=last`, begun on timeline `began`, now on
/// `timeline`.
struct Run {
    began: u32,
    timeline: u32,
    first: u64,
    last: u64,
    objects: u64,
    bytes: u64,
    crossings: Vec<String>,
}

/// The archive's segments as runs of consecutive segments. A timeline begun in the segment where
/// another run ends (or in the one after) continues that run, and the switch is named in it.
/// `backups` (the timeline, start segment number and consistency point of each base backup) date
/// the runs: a run's first and last event are the consistency points of the first and last
/// backups that start in it.
pub fn wal_coverage(
    archive: &WalArchive,
    segment_size: u64,
    backups: &[(u32, u64, DateTime<Utc>)],
) -> LogCoverage {
    let mut by_timeline: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for (name, size) in &archive.files {
        if let (WalFileName::Segment { timeline, .. }, Some(no)) =
            (name, name.segment_number(segment_size))
        {
            by_timeline.entry(*timeline).or_default().push((no, *size));
        }
    }
    let mut runs: Vec<Run> = Vec::new();
    for (timeline, mut segments) in by_timeline {
        segments.sort_unstable();
        let begins = archive
            .histories
            .get(&timeline)
            .and_then(|h| h.last())
            .map(|s| (s.parent, s.at));
        for (no, size) in segments {
            if let Some(run) = runs
                .last_mut()
                .filter(|r| r.timeline == timeline && r.last + 1 == no)
            {
                run.last = no;
                run.objects += 1;
                run.bytes += size;
                continue;
            }
            // The first segment of a timeline that branched where a parent's run ends continues
            // that run.
            let parent = begins.and_then(|(parent, at)| {
                let switch = at.0 / segment_size;
                (no == switch).then_some(())?;
                let i = runs.iter().rposition(|r| {
                    r.timeline == parent && r.first <= switch && r.last + 1 >= switch
                })?;
                Some((i, parent, at))
            });
            let run = match parent {
                Some((i, from, at)) => {
                    let mut run = runs.remove(i);
                    run.crossings
                        .push(format!("timeline {from} -> {timeline} at {at}"));
                    run.timeline = timeline;
                    run.last = no;
                    run.objects += 1;
                    run.bytes += size;
                    run
                }
                None => Run {
                    began: timeline,
                    timeline,
                    first: no,
                    last: no,
                    objects: 1,
                    bytes: size,
                    crossings: Vec::new(),
                },
            };
            runs.push(run);
        }
    }
    runs.sort_by_key(|r| (r.began, r.first));
    let name =
        |timeline: u32, no: u64| WalFileName::segment(timeline, no, segment_size).to_string();
    let gaps = runs
        .windows(2)
        .map(|w| {
            let (r, n) = (&w[0], &w[1]);
            let (after, before) = (name(r.timeline, r.last), name(n.began, n.first));
            let (missing, cause) = if n.began == r.timeline && n.first > r.last + 1 {
                let count = n.first - r.last - 1;
                let (from, to) = (name(r.timeline, r.last + 1), name(r.timeline, n.first - 1));
                (
                    if count == 1 {
                        format!("WAL file {from}")
                    } else {
                        format!("WAL files {from} .. {to} ({count} files)")
                    },
                    "not in the archive: never archived (archive_command failing, the archiver or the streamer stopped) or deleted".to_owned(),
                )
            } else {
                (
                    format!("the WAL joining timeline {} at {after} to timeline {} at {before}", r.timeline, n.began),
                    match archive.histories.get(&n.began).and_then(|h| h.last()) {
                        None => format!("the archive holds no history file of timeline {}", n.began),
                        Some(s) => format!(
                            "timeline {} branched from timeline {} at {}, where the archive holds no WAL of it",
                            n.began, s.parent, s.at
                        ),
                    },
                )
            };
            LogGap { after, before, missing, cause }
        })
        .collect();
    // The log grows at the run holding the newest segment of the newest timeline.
    let open = runs
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| (r.timeline, r.last))
        .map(|(i, _)| i);
    LogCoverage {
        log: "WAL",
        runs: runs
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                // A backup starts in a run when its start segment lies in it, on a timeline the
                // run has been on.
                let dated: Vec<DateTime<Utc>> = backups
                    .iter()
                    .filter(|(tl, no, _)| {
                        *no >= r.first && *no <= r.last && (*tl >= r.began && *tl <= r.timeline)
                    })
                    .map(|(_, _, at)| *at)
                    .collect();
                LogRun {
                    first: WalFileName::segment(r.began, r.first, segment_size).to_string(),
                    last: WalFileName::segment(r.timeline, r.last, segment_size).to_string(),
                    objects: r.objects,
                    bytes: r.bytes,
                    first_event: dated.iter().min().copied(),
                    last_event: dated.iter().max().copied(),
                    crossings: r.crossings,
                    open: Some(i) == open,
                }
            })
            .collect(),
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::postgres::plan::Switch;
    use crate::position::Lsn;

    const MIB16: u64 = 16 << 20;

    fn seg(timeline: u32, n: u32) -> (WalFileName, u64) {
        (
            WalFileName::Segment {
                timeline,
                log: 0,
                seg: n,
            },
            MIB16,
        )
    }

    #[test]
    fn runs_break_at_holes_and_continue_across_a_promotion() {
        let mut files: Vec<_> = [1, 2, 3, 5, 6].iter().map(|n| seg(1, *n)).collect();
        files.extend([6, 7].iter().map(|n| seg(2, *n)));
        files.push((WalFileName::History { timeline: 2 }, 40));
        let mut histories = BTreeMap::new();
        histories.insert(
            2,
            vec![Switch {
                parent: 1,
                at: Lsn(6 * MIB16 + 0x200),
            }],
        );
        let t = |h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, h, 0, 0).unwrap();
        // Backups starting in segment 2 (timeline 1) and 7 (timeline 2), and one in the hole.
        let backups = [(1, 2, t(1)), (2, 7, t(5)), (1, 4, t(3))];
        let coverage = wal_coverage(&WalArchive { files, histories }, MIB16, &backups);
        assert_eq!(coverage.runs.len(), 2, "{coverage:?}");
        assert_eq!(coverage.runs[0].first_event, Some(t(1)));
        assert_eq!(coverage.runs[1].first_event, Some(t(5)));
        assert!(!coverage.runs[0].open && coverage.runs[1].open);
        let (a, b) = (&coverage.runs[0], &coverage.runs[1]);
        assert_eq!(
            (a.first.as_str(), a.last.as_str(), a.objects),
            ("000000010000000000000001", "000000010000000000000003", 3)
        );
        assert_eq!(
            (b.first.as_str(), b.last.as_str(), b.objects),
            ("000000010000000000000005", "000000020000000000000007", 4)
        );
        assert_eq!(b.crossings, ["timeline 1 -> 2 at 0/6000200"]);
        assert_eq!(b.bytes, 4 * MIB16);
        assert_eq!(coverage.gaps.len(), 1);
        let gap = &coverage.gaps[0];
        assert_eq!(
            (
                gap.after.as_str(),
                gap.before.as_str(),
                gap.missing.as_str()
            ),
            (
                "000000010000000000000003",
                "000000010000000000000005",
                "WAL file 000000010000000000000004"
            )
        );
        assert!(gap.cause.contains("not in the archive"), "{gap:?}");
    }

    #[test]
    fn a_timeline_without_a_parent_run_stands_alone() {
        let files = vec![seg(3, 9), seg(3, 10)];
        let coverage = wal_coverage(
            &WalArchive {
                files,
                histories: BTreeMap::new(),
            },
            MIB16,
            &[],
        );
        assert_eq!(coverage.runs.len(), 1);
        assert!(coverage.runs[0].crossings.is_empty());
        assert_eq!(coverage.runs[0].first, "000000030000000000000009");
    }
}
