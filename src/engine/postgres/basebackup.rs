//! Physical base backups of a local data directory, between `pg_backup_start` and
//! `pg_backup_stop` on one session, leaving out what PostgreSQL documents as safe to omit.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::progress::Progress;
use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tracing::{debug, info, warn};

use super::conninfo::ChildConnInfo;
use super::datadir::{walk, DataDirListing};
use super::names::{Lsn, WalFileName};
use super::server::pg_program;
use super::server::{connect, sql};
use super::wal::ensure_identity;
use super::PgError;
use crate::pipeline::backup::{
    commit_backup, store_files, BackupSummary, Cutting, SourceFile, StoredFiles, VisitFile,
};
use crate::pipeline::Concurrency;
use crate::redact::redact;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::manifest::{BackupKind, Manifest, PostgresPoint};
use crate::repo::source::SourceName;
use crate::repo::Repository;

/// What to back up.
pub struct BaseBackupRequest<'a> {
    pub source: &'a SourceName,
    /// libpq connection string or `postgres://` URL.
    pub conninfo: &'a str,
    /// The data directory, readable here; `None` streams the backup from the server
    /// (`pg_basebackup`), for hosts without access to the files.
    pub data_dir: Option<&'a Path>,
    pub labels: BTreeMap<String, String>,
    pub concurrency: Concurrency,
    /// How long a backup waits for its last WAL segment to reach the repository.
    pub archive_timeout: std::time::Duration,
}

/// Takes a base backup and writes its manifest.
pub async fn base_backup(
    repo: &Repository,
    request: &BaseBackupRequest<'_>,
    progress: Progress,
    now: DateTime<Utc>,
) -> Result<BackupSummary, PgError> {
    let clock = std::time::Instant::now();
    let server = redact(request.conninfo);
    let client = connect(request.conninfo).await?;
    let err = sql(&server);
    let version: u32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(&err)?
        .get::<_, i32>(0) as u32;
    let system_identifier: String = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(&err)?
        .get(0);
    let segment_size: i64 = client
        .query_one(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'",
            &[],
        )
        .await
        .map_err(&err)?
        .get(0);
    if let Some(data_dir) = request.data_dir {
        let on_disk = control_system_identifier(data_dir)?;
        if on_disk.to_string() != system_identifier {
            return Err(PgError::Invalid(format!(
                "{} belongs to cluster {on_disk}, but {server} is cluster {system_identifier}: data_dir and url name different clusters",
                data_dir.display()
            )));
        }
    }
    ensure_identity(repo, request.source, &system_identifier, &server).await?;

    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "backup", now)
        .await
        .map_err(crate::repo::RepoError::from)?;
    let result = async {
        let mut manifest = repo.new_manifest(
            request.source,
            BackupKind::PostgresPhysical,
            request.labels.clone(),
            now,
        );
        let label = format!("heirloom-backup {}", manifest.id);
        let previous = previous_backup(repo, request.source, &system_identifier).await?;
        if let Some(p) = &previous {
            debug!(previous = %p.id, "new chunks are stored as deltas of this backup's");
        }
        let cutting = Cutting::pages(previous.as_ref());
        let taken = match request.data_dir {
            Some(data_dir) => {
                local_copy(
                    repo,
                    &client,
                    &server,
                    version,
                    &label,
                    data_dir,
                    request.concurrency,
                    progress,
                    &cutting,
                )
                .await?
            }
            None => {
                remote_copy(
                    repo,
                    request.conninfo,
                    version,
                    &label,
                    request.concurrency,
                    progress,
                    &cutting,
                )
                .await?
            }
        };
        let consistent_at: DateTime<Utc> = client
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(&err)?
            .get(0);
        let Taken {
            stored,
            directories,
            start_lsn,
            stop_lsn,
            backup_label,
            tablespace_map,
        } = taken;
        let (timeline, start_wal) = parse_label(&backup_label)?;
        let stop_segment = WalFileName::segment_of(timeline, stop_lsn, segment_size as u64);
        let stop_wal = stop_segment.to_string();
        info!(%stop_lsn, files = stored.files.len(), "backup stopped");
        // Local or streamed, a backup is restorable only with the WAL it ends in.
        wait_archived(
            repo,
            &client,
            &server,
            request.source,
            &stop_segment,
            request.archive_timeout,
        )
        .await?;

        manifest.postgres = Some(PostgresPoint {
            system_identifier: system_identifier.clone(),
            server_version: version,
            segment_size: segment_size as u64,
            timeline,
            start_lsn,
            stop_lsn,
            start_wal,
            stop_wal,
            consistent_at,
            backup_label,
            tablespace_map: tablespace_map.filter(|m| !m.is_empty()),
        });
        manifest.directories = directories;
        Ok(commit_backup(repo, &lease, manifest, stored, clock).await?)
    }
    .await;
    lease.release().await;
    result
}

