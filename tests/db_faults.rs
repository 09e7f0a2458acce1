//! The database side's faults, on real servers: a server killed while its log is streamed, and
//! the dump's connection dropped mid-dump, for PostgreSQL and MariaDB. A dropped dump fails
//! naming its program and stores nothing a restore would use; run again, it completes and
//! restores. A streamer whose server is killed waits for it and continues; the stream it stored
//! restores to exactly the server's rows, markers written before the crash, while the server was
//! back, and after.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::mysql::{assert_chain_matches_server, MariaDb, MyWorld, Workload};
use support::postgres::PgWorld;

/// Waits until `found` returns something, for at most `within`.
fn wait_for<T>(within: Duration, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pg_backup(world: &PgWorld) -> Child {
    Command::new(world.bin())
        .arg("--config")
        .arg(world.config())
        .args(["-q", "backup", "pg", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_whose_connection_is_dropped_stores_nothing_and_the_rerun_restores() {
    let world = PgWorld::new();
    let mut source = world.plain_cluster("source");
    let mut target = world.plain_cluster("target");
    source.start();
    target.start();
    let client = source.client().await;
    client
        .batch_execute(
            "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS v FROM generate_series(1, 300000) g",
        )
        .await
        .unwrap();
    world.write_config(&format!(
        "  pg: {{ kind: postgres, url: \"{}\", mode: logical }}\n",
        source.url()
    ));
    let backup = pg_backup(&world);
    // pg_dump's session, found by its application name, is ended by the server mid-dump.
    let pid: i32 = loop {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump' AND state = 'active'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    let listed = world.cli(&["list", "pg", "--json"]).success().stdout();
    assert_eq!(listed.trim(), "[]", "a dropped dump is not a backup");
    world.cli(&["verify", "--read-data"]).success();

    world.cli(&["backup", "pg"]).success();
    world
        .cli(&["restore", "pg", "--to", &target.url(), "--latest"])
        .success();
    let row = target
        .client()
        .await
        .query_one("SELECT count(*), sum(g) FROM big", &[])
        .await
        .unwrap();
    let (count, sum): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((count, sum), (300_000, 300_000 * 300_001 / 2));
    target.stop();
    source.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_server_killed_while_streamed_is_waited_for_and_the_stream_restores() {
    let world = PgWorld::new();
    let mut source = world.plain_cluster("source");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    let spool = world.path().join("spool");
    let streamer = world.start_wal_streamer(&spool);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The server dies at once (no checkpoint, no goodbye to the receiver), stays down a while,
    // and comes back; the streamer neither ends nor loses what it had.
    source.crash();
    tokio::time::sleep(Duration::from_secs(3)).await;
    source.start();
    let client = source.client().await;
    client
        .batch_execute("INSERT INTO markers VALUES (3)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    world.stop_wal_streamer(streamer);
    source.stop();

    let mut restored = world.restore_started("after-crash", &["--latest"]);
    assert_eq!(restored.markers().await, vec![1, 2, 3]);
    restored.stop();
}

fn my_backup(world: &MyWorld) -> Child {
    world
        .command(&["-q", "backup", "notes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_dump_whose_connection_is_killed_stores_nothing_and_the_rerun_restores() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    source.sql(
        "USE notes; CREATE TABLE notes.big (id int PRIMARY KEY, v text);
         INSERT INTO notes.big SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_200000;",
    );
    world.use_source("notes", &source.url());
    let backup = my_backup(&world);
    // mariadb-dump's connection, found reading the big table, is killed by the server.
    let id = wait_for(Duration::from_secs(60), "the dump's query", || {
        let id = source.sql(
            "SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT /*!40001 SQL_NO_CACHE */ %big%' LIMIT 1",
        );
        (!id.trim().is_empty()).then(|| id.trim().to_owned())
    });
    source.sql(&format!("KILL CONNECTION {id}"));
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mariadb-dump"), "{stderr}");
    let listed = world.ok(&["list", "notes", "--json"]);
    assert_eq!(listed.trim(), "[]", "a killed dump is not a backup");
    world.ok(&["verify", "--read-data"]);

    world.ok(&["backup", "notes"]);
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    world.ok(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
    assert_eq!(
        copy.sql("SELECT count(*), sum(id) FROM notes.big").trim(),
        format!("200000\t{}", 200_000u64 * 200_001 / 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mariadb_server_killed_while_streamed_is_waited_for_and_the_chain_stays_whole() {
    let world = MyWorld::new();
    let mut source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    world.ok(&["backup", "notes"]);
    let streamer = world.start_streamer("notes");
    let load = Workload::start(&source, 2).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    source.sql("INSERT INTO notes.markers (name) VALUES ('before-crash')");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGKILL under load: transactions in flight are lost to the clients, never half-stored.
    source.kill();
    load.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    source.restart();
    let load = Workload::start(&source, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.stop().await;
    source.sql("INSERT INTO notes.markers (name) VALUES ('after-crash')");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    world.stop_streamer(streamer);

    assert_chain_matches_server(&world, &source, "notes").await;
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    world.ok(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert_eq!(copy.markers(), ["after-crash", "before-crash"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}
