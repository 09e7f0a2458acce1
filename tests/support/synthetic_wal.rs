//! A PostgreSQL-like source without a server: WAL segments of a few bytes pushed through
//! `wal-push`, and base backups whose manifests name them, each with one small file. For tests
//! and benchmarks of what reads only names, times and manifests (retention, coverage, restore
//! planning); the bytes are no database.

use chrono::{DateTime, Duration, Utc};
use heirloom_backup::engine::postgres::names::WalFileName;
use heirloom_backup::engine::postgres::wal::wal_push;
use heirloom_backup::pipeline::backup::{store_files, Cutting, SourceFile};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::position::Lsn;
use heirloom_backup::progress::Progress;
use heirloom_backup::repo::manifest::{BackupId, BackupKind, PostgresPoint};
use heirloom_backup::repo::{RepoError, Repository};

pub const SEGMENT_SIZE: u64 = 16 << 20;
pub const SYSTEM_ID: u64 = 7_350_000_000_000_000_001;

/// Segment `n` of timeline 1: a long page header naming the cluster, then `n`, then filler.
pub fn segment_bytes(n: u64) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    b[24..32].copy_from_slice(&SYSTEM_ID.to_le_bytes());
    b[32..40].copy_from_slice(&n.to_le_bytes());
    b
}

pub fn segment_name(n: u64) -> String {
    WalFileName::segment(1, n, SEGMENT_SIZE).to_string()
}

/// Archives segment `n` of source `source`, through a file in `spool`.
pub async fn push_segment(repo: &Repository, source: &str, spool: &std::path::Path, n: u64) {
    let path = spool.join(segment_name(n));
    tokio::fs::write(&path, segment_bytes(n))
        .await
        .expect("writing a segment");
    wal_push(repo, source, &path).await.expect("wal-push");
    tokio::fs::remove_file(&path).await.expect("spool");
}

/// The one file of a synthetic base backup that starts in segment `segment`.
pub fn backup_body(segment: u64) -> Vec<u8> {
    (0..4096u32)
        .flat_map(|i| (i ^ segment as u32).to_le_bytes())
        .collect()
}

/// A base backup of `source` taken at `at`, from segment `segment` to the next, consistent five
/// minutes later; its one file holds [`backup_body`].
pub async fn physical_backup(
    repo: &Repository,
    source: &str,
    at: DateTime<Utc>,
    segment: u64,
) -> Result<BackupId, RepoError> {
    physical_backup_as(repo, source, at, segment, None).await
}

/// [`physical_backup`] with the id `<at>-<tail>` instead of a random tail, for a repository whose
/// every name a test fixes.
pub async fn physical_backup_as(
    repo: &Repository,
    source: &str,
    at: DateTime<Utc>,
    segment: u64,
    tail: Option<u32>,
) -> Result<BackupId, RepoError> {
    let mut m = repo.new_manifest(
        &source.parse().map_err(RepoError::Invalid)?,
        BackupKind::PostgresPhysical,
        Default::default(),
        at,
    );
    let files = std::iter::once(Ok(SourceFile {
        path: "base/1/1259".into(),
        mode: Some(0o600),
        reader: Box::new(std::io::Cursor::new(backup_body(segment))),
    }));
    let stored = store_files(
        repo,
        Box::new(files),
        Concurrency::default(),
        Progress::none(),
        &Cutting::default(),
    )
    .await?;
    let start_wal = segment_name(segment);
    m.postgres = Some(PostgresPoint {
        system_identifier: SYSTEM_ID.to_string(),
        server_version: 150_000,
        segment_size: SEGMENT_SIZE,
        timeline: 1,
        start_lsn: Lsn(segment * SEGMENT_SIZE + 40),
        stop_lsn: Lsn((segment + 1) * SEGMENT_SIZE + 40),
        start_wal: start_wal.clone(),
        stop_wal: segment_name(segment + 1),
        consistent_at: at + Duration::minutes(5),
        backup_label: format!("START WAL LOCATION: 0/0 (file {start_wal})\n"),
        tablespace_map: None,
    });
    if let Some(tail) = tail {
        m.id = format!("{}-{tail:08x}", at.format("%Y%m%dT%H%M%SZ"))
            .parse()
            .map_err(RepoError::Invalid)?;
    }
    m.finished = at + Duration::minutes(5);
    m.files = stored.files;
    repo.save_manifest(&m).await?;
    Ok(m.id)
}
