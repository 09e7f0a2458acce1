//! Garbage collection while other processes work on the repository, for real: a backup running
//! through prunes, a backup suspended past its lease, two prunes at once. On file:// and on the S3
//! emulator, through the command line, with leases of 3 seconds (`lease_ttl`) so that a lease can
//! run out within a test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::cli::{stderr, TestRepo};

/// A repository named by a config file, so that every command sees the same store options.
struct Repo {
    test: TestRepo,
    config: PathBuf,
    policy: PathBuf,
}

impl Repo {
    /// `test`'s key, and a config naming `url` with `options` (indented YAML lines) besides.
    fn with(test: TestRepo, url: &str, options: &str) -> Self {
        let config = test.config(&format!(
            "repository:\n  url: {url}\n  key_file: {}\n  options:\n    lease_ttl: 3s\n{options}",
            test.key().display()
        ));
        let policy = test.dir.path().join("last-one.yaml");
        std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
        Self {
            test,
            config,
            policy,
        }
    }

    fn file() -> Self {
        let test = TestRepo::new();
        let url = format!("file://{}", test.path().display());
        Self::with(test, &url, "")
    }

    fn s3(port: u16) -> Self {
        let repo = Self::with(
            TestRepo::new(),
            &format!("s3://{}/gc", support::BUCKET),
            &format!("    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\n"),
        );
        repo.ok(&["init"]);
        repo
    }

    fn dir(&self) -> &Path {
        self.test.dir.path()
    }

