//! PostgreSQL end to end, against real clusters started by the test: base backup under a pgbench
//! write load, WAL archived by archive_command, and restores compared by their data.

mod support;

use std::process::Command;
use std::time::Duration;

use support::postgres::{
    archive_everything, assert_amcheck_clean, assert_same_rows, chown_postgres, dump_data, pgbench,
    PgCluster, PgWorld,
};

/// pgbench's invariant: every transaction adds the same delta to an account, a teller, a branch
/// and the history, so the four sums agree in any consistent state.
async fn assert_pgbench_consistent(cluster: &PgCluster) {
    let row = cluster
        .client()
        .await
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::int8, \
                    (SELECT sum(tbalance) FROM pgbench_tellers)::int8, \
                    (SELECT sum(bbalance) FROM pgbench_branches)::int8, \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8, \
                    (SELECT count(*) FROM pgbench_accounts)",
            &[],
        )
        .await
        .unwrap();
    let sums: Vec<i64> = (0..4).map(|i| row.get(i)).collect();
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "pgbench sums disagree: {sums:?}"
    );
    assert_eq!(row.get::<_, i64>(4), 200_000);
}

/// A directory for a restored cluster, owned by postgres as a user would prepare it.
#[tokio::test(flavor = "multi_thread")]
async fn restore_to_a_time_between_commits_and_to_the_latest_under_write_load() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    // A base backup while pgbench writes.
    let mut load = pgbench(&source, &["-c", "2", "-T", "12", "-n"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let backup = world.cli(&["backup", "pg", "--json"]).success();
    let summary: serde_json::Value = serde_json::from_str(&backup.stdout()).unwrap();
    assert!(summary["size"].as_u64().unwrap() > 20_000_000, "{summary}");

    // Markers at t1 < t2 < t3, a second apart, still under load; the target lies between t2 and t3.
    let mark = |id: i32| {
        let client = &client;
        async move {
            client
                .execute("INSERT INTO markers (id) VALUES ($1)", &[&id])
                .await
                .unwrap();
        }
    };
    mark(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    mark(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    mark(3).await;
    let load_out = tokio::task::spawn_blocking(move || {
        let _ = load.wait();
        load
    })
    .await
    .unwrap();
    drop(load_out);
    archive_everything(&client).await;
    let source_dump = dump_data(&source);

    // A time before any backup is refused clearly.
    let early = world.cli(&[
        "restore",
        "pg",
        "--to",
        "/nonexistent",
        "--time",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(early.code(), Some(1), "{}", early.stderr());
    assert!(
        early.stderr().contains("earliest is consistent at"),
        "{}",
        early.stderr()
    );

    // Dry run: the plan, and nothing touched.
    let dir = world.restore_dir("at-time");
    let t = target.to_rfc3339();
    let plan = world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--time",
            &t,
            "--dry-run",
            "--json",
        ])
        .success();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    assert_eq!(plan["backup"], summary["id"]);
    assert!(plan["gaps"].as_array().unwrap().is_empty(), "{plan}");
    assert!(plan["problem"].is_null(), "{plan}");
    assert!(
        plan["detail"]["missing"].as_array().unwrap().is_empty(),
        "{plan}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // Restore to the time between t2 and t3: markers 1 and 2, not 3; pgbench consistent.
    world
        .cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--time", &t])
        .success();
    let mut at_time = PgCluster::adopt(world.path(), dir.clone());
    at_time.start();
    at_time.wait_promoted().await;
    assert_eq!(at_time.markers().await, vec![1, 2], "{}", at_time.log());
    // The copy never archives into its source's WAL stream.
    let archive_mode: String = at_time
        .client()
        .await
        .query_one("SHOW archive_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(archive_mode, "off");
    assert_pgbench_consistent(&at_time).await;
    assert_amcheck_clean(&at_time);
    at_time.stop();

    // Refused: the same non-empty directory without --force.
    let again = world.cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--latest"]);
    assert_eq!(again.code(), Some(1));
    assert!(
        again.stderr().contains("is not empty"),
        "{}",
        again.stderr()
    );

    // Restore everything: all markers, and the same data as the source.
    let dir = world.restore_dir("latest");
    world
        .cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--latest"])
        .success();
    let mut latest = PgCluster::adopt(world.path(), dir);
    latest.start();
    latest.wait_promoted().await;
    assert_eq!(latest.markers().await, vec![1, 2, 3]);
    assert_pgbench_consistent(&latest).await;
    assert_same_rows(&source_dump, &dump_data(&latest));
    latest.stop();
    source.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_wal_stops_recovery_and_missing_wal_shows_in_the_plan() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY)")
        .await
        .unwrap();
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    archive_everything(&client).await;
    source.stop();

    let show = world.cli(&["show", "latest", "--json"]).success();
    let manifest: serde_json::Value = serde_json::from_str(&show.stdout()).unwrap();
    let start_wal = manifest["postgres"]["start_wal"]
        .as_str()
        .unwrap()
        .to_owned();
    let stop_wal = manifest["postgres"]["stop_wal"]
        .as_str()
        .unwrap()
        .to_owned();

    // Damage the segment after the backup's last one: the marker's commit lives there or later.
    let wal_dir = world.repo().join("wal/pg");
    let mut later: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && *n > stop_wal)
        .collect();
    later.sort();
    let victim = later
        .first()
        .expect("a WAL segment archived after the backup")
        .clone();
    let object = wal_dir.join(&victim);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();

    let dir = world.restore_dir("damaged");
    world
        .cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--latest"])
        .success();
    let mut restored = PgCluster::adopt(world.path(), dir);
    let started = restored.try_start();
    let log = restored.log();
    assert!(
        !started,
        "recovery must stop at damaged WAL instead of ending early:\n{log}"
    );
    assert!(
        log.contains(&format!("wal/pg/{victim}")),
        "the server log must name the damaged object:\n{log}"
    );

    // A segment the backup needs is missing: the dry run says which, and exits 3; restore refuses.
    std::fs::remove_file(wal_dir.join(&start_wal)).unwrap();
    let plan = world.cli(&[
        "restore",
        "pg",
        "--to",
        "/nonexistent",
        "--latest",
        "--dry-run",
    ]);
    assert_eq!(plan.code(), Some(3), "{}", plan.stderr());
    assert!(
        plan.stdout().contains("MISSING WAL") && plan.stdout().contains(&start_wal),
        "{}",
        plan.stdout()
    );
    let refused = world.cli(&[
        "restore",
        "pg",
        "--to",
        world.path().join("never").to_str().unwrap(),
        "--latest",
    ]);
    assert!(!refused.out.status.success());
    assert!(
        refused.stderr().contains(&start_wal),
        "{}",
        refused.stderr()
    );
    assert!(
        !world.path().join("never").exists(),
        "a refused restore must not create the target"
    );
}

#[test]
fn the_demo_restores_a_throwaway_cluster_to_an_instant() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("heirloom-backup"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 of the 5 written before the instant, 0 of the 5 after"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logical_backup_restores_into_a_second_running_cluster() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    let mut other = world.cluster("other", "other");
    world.write_config(&format!(
        "  pg: {{ kind: postgres, url: \"{}\", mode: logical }}\n",
        source.url()
    ));
    source.start();
    other.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1), (2)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    let first = world.cli(&["backup", "pg", "--json"]).success();
    let first: serde_json::Value = serde_json::from_str(&first.stdout()).unwrap();

    // A second dump of barely changed data reuses what it can.
    client
        .batch_execute("INSERT INTO markers (id) VALUES (3)")
        .await
        .unwrap();
    let second = world.cli(&["backup", "pg", "--json"]).success();
    let second: serde_json::Value = serde_json::from_str(&second.stdout()).unwrap();
    let (new, all) = (
        second["new_chunks"].as_u64().unwrap(),
        second["chunks"].as_u64().unwrap(),
    );
    // pgbench's blank-padded rows leave few content-defined cut points, so a change early in the
    // dump moves some of the chunks after it; the rest must still be reused.
    assert!(
        new < all,
        "the second dump stored {new} new chunks of {all}: nothing was reused"
    );
    assert!(first["new_chunks"].as_u64().unwrap() >= 5, "{first}");

    let target = other.url();
    world
        .cli(&["restore", "pg", "--to", &target, "--latest"])
        .success();
    assert_eq!(other.markers().await, vec![1, 2, 3]);
    assert_pgbench_consistent(&other).await;
    assert_same_rows(&dump_data(&source), &dump_data(&other));

    // Restoring over existing tables fails loudly, naming the target.
    let again = world.cli(&["restore", "pg", "--to", &target, "--latest"]);
    assert_eq!(again.code(), Some(1));
    assert!(
        again.stderr().contains("pg_restore") && again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    other.stop();
    source.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_copy_promoted_to_timeline_two_is_backed_up_and_restored_on_either_side() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY)")
        .await
        .unwrap();
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    archive_everything(&client).await;
    source.stop();

    // Fail over: restore everything and promote; the copy becomes the source, on timeline 2.
    let dir = world.restore_dir("tl2");
    let port = support::free_port();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--start",
            "--port",
            &port.to_string(),
        ])
        .success();
    let mut primary = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    let timeline: i32 = primary
        .client()
        .await
        .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeline, 2);
    // As the new primary it archives into the same source: its history file first, then its WAL.
    world
        .cli(&[
            "wal-push",
            "--source",
            "pg",
            dir.join("pg_wal/00000002.history").to_str().unwrap(),
        ])
        .success();
    primary.stop();
    let auto = dir.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap();
    conf.push_str(&format!(
        "archive_mode = on\narchive_command = '{} -q --config {} wal-push --source pg %p'\n",
        world.bin().display(),
        world.config().display()
    ));
    std::fs::write(&auto, conf).unwrap();
    primary.start();
    world.use_physical_source(&primary);

    let client = primary.client().await;
    let now = || async {
        let t: chrono::DateTime<chrono::Utc> = client
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        t
    };
    client
        .batch_execute("INSERT INTO markers VALUES (2)")
        .await
        .unwrap();
    let before_backup = now().await;
    client
        .batch_execute("INSERT INTO markers VALUES (3)")
        .await
        .unwrap();
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers VALUES (4)")
        .await
        .unwrap();
    let after_backup = now().await;
    client
        .batch_execute("INSERT INTO markers VALUES (5)")
        .await
        .unwrap();
    archive_everything(&client).await;
    primary.stop();

    // The plan from the timeline-1 backup crosses the promotion, and says so.
    let plan = world
        .cli(&[
            "restore",
            "pg",
            "--to",
            "/nonexistent",
            "--time",
            &before_backup.to_rfc3339(),
            "--dry-run",
            "--json",
        ])
        .success();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    assert_eq!(plan["detail"]["timeline"], 1, "{plan}");
    assert_eq!(plan["detail"]["target_timeline"], 2, "{plan}");
    assert!(
        plan["crossings"][0]
            .as_str()
            .unwrap()
            .starts_with("timeline 1 -> 2 at "),
        "{plan}"
    );
    // The archive, as the library sees it: one unbroken run across the promotion.
    let (job, config) = world.job().await;
    let coverage = heirloom_backup::jobs::coverage(&job, &config, &"pg".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(coverage.runs.len(), 1, "{coverage:?}");
    assert!(
        coverage.runs[0].last.starts_with("00000002"),
        "{coverage:?}"
    );
    assert_eq!(coverage.runs[0].crossings.len(), 1, "{coverage:?}");
    assert!(coverage.runs[0].open && coverage.runs[0].first_event.is_some());
    // Retention sees the same: the source is younger than the window, so any instant from its
    // first backup on is restorable, by replay across the promotion.
    let plans =
        heirloom_backup::jobs::plan_retention(&job, &config, None, None, chrono::Utc::now())
            .await
            .unwrap();
    let window = plans[0].selection.window.clone().unwrap();
    assert!(window.continuous);
    assert_eq!(
        window.first_restorable, coverage.runs[0].first_event,
        "{window:?}"
    );
    assert!(plans[0].selection.deleted().next().is_none());

    // Before the timeline-2 backup: from the timeline-1 backup, following the history to timeline 2.
    // After it: from the timeline-2 backup.
    for (name, at, expected) in [
        ("t-before", before_backup, vec![1, 2]),
        ("t-after", after_backup, vec![1, 2, 3, 4]),
    ] {
        let dir = world.restore_dir(name);
        let t = at.to_rfc3339();
        world
            .cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--time", &t])
            .success();
        let mut copy = PgCluster::adopt(world.path(), dir);
        copy.start();
        copy.wait_promoted().await;
        assert_eq!(
            copy.markers().await,
            expected,
            "restore to {t}:\n{}",
            copy.log()
        );
        copy.stop();
    }
    // The timeline-1 backup itself, as it was: its own timeline, before marker 1, though the
    // archive's newest timeline is 2.
    let listed: serde_json::Value =
        serde_json::from_str(&world.cli(&["list", "--json"]).success().stdout()).unwrap();
    let first = listed[0]["id"].as_str().unwrap().to_owned();
    let dir = world.restore_dir("backup-itself");
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--backup",
            &first,
        ])
        .success();
    let mut copy = PgCluster::adopt(world.path(), dir);
    copy.start();
    copy.wait_promoted().await;
    assert!(copy.markers().await.is_empty(), "{}", copy.log());
    copy.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_backup_without_the_data_directory_restores_exactly() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    // No data_dir: the backup streams from the server through pg_basebackup.
    world.write_config(&format!(
        "  pg: {{ kind: postgres, url: \"{}\" }}\n",
        source.url()
    ));
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    let backup = world.cli(&["backup", "pg", "--json"]).success();
    let summary: serde_json::Value = serde_json::from_str(&backup.stdout()).unwrap();
    assert!(summary["size"].as_u64().unwrap() > 20_000_000, "{summary}");
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    archive_everything(&client).await;
    let source_dump = dump_data(&source);
    source.stop();

    let dir = world.restore_dir("remote");
    let port = support::free_port();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--start",
            "--port",
            &port.to_string(),
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, vec![1, 2]);
    assert_pgbench_consistent(&restored).await;
    assert_amcheck_clean(&restored);
    assert_same_rows(&source_dump, &dump_data(&restored));
    restored.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_wal_survives_a_killed_streamer_and_recent_commits_are_restorable() {
    let world = PgWorld::new();
    // Nothing is archived by archive_command: every byte of WAL comes from the streamer.
    let mut source = world.plain_cluster("source");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    let spool = world.path().join("spool");
    let mut streamer = world.start_wal_streamer(&spool);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The streamer and its receiver die mid-segment; a commit lands while nothing streams.
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{}", streamer.id()))
        .status()
        .unwrap();
    assert!(killed.success());
    let status = streamer.wait().unwrap();
    assert!(!status.success(), "the streamer was not killed");
    client
        .batch_execute("INSERT INTO markers (id) VALUES (3)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let streamer = world.start_wal_streamer(&spool);
    client
        .batch_execute("INSERT INTO markers (id) VALUES (4)")
        .await
        .unwrap();
    // Recent commits are stored within the flush interval, while the segment is still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    world.stop_wal_streamer(streamer);
    let source_dump = dump_data(&source);
    source.stop();

    let dir = world.restore_dir("streamed");
    let port = support::free_port();
    let plan = world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--dry-run",
        ])
        .success();
    assert!(!plan.stdout().contains("MISSING"), "{}", plan.stdout());
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--start",
            "--port",
            &port.to_string(),
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir, port);
    assert_eq!(restored.markers().await, vec![1, 2, 3, 4]);
    // The open segment was stored as a whole snapshot and then increments (the restarted
    // streamer continued the chain its predecessor left).
    let snapshots: Vec<String> = walk_names(&world.repo().join("wal-partial"));
    assert!(
        snapshots
            .iter()
            .any(|n| !n.starts_with('.') && n.contains('-')),
        "no incremental snapshot among {snapshots:?}"
    );
    assert_pgbench_consistent(&restored).await;
    assert_same_rows(&source_dump, &dump_data(&restored));
    restored.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instant_from_physical_backups_reaches_a_second_running_cluster() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    let mut other = world.cluster("other", "other");
    world.use_physical_source(&source);
    source.start();
    other.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_target = dump_data(&source);
    let target: chrono::DateTime<chrono::Utc> = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .batch_execute("INSERT INTO markers (id) VALUES (3)")
        .await
        .unwrap();
    archive_everything(&client).await;

    // No logical backup exists: the instant is recovered in a scratch cluster and copied across.
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            &other.url(),
            "--time",
            &target.to_rfc3339(),
        ])
        .success();
    assert_eq!(other.markers().await, vec![1, 2]);
    assert_pgbench_consistent(&other).await;
    assert_same_rows(&at_target, &dump_data(&other));
    other.stop();
    source.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_a_tablespace_restores_it_inside_the_new_data_directory() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let location = world.path().join("tablespace");
    std::fs::create_dir_all(&location).unwrap();
    chown_postgres(&location);
    let client = source.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLESPACE elsewhere LOCATION '{}'",
            location.display()
        ))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             CREATE TABLE kept (id int PRIMARY KEY, body text) TABLESPACE elsewhere; \
             INSERT INTO kept SELECT g, repeat('k', 100) FROM generate_series(1, 5000) g; \
             INSERT INTO markers (id) VALUES (1)",
        )
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q", "--tablespace=elsewhere"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute(
            "INSERT INTO kept VALUES (5001, 'after'); INSERT INTO markers (id) VALUES (2)",
        )
        .await
        .unwrap();
    archive_everything(&client).await;
    let source_dump = dump_data(&source);
    source.stop();
    let before: Vec<_> = walkdir_count(&location);

    let dir = world.restore_dir("restored");
    let port = support::free_port();
    let run = world.cli(&[
        "restore",
        "pg",
        "--to",
        dir.to_str().unwrap(),
        "--latest",
        "--start",
        "--port",
        &port.to_string(),
    ]);
    assert_eq!(
        run.code(),
        Some(0),
        "{}\n{}",
        run.stderr(),
        std::fs::read_to_string(dir.join("heirloom-restore.log")).unwrap_or_default()
    );
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, vec![1, 2]);
    let rows: i64 = restored
        .client()
        .await
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 5001);
    // The tablespace lives beside the restored directory; the source's location is untouched.
    let links: Vec<_> = std::fs::read_dir(dir.join("pg_tblspc"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(links.len(), 1);
    let target = std::fs::read_link(links[0].path()).unwrap();
    assert!(
        target.starts_with(format!("{}.tablespaces", dir.display())),
        "{}",
        target.display()
    );
    assert_eq!(walkdir_count(&location), before);
    assert_same_rows(&source_dump, &dump_data(&restored));
    restored.stop();
}

/// The names of the files under `dir`, at any depth.
fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_names(&path));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn walkdir_count(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_stop_at_a_named_restore_point_or_a_wal_location() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .await
        .unwrap();
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    client
        .batch_execute("SELECT pg_create_restore_point('before-two')")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("INSERT INTO markers (id) VALUES (3)")
        .await
        .unwrap();
    archive_everything(&client).await;
    source.stop();

    let dir = world.restore_dir("named");
    let port = support::free_port();
    let port_text = port.to_string();
    let to = dir.to_str().unwrap();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            to,
            "--name",
            "before-two",
            "--start",
            "--port",
            &port_text,
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, vec![1]);
    restored.stop();

    world
        .cli(&[
            "restore", "pg", "--to", to, "--lsn", &lsn, "--force", "--start", "--port", &port_text,
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, vec![1, 2]);
    restored.stop();

    let bad = world.cli(&[
        "restore",
        "pg",
        "--to",
        to,
        "--lsn",
        "nonsense",
        "--dry-run",
    ]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_backup_stores_changed_pages_as_deltas_and_restores_exactly() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "2", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    let summary = |run: &support::postgres::CliRun| -> serde_json::Value {
        serde_json::from_str(&run.stdout()).unwrap()
    };
    let first = summary(&world.cli(&["backup", "pg", "--json"]).success());
    assert_eq!(first["delta_chunks"], 0, "{first}");

    // Updates spread over every page of pgbench_accounts: each changes a little.
    let load = pgbench(&source, &["-c", "2", "-T", "4", "-n"])
        .wait_with_output()
        .unwrap();
    assert!(load.status.success());
    let second = summary(&world.cli(&["backup", "pg", "--json"]).success());
    assert!(second["delta_chunks"].as_u64().unwrap() > 3, "{second}");
    assert!(
        second["added_bytes"].as_u64().unwrap() * 2 < first["added_bytes"].as_u64().unwrap(),
        "first {first}, second {second}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&world.cli(&["stats", "--json"]).success().stdout()).unwrap();
    assert_eq!(stats["delta_chunks"], second["delta_chunks"], "{stats}");
    world.cli(&["verify", "--read-data"]).success();
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    archive_everything(&client).await;
    let source_dump = dump_data(&source);
    source.stop();

    // The latest backup is the one of deltas: every page comes back exactly.
    let dir = world.restore_dir("from-deltas");
    let port = support::free_port();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--start",
            "--port",
            &port.to_string(),
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, vec![1, 2]);
    assert_pgbench_consistent(&restored).await;
    assert_amcheck_clean(&restored);
    assert_same_rows(&source_dump, &dump_data(&restored));
    restored.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_last_wal_never_reaches_the_repository_fails_and_is_not_recorded() {
    let world = PgWorld::new();
    // PostgreSQL believes its WAL archived; none of it reaches this repository.
    let mut source = PgCluster::init(
        world.path(),
        "source",
        "archive_mode = on\narchive_command = '/bin/true'\nwal_level = replica\n",
    );
    world.use_physical_source(&source);
    source.start();
    let started = std::time::Instant::now();
    let run = world.cli(&["backup", "pg", "--archive-timeout", "2s"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(started.elapsed() < Duration::from_secs(30));
    let message = run.stderr();
    assert!(
        message.contains("did not reach the repository"),
        "{message}"
    );
    assert!(message.contains("--archive-timeout"), "{message}");
    assert!(message.contains("wal/pg/0000000"), "{message}");
    let listed = world.cli(&["list", "--json"]).success();
    let backups: serde_json::Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(backups.as_array().map(Vec::len), Some(0), "{backups}");
    source.stop();
}
