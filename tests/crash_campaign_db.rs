//! Crash campaigns against real servers (see tests/crash_campaign.rs for the method): a
//! PostgreSQL physical backup, `wal-push` run by PostgreSQL's archiver, and the MariaDB binlog
//! streamer, each SIGKILLed at seeded moments `HEIRLOOM_CRASH_RUNS` times (3 in CI). After every
//! killed run the repository verifies clean with `--read-data` and the command, run again,
//! completes; backups that reported success restore to exactly their rows, and the log restores
//! to exactly the source's.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use support::crash::{delay, rng, run_killed, runs, timed, Outcome, Tally};
use support::mysql::{assert_chain_matches_server, MariaDb, MyWorld, Workload};
use support::postgres::{archive_everything, PgCluster, PgWorld};

fn verify_clean(config: &Path, context: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_heirloom-backup"))
        .arg("--config")
        .arg(config)
        .args(["-q", "verify", "--read-data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{context}: verify --read-data: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pg_command(world: &PgWorld, args: &[&str]) -> Command {
    let mut cmd = Command::new(world.bin());
    cmd.arg("--config")
        .arg(world.config())
        .arg("-q")
        .args(args)
        .env_remove("HEIRLOOM_PASSPHRASE");
    cmd
}

/// Restores backup `id` alone (consistent, no further), starts it, and returns its markers and
/// the filler's checksum.
async fn restored_rows(world: &PgWorld, id: &str, name: &str) -> (Vec<i32>, String) {
    let mut copy = world.restore_started(name, &["--backup", id]);
    let dir = copy.data.clone();
    let rows = (copy.markers().await, filler_sum(&copy).await);
    copy.stop();
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

async fn filler_sum(cluster: &PgCluster) -> String {
    cluster
        .client()
        .await
        .query_one(
            "SELECT count(*)::text || ':' || md5(string_agg(v, ',' ORDER BY g)) FROM filler",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_physical_backups_killed_at_random_restore_what_they_reported() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute(
            "CREATE TABLE markers (id int PRIMARY KEY);
             CREATE TABLE filler AS SELECT g, md5(g::text) || repeat('x', 200) AS v
               FROM generate_series(1, 60000) g;",
        )
        .await
        .unwrap();
    let expected_filler = filler_sum(&source).await;
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO filler SELECT -1, 'timing'; DELETE FROM filler WHERE g = -1")
        .await
        .unwrap();
    let timing = timed(pg_command(&world, &["backup", "pg"]), &world.repo());
    let mut rng = rng("pg-physical-backup");
    let mut tally = Tally::new("backup (PostgreSQL physical)");
    for run in 1..=runs() {
        client
            .execute("INSERT INTO markers VALUES ($1)", &[&(run as i32)])
            .await
            .unwrap();
        let before = support::crash::shape(&world.repo());
        let outcome = run_killed(
            pg_command(&world, &["backup", "pg"]),
            delay(&mut rng, run, timing),
        );
        tally.count(&outcome, support::crash::shape(&world.repo()) != before);
        let context = format!("run {run} (seed {})", tally.seed);
        verify_clean(&world.config(), &context);
        // The same backup again completes, and restores to exactly the rows it was taken with.
        let again = world.cli(&["backup", "pg", "--json"]).success();
        let summary: serde_json::Value = serde_json::from_str(&again.stdout()).unwrap();
        let id = summary["id"].as_str().unwrap().to_owned();
        let (markers, filler) = restored_rows(&world, &id, &format!("run-{run}")).await;
        assert_eq!(markers, (1..=run as i32).collect::<Vec<_>>(), "{context}");
        assert_eq!(filler, expected_filler, "{context}");
    }
    verify_clean(&world.config(), "the end");
    tally.report();
    source.stop();
}

/// The pids of running `wal-push` processes of this world's config.
fn wal_pushes(config: &Path) -> Vec<u32> {
    let config = config.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args.first().is_some_and(|a| a.ends_with("heirloom-backup"));
        if ours && args.iter().any(|a| a == "wal-push") && args.contains(&config) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_pushes_killed_under_the_archiver_lose_no_segment() {
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
    let mut rng = rng("wal-push-archiver");
    let mut tally = Tally::new("wal-push (under PostgreSQL's archiver)");
    // How long one wal-push runs, from the moment it is seen.
    let mut typical = Duration::from_millis(50);
    for run in 1..=runs() {
        client
            .batch_execute(&format!(
                "INSERT INTO markers VALUES ({run}); SELECT pg_switch_wal();"
            ))
            .await
            .unwrap();
        // The archiver starts wal-push for the segment just closed (or retries an earlier one).
        let deadline = Instant::now() + Duration::from_secs(90);
        let pid = loop {
            if let Some(pid) = wal_pushes(&world.config()).first() {
                break *pid;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: no wal-push started within 90 s:\n{}",
                source.log()
            );
            std::thread::sleep(Duration::from_micros(300));
        };
        let seen = Instant::now();
        let before = support::crash::shape(&world.repo());
        let wait = Duration::from_micros(rng.gen_range(0..=typical.as_micros() as u64 * 11 / 10));
        std::thread::sleep(wait);
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        let killed = alive
            && Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
        let outcome = match killed {
            true => Outcome::Killed,
            false => {
                typical = typical.max(seen.elapsed());
                Outcome::Exited
            }
        };
        tally.count(&outcome, support::crash::shape(&world.repo()) != before);
    }
    // The archiver retries every segment whose push was killed; the last one archived is the
    // current one, and every segment before it is in the repository.
    archive_everything(&client).await;
    verify_clean(&world.config(), "after the campaign");
    let dir = world.restore_dir("latest");
    world
        .cli(&["restore", "pg", "--to", dir.to_str().unwrap(), "--latest"])
        .success();
    let mut copy = PgCluster::adopt(world.path(), dir);
    copy.start();
    copy.wait_promoted().await;
    assert_eq!(
        copy.markers().await,
        (1..=runs() as i32).collect::<Vec<_>>(),
        "every marker, each in its own segment, replayed"
    );
    copy.stop();
    tally.report();
    source.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binlog_streamers_killed_at_random_leave_a_gapless_chain() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    assert!(world.cli(&["backup", "notes"]).status.success());
    let load = Workload::start(&source, 2).await;
    let mut rng = rng("binlog-streamer");
    let mut tally = Tally::new("stream (MariaDB binlog)");
    let mut stored = support::crash::shape(&world.repo());
    for run in 1..=runs() {
        // A streamer connects, catches up, then flushes every 500 ms: kill it within 3 s.
        let mut streamer = world.start_streamer("notes");
        let wait = Duration::from_millis(rng.gen_range(0..=3000));
        let deadline = Instant::now() + wait;
        let outcome = loop {
            if streamer.try_wait().unwrap().is_some() {
                break Outcome::Exited;
            }
            if Instant::now() >= deadline {
                streamer.kill().unwrap();
                streamer.wait().unwrap();
                break Outcome::Killed;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            matches!(outcome, Outcome::Killed),
            "run {run}: the streamer ended by itself: {}",
            world.streamer_logs()
        );
        let now = support::crash::shape(&world.repo());
        tally.count(&outcome, now != stored);
        stored = now;
        source.sql(&format!(
            "INSERT INTO notes.markers (name) VALUES ('run-{run:03}')"
        ));
        if run % 10 == 0 {
            source.sql("FLUSH BINARY LOGS");
        }
        let context = format!("run {run} (seed {})", tally.seed);
        verify_clean(&world.config(), &context);
    }
    load.stop().await;
    source.sql("INSERT INTO notes.markers (name) VALUES ('the-end')");
    // The streamer run again completes: it catches up and stops cleanly.
    let streamer = world.start_streamer("notes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.stop_streamer(streamer);
    verify_clean(&world.config(), "the end");
    assert_chain_matches_server(&world, &source, "notes").await;
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    assert!(world
        .cli(&["restore", "notes", "--to", &copy.url(), "--latest"])
        .status
        .success());
    let mut expected: Vec<String> = (1..=runs()).map(|r| format!("run-{r:03}")).collect();
    expected.push("the-end".into());
    assert_eq!(copy.markers(), expected);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
    tally.report();
}
