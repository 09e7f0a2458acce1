//! Delta restore for real: a first restore of a cluster started and stopped, a pgbench load on
//! the original, a new backup, then `restore --delta` over the first restore. The result is the
//! source's data at the target (pg_dump compared), clean under pg_amcheck and pg_checksums, and
//! the restore says what it checked, kept, fetched and wrote. A running server's directory and
//! another cluster's are refused, and left as they were.

mod support;

use support::postgres::{
    archive_everything, assert_amcheck_clean, assert_same_rows, bin_dir, dump_data, pgbench,
    PgCluster, PgWorld,
};

/// `restored into DIR by delta (K files kept, R rewritten, X removed; B bytes checked, C chunks
/// fetched, W bytes written)`, as numbers.
fn delta_counts(done: &str) -> [u64; 6] {
    let inside = done
        .split_once("by delta (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .unwrap_or_else(|| panic!("no delta counts in {done:?}"));
    let numbers: Vec<u64> = inside
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|n| panic!("counts {n:?} in {done:?}"))
}

fn files_of(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = support::files_under(dir)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p.display().to_string(), len)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_restore_over_an_earlier_restore_equals_the_source() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    let init = pgbench(&source, &["-i", "-s", "4", "-q"])
        .wait_with_output()
        .unwrap();
    assert!(init.status.success());
    // The backup ends once the WAL it needs is archived.
    world.cli(&["backup", "pg"]).success();

    // The first restore, started (it recovers and promotes) and stopped.
    let mut first = world.restore_started("replica", &["--latest"]);
    let dir = first.data.clone();
    assert_eq!(first.markers().await, vec![1]);

    // Two minutes of pgbench on the source (rate-limited, to share the machine), then a backup.
    let seconds = std::env::var("HEIRLOOM_DELTA_PGBENCH_SECONDS").unwrap_or_else(|_| "120".into());
    let load = pgbench(&source, &["-c", "2", "-T", &seconds, "-R", "150", "-n"])
        .wait_with_output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    client
        .batch_execute("INSERT INTO markers VALUES (2)")
        .await
        .unwrap();
    let backup = world.cli(&["backup", "pg", "--json"]).success();
    let summary: serde_json::Value = serde_json::from_str(&backup.stdout()).unwrap();
    let backup_size = summary["size"].as_u64().unwrap();
    client
        .batch_execute("INSERT INTO markers VALUES (3)")
        .await
        .unwrap();
    archive_everything(&client).await;
    let source_rows = dump_data(&source);

    // Refused while its server runs, and the directory is left alone.
    let before = files_of(&dir);
    let running = world.cli(&[
        "restore",
        "pg",
        "--to",
        dir.to_str().unwrap(),
        "--latest",
        "--delta",
    ]);
    assert_eq!(running.code(), Some(1), "{}", running.stderr());
    assert!(
        running.stderr().contains("a server is running"),
        "{}",
        running.stderr()
    );
    first.stop();
    assert_eq!(files_of(&dir).len(), before.len());
    // Refused over another cluster's directory, left as it was.
    let other = world.plain_cluster("other");
    let other_files = files_of(&other.data);
    let refused = world.cli(&[
        "restore",
        "pg",
        "--to",
        other.data.to_str().unwrap(),
        "--latest",
        "--delta",
    ]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    assert!(
        refused.stderr().contains("another cluster"),
        "{}",
        refused.stderr()
    );
    assert_eq!(files_of(&other.data), other_files);

    // Over the first restore: only what changed is fetched.
    let delta = world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--delta",
        ])
        .success();
    let [kept, rewritten, removed, checked, fetched, written] = delta_counts(&delta.stdout());
    eprintln!(
        "delta restore: {kept} files kept, {rewritten} rewritten, {removed} removed; {checked} bytes checked, {fetched} chunks fetched, {written} bytes written, of a {backup_size}-byte backup"
    );
    assert!(
        kept > 0 && rewritten > 0 && fetched > 0,
        "{}",
        delta.stdout()
    );
    assert!(
        written < backup_size,
        "{written} bytes written of {backup_size}"
    );
    assert!(checked > 0);

    let mut restored = PgCluster::adopt(world.path(), dir.clone());
    restored.start();
    restored.wait_promoted().await;
    assert_eq!(restored.markers().await, vec![1, 2, 3]);
    assert_same_rows(&source_rows, &dump_data(&restored));
    assert_amcheck_clean(&restored);
    restored.stop();
    let checksums = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin_dir().join("pg_checksums"))
        .args(["--check", "-D"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        checksums.status.success(),
        "pg_checksums: {}{}",
        String::from_utf8_lossy(&checksums.stdout),
        String::from_utf8_lossy(&checksums.stderr)
    );
    source.stop();
}
