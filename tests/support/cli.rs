//! A file:// repository driven through the command line, for tests of the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;

use super::sha256;

pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// A repository in a temp dir, created with a fresh key file.
    pub fn new() -> Self {
        let repo = Self::empty();
        repo.ok(&["init"]);
        repo
    }

    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    pub fn bare(&self) -> Command {
        let mut cmd = Command::cargo_bin("heirloom-backup").unwrap();
        cmd.current_dir(self.dir.path())
            .env_remove("HEIRLOOM_REPO")
            .env_remove("HEIRLOOM_KEY_FILE")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .env_remove("HEIRLOOM_ALLOW_INSECURE_KEY_FILE")
            .timeout(Duration::from_secs(120));
        cmd
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--repo")
            .arg(format!("file://{}", self.path().display()))
            .arg("--key-file")
            .arg(self.key())
            .args(args);
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn backup(&self, data: &[u8]) -> String {
        let out = self
            .cmd(&["backup", "--stdin", "--source", "app", "--json"])
            .write_stdin(data.to_vec())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Every file of the repository with its SHA-256: to prove a failed command changed nothing.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        snapshot_of(&self.path())
    }

    pub fn files_under(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().join(folder)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.push(p)
                }
            }
        }
        out.sort();
        out
    }
}

impl TestRepo {
    /// Runs a command and returns its whole output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed and returns its standard output as text.
    pub fn ok_text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args)).unwrap()
    }

    /// Backs up `data` from stdin as `source`.
    pub fn backup_stdin(&self, source: &str, data: &[u8]) -> Output {
        self.cmd(&["backup", "--stdin", "--source", source, "--json"])
            .write_stdin(data.to_vec())
            .output()
            .unwrap()
    }

    /// The ids `list` shows, in its order.
    pub fn ids(&self) -> Vec<String> {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok_text(&["list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Writes heirloom.yaml beside the repository and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("heirloom.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Every file under `dir` with its SHA-256.
pub fn snapshot_of(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(key, sha256(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
