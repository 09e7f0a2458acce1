//! Logical backups (`pg_dump -Fc`, uncompressed so unchanged tables deduplicate) and their restore
//! into any running server with `pg_restore`.

use std::collections::BTreeMap;
use std::io;
use std::process::{Command, Stdio};

use crate::progress::Progress;
use chrono::{DateTime, Utc};
use tracing::info;

use super::conninfo::ChildConnInfo;
use super::server::pg_program;
use super::server::{connect, sql};
use super::wal::ensure_identity;
use super::PgError;
use crate::engine::process::{feed_file, ChildOutput, WaitStderr};
use crate::pipeline::backup::{commit_backup, store_files, BackupSummary, Cutting, SourceFile};
use crate::pipeline::Concurrency;
use crate::redact::redact;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::source::SourceName;
use crate::repo::{RepoError, Repository};

/// Dumps the source URL's database with `pg_dump -Fc -Z0` into the repository.
pub async fn logical_backup(
    repo: &Repository,
    source: &SourceName,
    conninfo: &str,
    labels: BTreeMap<String, String>,
    concurrency: Concurrency,
    progress: Progress,
    now: DateTime<Utc>,
) -> Result<BackupSummary, PgError> {
    let clock = std::time::Instant::now();
    let server = redact(conninfo);
    let client = connect(conninfo).await?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                    current_setting('server_version_num')::int4, current_database()",
            &[],
        )
        .await
        .map_err(sql(&server))?;
    let system_identifier: String = row.get(0);
    let version = row.get::<_, i32>(1) as u32;
    let database: String = row.get(2);
    drop(client);
    ensure_identity(repo, source, &system_identifier, &server).await?;

    let pg_dump = pg_program("pg_dump", Some(version / 10000))?;
    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "backup", now)
        .await
        .map_err(RepoError::from)?;
    let result = async {
        let url = conninfo.to_owned();
        let path = format!("{database}.dump");
        let files = Box::new(std::iter::once_with(move || {
            let conn = ChildConnInfo::new(&url);
            let mut child = Command::new(&pg_dump)
                .args(["--format=custom", "--compress=0", "--no-sync"])
                .arg(conn.dbname_arg())
                .envs(conn.env())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("running {}: {e}", pg_dump.display()))
                })?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("pg_dump has no stdout"))?;
            Ok(SourceFile {
                path,
                mode: None,
                reader: Box::new(ChildOutput::new(child, stdout, "pg_dump")),
            })
        }));
        let stored = store_files(repo, files, concurrency, progress, &Cutting::default()).await?;
        let manifest = repo.new_manifest(source, BackupKind::PostgresLogical, labels, now);
        let summary = commit_backup(repo, &lease, manifest, stored, clock).await?;
        info!(id = %summary.id, database, "logical backup complete");
        Ok(summary)
    }
    .await;
    lease.release().await;
    result
}

/// The newest logical backup of `source` taken at or before `at` (any time when `None`).
pub fn choose_logical<'a>(
    manifests: &'a [Manifest],
    source: &str,
    at: Option<DateTime<Utc>>,
) -> Option<&'a Manifest> {
    manifests
        .iter()
        .filter(|m| m.source == source && m.kind == BackupKind::PostgresLogical)
        .filter(|m| at.is_none_or(|t| m.started <= t))
        .max_by_key(|m| m.started)
}

/// Restores a logical backup into the database `target_url` names, with `pg_restore`, streaming the
/// verified dump into it.
pub async fn logical_restore(
    repo: &Repository,
    manifest: &Manifest,
    target_url: &str,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<(), PgError> {
    let index = repo.load_index().await?;
    let pg_restore = pg_program("pg_restore", None)?;
    for file in &manifest.files {
        let conn = ChildConnInfo::new(target_url);
        let child = Command::new(&pg_restore)
            .args(["--no-owner", "--exit-on-error"])
            .arg(conn.dbname_arg())
            .envs(conn.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PgError::io(pg_restore.display(), e))?;
        let fed = feed_file(
            repo,
            &index,
            manifest,
            file,
            child,
            concurrency,
            progress.clone(),
        )
        .await
        .map_err(|e| PgError::io("pg_restore", e))?;
        let (status, stderr) = (fed.status, fed.stderr);
        if !status.success() {
            return Err(PgError::Invalid(format!(
                "pg_restore of {} into {} failed ({status}): {}",
                file.path,
                redact(target_url),
                stderr.trim()
            )));
        }
        fed.read?;
    }
    Ok(())
}

/// Copies the database `from` connects to (a URL or conninfo naming it) into `target_url`,
/// `pg_dump -Fc` piped into `pg_restore --no-owner`: how a point-in-time restore from physical
/// backups reaches a running server of any version.
pub async fn copy_database(from: &str, target_url: &str) -> Result<(), PgError> {
    let pg_dump = pg_program("pg_dump", None)?;
    let pg_restore = pg_program("pg_restore", None)?;
    let from = ChildConnInfo::new(from);
    let mut dump = Command::new(&pg_dump)
        .args(["--format=custom", "--compress=0", "--no-sync"])
        .arg(from.dbname_arg())
        .envs(from.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PgError::io(pg_dump.display(), e))?;
    let stdout = dump
        .stdout
        .take()
        .ok_or_else(|| PgError::Invalid("pg_dump has no stdout".into()))?;
    let to = ChildConnInfo::new(target_url);
    let mut load = Command::new(&pg_restore)
        .args(["--no-owner", "--exit-on-error"])
        .arg(to.dbname_arg())
        .envs(to.env())
        .stdin(Stdio::from(stdout))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PgError::io(pg_restore.display(), e))?;
    let (dumped, loaded) = tokio::task::spawn_blocking(move || {
        let l = load.wait_with_output_stderr();
        let d = dump.wait_with_output_stderr();
        (d, l)
    })
    .await
    .map_err(|e| PgError::Invalid(format!("copy task failed: {e}")))?;
    let (ls, lerr) = loaded.map_err(|e| PgError::io("pg_restore", e))?;
    let (ds, derr) = dumped.map_err(|e| PgError::io("pg_dump", e))?;
    if !ls.success() {
        return Err(PgError::Invalid(format!(
            "pg_restore into {} failed ({ls}): {}",
            redact(target_url),
            lerr.trim()
        )));
    }
    if !ds.success() {
        return Err(PgError::Invalid(format!(
            "pg_dump of {} failed ({ds}): {}",
            redact(from.conninfo()),
            derr.trim()
        )));
    }
    Ok(())
}
