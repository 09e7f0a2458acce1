//! `wal-push`, `wal-fetch`: PostgreSQL's `archive_command` and `restore_command`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use heirloom_backup::engine::postgres::wal::wal_fetch;
use heirloom_backup::engine::postgres::{PgError, NAME as POSTGRES};
use heirloom_backup::jobs::{push_log, JobContext, PushRequest};
use heirloom_backup::repo::source::SourceName;

use super::{Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The WAL file to archive (`%p` in archive_command)
    path: PathBuf,
    /// The source it belongs to [default: the only postgres source in the config]
    #[arg(long)]
    source: Option<SourceName>,
    /// Also archive up to N later segments PostgreSQL has marked ready, in parallel
    #[arg(long, value_name = "N", default_value_t = 3)]
    ahead: usize,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The WAL file's name (`%f` in restore_command)
    name: String,
    /// Where to write it (`%p` in restore_command)
    dest: PathBuf,
    #[arg(long)]
    source: Option<SourceName>,
    /// Also fetch the next N segments in parallel, into pg_wal/heirloom-prefetch
    #[arg(long, value_name = "N", default_value_t = 4)]
    prefetch: usize,
}

/// The postgres source a WAL command is about.
fn wal_source(ctx: &Context, given: Option<&SourceName>) -> anyhow::Result<SourceName> {
    if let Some(s) = given {
        return Ok(s.clone());
    }
    let pg: Vec<&SourceName> = ctx
        .config
        .sources
        .iter()
        .filter(|(_, s)| s.engine() == POSTGRES)
        .map(|(name, _)| name)
        .collect();
    match pg.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(UsageError(
            "name the source with --source (the config has no postgres source)".into()
        )),
        _ => bail!(UsageError(
            "name the source with --source (the config has several postgres sources)".into()
        )),
    }
}

/// PostgreSQL calls `wal-push` in a loop and archives nothing else while it runs, so the whole
/// command, the repository opened and every segment pushed, ends within the store's
/// `retry_timeout` (180 s by default): a store that stops answering fails the push, and PostgreSQL
/// retries it, instead of stalling the archiver.
pub async fn push(ctx: &Context, args: &WalPushArgs) -> anyhow::Result<Exit> {
    let source = wal_source(ctx, args.source.as_ref())?;
    let deadline = ctx.settings()?.options.call_deadline()?;
    let request = PushRequest {
        path: Some(args.path.clone()),
        ahead: args.ahead,
        segment_bytes: None,
    };
    let work = async {
        let job = JobContext::new(ctx.open().await?, ctx.concurrency);
        push_log(&job, &ctx.config, &source, Some(POSTGRES), &request)
            .await
            .with_context(|| format!("archiving {}", args.path.display()))
    };
    let report = tokio::time::timeout(deadline, work).await.map_err(|_| {
        anyhow::anyhow!(
            "archiving {} did not finish within {deadline:?} (the store's retry_timeout); PostgreSQL will try again",
            args.path.display()
        )
    })??;
    if report.already_stored {
        tracing::info!(path = %args.path.display(), "already archived with the same contents");
    }
    Ok(Exit::Ok)
}

pub async fn fetch(ctx: &Context, args: &WalFetchArgs) -> anyhow::Result<Exit> {
    let source = wal_source(ctx, args.source.as_ref())?;
    let repo = ctx.open().await?;
    match wal_fetch(&repo, &source, &args.name, &args.dest, args.prefetch).await {
        Ok(()) => Ok(Exit::Ok),
        // The normal end of an archive during recovery: say it quietly, exit non-zero.
        Err(PgError::WalNotFound { .. }) => {
            tracing::info!(name = %args.name, "not in the archive");
            Ok(Exit::Failure)
        }
        // Damaged WAL must stop recovery, not end it early at an instant nobody asked for:
        // PostgreSQL aborts recovery when restore_command exits above 125.
        Err(PgError::Repo(e)) if e.is_integrity() => {
            eprintln!(
                "heirloom-backup: error: fetching {}: {e}; stopping recovery",
                args.name
            );
            Ok(Exit::AbortRecovery)
        }
        Err(e) => Err(e).with_context(|| format!("fetching {}", args.name)),
    }
}
