//! Crash campaigns: commands killed with SIGKILL at seeded random moments, and what the repository
//! holds afterwards. Each campaign first times one uninterrupted run of its command, then kills
//! `HEIRLOOM_CRASH_RUNS` runs (3 by default, as CI runs it; `scripts/crash-campaign` runs 100)
//! each after a delay drawn from `HEIRLOOM_CRASH_SEED` (fixed by default): every other run
//! anywhere from the start to a little past that run's exit, the others between its first change
//! to the store and its exit, where the kill lands mid-write. After every killed run:
//!
//! - `verify --read-data` is clean;
//! - every backup that reported success restores byte for byte (or, for a database, to exactly
//!   the rows it was taken with), and every other backup the repository lists restores to what
//!   it was given;
//! - the interrupted command, run again, completes.
//!
//! A run the kill came too late for (it had exited) is counted as such. With
//! `HEIRLOOM_CRASH_REPORT=FILE` each campaign appends its counts to FILE as a JSON line.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::crash::{delay, rng, run_killed, runs, timed, Tally};
use support::{copy_tree, mixed_data, sha256, write_key};

/// A file:// repository driven by the binary, with its key file.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn init(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let repo = Self {
            dir: dir.to_owned(),
        };
        write_key(&repo.key(), &[7u8; 32]);
        repo.ok(&["init"]);
        repo
    }

    /// A copy of `template` (repository and key) in `dir`.
    fn copy(template: &Repo, dir: &Path) -> Self {
        let _ = std::fs::remove_dir_all(dir);
        copy_tree(&template.dir, dir);
        Self {
            dir: dir.to_owned(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key")
    }

    fn command_with_key(&self, key: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_heirloom-backup"));
        cmd.current_dir(&self.dir)
            .env_remove("HEIRLOOM_CONFIG")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .arg("--repo")
            .arg(format!("file://{}", self.store().display()))
            .arg("--key-file")
            .arg(key)
            .arg("-q")
            .args(args);
        cmd
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_with_key(&self.key(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn backup_file(&self, file: &Path) -> Command {
        let mut cmd = self.command(&["backup", "--stdin", "--source", "app", "--json"]);
        cmd.stdin(File::open(file).unwrap());
        cmd
    }

    fn ids(&self) -> Vec<String> {
        let list: serde_json::Value = serde_json::from_str(&self.ok(&["list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn cat_hash(&self, id: &str) -> String {
        let out = self.run(&["cat", id]);
        assert!(
            out.status.success(),
            "cat {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sha256(&out.stdout)
    }

    fn verify_clean(&self, context: &str) {
        let out = self.run(&["verify", "--read-data"]);
        assert!(
            out.status.success(),
            "{context}: verify --read-data: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every file of the store with its hash: to see whether a killed run changed anything.
    fn snapshot(&self) -> BTreeMap<String, String> {
        support::cli::snapshot_of(&self.store())
    }
}

/// Each run's data: 4 MiB shared by every run (deduplicated after the first) and 4 MiB its own.
fn run_data(run: u32) -> Vec<u8> {
    let mut data = mixed_data(4 << 20, 1);
    data.extend(mixed_data(4 << 20, 1000 + run as u64));
    data
}

#[test]
fn stdin_backups_killed_at_random_leave_a_clean_repository() {
    let root = tempfile::tempdir().unwrap();
    let repo = Repo::init(&root.path().join("r"));
    let mut rng = rng("stdin-backup");
    let mut tally = Tally::new("backup --stdin");
    // Every backup that reported success, and the hash of every data set offered.
    let mut reported: BTreeMap<String, String> = BTreeMap::new();
    let mut offered: Vec<String> = Vec::new();
    let file = root.path().join("data.bin");

    // The first backup stores the shared part; the second, timed, is what every run is like.
    for data in [run_data(0), run_data(u32::MAX)] {
        std::fs::write(&file, &data).unwrap();
        offered.push(sha256(&data));
    }
    std::fs::write(&file, run_data(0)).unwrap();
    let out = repo.backup_file(&file).output().unwrap();
    assert!(out.status.success());
    std::fs::write(&file, run_data(u32::MAX)).unwrap();
    let timing = timed(repo.backup_file(&file), &repo.store());

    for run in 1..=runs() {
        let data = run_data(run);
        std::fs::write(&file, &data).unwrap();
        offered.push(sha256(&data));
        let before = repo.snapshot();
        let outcome = run_killed(repo.backup_file(&file), delay(&mut rng, run, timing));
        tally.count(&outcome, repo.snapshot() != before);
        let context = format!("run {run} (seed {})", tally.seed);
        repo.verify_clean(&context);
        // Whatever the repository lists restores to data that was offered.
        for id in repo.ids() {
            let hash = repo.cat_hash(&id);
            match reported.get(&id) {
                Some(expected) => assert_eq!(&hash, expected, "{context}: backup {id}"),
                None => assert!(
                    offered.contains(&hash),
                    "{context}: backup {id} holds data never given"
                ),
            }
        }
        // The same backup again completes.
        let out = repo.backup_file(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{context}: the re-run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = id["id"].as_str().unwrap().to_owned();
        assert_eq!(
            repo.cat_hash(&id),
            sha256(&data),
            "{context}: the re-run's backup"
        );
        reported.insert(id, sha256(&data));
    }
    for (id, hash) in &reported {
        assert_eq!(&repo.cat_hash(id), hash, "backup {id} at the end");
    }
    tally.report();
}

#[test]
fn prunes_with_garbage_collection_killed_at_random_leave_the_kept_backups_whole() {
    let root = tempfile::tempdir().unwrap();
    let policy = root.path().join("last-two.yaml");
    std::fs::write(&policy, "name: last-two\nkeep: { last: 2 }\n").unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let prune = ["prune", "--policy", &policy, "--grace", "0s", "--json"];
    // Two starting points: eight backups never pruned (the kill lands in forgetting and
    // marking), and the same after one prune (it lands in deleting what was marked).
    let fresh = Repo::init(&root.path().join("fresh"));
    let mut hashes = BTreeMap::new();
    let file = root.path().join("data.bin");
    for run in 0..8 {
        let data = run_data(run);
        std::fs::write(&file, &data).unwrap();
        let out = fresh.backup_file(&file).output().unwrap();
        assert!(out.status.success());
        let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        hashes.insert(id["id"].as_str().unwrap().to_owned(), sha256(&data));
    }
    let ids = fresh.ids();
    let kept: Vec<String> = ids.iter().rev().take(2).cloned().collect();
    let marked = Repo::copy(&fresh, &root.path().join("marked"));
    marked.ok(&prune);
    let timing = |template: &Repo| {
        let copy = Repo::copy(template, &root.path().join("timing"));
        timed(copy.command(&prune), &copy.store())
    };
    let timings = [timing(&fresh), timing(&marked)];
    let mut rng = rng("prune-gc");
    let mut tally = Tally::new("prune + gc");
    for run in 1..=runs() {
        let which = (run % 2) as usize;
        let template = [&fresh, &marked][which];
        let repo = Repo::copy(template, &root.path().join("run"));
        let before = repo.snapshot();
        let outcome = run_killed(
            repo.command(&prune),
            delay(&mut rng, run / 2, timings[which]),
        );
        tally.count(&outcome, repo.snapshot() != before);
        let context = format!(
            "run {run} from the {} repository (seed {})",
            ["fresh", "marked"][which],
            tally.seed
        );
        repo.verify_clean(&context);
        let listed = repo.ids();
        for id in &kept {
            assert!(listed.contains(id), "{context}: kept backup {id} is gone");
        }
        for id in &listed {
            assert_eq!(&repo.cat_hash(id), &hashes[id], "{context}: backup {id}");
        }
        repo.ok(&prune);
        let mut listed = repo.ids();
        listed.sort();
        let mut expected = kept.clone();
        expected.sort();
        assert_eq!(listed, expected, "{context}: after the re-run");
        // One more prune deletes whatever the re-run marked; then nothing is missing.
        repo.ok(&prune);
        repo.verify_clean(&context);
        for id in &kept {
            assert_eq!(&repo.cat_hash(id), &hashes[id], "{context}: backup {id}");
        }
    }
    tally.report();
}

#[test]
fn key_adds_killed_at_random_leave_every_key_working() {
    let root = tempfile::tempdir().unwrap();
    let template = Repo::init(&root.path().join("template"));
    let data = mixed_data(1 << 20, 5);
    let file = root.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let out = template.backup_file(&file).output().unwrap();
    assert!(out.status.success());
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = id["id"].as_str().unwrap().to_owned();
    let new_key = |repo: &Repo| repo.dir.join("new.key");
    let add = |repo: &Repo| {
        let key = new_key(repo);
        repo.command(&["key", "add", "--new-key-file", key.to_str().unwrap()])
    };
    let timing = {
        let copy = Repo::copy(&template, &root.path().join("timing"));
        timed(add(&copy), &copy.store())
    };
    let keys = |repo: &Repo| -> usize {
        let list: serde_json::Value =
            serde_json::from_str(&repo.ok(&["key", "list", "--json"])).unwrap();
        list.as_array().unwrap().len()
    };
    let mut rng = rng("key-add");
    let mut tally = Tally::new("key add");
    for run in 1..=runs() {
        let repo = Repo::copy(&template, &root.path().join("run"));
        let before = repo.snapshot();
        let outcome = run_killed(add(&repo), delay(&mut rng, run, timing));
        tally.count(&outcome, repo.snapshot() != before);
        let context = format!("run {run} (seed {})", tally.seed);
        // The first key still opens everything.
        assert_eq!(repo.cat_hash(&id), sha256(&data), "{context}");
        repo.verify_clean(&context);
        let count = keys(&repo);
        assert!(count == 1 || count == 2, "{context}: {count} keys");
        if count == 2 {
            let out = repo
                .command_with_key(&new_key(&repo), &["cat", &id])
                .output()
                .unwrap();
            assert!(
                out.status.success() && sha256(&out.stdout) == sha256(&data),
                "{context}: the stored new key does not open the repository: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The same command again completes, and then the new key opens the repository.
        let out = add(&repo).output().unwrap();
        assert!(
            out.status.success(),
            "{context}: the re-run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = repo
            .command_with_key(&new_key(&repo), &["cat", &id])
            .output()
            .unwrap();
        assert!(
            out.status.success() && sha256(&out.stdout) == sha256(&data),
            "{context}: the new key after the re-run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tally.report();
}
