//! The PostgreSQL planner on synthetic manifests and archives: no server, no store.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::repo::manifest::PostgresPoint;
use crate::restore::point::Instant;

const MIB16: u64 = 16 << 20;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn seg_on(timeline: u32, n: u32) -> WalFileName {
    WalFileName::Segment {
        timeline,
        log: 0,
        seg: n,
    }
}

fn seg(n: u32) -> WalFileName {
    seg_on(1, n)
}

/// A physical backup of source `pg` on `timeline` from segment `start` to `stop`, consistent
/// `minutes` after t0.
fn backup_on(timeline: u32, start: u32, stop: u32, minutes: i64) -> Manifest {
    let at = t0() + Duration::minutes(minutes);
    let mut m = Manifest::new(
        &"pg".parse().unwrap(),
        BackupKind::PostgresPhysical,
        BTreeMap::new(),
        at,
        crate::repo::manifest::IdPrecision::Milliseconds,
    );
    m.postgres = Some(PostgresPoint {
        system_identifier: "1".into(),
        server_version: 150000,
        segment_size: MIB16,
        timeline,
        start_lsn: Lsn(u64::from(start) * MIB16 + 40),
        stop_lsn: Lsn(u64::from(stop) * MIB16 + 100),
        start_wal: seg_on(timeline, start).to_string(),
        stop_wal: seg_on(timeline, stop).to_string(),
        consistent_at: at,
        backup_label: String::new(),
        tablespace_map: None,
    });
    m
}

fn backup(start: u32, stop: u32, minutes: i64) -> Manifest {
    backup_on(1, start, stop, minutes)
}

fn archive(segments: &[u32]) -> WalArchive {
    WalArchive {
        files: segments.iter().map(|n| (seg(*n), MIB16)).collect(),
        histories: BTreeMap::new(),
    }
}

fn at(minutes: i64) -> RestorePoint {
    RestorePoint::Time(Instant::utc(t0() + Duration::minutes(minutes)))
}

fn plan_of(manifests: &[Manifest], segments: &[u32], point: RestorePoint) -> RestorePlan {
    plan("pg", manifests, &archive(segments), &point).unwrap()
}

#[test]
fn a_hole_after_the_backup_makes_latest_unrestorable() {
    let manifests = [backup(2, 3, 0)];
    let plan = plan_of(&manifests, &[2, 3, 4, 6, 7], RestorePoint::Latest);
    assert_eq!(plan.gap_at.as_deref(), Some("000000010000000000000005"));
    assert_eq!(plan.gap_end.as_deref(), Some("000000010000000000000005"));
    assert!(!plan.is_complete());
    assert!(plan.problem().unwrap().contains("000000010000000000000005"));
    let gaps = plan.gaps();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0].blocking);
    // Without the hole, the same point is fine, and the WAL is counted to its end.
    let plan = plan_of(&manifests, &[2, 3, 4, 5, 6, 7], RestorePoint::Latest);
    assert!(plan.is_complete(), "{:?}", plan.problem());
    assert_eq!(plan.wal_segments, 6);
    assert_eq!(plan.wal_bytes, 6 * MIB16);
    assert_eq!(plan.wal_last.as_deref(), Some("000000010000000000000007"));
}

#[test]
fn a_hole_of_several_segments_is_one_gap_with_its_exact_range() {
    let manifests = [backup(2, 3, 0)];
    let plan = plan_of(&manifests, &[2, 3, 4, 8, 9], RestorePoint::Latest);
    assert_eq!(plan.gap_at.as_deref(), Some("000000010000000000000005"));
    assert_eq!(plan.gap_end.as_deref(), Some("000000010000000000000007"));
    assert_eq!(plan.wal_last.as_deref(), Some("000000010000000000000004"));
}

#[test]
fn a_time_is_restorable_past_a_backup_only_when_it_provably_lies_before_the_hole() {
    // Backups consistent at +0 (segment 3) and at +60 minutes (segment 8); segment 10 is missing.
    let manifests = [backup(2, 3, 0), backup(8, 8, 60)];
    let segments = [2, 3, 4, 5, 6, 7, 8, 9, 11, 12];
    // +30, a target before the hole: the second backup ended after it and before the hole.
    let plan = plan_of(&manifests, &segments, at(30));
    assert!(plan.is_complete(), "{:?}", plan.problem());
    assert_eq!(plan.backup, manifests[0].id);
    // The hole is still named, but it does not block.
    let gaps = plan.gaps();
    assert_eq!(gaps.len(), 1);
    assert!(!gaps[0].blocking);
    // +90, a target after the hole: the newest backup (+60) is chosen, and nothing places +90
    // before the hole.
    let late = plan_of(&manifests, &segments, at(90));
    assert_eq!(late.backup, manifests[1].id);
    assert!(!late.is_complete());
    assert!(late
        .unreachable
        .unwrap()
        .contains("00000001000000000000000A"));
}

