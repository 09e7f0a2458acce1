//! The drill benchmark: what a drill's checks cost beside the restore itself. A PostgreSQL
//! cluster started here holds a pgbench database of SCALE (default 20, about 300 MiB); one
//! physical backup with its WAL; then, RUNS times (default 3), side by side on the same backup,
//! `restore --latest --start` into a fresh directory (stopped and removed afterwards) and `drill`
//! (its own scratch cluster, the checks, the record). Prints each run's seconds and the drill's
//! own split: restore until the server is up, then the checks. Run by `scripts/bench-drill`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::postgres::{archive_everything, PgCluster, PgWorld};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let scale: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(bench(scale, runs));
}

async fn bench(scale: u32, runs: usize) {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let init = source.tool(
        "pgbench",
        &["-i", "-s", &scale.to_string(), "-q", "postgres"],
    );
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    world.cli(&["backup", "pg"]).success();
    // A write after the backup, so that switching segments has something to close.
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE after_backup (n int); INSERT INTO after_backup VALUES (1)")
        .await
        .expect("a write after the backup");
    archive_everything(&client).await;
    let bytes: i64 = client
        .query_one("SELECT pg_database_size('postgres')", &[])
        .await
        .expect("the database's size")
        .get(0);
    println!(
        "pgbench scale {scale}: database of {} MiB",
        bytes / (1 << 20)
    );
    println!(
        "run  restore --start (s)  drill (s)  drill: restore (s)  drill: checks (s)  overhead"
    );
    for run in 1..=runs {
        let dir = world.restore_dir(&format!("restored-{run}"));
        let port = support::free_port();
        let began = Instant::now();
        world
            .cli(&[
                "restore",
                "pg",
                "--to",
                dir.to_str().expect("a UTF-8 path"),
                "--latest",
                "--start",
                "--port",
                &port.to_string(),
            ])
            .success();
        let restore = began.elapsed().as_secs_f64();
        let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
        restored.stop();
        drop(restored);
        let _ = std::fs::remove_dir_all(&dir);

        let began = Instant::now();
        let out = world.cli(&["drill", "pg", "--json"]).success();
        let drill = began.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("drill --json");
        let record = &report["record"];
        assert_eq!(record["passed"], true, "{report}");
        let (inside, checks) = (
            record["restore_seconds"].as_f64().unwrap_or(0.0),
            record["check_seconds"].as_f64().unwrap_or(0.0),
        );
        println!(
            "{run:>3}  {restore:>20.2}  {drill:>9.2}  {inside:>18.2}  {checks:>17.2}  {:>7.0} %",
            (drill / restore - 1.0) * 100.0
        );
    }
    source.stop();
}
