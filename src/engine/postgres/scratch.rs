//! An instant into a running server from physical backups: the backup restored into a scratch
//! directory, recovered to the instant on a private port, and the source's database copied across
//! with `pg_dump | pg_restore`, then the scratch cluster stopped and removed.

use std::path::PathBuf;
use std::time::Duration;

use super::logical::copy_database;
use super::plan::RestorePlan;
use super::restore::{restore, RestoreRequest};
use super::server::{running_as_root, start_and_wait, stop};
use super::PgError;
use crate::pipeline::Concurrency;
use crate::progress::Progress;
use crate::repo::manifest::Manifest;
use crate::repo::Repository;

/// Where the instant goes, and how the scratch cluster is reached.
pub struct ScratchRestore<'a> {
    /// The source's own connection string: its database is the one copied, and its user (and
    /// password, which the scratch cluster has as the source had it then) reach the scratch one.
    pub source_url: Option<&'a str>,
    /// The running server the database is copied into.
    pub target_url: &'a str,
    /// The scratch cluster's `restore_command` (this binary's `wal-fetch`).
    pub restore_command: String,
    /// How long recovery may take.
    pub start_timeout: Duration,
    pub concurrency: Concurrency,
}

/// Restores `plan` into a scratch cluster, recovers it, and copies the source's database into the
/// target server. Returns the database copied.
pub async fn restore_into_server(
    repo: &Repository,
    plan: &RestorePlan,
    manifest: &Manifest,
    request: &ScratchRestore<'_>,
    progress: Progress,
) -> Result<String, PgError> {
    let source = request.source_url.and_then(|u| url::Url::parse(u).ok());
    let database = source
        .as_ref()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "postgres".to_owned());
    let scratch = scratch_dir("heirloom-scratch-")?;
    let port = free_port()?;
    let restore_request = RestoreRequest {
        target_dir: scratch.path(),
        restore_command: request.restore_command.clone(),
        force: false,
        delta: false,
        port: Some(port),
        concurrency: request.concurrency,
    };
    restore(repo, plan, manifest, &restore_request, progress).await?;
    let major = manifest.postgres.as_ref().map(|p| p.server_version / 10000);
    let dir: PathBuf = scratch.path().to_owned();
    let timeout = request.start_timeout;
    tokio::task::spawn_blocking(move || start_and_wait(&dir, major, timeout))
        .await
        .map_err(|e| PgError::Invalid(format!("waiting for the scratch cluster: {e}")))??;
    // The scratch cluster has the source's roles and pg_hba.conf: reach it as the source's user,
    // with the source's password if its URL has one.
    let from = match source {
        Some(mut u) => {
            let _ = u.set_host(Some("127.0.0.1"));
            let _ = u.set_port(Some(port));
            u.set_path(&database);
            u.set_query(None);
            u.to_string()
        }
        None => format!("postgres://postgres@127.0.0.1:{port}/{database}"),
    };
    let copied = copy_database(&from, request.target_url).await;
    let dir = scratch.path().to_owned();
    let stopped = tokio::task::spawn_blocking(move || stop(&dir, major))
        .await
        .map_err(|e| PgError::Invalid(format!("stopping the scratch cluster: {e}")))?;
    copied?;
    stopped?;
    Ok(database)
}

/// A temporary directory for a scratch cluster, named `prefix…`, that the PostgreSQL user owns
/// when we are root (PostgreSQL will not run as root).
pub fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, PgError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| PgError::io("a scratch directory", e))?;
    if running_as_root() {
        let chown = std::process::Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .output()
            .map_err(|e| PgError::io("chown", e))?;
        if !chown.status.success() {
            return Err(PgError::Invalid(
                "a scratch cluster started as root needs the postgres user to own it: create that user, or run as the PostgreSQL user".into(),
            ));
        }
    }
    Ok(dir)
}

/// A free port on 127.0.0.1 for a scratch cluster.
pub fn free_port() -> Result<u16, PgError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PgError::io("a free port", e))
}
