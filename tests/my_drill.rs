//! Restore drills of a real MariaDB: dumps with the streamed binlog, drilled at the latest state
//! and at a random instant of the window into a scratch server the drill creates, checks and
//! removes; the row counts it records match the source at that instant; a drill against a
//! damaged pack fails, names the pack, and is recorded as failed. The audit of that source passes,
//! and fails once the newest drill has failed.

mod support;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use heirloom_backup::audit::Audit;
use support::mysql::{MariaDb, MyWorld};

/// Inserts marker `name`, returning the instants just before and just after its commit (binlog
/// events have whole seconds: the marks are more than a second apart).
fn mark(source: &MariaDb, name: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let before = Utc::now();
    source.sql(&format!(
        "INSERT INTO notes.markers (name) VALUES ('{name}')"
    ));
    let after = Utc::now();
    std::thread::sleep(Duration::from_millis(1300));
    (before, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn drills_restore_the_latest_and_a_random_instant_and_a_damaged_pack_fails_them() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    let mut marks = Vec::new();
    world.ok(&["backup", "notes"]);
    marks.push(mark(&source, "a"));
    marks.push(mark(&source, "b"));
    world.ok(&["backup", "notes"]);
    marks.push(mark(&source, "c"));
    world.ok(&["stream", "notes", "--once"]);

    let latest: serde_json::Value =
        serde_json::from_str(&world.ok(&["drill", "notes", "--json"])).unwrap();
    let record = &latest["record"];
    assert_eq!(record["passed"], true, "{latest}");
    let checks: Vec<&str> = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["started", "CHECK TABLE", "row counts"], "{latest}");
    assert_eq!(support::drill_rows(record, "notes.markers"), 3);
    // Every table of the source, with the source's own row counts.
    for table in source
        .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'notes' AND table_type = 'BASE TABLE'")
        .lines()
    {
        let rows: u64 = source
            .sql(&format!("SELECT COUNT(*) FROM notes.`{table}`"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(support::drill_rows(record, &format!("notes.{table}")), rows, "{table}");
    }
    assert!(
        record["log"]["transactions"].as_u64().unwrap() >= 1,
        "{latest}"
    );
    assert!(latest["key"].as_str().unwrap().starts_with("drills/notes/"));

    let random: serde_json::Value =
        serde_json::from_str(&world.ok(&["drill", "notes", "--random-in-window", "--json"]))
            .unwrap();
    let record = &random["record"];
    assert_eq!(record["passed"], true, "{random}");
    let at: DateTime<Utc> = record["point"]["at"].as_str().unwrap().parse().unwrap();
    // Binlog times are whole seconds: a commit at second s is in the state of any instant in s.
    let second = |t: DateTime<Utc>| t.timestamp();
    let surely = marks
        .iter()
        .filter(|(_, after)| second(*after) < second(at))
        .count() as u64;
    let perhaps = marks
        .iter()
        .filter(|(before, _)| second(*before) <= second(at))
        .count() as u64;
    let rows = support::drill_rows(record, "notes.markers");
    assert!(
        (surely..=perhaps).contains(&rows),
        "{rows} markers at {at}: expected {surely}..={perhaps}: {random}"
    );

    let job = world.job().await;
    let records = job.repo.drill_records(None).await.unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|(_, r)| r.passed));

    // The audit of a real source: the binlog's window, no gap, the drills; every check passes.
    world.ok(&["verify"]);
    let audit = world.cli(&["audit", "--format", "json"]);
    let report = Audit::from_json(&String::from_utf8_lossy(&audit.stdout)).unwrap();
    assert_eq!(
        (audit.status.code(), report.failed.clone()),
        (Some(0), Vec::<String>::new()),
        "{report:#?}"
    );
    let notes = &report.sources[0];
    let log = notes.log.as_ref().unwrap();
    assert_eq!((log.log.as_str(), log.gaps.len()), ("binlog", 0));
    assert!(log.newest.as_ref().unwrap().age_seconds < 600, "{log:?}");
    let window = notes.windows.last().unwrap();
    assert!(
        window.to >= marks[2].0.with_nanosecond(0).unwrap(),
        "{window:?}"
    );
    assert_eq!(notes.drills.history.len(), 2);

    support::damage_every_pack(&world.repo());
    let failed = world.cli(&["drill", "notes", "--json"]);
    assert_eq!(failed.status.code(), Some(3));
    let failed: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    let why = failed["record"]["failure"].as_str().unwrap();
    assert!(why.contains("data/"), "the failure names no pack: {why}");
    let records = job.repo.drill_records(None).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(!records[2].1.passed);
    // The failed drill fails the audit, naming why.
    let audit = world.cli(&["audit", "--format", "json"]);
    let report = Audit::from_json(&String::from_utf8_lossy(&audit.stdout)).unwrap();
    assert_eq!(audit.status.code(), Some(4));
    assert_eq!(report.failed, ["notes: drill-passed"]);
    let check = report.sources[0]
        .checks
        .iter()
        .find(|c| c.id == "drill-passed")
        .unwrap();
    assert!(
        check.evidence[0].contains("failed: ") && check.evidence[0].contains("data/"),
        "{check:?}"
    );
    assert!(check.evidence[1].starts_with("the last drill that passed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_physical_backup_is_prepared_started_and_checked_in_a_scratch_directory() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.write_config(&format!(
        "  notes: {{ kind: mysql, url: \"{}\", data_dir: {}, mode: physical }}\n",
        source.url(),
        source.binlog_dir().display()
    ));
    world.ok(&["backup", "notes"]);
    source.sql("INSERT INTO notes.markers (name) VALUES ('a'), ('b')");
    world.ok(&["stream", "notes", "--once"]);

    let drilled: serde_json::Value =
        serde_json::from_str(&world.ok(&["drill", "notes", "--json"])).unwrap();
    let record = &drilled["record"];
    assert_eq!(record["passed"], true, "{drilled}");
    assert_eq!(record["backup_kind"], "mysql-physical", "{drilled}");
    assert_eq!(support::drill_rows(record, "notes.markers"), 2, "{drilled}");
    assert!(record["target"].as_str().unwrap().contains("scratch"));
}
