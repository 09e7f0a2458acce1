//! Restore drills of a real PostgreSQL: physical backups with archived WAL, drilled at the latest
//! state and at a random instant of the window into a scratch cluster the drill starts, checks
//! and removes; the row counts it records match the source at that instant; a drill against a
//! damaged pack fails, names the pack, and is recorded as failed. The audit of that source passes,
//! and fails once the newest drill has failed.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use heirloom_backup::audit::Audit;
use support::postgres::{archive_everything, PgWorld};

/// Inserts marker `id`, returning the instants just before and just after its commit.
async fn mark(client: &tokio_postgres::Client, id: i32) -> (DateTime<Utc>, DateTime<Utc>) {
    let before = Utc::now();
    client
        .execute("INSERT INTO markers (id) VALUES ($1)", &[&id])
        .await
        .unwrap();
    let after = Utc::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    (before, after)
}

fn check_passed(record: &serde_json::Value, name: &str) -> bool {
    record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == name && c["passed"] == true)
}

#[tokio::test(flavor = "multi_thread")]
async fn drills_restore_the_latest_and_a_random_instant_and_a_damaged_pack_fails_them() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute(
            "CREATE TABLE markers (id int PRIMARY KEY); CREATE TABLE filler AS SELECT g AS n FROM generate_series(1, 5000) g; CREATE INDEX ON filler (n)",
        )
        .await
        .unwrap();
    let mut marks = vec![mark(&client, 1).await];
    world.cli(&["backup", "pg"]).success();
    marks.push(mark(&client, 2).await);
    marks.push(mark(&client, 3).await);
    world.cli(&["backup", "pg"]).success();
    marks.push(mark(&client, 4).await);
    archive_everything(&client).await;

    // The latest state: every marker, every filler row, every check clean.
    let out = world.cli(&["drill", "pg", "--json"]).success();
    let latest: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let record = &latest["record"];
    assert_eq!(record["passed"], true, "{latest}");
    for check in ["started", "recovery ended", "row counts", "pg_amcheck"] {
        assert!(check_passed(record, check), "{check}: {latest}");
    }
    assert_eq!(support::drill_rows(record, "postgres.public.markers"), 4);
    assert_eq!(support::drill_rows(record, "postgres.public.filler"), 5000);
    assert_eq!(record["point"]["kind"], "latest");
    assert!(record["restore_seconds"].as_f64().unwrap() > 0.0);
    let reached: DateTime<Utc> = record["reached"].as_str().unwrap().parse().unwrap();
    assert!(reached >= marks[3].0, "{reached} before the last commit");
    assert!(latest["key"].as_str().unwrap().starts_with("drills/pg/"));
    // The scratch cluster is gone.
    let scratch = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("heirloom-drill-")
        })
        .filter(|e| e.path().join("PG_VERSION").exists())
        .count();
    assert_eq!(scratch, 0, "a scratch cluster was left behind");

    // A random instant of the window: the markers committed by then, and none after.
    let out = world
        .cli(&["drill", "pg", "--random-in-window", "--json"])
        .success();
    let random: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let record = &random["record"];
    assert_eq!(record["passed"], true, "{random}");
    let at: DateTime<Utc> = record["point"]["at"].as_str().unwrap().parse().unwrap();
    let window = record["point"]["drawn_from"].as_array().unwrap();
    let (from, to): (DateTime<Utc>, DateTime<Utc>) = (
        window[0].as_str().unwrap().parse().unwrap(),
        window[1].as_str().unwrap().parse().unwrap(),
    );
    assert!(from <= at && at <= to, "{at} outside {from} .. {to}");
    let surely = marks.iter().filter(|(_, after)| *after <= at).count() as u64;
    let perhaps = marks.iter().filter(|(before, _)| *before <= at).count() as u64;
    let rows = support::drill_rows(record, "postgres.public.markers");
    assert!(
        (surely..=perhaps).contains(&rows),
        "{rows} markers at {at}: expected {surely}..={perhaps}"
    );
    assert!(
        (1..=3).contains(&rows),
        "the window lies between the backups"
    );

    // Both are in the repository, oldest first.
    let (job, _) = world.job().await;
    let records = job.repo.drill_records(None).await.unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|(_, r)| r.passed));

    // The audit of a real PostgreSQL: its WAL window, no gap, the archive dated by the store, the
    // drills; every check passes.
    world.cli(&["verify"]).success();
    let audit = world.cli(&["audit", "--format", "json"]);
    let report = Audit::from_json(&audit.stdout()).unwrap();
    assert_eq!(
        (audit.code(), report.failed.clone()),
        (Some(0), Vec::<String>::new()),
        "{report:#?}"
    );
    let pg = &report.sources[0];
    let log = pg.log.as_ref().unwrap();
    assert_eq!((log.log.as_str(), log.gaps.len()), ("WAL", 0));
    assert!(log.newest.as_ref().unwrap().age_seconds < 600, "{log:?}");
    assert_eq!(pg.backups.len(), 2);
    assert!(pg
        .backups
        .iter()
        .all(|b| b.status == "kept" && b.stored_bytes > 0));
    assert_eq!(pg.drills.history.len(), 2);

    // Every pack damaged: the drill fails, names a pack, and is recorded as failed.
    support::damage_every_pack(&world.repo());
    let failed = world.cli(&["drill", "pg", "--json"]);
    assert_eq!(
        failed.code(),
        Some(3),
        "{}{}",
        failed.stdout(),
        failed.stderr()
    );
    let failed: serde_json::Value = serde_json::from_str(&failed.stdout()).unwrap();
    let why = failed["record"]["failure"].as_str().unwrap();
    assert!(why.contains("data/"), "the failure names no pack: {why}");
    assert_eq!(failed["record"]["passed"], false);
    let records = job.repo.drill_records(None).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(!records[2].1.passed && records[2].1.failure.as_deref() == Some(why));
    // Until a drill passes again, the audit fails.
    let audit = world.cli(&["audit", "pg", "--format", "json"]);
    assert_eq!(audit.code(), Some(4));
    let report = Audit::from_json(&audit.stdout()).unwrap();
    assert_eq!(report.failed, ["pg: drill-passed"]);
    source.stop();
}
