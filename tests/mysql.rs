//! MySQL/MariaDB against real MariaDB servers started by the tests: dumps, the binlog streamed as a
//! replica, point-in-time restore into a second server, and the ways it can go wrong.

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use heirloom_backup::engine::mysql::segment::list_segments;
use support::mysql::{assert_chain_matches_server, open_repo, MariaDb, MyWorld, Workload};

async fn ok(world: &MyWorld, args: &[&str]) -> String {
    let config = world.config();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("heirloom-backup"))
            .arg("--config")
            .arg(config)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "heirloom-backup failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn marker(server: &MariaDb, name: &str) {
    server.sql(&format!(
        "INSERT INTO notes.markers (name) VALUES ('{name}')"
    ));
}

/// One transaction whose row events carry an Annotate_rows event.
fn load_more(server: &MariaDb) {
    server.sql("INSERT INTO notes.notes (author_id, title, body) VALUES (1, 'more', 'x')");
}

/// Sleeps until the wall clock is `margin` into a second that is later than the current one.
async fn next_second(margin: Duration) {
    let now = Utc::now();
    let into = Duration::from_nanos(u64::from(now.timestamp_subsec_nanos()));
    tokio::time::sleep(Duration::from_secs(1) - into + margin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn point_in_time_restore_under_a_notes_workload_into_a_second_server() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 4).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    ok(&world, &["backup", "notes"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    marker(&source, "t1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    marker(&source, "t2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Hold the writers so that the source's state at the target instant can be read.
    load.pause().await;
    next_second(Duration::from_millis(200)).await;
    let expected = source.notes_checksums();
    // The last transaction before the pause.
    let pause_gtid = source.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let target: DateTime<Utc> = Utc::now();
    next_second(Duration::from_millis(200)).await;
    load.resume();
    tokio::time::sleep(Duration::from_secs(1)).await;
    marker(&source, "t3");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = load.stop().await;
    assert!(
        committed > 100,
        "the workload committed only {committed} transactions"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.stop_streamer(streamer);

    let copy = MariaDb::start(world.path(), "copy", 2, true);
    let plan = ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--time",
            &target.to_rfc3339(),
            "--dry-run",
        ],
    )
    .await;
    assert!(plan.contains("binlog"), "{plan}");
    assert!(!plan.contains("MISSING"), "{plan}");
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--time",
            &target.to_rfc3339(),
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["t1", "t2"]);
    assert_eq!(
        copy.notes_checksums(),
        expected,
        "the copy differs from the source at the target instant"
    );

    // A second restore into the same server needs --force; --latest brings everything.
    let refused = world.cli(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--latest",
            "--force",
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["t1", "t2", "t3"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
    assert_chain_matches_server(&world, &source, "notes").await;

    // Up to and including one transaction.
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--gtid",
            &pause_gtid,
            "--force",
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["t1", "t2"]);
    assert_eq!(
        copy.notes_checksums(),
        expected,
        "the copy differs from the source at {pause_gtid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamer_killed_mid_transaction_resumes_without_gap_or_duplicate() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    ok(&world, &["backup", "notes"]).await;
    let mut streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A transaction of several MiB is on the wire when the streamer dies.
    let big = {
        let url = source.url();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::from_url(format!("{url}/notes"))
                .await
                .unwrap();
            conn.query_drop(
                "INSERT INTO notes (author_id, title, body) \
                 SELECT 1 + (seq MOD 5), CONCAT('bulk ', seq), REPEAT('b', 600) FROM seq_1_to_20000",
            )
            .await
            .unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    streamer.kill().unwrap();
    streamer.wait().unwrap();
    big.await.unwrap();
    marker(&source, "after-kill");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let streamer = world.start_streamer("notes");
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop().await;
    marker(&source, "end");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.stop_streamer(streamer);

    assert_chain_matches_server(&world, &source, "notes").await;
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    ok(
        &world,
        &["restore", "notes", "--to", &copy.url(), "--latest"],
    )
    .await;
    assert_eq!(copy.markers(), ["after-kill", "end"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_and_a_server_restart_while_streaming_and_a_purge_reported_as_a_gap() {
    let world = MyWorld::new();
    let mut source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    ok(&world, &["backup", "notes"]).await;
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 2).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        source.sql("FLUSH BINARY LOGS");
    }
    load.stop().await;
    marker(&source, "before-restart");
    source.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    source.restart();
    let load = Workload::start(&source, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop().await;
    marker(&source, "after-restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.stop_streamer(streamer);
    assert!(source.binlog_files().len() >= 5);
    assert_chain_matches_server(&world, &source, "notes").await;
    // Files closed by a rotation or by the restart come back whole, byte for byte.
    assert!(assert_closed_files_fetch_back(&world, &source) >= 4);

    let copy = MariaDb::start(world.path(), "copy", 2, true);
    ok(
        &world,
        &["restore", "notes", "--to", &copy.url(), "--latest"],
    )
    .await;
    assert_eq!(copy.markers(), ["after-restart", "before-restart"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());

    // Binlog written and purged while no streamer ran: the gap is reported, not skipped.
    marker(&source, "lost");
    source.sql("FLUSH BINARY LOGS");
    let last = source.binlog_files().pop().unwrap();
    // MariaDB keeps a file until its transactions are checkpointed; try until it lets go.
    for _ in 0..100 {
        source.sql(&format!("PURGE BINARY LOGS TO '{last}'"));
        if source.binlog_files().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source.binlog_files(), [last]);
    let out = world.cli(&["stream", "notes", "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gap") && err.contains("purged"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_named() {
    let world = MyWorld::new();
    // Unreachable server.
    let port = support::free_port();
    world.use_source("gone", &format!("mysql://root@127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let out = world.cli(&["backup", "gone"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = world.cli(&["stream", "gone", "--once"]);
    assert!(!out.status.success());

    // Wrong credentials.
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    source.sql("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'right'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'");
    world.use_source(
        "notes",
        &format!("mysql://app:wrong@127.0.0.1:{}", source.port),
    );
    let out = world.cli(&["backup", "notes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Access denied") && !err.contains("wrong"),
        "{err}"
    );

    // A server without a binlog.
    let plain = MariaDb::start(world.path(), "nobinlog", 3, false);
    plain.load_notes_app();
    world.use_source("plain", &plain.url());
    let out = world.cli(&["backup", "plain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_bin"), "{err}");

    // A target time before the first dump.
    world.use_source("notes", &source.url());
    let before = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(&world, &["backup", "notes"]).await;
    marker(&source, "m1");
    ok(&world, &["stream", "notes", "--once"]).await;
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    let out = world.cli(&[
        "restore",
        "notes",
        "--to",
        &copy.url(),
        "--time",
        &before.to_rfc3339(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("before the first dump"), "{err}");

    // Two more runs of the streamer: the segment of the middle one is damaged, then lost.
    let repo = open_repo(&world).await;
    let before_m2 = list_segments(&repo, "notes").await.unwrap().len();
    marker(&source, "m2");
    ok(&world, &["stream", "notes", "--once"]).await;
    let middle = list_segments(&repo, "notes").await.unwrap()[before_m2..].to_vec();
    assert!(!middle.is_empty());
    marker(&source, "m3");
    ok(&world, &["stream", "notes", "--once"]).await;
    let key = middle[0].key("notes");
    let path = world.repo().join(&key);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let n = bytes.len();
    bytes[n - 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let out = world.cli(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&key), "{err}");
    // verify finds it too, reading the segments; every object written is of a known kind.
    let out = world.cli(&["verify", "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unknown_objects"], serde_json::json!([]), "{report}");
    let out = world.cli(&["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&key));

    std::fs::remove_file(&path).unwrap();
    let out = world.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not stored"));
    let out = world.cli(&[
        "restore",
        "notes",
        "--to",
        &copy.url(),
        "--latest",
        "--dry-run",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("MISSING"), "{plan}");
    assert!(!Path::new(&path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_the_replica_is_followed_by_gtid_and_restored_across() {
    let world = MyWorld::new();
    let mut primary = MariaDb::start(world.path(), "primary", 1, true);
    let replica = MariaDb::start(world.path(), "replica", 2, true);
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE",
        primary.port
    ));
    primary.load_notes_app();
    world.use_source("notes", &primary.url());
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&primary, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&world, &["backup", "notes"]).await;
    marker(&primary, "before-failover");
    let pos = primary.sql("SELECT @@gtid_binlog_pos");
    replica.sql(&format!("SELECT MASTER_GTID_WAIT('{}', 30)", pos.trim()));
    // A dump taken on the replica: its coordinates are the replica's, found in the chain by GTID.
    world.use_source("notes", &replica.url());
    ok(&world, &["backup", "notes"]).await;
    world.use_source("notes", &primary.url());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The primary dies under load; the replica is promoted.
    primary.kill();
    load.stop().await;
    replica.sql("STOP SLAVE; RESET SLAVE ALL");
    tokio::time::sleep(Duration::from_millis(800)).await;
    world.stop_streamer(streamer);

    // The source now names the new primary: the streamer continues there by GTID.
    world.use_source("notes", &replica.url());
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&replica, 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    marker(&replica, "after-failover");
    next_second(Duration::from_millis(100)).await;
    let after = Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.stop_streamer(streamer);

    // Segments of both servers are in the store, keyed apart.
    let repo = open_repo(&world).await;
    let names = list_segments(&repo, "notes").await.unwrap();
    assert!(names.iter().any(|n| n.server_id == 1));
    assert!(names.iter().any(|n| n.server_id == 2));

    let copy = MariaDb::start(world.path(), "copy", 3, true);
    let plan = ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--time",
            &after.to_rfc3339(),
            "--dry-run",
        ],
    )
    .await;
    assert!(!plan.contains("MISSING"), "{plan}");
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--time",
            &after.to_rfc3339(),
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["after-failover", "before-failover"]);
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--latest",
            "--force",
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["after-failover", "before-failover"]);
    assert_eq!(copy.notes_checksums(), replica.notes_checksums());
    let _ = &mut primary;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_the_promoted_replica_never_received_leave_the_history_after_the_failover() {
    let world = MyWorld::new();
    let mut primary = MariaDb::start(world.path(), "primary", 1, true);
    let replica = MariaDb::start(world.path(), "replica", 2, true);
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
         MASTER_USE_GTID=slave_pos; START SLAVE",
        primary.port
    ));
    primary.load_notes_app();
    world.use_source("notes", &primary.url());
    ok(&world, &["backup", "notes"]).await;
    marker(&primary, "shared");
    let pos = primary.sql("SELECT @@gtid_binlog_pos");
    replica.sql(&format!("SELECT MASTER_GTID_WAIT('{}', 30)", pos.trim()));
    // The replica stops receiving; the streamer still takes the primary's binlog.
    replica.sql("STOP SLAVE");
    marker(&primary, "lost");
    next_second(Duration::from_millis(100)).await;
    let before_failover = Utc::now();
    next_second(Duration::from_millis(100)).await;
    marker(&primary, "lost-too");
    ok(&world, &["stream", "notes", "--once"]).await;
    primary.kill();
    replica.sql("RESET SLAVE ALL");

    world.use_source("notes", &replica.url());
    marker(&replica, "new-primary");
    let out = world.cli(&["-v", "stream", "notes", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost in the failover"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let copy = MariaDb::start(world.path(), "copy", 3, true);
    let plan = ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--latest",
            "--dry-run",
        ],
    )
    .await;
    assert!(plan.contains("failover"), "{plan}");
    ok(
        &world,
        &["restore", "notes", "--to", &copy.url(), "--latest"],
    )
    .await;
    assert_eq!(copy.markers(), ["new-primary", "shared"]);
    assert_eq!(copy.notes_checksums(), replica.notes_checksums());
    // Before the failover, the primary's last transactions were history.
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            &copy.url(),
            "--time",
            &before_failover.to_rfc3339(),
            "--force",
        ],
    )
    .await;
    assert_eq!(copy.markers(), ["lost", "shared"]);
    let _ = &mut primary;
}

fn verify_with_mariadb_binlog(path: &Path) {
    let out = std::process::Command::new("mariadb-binlog")
        .arg("--verify-binlog-checksum")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb-binlog rejects {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every closed binlog file of `server`, fetched back from the store, equals the server's.
fn assert_closed_files_fetch_back(world: &MyWorld, server: &MariaDb) -> usize {
    let files = server.binlog_files();
    let closed = &files[..files.len() - 1];
    for file in closed {
        let dest = world.path().join(format!("fetched-{file}"));
        world.ok(&["binlog-fetch", "notes", file, dest.to_str().unwrap()]);
        let ours = std::fs::read(&dest).unwrap();
        let theirs = std::fs::read(server.binlog_dir().join(file)).unwrap();
        assert!(
            ours == theirs,
            "{file} differs from the server's ({} vs {} bytes)",
            ours.len(),
            theirs.len()
        );
        verify_with_mariadb_binlog(&dest);
    }
    closed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_files_pushed_from_the_data_directory_come_back_byte_for_byte() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.write_config(&format!(
        "  notes: {{ kind: mysql, url: \"{}\", data_dir: {} }}\n",
        source.url(),
        source.binlog_dir().display()
    ));
    ok(&world, &["backup", "notes"]).await;
    let load = Workload::start(&source, 3).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    source.sql("FLUSH BINARY LOGS");
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.stop().await;
    marker(&source, "pushed");
    source.sql("FLUSH BINARY LOGS");
    ok(&world, &["binlog-push", "notes"]).await;
    let again = ok(&world, &["binlog-push", "notes", "--json"]).await;
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["segments"], 0, "a second push stores nothing new");
    assert!(assert_closed_files_fetch_back(&world, &source) >= 2);

    let copy = MariaDb::start(world.path(), "copy", 2, true);
    ok(
        &world,
        &["restore", "notes", "--to", &copy.url(), "--latest"],
    )
    .await;
    assert_eq!(copy.markers(), ["pushed"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_files_come_back_byte_for_byte_with_the_events_withheld_from_replicas() {
    let world = MyWorld::new();
    // Default settings: MariaDB writes Annotate_rows events and withholds them from the stream;
    // the streamer reads each closed file once more to store them.
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 3).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    source.sql("FLUSH BINARY LOGS");
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.stop().await;
    source.sql("FLUSH BINARY LOGS");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    world.stop_streamer(streamer);
    assert_eq!(
        source.sql("SELECT @@binlog_annotate_row_events").trim(),
        "1"
    );
    assert!(assert_closed_files_fetch_back(&world, &source) >= 2);
    // The file still open has no complete copy yet: fetching it says why.
    let open = source.binlog_files().pop().unwrap();
    load_more(&source);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = world.cli(&["stream", "notes", "--once"]);
    assert!(out.status.success());
    let dest = world.path().join("open-file");
    let out = world.cli(&["binlog-fetch", "notes", &open, dest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("withheld"));
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_physical_backup_restores_into_a_directory_at_an_instant() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.write_config(&format!(
        "  notes: {{ kind: mysql, url: \"{}\", data_dir: {}, mode: physical }}\n",
        source.url(),
        source.binlog_dir().display()
    ));
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&world, &["backup", "notes"]).await;
    let shown = ok(&world, &["show", "latest"]).await;
    assert!(
        shown.contains("mysql-physical") && shown.contains("binlog"),
        "{shown}"
    );
    marker(&source, "t1");
    tokio::time::sleep(Duration::from_millis(700)).await;
    load.pause().await;
    next_second(Duration::from_millis(200)).await;
    let expected = source.notes_checksums();
    let target = Utc::now();
    next_second(Duration::from_millis(200)).await;
    load.resume();
    tokio::time::sleep(Duration::from_millis(700)).await;
    marker(&source, "t3");
    load.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.stop_streamer(streamer);

    let dir = world.path().join("copy/data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stray"), b"x").unwrap();
    let refused = world.cli(&[
        "restore",
        "notes",
        "--to",
        dir.to_str().unwrap(),
        "--latest",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    ok(
        &world,
        &[
            "restore",
            "notes",
            "--to",
            dir.to_str().unwrap(),
            "--time",
            &target.to_rfc3339(),
            "--force",
        ],
    )
    .await;
    assert!(!dir.join("stray").exists());
    let copy = MariaDb::adopt(world.path(), "copy", 2);
    assert_eq!(copy.markers(), ["t1"]);
    assert_eq!(
        copy.notes_checksums(),
        expected,
        "the copy differs from the source at the target instant"
    );
}

#[tokio::test]
async fn two_writers_of_one_source_meet_at_the_claim_and_the_second_stops() {
    use heirloom_backup::engine::mysql::binlog::GtidPos;
    use heirloom_backup::engine::mysql::segment::{put_segment, SegmentMeta};
    let world = MyWorld::new();
    let repo = open_repo(&world).await;
    let meta = |end: u64| SegmentMeta {
        source: "notes".into(),
        seq: 5,
        server_id: 1,
        server_version: "10.11".into(),
        file: "binlog.000001".into(),
        file_created: 1,
        start: 4,
        end,
        withheld: end - 4,
        events: 0,
        first_event_time: None,
        last_event_time: None,
        first_gtid: None,
        last_gtid: None,
        gtid_pos: GtidPos::default(),
        checksummed: true,
        format_description: String::new(),
        resumed_by: "file".into(),
        resumed_from: None,
        rotated_to: None,
        stored_at: Utc::now(),
    };
    put_segment(&repo, &meta(100), &[], "writer-a")
        .await
        .unwrap();
    // The same writer again (a retry) may; another writer of the same number may not, even under
    // another name.
    let err = put_segment(&repo, &meta(200), &[], "writer-b")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("claimed by writer-a"), "{err}");
    let names = list_segments(&repo, "notes").await.unwrap();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].end, 100);
}

/// The agent's path: back up, stream until a shutdown, and restore into another server, all
/// through the library's jobs, with no command line in between.
#[tokio::test(flavor = "multi_thread")]
async fn backup_stream_and_restore_run_as_library_jobs() {
    use heirloom_backup::config::Config;
    use heirloom_backup::jobs::{self, JobContext, Shutdown, StreamRequest};
    use heirloom_backup::pipeline::Concurrency;
    use heirloom_backup::restore::point::RestorePoint;

    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    let config = Config::load(&world.config()).unwrap();
    let notes = "notes".parse().unwrap();
    let ctx = JobContext::new(open_repo(&world).await, Concurrency::default());

    let backup = jobs::backup_source(&ctx, &config, &notes, &Default::default())
        .await
        .unwrap();
    marker(&source, "after-dump");

    // Streams until the shutdown comes; what arrived before it is stored.
    let (trigger, shutdown) = Shutdown::new();
    let streaming = ctx.clone().with_shutdown(shutdown);
    let request = StreamRequest {
        flush_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let (config2, notes2) = (config.clone(), notes.clone());
    let streamer =
        tokio::spawn(
            async move { jobs::stream_source(&streaming, &config2, &notes2, &request).await },
        );
    tokio::time::sleep(Duration::from_secs(2)).await;
    marker(&source, "streamed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    trigger.signal();
    let report = tokio::time::timeout(Duration::from_secs(30), streamer)
        .await
        .expect("the stream ends on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(report.log, "binlog");
    assert!(
        report.segments > 0 && report.transactions >= Some(2),
        "{report:?}"
    );
    let coverage = jobs::coverage(&ctx, &config, &notes).await.unwrap();
    assert_eq!(coverage.runs.len(), 1, "{coverage:?}");
    assert_eq!(coverage.runs[0].objects, report.segments, "{coverage:?}");
    assert!(coverage.runs[0].last_event.is_some() && coverage.runs[0].crossings.is_empty());

    let copy = MariaDb::start(world.path(), "copy", 2, true);
    let options = jobs::RestoreOptions::default();
    let planned = jobs::plan_restore(
        &ctx,
        &config,
        &notes,
        &copy.url(),
        &RestorePoint::Latest,
        &options,
    )
    .await
    .unwrap();
    let summary = planned.summary().clone();
    assert_eq!(summary.engine, "mysql");
    assert_eq!(summary.backup, backup.id);
    assert!(
        summary.is_complete() && summary.gaps.is_empty(),
        "{summary:?}"
    );
    assert!(
        summary.log.as_ref().is_some_and(|l| l.objects > 0),
        "{summary:?}"
    );
    assert!(summary.log_bytes > 0 && summary.backup_bytes == backup.size);
    let done = planned.run(&ctx).await.unwrap();
    assert!(done.transactions >= Some(2), "{done:?}");
    assert_eq!(copy.markers(), ["after-dump", "streamed"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}