/// Waits until the WAL segment a backup ends in is in the repository (archived by `wal-push` or a
/// streamer): only then can the backup be restored. Skipped when the server does not archive (a
/// streamer may bring the segment later; the restore planner says so if it never does).
async fn wait_archived(
    repo: &Repository,
    client: &Client,
    server: &str,
    source: &str,
    stop_wal: &WalFileName,
    limit: std::time::Duration,
) -> Result<(), PgError> {
    let mode: String = client
        .query_one("SHOW archive_mode", &[])
        .await
        .map_err(sql(server))?
        .get(0);
    if mode == "off" {
        info!(segment = %stop_wal, "archive_mode is off: not waiting for the backup's last WAL segment");
        return Ok(());
    }
    let key = super::wal::wal_key(source, stop_wal);
    let clock = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    let mut warned = 0u64;
    loop {
        if repo
            .store()
            .list(&key)
            .await
            .map_err(crate::repo::RepoError::from)?
            .iter()
            .any(|o| o.key == key)
        {
            debug!(segment = %stop_wal, waited_ms = clock.elapsed().as_millis() as u64, "last WAL segment archived");
            return Ok(());
        }
        let waited = clock.elapsed();
        if waited >= limit {
            return Err(PgError::Invalid(format!(
                "WAL segment {stop_wal}, where this backup ends, did not reach the repository as {key} within {} s: check archive_command (wal-push --source {source}) or the streamer, or allow longer with --archive-timeout; the backup is not recorded",
                limit.as_secs()
            )));
        }
        if waited.as_secs() / 30 > warned {
            warned = waited.as_secs() / 30;
            warn!(segment = %stop_wal, waited_s = waited.as_secs(), "still waiting for the backup's last WAL segment to be archived");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(500));
    }
}

/// The newest physical backup of `source` from the same cluster: its files are what new chunks are
/// encoded against.
async fn previous_backup(
    repo: &Repository,
    source: &str,
    system_identifier: &str,
) -> Result<Option<Manifest>, PgError> {
    let manifests = repo.manifests(Some(source)).await?;
    Ok(manifests
        .into_iter()
        .filter(|m| {
            m.kind == BackupKind::PostgresPhysical
                && m.postgres
                    .as_ref()
                    .is_some_and(|p| p.system_identifier == system_identifier)
        })
        .max_by_key(|m| m.started))
}

/// What copying the cluster's files produced.
struct Taken {
    stored: StoredFiles,
    directories: Vec<String>,
    start_lsn: Lsn,
    stop_lsn: Lsn,
    backup_label: String,
    tablespace_map: Option<String>,
}

/// Copies a local data directory between `pg_backup_start` and `pg_backup_stop` on `client`.
#[allow(clippy::too_many_arguments)]
async fn local_copy(
    repo: &Repository,
    client: &Client,
    server: &str,
    version: u32,
    label: &str,
    data_dir: &Path,
    concurrency: Concurrency,
    progress: Progress,
    cutting: &Cutting,
) -> Result<Taken, PgError> {
    let err = sql(server);
    let start_sql = if version >= 150000 {
        "SELECT pg_backup_start($1, true)::text"
    } else {
        "SELECT pg_start_backup($1, true, false)::text"
    };
    let start_lsn: Lsn = client
        .query_one(start_sql, &[&label])
        .await
        .map_err(&err)?
        .get::<_, String>(0)
        .parse()
        .map_err(PgError::Invalid)?;
    info!(%start_lsn, "backup started");
    let dir = data_dir.to_owned();
    let DataDirListing { directories, files } = tokio::task::spawn_blocking(move || walk(&dir))
        .await
        .map_err(|e| PgError::Invalid(format!("walk task failed: {e}")))??;
    let root = data_dir.to_owned();
    let source = Box::new(files.into_iter().filter_map(move |(path, mode)| {
        match fs::File::open(root.join(&path)) {
            Ok(f) => Some(Ok(SourceFile {
                path,
                mode: Some(mode),
                reader: Box::new(f),
            })),
            // Dropped or truncated tables vanish during a backup; WAL replay recreates the truth.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(io::Error::new(e.kind(), format!("{path}: {e}")))),
        }
    }));
    let stored = store_files(repo, source, concurrency, progress, cutting).await?;
    // Not waiting for the archiver here: PostgreSQL polls it once a second; `wait_archived` watches
    // the repository, where the WAL has to be, more closely.
    let stop_sql = if version >= 150000 {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
    };
    let row = client.query_one(stop_sql, &[]).await.map_err(&err)?;
    Ok(Taken {
        stored,
        directories,
        start_lsn,
        stop_lsn: row.get::<_, String>(0).parse().map_err(PgError::Invalid)?,
        backup_label: row.get(1),
        tablespace_map: row.get(2),
    })
}

/// What `pg_basebackup`'s tar stream held besides the files.
#[derive(Default)]
struct TarExtras {
    directories: Vec<String>,
    backup_label: Option<String>,
    tablespace_map: Option<String>,
    stderr: String,
}

/// `pg_basebackup -D - -Ft`'s output, read entry by entry straight into the pipeline.
struct TarStream {
    child: std::process::Child,
    extras: std::sync::Arc<std::sync::Mutex<TarExtras>>,
}

