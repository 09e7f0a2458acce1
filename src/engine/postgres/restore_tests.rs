//! The PostgreSQL planner on synthetic manifests and archive listings: no server, no store.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::repo::manifest::PostgresPoint;

const MIB16: u64 = 16 << 20;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn seg(n: u32) -> WalFileName {
    WalFileName::Segment {
        timeline: 1,
        log: 0,
        seg: n,
    }
}

/// A physical backup of source `pg` from segment `start` to `stop`, consistent `minutes` after t0.
fn backup(start: u32, stop: u32, minutes: i64) -> Manifest {
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
        timeline: 1,
        start_lsn: format!("0/{:X}", u64::from(start) * MIB16 + 40),
        stop_lsn: format!("0/{:X}", u64::from(stop) * MIB16 + 100),
        start_wal: seg(start).to_string(),
        stop_wal: seg(stop).to_string(),
        consistent_at: at,
        backup_label: String::new(),
        tablespace_map: None,
    });
    m
}

fn archive(segments: &[u32]) -> Vec<(WalFileName, u64)> {
    segments.iter().map(|n| (seg(*n), MIB16)).collect()
}

#[test]
fn a_hole_after_the_backup_makes_latest_unrestorable() {
    let manifests = [backup(2, 3, 0)];
    let plan = plan(
        "pg",
        &manifests,
        &archive(&[2, 3, 4, 6, 7]),
        &Target::Latest,
    )
    .unwrap();
    assert_eq!(plan.gap_at.as_deref(), Some("000000010000000000000005"));
    assert!(!plan.is_complete());
    assert!(plan.problem().unwrap().contains("000000010000000000000005"));
    // Without the hole, the same target is fine.
    let plan = plan_of(&manifests, &[2, 3, 4, 5, 6, 7], Target::Latest);
    assert!(plan.is_complete(), "{:?}", plan.problem());
}

fn plan_of(manifests: &[Manifest], segments: &[u32], target: Target) -> RestorePlan {
    plan("pg", manifests, &archive(segments), &target).unwrap()
}

#[test]
fn a_time_is_restorable_past_a_backup_only_when_it_provably_lies_before_the_hole() {
    // Backups consistent at +0 (segment 3) and at +60 minutes (segment 8); segment 10 is missing.
    let manifests = [backup(2, 3, 0), backup(8, 8, 60)];
    let segments = [2, 3, 4, 5, 6, 7, 8, 9, 11, 12];
    // +30: the second backup ended after it and before the hole, so +30 lies before the hole.
    let at = t0() + Duration::minutes(30);
    assert!(plan_of(&manifests, &segments, Target::Time(at)).is_complete());
    // +90: the newest backup (+60) is chosen, and nothing places +90 before the hole.
    let late = plan_of(
        &manifests,
        &segments,
        Target::Time(t0() + Duration::minutes(90)),
    );
    assert!(!late.is_complete());
    assert!(late
        .unreachable
        .unwrap()
        .contains("00000001000000000000000A"));
}

#[test]
fn an_lsn_is_judged_by_its_segment() {
    let manifests = [backup(2, 3, 0)];
    let segments = [2, 3, 4, 6];
    let before = Target::Lsn(Lsn(4 * MIB16 + 5));
    assert!(plan_of(&manifests, &segments, before).is_complete());
    let after = Target::Lsn(Lsn(6 * MIB16 + 5));
    assert!(!plan_of(&manifests, &segments, after).is_complete());
    // Past the end of an archive without holes.
    let beyond = Target::Lsn(Lsn(9 * MIB16));
    let plan = plan_of(&manifests, &[2, 3, 4], beyond);
    assert!(plan.unreachable.unwrap().contains("ends at"));
}

#[test]
fn a_backup_whose_own_wal_is_missing_is_refused_whatever_the_target() {
    let manifests = [backup(2, 4, 0)];
    for target in [Target::Latest, Target::Backup(manifests[0].id.clone())] {
        let plan = plan_of(&manifests, &[2, 4, 5], target);
        assert_eq!(plan.missing, ["000000010000000000000003"]);
        assert!(!plan.is_complete());
    }
}

#[test]
fn a_target_before_the_first_backup_names_the_earliest() {
    let manifests = [backup(2, 3, 0)];
    let err = plan(
        "pg",
        &manifests,
        &archive(&[2, 3]),
        &Target::Time(t0() - Duration::minutes(1)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("the earliest is consistent at"),
        "{err}"
    );
}
