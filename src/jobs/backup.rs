//! `backup SOURCE`: a base backup in the engine and mode the config names.

use super::{configured, JobContext, JobError};
use crate::config::Config;
use crate::engine::BackupRequest;
use crate::pipeline::backup::{backup_stream as stream_backup, BackupOptions, BackupSummary};
use crate::repo::manifest::BackupKind;
use crate::repo::source::SourceName;
use chrono::{DateTime, Utc};

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
/// as of `ctx.now()`, or as of `options.time` for history imported from another tool. A given time
/// is refused in the future, and for a source with a log (a database source of the config, or one
/// the repository holds database backups of): its backups are dated by the server, and its log
/// could not be made to agree with a date given by hand.
pub async fn backup_stream<R: std::io::Read + Send + 'static>(
    ctx: &JobContext,
    config: &Config,
    reader: R,
    options: &BackupOptions,
) -> Result<BackupSummary, JobError> {
    if let Some(time) = options.time {
        check_given_time(ctx, config, &options.source, time).await?;
    }
    Ok(stream_backup(&ctx.repo, reader, options, ctx.progress.clone(), ctx.now()).await?)
}

/// Whether `time` may be given for a backup of `source` (see [`backup_stream`]); checked before
/// a producer is started, and again by the backup.
pub async fn check_given_time(
    ctx: &JobContext,
    config: &Config,
    source: &SourceName,
    time: DateTime<Utc>,
) -> Result<(), JobError> {
    let now = ctx.now();
    if time > now {
        return Err(JobError::Usage(format!(
            "--time {} is in the future (it is {} now): a backup cannot be of a time not yet come",
            time.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    let declared = config
        .sources
        .get(source)
        .map(|c| c.engine())
        .or_else(|| config.unresolved_sources.get(source).and_then(|u| u.engine));
    if let Some(kind) = declared {
        return Err(JobError::Usage(format!(
            "--time is for stream sources without a log; {source} is a {kind} source of the config, whose backups are dated by its server"
        )));
    }
    let manifests = ctx.repo.manifests(Some(source.as_str())).await?;
    if let Some(m) = manifests.iter().find(|m| m.kind != BackupKind::Stream) {
        return Err(JobError::Usage(format!(
            "--time is for stream sources without a log; the repository holds {} backup {} of {source}, so it has a log a given time would not agree with",
            m.kind, m.id
        )));
    }
    Ok(())
}
