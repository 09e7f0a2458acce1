//! `backup SOURCE`: the engine and mode the config names, chosen here once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobContext, JobError};
use crate::config::{BackupMode, Config, EngineKind};
use crate::engine::mysql::dump::dump_backup;
use crate::engine::mysql::physical::physical_backup;
use crate::engine::mysql::server::MysqlUrl;
use crate::engine::postgres::basebackup::{base_backup, BaseBackupRequest};
use crate::engine::postgres::logical::logical_backup;
use crate::pipeline::backup::BackupSummary;
use crate::repo::source::SourceName;

/// How to back a source up, beyond what the config says of it.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub labels: BTreeMap<String, String>,
    /// A logical backup (pg_dump) of a PostgreSQL source, whatever its `mode`.
    pub logical: bool,
    /// How long a PostgreSQL backup waits for its last WAL segment in the repository.
    pub archive_timeout: Duration,
    /// When the backup starts: its id and times.
    pub now: DateTime<Utc>,
}

/// Backs up the source `name` of `config`: PostgreSQL physical (local files or `pg_basebackup`)
/// or logical, MySQL/MariaDB dump or physical, as the source's kind and mode say.
pub async fn backup_source(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    request: &BackupRequest,
) -> Result<BackupSummary, JobError> {
    let source = config.sources.get(name).ok_or_else(|| {
        JobError::Usage(format!("source {name:?} is not in the config's sources"))
    })?;
    let repo = &ctx.repo;
    let labels = request.labels.clone();
    let progress = ctx.progress.clone();
    match source.kind {
        EngineKind::Postgres => {
            let url = source.url.as_deref().ok_or_else(|| {
                JobError::Usage(format!(
                    "sources.{name}.url is needed: every PostgreSQL backup runs on a connection"
                ))
            })?;
            if request.logical || source.mode == Some(BackupMode::Logical) {
                return Ok(logical_backup(
                    repo,
                    name,
                    url,
                    labels,
                    ctx.concurrency,
                    progress,
                    request.now,
                )
                .await?);
            }
            let base = BaseBackupRequest {
                source: name,
                conninfo: url,
                data_dir: source.data_dir.as_deref(),
                labels,
                concurrency: ctx.concurrency,
                archive_timeout: request.archive_timeout,
            };
            Ok(base_backup(repo, &base, progress, request.now).await?)
        }
        EngineKind::Mysql => {
            if request.logical {
                return Err(JobError::Usage(
                    "--logical is for PostgreSQL sources; a MySQL source's mode says dump or physical".into(),
                ));
            }
            let url = source.url.as_deref().ok_or_else(|| {
                JobError::Usage(format!(
                    "sources.{name}.url is needed (mysql://user:password@host:port)"
                ))
            })?;
            let url = MysqlUrl::parse(url)?;
            if source.mode == Some(BackupMode::Physical) {
                let data_dir = source.data_dir.as_deref().ok_or_else(|| {
                    JobError::Usage(format!(
                        "sources.{name}.data_dir is needed: mariabackup reads the data directory"
                    ))
                })?;
                Ok(physical_backup(
                    repo,
                    name,
                    &url,
                    data_dir,
                    labels,
                    ctx.concurrency,
                    progress,
                    request.now,
                )
                .await?)
            } else {
                Ok(dump_backup(
                    repo,
                    name,
                    &url,
                    labels,
                    ctx.concurrency,
                    progress,
                    request.now,
                )
                .await?)
            }
        }
    }
}