    /// The binary with the config, as a plain process (to run in the background).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_heirloom-backup"));
        cmd.current_dir(self.dir())
            .env_remove("HEIRLOOM_REPO")
            .env_remove("HEIRLOOM_KEY_FILE")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn backup(&self, data: &[u8]) -> String {
        let file = self.dir().join("input.bin");
        std::fs::write(&file, data).unwrap();
        let out = self.ok(&[
            "backup",
            "--source",
            "app",
            "--json",
            "--",
            "cat",
            file.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// A backup whose producer writes `data`, then touches `started`, then sleeps `pause`
    /// seconds and writes `tail`: it holds its lease and has read the index all that while.
    fn slow_backup(&self, data: &[u8], pause: u32, tail: &str) -> (Child, PathBuf) {
        let file = self.dir().join("slow.bin");
        std::fs::write(&file, data).unwrap();
        let started = self.dir().join("started");
        let _ = std::fs::remove_file(&started);
        let script = format!(
            "cat '{}' && touch '{}' && sleep {pause} && printf '{tail}'",
            file.display(),
            started.display()
        );
        let child = self
            .command(&[
                "backup", "--source", "app", "--json", "--", "sh", "-c", &script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, started)
    }

    fn prune(&self) -> serde_json::Value {
        let out = self.ok(&[
            "prune",
            "--policy",
            self.policy.to_str().unwrap(),
            "--grace",
            "0s",
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    }

    fn cat(&self, id: &str) -> Vec<u8> {
        let out = self.run(&["cat", id]);
        assert!(out.status.success(), "cat {id}: {}", stderr(&out));
        out.stdout
    }

    fn verify_clean(&self) {
        let out = self.run(&["verify", "--read-data"]);
        assert!(
            out.status.success(),
            "verify --read-data: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
}

fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before its producer got going");
        }
        assert!(Instant::now() < deadline, "the producer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(v: &serde_json::Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// A backup that deduplicates against packs prune finds unreferenced (their backup is deleted
/// meanwhile): they are marked, their deletion waits while the backup runs, and once it has
/// committed they are revived. Everything reads back, verified byte for byte.
fn a_backup_running_through_prunes_keeps_every_chunk(repo: &Repo) {
    let old = support::mixed_data(6 << 20, 11);
    let old_id = repo.backup(&old);
    let newer_id = repo.backup(&support::mixed_data(1 << 20, 12));
    let (mut running, started) = repo.slow_backup(&old, 6, "tail");
    wait_for(&started, &mut running);

    // The old backup goes; its packs, which the running backup is reusing, are marked.
    let first = repo.prune();
    let deleted: Vec<&str> = first["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["backup"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [old_id.as_str()], "{first}");
    assert!(count(&first["gc"]["plan"]["mark"]) > 0, "{first}");
    assert_eq!(first["gc"]["packs_deleted"], 0, "{first}");
    // Their grace period is over, but a backup holds a lease: the deletion waits.
    let second = repo.prune();
    assert!(count(&second["gc"]["plan"]["delete"]) > 0, "{second}");
    assert_eq!(second["gc"]["packs_deleted"], 0, "{second}");
    let why = second["gc"]["deferred"].as_str().unwrap_or_default();
    assert!(why.contains("backup"), "{second}");

    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "the running backup: {}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap().to_owned();
    assert!(
        summary["new_chunks"].as_u64().unwrap() < summary["chunks"].as_u64().unwrap(),
        "the running backup reused the old backup's chunks: {summary}"
    );
    // Referenced again: revived, not deleted. (The running backup is now the newest, so the
    // policy lets the other one go.)
    let third = repo.prune();
    assert!(count(&third["gc"]["plan"]["revive"]) > 0, "{third}");
    assert_eq!(third["deleted"][0]["backup"], newer_id.as_str(), "{third}");
    let mut expected = old.clone();
    expected.extend_from_slice(b"tail");
    assert!(repo.cat(&id) == expected, "the running backup reads back");
    repo.verify_clean();
    // And collected once nothing needs them: the newer backup's packs, after their grace.
    let fourth = repo.prune();
    assert!(
        fourth["gc"]["packs_deleted"].as_u64().unwrap() > 0,
        "{fourth}"
    );
    assert!(repo.cat(&id) == expected);
    repo.verify_clean();
}

#[test]
fn a_backup_running_through_prunes_keeps_every_chunk_on_file() {
    a_backup_running_through_prunes_keeps_every_chunk(&Repo::file());
}

#[test]
fn a_backup_running_through_prunes_keeps_every_chunk_on_s3() {
    let moto = support::start_moto();
    a_backup_running_through_prunes_keeps_every_chunk(&Repo::s3(moto.port));
}

/// The failure restic's prune had: a backup process suspended (a laptop asleep) longer than its
/// lease; meanwhile prune, seeing no live lease, deletes the packs it was reusing. When it wakes
/// it must not commit a backup that references them.
#[test]
fn a_backup_suspended_past_its_lease_does_not_commit() {
    let repo = Repo::file();
    let old = support::mixed_data(6 << 20, 21);
    repo.backup(&old);
    let newer_id = repo.backup(&support::mixed_data(1 << 20, 22));
    let (mut sleeper, started) = repo.slow_backup(&old, 1, "late");
    wait_for(&started, &mut sleeper);
    let pid = sleeper.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let suspended = Instant::now();
    let first = repo.prune();
    assert_eq!(count(&first["deleted"]), 1, "{first}");
    assert!(count(&first["gc"]["plan"]["mark"]) > 0, "{first}");
    // Its lease ran out (3 s) and the room for clocks (3 s more) passed: nobody holds it.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(suspended.elapsed()));
    let second = repo.prune();
    assert!(
        second["gc"]["packs_deleted"].as_u64().unwrap() > 0,
        "{second}"
    );
    assert!(second["gc"]["deferred"].is_null(), "{second}");
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let out = sleeper.wait_with_output().unwrap();
    assert!(!out.status.success(), "a lapsed backup committed");
    assert!(stderr(&out).contains("lease ran out"), "{}", stderr(&out));
    // No manifest of it, and what is left is whole.
    let list: serde_json::Value = serde_json::from_str(&repo.ok(&["list", "--json"])).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer_id.as_str()]);
    repo.verify_clean();
}

/// Two prunes of one repository: while one holds the prune lease, the other fails naming it and
/// changes nothing; the first then completes.
#[test]
fn of_two_prunes_at_once_one_proceeds() {
    let repo = Repo::file();
    for seed in 31..35 {
        repo.backup(&support::mixed_data(256 << 10, seed));
    }
    let locks = repo.test.path().join("locks");
    let policy = repo.policy.to_str().unwrap().to_owned();
    // Catch a prune holding its lease: suspend it as soon as its lease object appears.
    let mut attempts = 0;
    let first = loop {
        attempts += 1;
        assert!(attempts <= 50, "never caught a prune holding its lease");
        let mut child = repo
            .command(&["prune", "--policy", &policy, "--grace", "0s", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let caught = loop {
            let held = std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some());
            if held {
                let pid = child.id().to_string();
                Command::new("kill").args(["-STOP", &pid]).status().unwrap();
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
        };
        if caught && std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some()) {
            break child;
        }
        Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    };
    let records = || std::fs::read_dir(repo.test.path().join("prunes")).map_or(0, |d| d.count());
    let records_before = records();
    let listed_before = repo.ok(&["list", "--json"]);
    let out = repo.run(&["prune", "--policy", &policy, "--grace", "0s"]);
    assert!(!out.status.success(), "a second prune ran beside the first");
    assert!(
        stderr(&out).contains("locked") && stderr(&out).contains("prune"),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(), records_before);
    assert_eq!(repo.ok(&["list", "--json"]), listed_before);
    Command::new("kill")
        .args(["-CONT", &first.id().to_string()])
        .status()
        .unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "the first prune: {}", stderr(&out));
    assert!(!locks.exists() || std::fs::read_dir(&locks).unwrap().next().is_none());
    repo.verify_clean();
}
