//! `backup SOURCE`: a base backup in the engine and mode the config names.

use super::{configured, JobContext, JobError};
use crate::config::Config;
use crate::engine::BackupRequest;
use crate::pipeline::backup::{backup_stream as stream_backup, BackupOptions, BackupSummary};
use crate::repo::source::SourceName;

/// Backs up the source `name` of `config`: PostgreSQL physical (local files or `pg_basebackup`)
/// or logical, MySQL/MariaDB dump or physical, as the source's kind and mode say. The backup is
/// taken as of `ctx.now()`.
pub async fn backup_source(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    request: &BackupRequest,
) -> Result<BackupSummary, JobError> {
    configured(config, name)?.backup(ctx, request).await
}

/// Backs up a byte stream (a dump piped in, a producer's output) as source `options.source`, taken
/// as of `ctx.now()`.
pub async fn backup_stream<R: std::io::Read + Send + 'static>(
    ctx: &JobContext,
    reader: R,
    options: &BackupOptions,
) -> Result<BackupSummary, JobError> {
    Ok(stream_backup(&ctx.repo, reader, options, ctx.progress.clone(), ctx.now()).await?)
}