#[test]
fn an_lsn_is_judged_by_its_segment_and_picks_the_backup_ending_before_it() {
    let manifests = [backup(2, 3, 0), backup(5, 5, 30)];
    let segments = [2, 3, 4, 6];
    let before = plan_of(&manifests, &segments, RestorePoint::Lsn(Lsn(4 * MIB16 + 5)));
    assert!(before.is_complete());
    assert_eq!(before.backup, manifests[0].id);
    let after = plan_of(&manifests, &segments, RestorePoint::Lsn(Lsn(6 * MIB16 + 5)));
    assert_eq!(after.backup, manifests[1].id);
    assert!(!after.is_complete());
    // Past the end of an archive without holes.
    let beyond = plan_of(
        &manifests[..1],
        &[2, 3, 4],
        RestorePoint::Lsn(Lsn(9 * MIB16)),
    );
    assert!(beyond.unreachable.unwrap().contains("ends at"));
}

#[test]
fn a_restore_point_name_replays_the_newest_backup_and_is_refused_across_a_hole() {
    let manifests = [backup(2, 3, 0), backup(5, 5, 30)];
    let name = RestorePoint::Name("before-migration".into());
    let plan = plan_of(&manifests, &[2, 3, 4, 5, 6], name.clone());
    assert_eq!(plan.backup, manifests[1].id);
    assert!(plan.is_complete());
    let holed = plan_of(&manifests, &[2, 3, 4, 5, 6, 8], name);
    assert!(holed.unreachable.unwrap().contains("before-migration"));
}

#[test]
fn a_backup_whose_own_wal_is_missing_is_refused_whatever_the_point() {
    let manifests = [backup(2, 4, 0)];
    for point in [
        RestorePoint::Latest,
        RestorePoint::Backup(manifests[0].id.clone()),
        at(5),
    ] {
        let plan = plan_of(&manifests, &[2, 4, 5], point);
        assert_eq!(plan.missing, ["000000010000000000000003"]);
        assert!(!plan.is_complete());
        assert!(plan.gaps()[0].blocking);
    }
    // Its WAL end (the segment holding the stop LSN) missing: the same.
    let plan = plan_of(&manifests, &[2, 3], RestorePoint::Latest);
    assert_eq!(plan.missing, ["000000010000000000000004"]);
    assert!(plan
        .problem()
        .unwrap()
        .contains("cannot be made consistent"));
}

#[test]
fn a_target_before_the_first_backup_names_the_earliest() {
    let manifests = [backup(2, 3, 0)];
    let err = plan("pg", &manifests, &archive(&[2, 3]), &at(-1)).unwrap_err();
    assert!(
        err.to_string().contains("the earliest is consistent at"),
        "{err}"
    );
    let err = plan("pg", &[], &archive(&[2, 3]), &RestorePoint::Latest).unwrap_err();
    assert!(
        err.to_string().contains("no PostgreSQL base backup"),
        "{err}"
    );
}

/// Timeline 1 from segment 2 on; a promotion at segment 6 (LSN 6/100 of segment size) began
/// timeline 2, which holds segment 6 on.
fn promoted(tl1: &[u32], tl2: &[u32]) -> WalArchive {
    let mut files: Vec<(WalFileName, u64)> = tl1.iter().map(|n| (seg_on(1, *n), MIB16)).collect();
    files.extend(tl2.iter().map(|n| (seg_on(2, *n), MIB16)));
    files.push((WalFileName::History { timeline: 2 }, 42));
    let mut histories = BTreeMap::new();
    histories.insert(
        2,
        vec![Switch {
            parent: 1,
            at: Lsn(6 * MIB16 + 0x100),
        }],
    );
    WalArchive { files, histories }
}

