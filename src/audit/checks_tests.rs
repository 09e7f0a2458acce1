use super::*;
use crate::audit::{BackupAudit, CheckStatus, DrillEntry, Drills, Verifies};
use crate::retention::policy::Policy;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn backup(consistent: &str) -> BackupAudit {
    let t = at(consistent);
    BackupAudit {
        id: format!("{}-00000001", t.format("%Y%m%dT%H%M%SZ")),
        kind: "stream".into(),
        started: t,
        finished: t,
        consistent_at: t,
        files: 1,
        logical_bytes: 1,
        stored_bytes: 1,
        added_bytes: 1,
        status: "kept".into(),
        kept_by: Vec::new(),
        holds: Vec::new(),
        last_verified: None,
    }
}

fn drill(finished: &str, passed: bool) -> DrillEntry {
    DrillEntry {
        started: at(finished),
        finished: at(finished),
        point: "latest".into(),
        backup: None,
        reached: None,
        restore_seconds: 1.0,
        check_seconds: 1.0,
        tables: 1,
        rows: 1,
        passed,
        failure: (!passed).then(|| "data/00/00: damaged".into()),
    }
}

fn judge(policy: &Policy, now: &str, backups: &[BackupAudit], drills: &Drills) -> Vec<Check> {
    let first = backups.iter().map(|b| b.consistent_at).min();
    source_checks(&SourceFacts {
        at: at(now),
        policy,
        first_backup: first,
        backups,
        windows: &[],
        window: None,
        log: None,
        drills,
        immutability_unmet: None,
        object_lock: None,
    })
}

fn status(checks: &[Check], id: &str) -> CheckStatus {
    checks.iter().find(|c| c.id == id).unwrap().status
}

#[test]
fn every_check_is_defined_for_the_reader() {
    let policy = Policy::named_or_file("three-year").unwrap();
    let drills = Drills {
        last_passed: None,
        history: Vec::new(),
    };
    let mut ids: Vec<String> = judge(&policy, "2026-11-30T12:00:00Z", &[], &drills)
        .into_iter()
        .map(|c| c.id)
        .collect();
    let verifies = Verifies {
        newest: None,
        last_full_read: None,
        history: Vec::new(),
    };
    ids.extend(
        repository_checks(&RepositoryFacts {
            at: at("2026-11-30T12:00:00Z"),
            verify_within: Span::Days(7),
            verifies: &verifies,
            objects_by_kind: &[],
            unknown_objects: &[],
            format_version: 3,
        })
        .into_iter()
        .map(|c| c.id),
    );
    let defined: Vec<&str> = DEFINITIONS.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, defined);
}

#[test]
fn months_are_asked_from_the_first_backup_and_the_current_one_once_a_backup_is_due() {
    let policy = Policy::parse("name: m\nkeep: { monthly: 36 }\n", "m").unwrap();
    let none = Drills {
        last_passed: None,
        history: Vec::new(),
    };
    let backups = [
        backup("2026-09-15T02:00:00Z"),
        backup("2026-10-31T23:00:00Z"),
    ];
    // On 1 December at 12:00 no backup is due yet in December: September and October are asked.
    let checks = judge(&policy, "2026-12-01T12:00:00Z", &backups, &none);
    let monthly = checks.iter().find(|c| c.id == "monthly-points").unwrap();
    assert_eq!(monthly.status, CheckStatus::Fail, "{monthly:?}");
    assert!(
        monthly.evidence[0].starts_with("2 of 3 months"),
        "{monthly:?}"
    );
    assert!(monthly.evidence[1].starts_with("2026-11: no restore point"));
    // On 3 December, December is asked too.
    let checks = judge(&policy, "2026-12-03T12:00:00Z", &backups[..], &none);
    let monthly = checks.iter().find(|c| c.id == "monthly-points").unwrap();
    assert!(
        monthly.evidence[0].starts_with("2 of 4 months"),
        "{monthly:?}"
    );
    // A policy without monthly backups asks nothing.
    let daily = Policy::parse("name: d\nkeep: { daily: 7 }\n", "d").unwrap();
    let checks = judge(&daily, "2026-12-03T12:00:00Z", &backups, &none);
    assert_eq!(status(&checks, "monthly-points"), CheckStatus::NotAsked);
}

#[test]
fn ages_and_drills_are_judged_as_of_the_instant() {
    let policy = Policy::named_or_file("three-year").unwrap();
    let backups = [backup("2026-11-30T02:00:00Z")];
    let drills = Drills {
        last_passed: Some(drill("2026-11-20T00:00:00Z", true)),
        history: vec![
            drill("2026-11-29T00:00:00Z", false),
            drill("2026-11-20T00:00:00Z", true),
        ],
    };
    let checks = judge(&policy, "2026-12-01T04:00:00Z", &backups, &drills);
    assert_eq!(status(&checks, "backup-age"), CheckStatus::Pass);
    assert_eq!(status(&checks, "drill-recent"), CheckStatus::Pass);
    let passed = checks.iter().find(|c| c.id == "drill-passed").unwrap();
    assert_eq!(passed.status, CheckStatus::Fail);
    assert!(
        passed.evidence[1].contains("2026-11-20T00:00:00Z"),
        "{passed:?}"
    );
    // 26 hours and a minute after the backup, it is too old.
    let checks = judge(&policy, "2026-12-01T04:01:00Z", &backups, &drills);
    assert_eq!(status(&checks, "backup-age"), CheckStatus::Fail);
    // Without a log the window cannot be continuous.
    assert_eq!(status(&checks, "window-continuous"), CheckStatus::Fail);
    // As of 25 November the failed drill had not happened yet.
    let earlier = Drills {
        last_passed: drills.last_passed.clone(),
        history: drills.history[1..].to_vec(),
    };
    let checks = judge(&policy, "2026-11-25T00:00:00Z", &[], &earlier);
    assert_eq!(status(&checks, "drill-passed"), CheckStatus::Pass);
    assert_eq!(status(&checks, "backup-age"), CheckStatus::Fail);
}

#[test]
fn ages_read_as_words() {
    assert_eq!(age(Duration::seconds(40)), "40s");
    assert_eq!(age(Duration::minutes(5)), "5m");
    assert_eq!(age(Duration::minutes(26 * 60 + 5)), "1d 2h");
    assert_eq!(age(Duration::minutes(125)), "2h 5m");
}
