//! What binlog the chain holds, as unbroken runs: the log coverage retention and the audit read.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};

use super::segment::{continues, SegmentName};
use crate::engine::{LogCoverage, LogGap, LogRun};

/// The segments where the names alone do not show the chain continuing: their headers say whether
/// a run resumed there by GTID (a failover or a purge, the history unbroken) or not (a hole).
pub fn breaks(names: &[SegmentName]) -> Vec<SegmentName> {
    names
        .windows(2)
        .filter(|w| !continues(&w[0], &w[1]))
        .map(|w| w[1].clone())
        .collect()
}

/// The chain as runs: a segment that neither continues the one before by file and position nor
/// resumed by GTID (`resumed_by_gtid`, sequence numbers) begins a new run.
pub fn binlog_coverage(names: &[SegmentName], resumed_by_gtid: &BTreeSet<u64>) -> LogCoverage {
    let time = |t: i64| (t > 0).then(|| Utc.timestamp_opt(t, 0).single()).flatten();
    let describe = |n: &SegmentName, end: bool| {
        format!(
            "server {} {}:{}",
            n.server_id,
            n.file,
            if end { n.end } else { n.start }
        )
    };
    let mut runs: Vec<LogRun> = Vec::new();
    let mut gaps = Vec::new();
    let mut prev: Option<&SegmentName> = None;
    for name in names {
        let joined =
            prev.is_some_and(|p| continues(p, name) || resumed_by_gtid.contains(&name.seq));
        match (runs.last_mut(), prev) {
            (Some(run), Some(p)) if joined => {
                if p.server_id != name.server_id {
                    run.crossings.push(format!(
                        "failover from server {} to server {}",
                        p.server_id, name.server_id
                    ));
                }
                run.last = describe(name, true);
                run.objects += 1;
                run.bytes += name.end - name.start;
                run.last_event = time(name.last_time).or(run.last_event);
            }
            _ => {
                if let Some(p) = prev {
                    gaps.push(binlog_gap(p, name));
                }
                runs.push(LogRun {
                    first: describe(name, false),
                    last: describe(name, true),
                    objects: 1,
                    bytes: name.end - name.start,
                    first_event: time(name.first_time),
                    last_event: time(name.last_time),
                    crossings: Vec::new(),
                    open: false,
                })
            }
        }
        prev = Some(name);
    }
    if let Some(last) = runs.last_mut() {
        last.open = true;
    }
    LogCoverage {
        log: "binlog",
        runs,
        gaps,
    }
}

/// The binlog missing between segment `p` and the next one stored, `n`, which neither continues
/// it nor resumed from it by GTID.
fn binlog_gap(p: &SegmentName, n: &SegmentName) -> LogGap {
    let after = format!("server {} {}:{}", p.server_id, p.file, p.end);
    let before = format!("server {} {}:{}", n.server_id, n.file, n.start);
    let missing = if p.server_id == n.server_id && p.file == n.file {
        format!(
            "server {} {} from position {} to {}",
            p.server_id, p.file, p.end, n.start
        )
    } else {
        format!("the binlog from {after} to {before}")
    };
    LogGap {
        after,
        before,
        missing,
        cause: "never stored: the streamer was down (or behind) while the server wrote it, and streaming resumed later without a GTID position joining the two".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(seq: u64, server_id: u32, file: &str, (start, end): (u64, u64), t: i64) -> SegmentName {
        SegmentName {
            seq,
            first_time: t,
            last_time: t + 1,
            server_id,
            start,
            end,
            file: file.into(),
        }
    }

    #[test]
    fn runs_follow_files_rotations_and_gtid_resumes_and_break_at_holes() {
        let names = [
            name(1, 1, "binlog.000001", (4, 100), 1_800_000_000),
            name(2, 1, "binlog.000001", (100, 200), 1_800_000_010),
            name(3, 1, "binlog.000002", (4, 50), 1_800_000_020),
            // Server 2 took over by GTID.
            name(4, 2, "mariadb-bin.000001", (4, 80), 1_800_000_030),
            // A hole: the file went on at 300, not 80.
            name(5, 2, "mariadb-bin.000001", (300, 400), 1_800_000_040),
        ];
        assert_eq!(
            breaks(&names).iter().map(|n| n.seq).collect::<Vec<_>>(),
            [4, 5]
        );
        let coverage = binlog_coverage(&names, &BTreeSet::from([4]));
        assert_eq!(coverage.runs.len(), 2);
        let first = &coverage.runs[0];
        assert_eq!(first.objects, 4);
        assert_eq!(first.first, "server 1 binlog.000001:4");
        assert_eq!(first.last, "server 2 mariadb-bin.000001:80");
        assert_eq!(first.crossings, ["failover from server 1 to server 2"]);
        assert_eq!(first.bytes, 96 + 100 + 46 + 76);
        assert_eq!(
            first.last_event.unwrap().timestamp(),
            1_800_000_031,
            "the last event of the run"
        );
        assert_eq!(coverage.runs[1].first, "server 2 mariadb-bin.000001:300");
        assert!(!coverage.runs[0].open && coverage.runs[1].open);
        assert_eq!(coverage.gaps.len(), 1);
        assert_eq!(
            coverage.gaps[0].missing,
            "server 2 mariadb-bin.000001 from position 80 to 300"
        );
    }
}
