//! Physical backups of MariaDB with `mariabackup --backup --stream=xbstream`, and their restore
//! into a data directory: extracted, prepared, then brought to the target instant by replaying the
//! binlog into a private server started on it for the purpose.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::progress::Progress;
use chrono::{DateTime, Utc};
use tracing::info;

use super::binlog::GtidPos;
use super::plan::MyPlan;
use super::private_server::PrivateServer;
use super::restore::{assemble, replay, MyRestoreReport};
use super::server::{client_program, probe, require_binlog, MysqlUrl};
use super::MyError;
use crate::engine::process::{feed_file, ChildOutput};
use crate::pipeline::backup::{commit_backup, store_files, BackupSummary, Cutting, SourceFile};
use crate::pipeline::Concurrency;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::manifest::{BackupKind, MysqlPoint};
use crate::repo::source::SourceName;
use crate::repo::{RepoError, Repository};

const STREAM_FILE: &str = "backup.xbstream";

/// The binlog position mariabackup reports for its backup:
/// `MySQL binlog position: filename 'binlog.000002', position '1234', GTID of the last change '0-1-5'`.
pub fn reported_position(log: &str) -> Option<(String, u64, String)> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("binlog position: filename '"))?;
    let quoted = |after: &str| -> Option<String> {
        let at = line.find(after)? + after.len();
        let end = at + line[at..].find('\'')?;
        Some(line[at..end].to_owned())
    };
    let file = quoted("filename '")?;
    let pos = quoted("position '")?.parse().ok()?;
    let gtid = quoted("GTID of the last change '").unwrap_or_default();
    Some((file, pos, gtid))
}

/// Backs up the server's data directory with mariabackup, streamed through the pipeline.
#[allow(clippy::too_many_arguments)]
pub async fn physical_backup(
    repo: &Repository,
    source: &SourceName,
    url: &MysqlUrl,
    data_dir: &Path,
    labels: BTreeMap<String, String>,
    concurrency: Concurrency,
    progress: Progress,
    now: DateTime<Utc>,
) -> Result<BackupSummary, MyError> {
    let clock = Instant::now();
    let mut conn = url.connect().await?;
    let info = probe(url, &mut conn).await?;
    require_binlog(url, &info)?;
    drop(conn);
    if !info.is_mariadb {
        return Err(MyError::Invalid(format!(
            "{}: physical backups use mariabackup, which needs MariaDB; use mode: logical for MySQL",
            url.display()
        )));
    }
    let program = client_program("mariabackup", "mariadb-backup")?;
    let scratch = tempfile::Builder::new()
        .prefix("heirloom-mariabackup-")
        .tempdir()
        .map_err(|e| MyError::io("a temporary directory", e))?;
    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "backup", now)
        .await
        .map_err(RepoError::from)?;
    let log: Arc<Mutex<Arc<Mutex<Vec<u8>>>>> =
        Arc::new(Mutex::new(Arc::new(Mutex::new(Vec::new()))));
    let seen_at: Arc<Mutex<Option<DateTime<Utc>>>> = Arc::new(Mutex::new(None));
    let result = async {
        let mut cmd = Command::new(&program);
        cmd.arg("--no-defaults")
            .args(["--backup", "--stream=xbstream"])
            .arg(format!("--target-dir={}", scratch.path().display()))
            .arg(format!("--datadir={}", data_dir.display()));
        url.add_connection_args(&mut cmd, &program);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = program.display().to_string();
        let log_slot = log.clone();
        let files = Box::new(std::iter::once_with(move || {
            let mut child = cmd
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("running {what}: {e}")))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("mariabackup has no stdout"))?;
            let output = ChildOutput::new(child, stdout, what);
            *log_slot.lock().unwrap_or_else(|p| p.into_inner()) = output.stderr_handle();
            Ok(SourceFile {
                path: STREAM_FILE.to_owned(),
                mode: None,
                reader: Box::new(output),
            })
        }));
        let stored = store_files(repo, files, concurrency, progress, &Cutting::default()).await?;
        *seen_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Utc::now());
        let text = {
            let handle = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let bytes = handle.lock().unwrap_or_else(|p| p.into_inner()).clone();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (binlog_file, binlog_pos, gtid) = reported_position(&text).ok_or_else(|| {
            MyError::Invalid(format!(
                "{}: mariabackup reported no binlog position",
                url.display()
            ))
        })?;
        let gtid_pos = GtidPos::parse(&gtid).map_err(MyError::Invalid)?;
        let consistent_at = seen_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(now);
        let mut manifest = repo.new_manifest(source, BackupKind::MysqlPhysical, labels, now);
        manifest.mysql = Some(MysqlPoint {
            server_id: info.server_id,
            server_version: info.version.clone(),
            binlog_file,
            binlog_pos,
            gtid_pos,
            consistent_at,
            databases: Vec::new(),
        });
        let summary = commit_backup(repo, &lease, manifest, stored, clock).await?;
        info!(id = %summary.id, "MariaDB physical backup complete");
        Ok(summary)
    }
    .await;
    lease.release().await;
    result
}

fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), MyError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| MyError::io(what, e))?;
    if !out.status.success() {
        return Err(MyError::Invalid(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Restores a physical backup into `dir`, prepared, and replays the plan's binlog into it.
pub async fn physical_restore(
    repo: &Repository,
    plan: &MyPlan,
    dir: &Path,
    force: bool,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<MyRestoreReport, MyError> {
    if !plan.is_complete() {
        return Err(MyError::Gap {
            source_name: plan.source.clone(),
            why: plan.problem().unwrap_or_default(),
        });
    }
    let empty = is_empty_dir(dir).map_err(|e| MyError::io(dir.display(), e))?;
    if !empty && !force {
        return Err(MyError::Invalid(format!(
            "{} is not empty; restore into an empty directory, or --force to replace its contents",
            dir.display()
        )));
    }
    // Every segment is read and checked before the directory is touched.
    let work = tempfile::Builder::new()
        .prefix("heirloom-binlog-")
        .tempdir()
        .map_err(|e| MyError::io("a temporary directory", e))?;
    let (files, report) = assemble(repo, plan, work.path()).await?;
    if !empty {
        clear_dir(dir).map_err(|e| MyError::io(dir.display(), e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| MyError::io(dir.display(), e))?;

    let manifest = repo.manifest(&plan.backup).await?;
    let index = repo.load_index().await?;
    let mbstream = client_program("mbstream", "xbstream")?;
    for file in &manifest.files {
        let child = Command::new(&mbstream)
            .args(["-x", "-C"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| MyError::io(mbstream.display(), e))?;
        let fed = feed_file(
            repo,
            &index,
            &manifest,
            file,
            child,
            concurrency,
            progress.clone(),
        )
        .await
        .map_err(|e| MyError::io(mbstream.display(), e))?;
        let (status, stderr) = (fed.status, fed.stderr);
        fed.read?;
        if !status.success() {
            return Err(MyError::Invalid(format!(
                "extracting {} into {} failed ({status}): {}",
                file.path,
                dir.display(),
                stderr.trim()
            )));
        }
    }
    let mariabackup = client_program("mariabackup", "mariadb-backup")?;
    let prepare_dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        run(
            Command::new(&mariabackup)
                .arg("--no-defaults")
                .arg("--prepare")
                .arg(format!("--target-dir={}", prepare_dir.display())),
            "mariabackup --prepare",
        )
    })
    .await
    .map_err(|e| MyError::Invalid(format!("prepare task failed: {e}")))??;
    info!(dir = %dir.display(), backup = %plan.backup, "backup extracted and prepared");

    if !files.is_empty() {
        let server = PrivateServer::start(dir).await?;
        let replayed = replay(&files, &server.url, &client_program("mariadb", "mysql")?).await;
        server.stop().await?;
        replayed?;
        info!(transactions = report.transactions, "binlog replayed");
    }
    chown_like_parent(dir)?;
    Ok(report)
}

/// Gives the restored files the owner of the directory they are in (as root, the server's user
/// usually owns the directory prepared for it).
fn chown_like_parent(dir: &Path) -> Result<(), MyError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| MyError::io(dir.display(), e))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    fn walk(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, uid, gid).map_err(|e| MyError::io(dir.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_position_is_read() {
        let log = "[00] 2026-11-23 01:10:00 mariabackup: MySQL binlog position: filename 'binlog.000002', position '1234', GTID of the last change '0-1-55'\n[00] done";
        assert_eq!(
            reported_position(log),
            Some(("binlog.000002".into(), 1234, "0-1-55".into()))
        );
        assert_eq!(reported_position("nothing"), None);
    }
}
