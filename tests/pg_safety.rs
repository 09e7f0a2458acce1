//! PostgreSQL safety, against real clusters: passwords never on a child's command line, a hole in
//! the archive refused with exit code 3, and restores that check ownership before writing.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::postgres::{archive_everything, chown_postgres, PgCluster, PgWorld};

const SECRET: &str = "S3cret-Of-The-Backup-User";

/// Watches every process's command line until stopped: which PostgreSQL programs ran, and any
/// command line that held the secret.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    leaks: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let leaks = Arc::new(Mutex::new(Vec::new()));
        let (s, se, l) = (stop.clone(), seen.clone(), leaks.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    for program in ["pg_basebackup", "pg_dump", "pg_restore", "pg_receivewal"] {
                        if line.contains(&format!("/{program} ")) {
                            se.lock().unwrap().insert(program.to_owned());
                        }
                    }
                    if line.contains(SECRET) {
                        l.lock().unwrap().push(line);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            seen,
            leaks,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (BTreeSet<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        let leaks = self.leaks.lock().unwrap().clone();
        (seen, leaks)
    }
}

fn url_with_password(cluster: &PgCluster, db: &str) -> String {
    format!(
        "postgres://postgres:{SECRET}@127.0.0.1:{}/{db}",
        cluster.port
    )
}

async fn client_with_password(cluster: &PgCluster, db: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&url_with_password(cluster, db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting with the password: {e}\n{}", cluster.log()));
    tokio::spawn(conn);
    client
}

/// Makes TCP connections (the ones heirloom makes) need the password, replication included.
async fn require_password(cluster: &PgCluster) {
    let client = cluster.client().await;
    client
        .batch_execute(&format!("ALTER USER postgres PASSWORD '{SECRET}'"))
        .await
        .unwrap();
    let hba = cluster.data.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    chown_postgres(&hba);
    client
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();
    // Without the password, a TCP connection is now refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
            .await
            .is_err(),
        "the cluster must refuse a connection without the password"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_programs_never_see_the_password_on_their_command_line() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    source.start();
    require_password(&source).await;
    let client = client_with_password(&source, "postgres").await;
    client
        .batch_execute(
            "CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers SELECT generate_series(1, 500)",
        )
        .await
        .unwrap();
    client.batch_execute("CREATE DATABASE copy").await.unwrap();
    client
        .batch_execute("CREATE DATABASE instant")
        .await
        .unwrap();
    // No data_dir: the physical backup streams through pg_basebackup.
    // The target is named in the config: a URL given on heirloom's own command line would show
    // its password there, which no program can prevent.
    let mut config = support::config_text(
        &world.repo(),
        &world.key(),
        &format!(
            "  pg: {{ kind: postgres, url: \"{}\" }}\n",
            url_with_password(&source, "postgres")
        ),
    );
    config.push_str(&format!(
        "targets:\n  copy: {{ kind: postgres, url: \"{}\" }}\n  instant: {{ kind: postgres, url: \"{}\" }}\n",
        url_with_password(&source, "copy"),
        url_with_password(&source, "instant")
    ));
    std::fs::write(world.config(), config).unwrap();
    chown_postgres(&world.config());

    let watch = ArgvWatch::start();
    world.cli(&["backup", "pg"]).success();
    world.cli(&["backup", "pg", "--logical"]).success();
    world
        .cli(&["restore", "pg", "--to", "copy", "--latest"])
        .success();
    let spool = world.path().join("spool");
    let streamer = Command::new(world.bin())
        .arg("--config")
        .arg(world.config())
        .args(["stream", "pg", "--flush-interval", "300ms", "--spool"])
        .arg(&spool)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client
        .batch_execute("INSERT INTO markers VALUES (501)")
        .await
        .unwrap();
    archive_everything(&client).await;
    let instant = chrono::Utc::now();
    // Something after the instant, archived, so recovery can see it pass the instant.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .batch_execute("INSERT INTO markers VALUES (502)")
        .await
        .unwrap();
    archive_everything(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(streamer.id().to_string())
        .status()
        .unwrap();
    let streamed = streamer.wait_with_output().unwrap();
    let (seen, leaks) = watch.finish();

    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    assert!(
        leaks.is_empty(),
        "the password was on a command line: {leaks:?}"
    );
    for program in ["pg_basebackup", "pg_dump", "pg_restore", "pg_receivewal"] {
        assert!(
            seen.contains(program),
            "{program} was never seen running: {seen:?}"
        );
    }
    // The password did reach them: every step above needed it, and the copy holds the data.
    let copied = client_with_password(&source, "copy").await;
    let n: i64 = copied
        .query_one("SELECT count(*) FROM markers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    // An instant into a running server goes through a scratch cluster restored from the physical
    // backup: it has the source's pg_hba.conf, so it too wants the password, and gets it the
    // same way, off every command line.
    let watch = ArgvWatch::start();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            "instant",
            "--time",
            &instant.to_rfc3339(),
        ])
        .success();
    let (_, leaks) = watch.finish();
    assert!(
        leaks.is_empty(),
        "the password was on a command line: {leaks:?}"
    );
    let at_instant = client_with_password(&source, "instant").await;
    let n: i64 = at_instant
        .query_one("SELECT count(*) FROM markers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 501, "the row written after the instant must be absent");
    source.stop();
    // Every object those commands wrote is of a kind the layout knows.
    let verify = world.cli(&["verify", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&verify.stdout()).unwrap();
    assert_eq!(report["unknown_objects"], serde_json::json!([]), "{report}");
    assert!(report["wal_files"].as_u64().unwrap() > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hole_in_the_archive_after_the_backup_exits_3_in_the_plan_and_in_verify() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY)")
        .await
        .unwrap();
    let backup = world.cli(&["backup", "pg", "--json"]).success();
    let id = serde_json::from_str::<serde_json::Value>(&backup.stdout()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..=3 {
        client
            .batch_execute(&format!("INSERT INTO markers VALUES ({i})"))
            .await
            .unwrap();
        archive_everything(&client).await;
    }
    source.stop();
    let show = world.cli(&["show", &id, "--json"]).success();
    let stop_wal = serde_json::from_str::<serde_json::Value>(&show.stdout()).unwrap()["postgres"]
        ["stop_wal"]
        .as_str()
        .unwrap()
        .to_owned();
    let wal_dir = world.repo().join("wal/pg");
    let mut later: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && *n > stop_wal)
        .collect();
    later.sort();
    assert!(later.len() >= 2, "{later:?}");
    // A segment after the backup, with WAL archived after it: a hole.
    let victim = later[0].clone();
    std::fs::remove_file(wal_dir.join(&victim)).unwrap();

    let target = world.path().join("never");
    let target = target.to_str().unwrap();
    for json in [false, true] {
        let mut args = vec!["restore", "pg", "--to", target, "--latest", "--dry-run"];
        if json {
            args.push("--json");
        }
        let plan = world.cli(&args);
        assert_eq!(plan.code(), Some(3), "{}{}", plan.stdout(), plan.stderr());
        if json {
            let p: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
            assert!(p["problem"].as_str().unwrap().contains(&victim), "{p}");
            assert!(
                p["detail"]["unreachable"]
                    .as_str()
                    .unwrap()
                    .contains(&victim),
                "{p}"
            );
            assert_eq!(p["gaps"][0]["first"], victim.as_str(), "{p}");
        } else {
            assert!(
                plan.stdout().contains("CANNOT RESTORE") && plan.stdout().contains(&victim),
                "{}",
                plan.stdout()
            );
        }
    }
    // A time after the hole cannot be shown to lie before it; the backup itself still restores.
    let now = chrono::Utc::now().to_rfc3339();
    let plan = world.cli(&["restore", "pg", "--to", target, "--time", &now, "--dry-run"]);
    assert_eq!(plan.code(), Some(3), "{}", plan.stdout());
    let plan = world.cli(&[
        "restore",
        "pg",
        "--to",
        target,
        "--backup",
        &id,
        "--dry-run",
    ]);
    assert_eq!(plan.code(), Some(0), "{}{}", plan.stdout(), plan.stderr());
    // The real restore is refused the same way, before anything is written.
    let refused = world.cli(&["restore", "pg", "--to", target, "--latest"]);
    assert_eq!(refused.code(), Some(3), "{}", refused.stderr());
    assert!(!std::path::Path::new(target).exists());
    // verify names the hole.
    let verify = world.cli(&["verify"]);
    assert_eq!(verify.code(), Some(3), "{}", verify.stderr());
    assert!(
        verify.stderr().contains(&format!("wal/pg/{victim}")),
        "{}",
        verify.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_as_the_postgres_user_checks_ownership_before_writing() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    world.cli(&["backup", "pg"]).success();
    client
        .batch_execute("INSERT INTO markers VALUES (2)")
        .await
        .unwrap();
    archive_everything(&client).await;
    source.stop();
    chown_postgres(&world.repo());

    let as_postgres = |dir: &std::path::Path| {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(world.bin())
            .arg("--config")
            .arg(world.config())
            .args(["restore", "pg", "--to"])
            .arg(dir)
            .arg("--latest")
            .output()
            .unwrap()
    };
    // The postgres user's own directory, in a group it is not in (root): restored, no chown needed.
    let own = world.path().join("own");
    std::fs::create_dir(&own).unwrap();
    let chown = Command::new("chown")
        .arg("postgres:root")
        .arg(&own)
        .status()
        .unwrap();
    assert!(chown.success());
    let out = as_postgres(&own);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(own.join("PG_VERSION").exists());
    let mut restored = PgCluster::adopt(world.path(), own);
    restored.start();
    restored.wait_promoted().await;
    assert_eq!(
        restored.markers().await,
        vec![1, 2],
        "the restored cluster holds both markers"
    );
    restored.stop();

    // root's directory: refused with what to change, and nothing written into it.
    let roots = world.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    let out = as_postgres(&roots);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to user id 0") && err.contains("chown"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&roots).unwrap().count(), 0);
}

#[test]
fn wal_push_as_a_user_who_cannot_write_the_temporaries_folder_still_archives_and_sweeps() {
    let world = PgWorld::new();
    // `.tmp/` made by root (a root backup ran first); PostgreSQL's wal-push runs as postgres.
    let tmp = world.repo().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let chown = Command::new("chown")
        .arg("root:root")
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(chown.success());
    // A temporary a killed wal-push left beside its target, two hours ago.
    let wal = world.repo().join("wal/pg");
    std::fs::create_dir_all(&wal).unwrap();
    let stale = wal.join(".000000010000000000000009.tmp-0123456789abcdef");
    std::fs::write(&stale, b"half a segment").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    chown_postgres(&world.repo().join("wal"));
    // A file that looks like a segment: a long page header, then noise.
    let mut bytes = vec![7u8; 64 * 1024];
    bytes[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    bytes[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    bytes[24..32].copy_from_slice(&4242u64.to_le_bytes());
    let segment = world.path().join("run/000000010000000000000001");
    std::fs::write(&segment, bytes).unwrap();
    chown_postgres(&segment);

    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(world.bin())
        .arg("--config")
        .arg(world.config())
        .args(["wal-push", "--source", "pg"])
        .arg(&segment)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wal.join("000000010000000000000001").exists());
    assert!(!stale.exists(), "the stale temporary must be swept");
    let leftovers: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