#[test]
fn recovery_follows_the_promotion_to_the_next_timeline() {
    let manifests = [backup(2, 3, 0)];
    // TL1 has 2..=6 (6 as the old primary left it), TL2 6..=9.
    let archive = promoted(&[2, 3, 4, 5, 6], &[6, 7, 8, 9]);
    // A target on timeline 1 (before the switch) and one on timeline 2 (after it): recovery
    // follows the same path, reading 6 from timeline 2.
    for point in [at(10), at(120), RestorePoint::Latest] {
        let plan = plan("pg", &manifests, &archive, &point).unwrap();
        assert!(plan.is_complete(), "{point}: {:?}", plan.problem());
        assert_eq!(plan.target_timeline, 2);
        assert_eq!(
            plan.switches,
            [TimelineSwitch {
                from: 1,
                to: 2,
                at: Lsn(6 * MIB16 + 0x100)
            }]
        );
        assert_eq!(plan.wal_last.as_deref(), Some("000000020000000000000009"));
        assert_eq!(plan.wal_segments, 8, "2..=5 on TL1, 6..=9 on TL2");
    }
    // A backup taken on timeline 2 needs no crossing.
    let on_two = [backup(2, 3, 0), backup_on(2, 7, 7, 60)];
    let plan = plan("pg", &on_two, &archive, &at(90)).unwrap();
    assert_eq!(plan.backup, on_two[1].id);
    assert_eq!((plan.timeline, plan.target_timeline), (2, 2));
    assert!(plan.switches.is_empty());
    assert!(plan.is_complete());
}

#[test]
fn a_hole_on_the_new_timeline_is_found_and_the_old_timelines_copy_does_not_fill_it() {
    let manifests = [backup(2, 3, 0)];
    // TL2's own segment 6 is missing; TL1's 6 is not what recovery reads after the switch.
    let archive = promoted(&[2, 3, 4, 5, 6], &[7, 8]);
    let latest = plan("pg", &manifests, &archive, &RestorePoint::Latest).unwrap();
    assert_eq!(latest.gap_at.as_deref(), Some("000000020000000000000006"));
    assert_eq!(latest.gap_end.as_deref(), Some("000000020000000000000006"));
    assert!(!latest.is_complete());
    // The backup itself, made consistent before the switch, still restores.
    let plan = plan(
        "pg",
        &manifests,
        &archive,
        &RestorePoint::Backup(manifests[0].id.clone()),
    )
    .unwrap();
    assert!(plan.is_complete(), "{:?}", plan.problem());
    assert!(plan.switches.is_empty());
}

#[test]
fn a_timeline_without_its_history_file_is_named_and_not_silently_left_out() {
    let manifests = [backup(2, 3, 0)];
    let mut archive = promoted(&[2, 3, 4, 5, 6], &[6, 7]);
    archive.histories.clear();
    archive
        .files
        .retain(|(n, _)| !matches!(n, WalFileName::History { .. }));
    let plan = plan("pg", &manifests, &archive, &RestorePoint::Latest).unwrap();
    assert_eq!(plan.target_timeline, 1);
    let why = plan.unreachable.unwrap();
    assert!(why.contains("00000002.history"), "{why}");
}

#[test]
fn a_backup_on_a_branch_the_newest_timeline_left_is_refused() {
    // Timeline 3 branched from timeline 1 at segment 4, before a backup of timeline 2 ended.
    let manifests = [backup_on(2, 6, 7, 0)];
    let mut histories = BTreeMap::new();
    histories.insert(
        2,
        vec![Switch {
            parent: 1,
            at: Lsn(5 * MIB16),
        }],
    );
    histories.insert(
        3,
        vec![Switch {
            parent: 1,
            at: Lsn(4 * MIB16),
        }],
    );
    let files = (6..=8).map(|n| (seg_on(2, n), MIB16)).collect();
    let archive = WalArchive { files, histories };
    let plan = plan("pg", &manifests, &archive, &RestorePoint::Latest).unwrap();
    assert!(plan.unreachable.unwrap().contains("does not descend"));
}

#[test]
fn history_files_parse() {
    let text = "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000060\tat restore point \"x\"\n";
    assert_eq!(
        parse_history(text).unwrap(),
        [
            Switch {
                parent: 1,
                at: Lsn(0x300_0158)
            },
            Switch {
                parent: 2,
                at: Lsn(0x500_0060)
            }
        ]
    );
    assert!(parse_history("one\ttwo").is_err());
}

#[test]
fn a_gtid_is_not_a_postgresql_point() {
    let manifests = [backup(2, 3, 0)];
    let gtid = RestorePoint::Gtid("0-1-1".parse().unwrap());
    assert!(plan("pg", &manifests, &archive(&[2, 3]), &gtid).is_err());
}