impl crate::pipeline::backup::FileSource for TarStream {
    fn visit(mut self: Box<Self>, each: &mut VisitFile<'_>) -> io::Result<()> {
        use std::io::Read;
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("pg_basebackup has no stdout"))?;
        let mut archive = tar::Archive::new(stdout);
        let mut label = None;
        let mut map = None;
        let mut dirs = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            // Entries are named `./base/1/1259`: keep the path relative to the data directory.
            let raw = entry.path()?.to_string_lossy().into_owned();
            let path = raw
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            if path.is_empty() || path == "." {
                continue;
            }
            let mode = entry.header().mode().ok().map(|m| m & 0o7777);
            match entry.header().entry_type() {
                tar::EntryType::Directory => dirs.push(path),
                tar::EntryType::Regular if path == "backup_label" || path == "tablespace_map" => {
                    let mut text = String::new();
                    entry.read_to_string(&mut text)?;
                    if path == "backup_label" { label = Some(text) } else { map = Some(text) }
                }
                tar::EntryType::Regular if path.starts_with("pg_wal/") => {}
                tar::EntryType::Regular => {
                    if !each(&path, mode, &mut entry)? {
                        break;
                    }
                }
                other => {
                    return Err(io::Error::other(format!(
                        "pg_basebackup sent {path} as {other:?}: tablespaces and links are not supported yet"
                    )))
                }
            }
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr)?;
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "pg_basebackup failed ({status}): {}",
                stderr.trim()
            )));
        }
        if let Ok(mut extras) = self.extras.lock() {
            extras.directories = dirs;
            extras.backup_label = label;
            extras.tablespace_map = map;
            extras.stderr = stderr;
        }
        Ok(())
    }
}

/// Streams a base backup from the server with `pg_basebackup` (tar to stdout, WAL from the archive).
/// The WAL the backup spans must still be in the server's pg_wal when it ends (set `wal_keep_size`
/// on busy servers).
async fn remote_copy(
    repo: &Repository,
    conninfo: &str,
    version: u32,
    label: &str,
    concurrency: Concurrency,
    progress: Progress,
    cutting: &Cutting,
) -> Result<Taken, PgError> {
    let program = pg_program("pg_basebackup", Some(version / 10000))?;
    // --wal-method=fetch only to have the end point reported: the WAL comes from the archive, and the
    // segments in the stream are skipped.
    let child_conn = ChildConnInfo::new(conninfo);
    let child = std::process::Command::new(&program)
        .args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=fetch",
            "--checkpoint=fast",
            "--no-manifest",
            "--verbose",
        ])
        .arg(format!("--label={label}"))
        .arg(child_conn.dbname_arg())
        .envs(child_conn.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| PgError::io(program.display(), e))?;
    let extras = std::sync::Arc::new(std::sync::Mutex::new(TarExtras::default()));
    let source = Box::new(TarStream {
        child,
        extras: extras.clone(),
    });
    let stored = store_files(repo, source, concurrency, progress, cutting).await?;
    let extras = std::mem::take(
        &mut *extras
            .lock()
            .map_err(|_| PgError::Invalid("tar reader failed".into()))?,
    );
    let backup_label = extras
        .backup_label
        .ok_or_else(|| PgError::Invalid("pg_basebackup's output had no backup_label".into()))?;
    let start_lsn = backup_label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|lsn| lsn.parse::<Lsn>().ok())
        .ok_or_else(|| {
            PgError::Invalid(format!(
                "no start location in backup_label:\n{backup_label}"
            ))
        })?;
    let stop_lsn = extras
        .stderr
        .lines()
        .find_map(|l| l.split("write-ahead log end point: ").nth(1))
        .and_then(|lsn| lsn.parse::<Lsn>().ok())
        .ok_or_else(|| {
            PgError::Invalid(format!(
                "pg_basebackup did not report its end point:\n{}",
                extras.stderr
            ))
        })?;
    Ok(Taken {
        stored,
        directories: extras.directories,
        start_lsn,
        stop_lsn,
        backup_label,
        tablespace_map: extras.tablespace_map,
    })
}

/// The system identifier in `global/pg_control` (its first 8 bytes).
fn control_system_identifier(data_dir: &Path) -> Result<u64, PgError> {
    let path = data_dir.join("global/pg_control");
    let bytes = fs::read(&path).map_err(|e| PgError::io(path.display(), e))?;
    let first: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PgError::Invalid(format!("{} is too short", path.display())))?;
    Ok(u64::from_le_bytes(first))
}

/// Reads the timeline and first WAL file from a backup label.
fn parse_label(label: &str) -> Result<(u32, String), PgError> {
    let bad = || PgError::Invalid(format!("unexpected backup_label from the server:\n{label}"));
    let mut timeline = None;
    let mut wal = None;
    for line in label.lines() {
        if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            timeline = rest.trim().parse().ok();
        }
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            wal = rest
                .split("(file ")
                .nth(1)
                .map(|f| f.trim_end_matches(')').trim().to_owned());
        }
    }
    Ok((timeline.ok_or_else(bad)?, wal.ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-22 10:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n";
        assert_eq!(
            parse_label(label).unwrap(),
            (1, "000000010000000000000002".into())
        );
        assert!(parse_label("nonsense").is_err());
    }
}
