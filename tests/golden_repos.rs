//! Golden repositories: repositories written once by the release of each format
//! (`scripts/make-golden-repos`, under fixtures/repos/), restored by today's build byte for byte
//! and verified whole; a repository of a format newer than this build knows is refused, naming
//! both versions. A format change adds its own golden repository; none is ever rewritten.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use support::copy_tree;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_heirloom-backup")
}

fn golden() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repos");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// A copy of a golden repository and its key (git keeps no file modes: the key is made private
/// again), so that no test run changes what is committed.
struct Copy {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    key: PathBuf,
}

impl Copy {
    fn of(golden: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        copy_tree(&golden.join("repo"), &repo);
        let key = dir.path().join("key");
        std::fs::copy(golden.join("key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            _dir: dir,
            repo,
            key,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--repo")
            .arg(format!("file://{}", self.repo.display()))
            .arg("--key-file")
            .arg(&self.key)
            .env_remove("HEIRLOOM_REPO")
            .env_remove("HEIRLOOM_KEY_FILE")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .env_remove("HEIRLOOM_CONFIG")
            .output()
            .unwrap()
    }
}

#[test]
fn every_golden_repository_restores_byte_for_byte_and_verifies() {
    let dirs = golden();
    assert!(
        !dirs.is_empty(),
        "no golden repository under fixtures/repos"
    );
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let copy = Copy::of(&dir);
        let backups = expected["backups"].as_array().unwrap();
        assert!(!backups.is_empty(), "{name}: expected.json lists no backup");
        for b in backups {
            let id = b["id"].as_str().unwrap();
            let out = copy.run(&["cat", id]);
            assert!(
                out.status.success(),
                "{name}: cat {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                out.stdout.len() as u64,
                b["size"].as_u64().unwrap(),
                "{name}: {id}"
            );
            assert_eq!(
                hex::encode(Sha256::digest(&out.stdout)),
                b["sha256"].as_str().unwrap(),
                "{name}: {id} restores to other bytes"
            );
        }
        let verify = copy.run(&["verify", "--read-data"]);
        assert!(
            verify.status.success(),
            "{name}: verify --read-data: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}

#[test]
fn a_repository_of_a_newer_format_is_refused_and_left_as_it_is() {
    let dir = golden().pop().expect("a golden repository");
    let copy = Copy::of(&dir);
    let path = copy.repo.join("heirloom.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let known = heirloom_backup::repo::format::FORMAT_VERSION;
    config["version"] = serde_json::json!(known + 1);
    let text = serde_json::to_vec_pretty(&config).unwrap();
    std::fs::write(&path, &text).unwrap();
    let id = {
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        expected["backups"][0]["id"].as_str().unwrap().to_owned()
    };
    for args in [vec!["list"], vec!["cat", id.as_str()], vec!["verify"]] {
        let out = copy.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on format {}",
            known + 1
        );
        assert!(
            stderr.contains(&format!("format {} is newer", known + 1))
                && stderr.contains(&format!("format {known}")),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        text,
        "heirloom.json was changed"
    );
}
