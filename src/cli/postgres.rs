//! `wal-push`, `wal-fetch`, `restore`: PostgreSQL's archive and point-in-time restore.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use heirloom_backup::config::{EngineKind, KeySpec};
use heirloom_backup::engine::postgres::logical::{choose_logical, logical_restore};
use heirloom_backup::engine::postgres::restore::{
    plan_restore, restore, RestorePlan, RestoreRequest, Target,
};
use heirloom_backup::engine::postgres::scratch::{restore_into_server, ScratchRestore};
use heirloom_backup::engine::postgres::server::start_and_wait;
use heirloom_backup::engine::postgres::wal::{wal_fetch, wal_push_ahead, PushOutcome};
use heirloom_backup::engine::postgres::PgError;
use heirloom_backup::redact::redact;
use heirloom_backup::repo::manifest::BackupKind;
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::repo::RepoError;

use super::restore::{parse_time, RestoreArgs};
use super::{human_bytes, print_json, Context, Exit, UsageError};

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
        .filter(|(_, s)| s.kind == EngineKind::Postgres)
        .map(|(name, _)| name)
        .collect();
    match pg.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(RepoError::Invalid(
            "name the source with --source (the config has no postgres source)".into()
        )),
        _ => bail!(RepoError::Invalid(
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
    let work = async {
        let repo = ctx.open().await?;
        wal_push_ahead(&repo, &source, &args.path, args.ahead)
            .await
            .with_context(|| format!("archiving {}", args.path.display()))
    };
    let outcome = tokio::time::timeout(deadline, work).await.map_err(|_| {
        anyhow::anyhow!(
            "archiving {} did not finish within {deadline:?} (the store's retry_timeout); PostgreSQL will try again",
            args.path.display()
        )
    })??;
    if outcome == PushOutcome::AlreadyArchived {
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

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The restore_command the restored cluster runs: this binary, reaching this repository.
fn restore_command(ctx: &Context, source: &str) -> anyhow::Result<String> {
    let settings = ctx.settings()?;
    let exe = std::env::current_exe().context("finding this program's path")?;
    let mut cmd = vec![sh_quote(&exe.to_string_lossy()), "-q".to_owned()];
    if let Some(config) = &ctx.config_path {
        cmd.push(format!(
            "--config {}",
            sh_quote(&absolute(config)?.to_string_lossy())
        ));
    }
    let url = if settings.url.contains("://") {
        settings.url.clone()
    } else {
        absolute(Path::new(&settings.url))?
            .to_string_lossy()
            .into_owned()
    };
    cmd.push(format!("--repo {}", sh_quote(&url)));
    match &settings.key {
        KeySpec::File(p) => cmd.push(format!("--key-file {}", sh_quote(&absolute(p)?.to_string_lossy()))),
        _ => bail!(RepoError::Invalid(
            "a PostgreSQL restore needs a key file (--key-file, HEIRLOOM_KEY_FILE or repository.key_file): the restored server's restore_command cannot see HEIRLOOM_PASSPHRASE".into()
        )),
    }
    cmd.push(format!("wal-fetch --source {} %f %p", sh_quote(source)));
    Ok(cmd.join(" "))
}

fn print_plan(plan: &RestorePlan) -> anyhow::Result<()> {
    let target = match &plan.target {
        Target::Latest => "everything archived (--latest)".to_owned(),
        Target::Time(t) => format!("{} (as understood)", t.to_rfc3339()),
        Target::Backup(id) => format!("backup {id}, consistent"),
        Target::Lsn(lsn) => format!("just after LSN {lsn}"),
        Target::Name(name) => format!("restore point {name:?}"),
    };
    outln!("source          {}", plan.source);
    outln!("target          {target}");
    outln!(
        "base backup     {} (consistent at {})",
        plan.backup,
        plan.backup_consistent_at.to_rfc3339()
    );
    outln!("timeline        {}", plan.timeline);
    outln!(
        "WAL             {} .. {} needed; archive runs to {}",
        plan.wal_start,
        plan.wal_consistent,
        plan.wal_last.as_deref().unwrap_or("(nothing)")
    );
    if !plan.missing.is_empty() {
        outln!("MISSING WAL     {}", plan.missing.join(", "));
    }
    if let Some(gap) = &plan.gap_at {
        outln!("GAP             {gap} is missing: recovery cannot reach the WAL archived after it");
    }
    if let Some(why) = &plan.unreachable {
        outln!("CANNOT RESTORE  {why}");
    }
    outln!(
        "to fetch        {} of files, {} of WAL",
        human_bytes(plan.backup_bytes),
        human_bytes(plan.wal_bytes)
    );
    Ok(())
}

pub async fn run_restore(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<Exit> {
    if args.gtid.is_some() {
        bail!(RepoError::Invalid(
            "--gtid is for MySQL/MariaDB sources; PostgreSQL restores take --time, --latest or --backup".into()
        ));
    }
    let target = match (&args.time, args.latest, &args.backup) {
        _ if args.lsn.is_some() || args.name.is_some() => match (&args.lsn, &args.name) {
            (Some(lsn), _) => Target::Lsn(
                heirloom_backup::engine::postgres::names::Lsn::from_str_checked(lsn)
                    .map_err(UsageError)?,
            ),
            (None, Some(name)) => Target::Name(name.clone()),
            (None, None) => unreachable!("one of them is set"),
        },
        (Some(t), _, _) => Target::Time(parse_time(t, args.tz).map_err(RepoError::Invalid)?),
        (None, _, Some(b)) => Target::Backup(b.parse().map_err(RepoError::Invalid)?),
        (None, true, None) => Target::Latest,
        (None, false, None) => bail!(RepoError::Invalid(
            "say where to stop: --time T, --latest or --backup ID".into()
        )),
    };
    let target_dir = match ctx.config.targets.get(&args.to) {
        Some(t) => match (&t.data_dir, &t.url, t.kind) {
            (Some(dir), _, EngineKind::Postgres) => dir.clone(),
            (None, Some(url), EngineKind::Postgres) => {
                return restore_logical(ctx, args, &target, url).await
            }
            _ => bail!(RepoError::Invalid(format!(
                "target {} is not a PostgreSQL target (kind postgres with data_dir or url)",
                args.to
            ))),
        },
        None if args.to.starts_with("postgres://") || args.to.starts_with("postgresql://") => {
            return restore_logical(ctx, args, &target, &args.to).await
        }
        None if args.to.contains("://") => bail!(RepoError::Invalid(format!(
            "{}: a PostgreSQL target is a data directory or a postgres:// URL",
            args.to
        ))),
        None => PathBuf::from(&args.to),
    };
    let repo = ctx.open().await?;
    let (plan, manifest) = plan_restore(&repo, &args.source, &target).await?;
    if args.json {
        print_json(&plan)?;
    } else {
        print_plan(&plan)?;
    }
    if args.dry_run {
        return Ok(if plan.is_complete() {
            Exit::Ok
        } else {
            Exit::Integrity
        });
    }
    let request = RestoreRequest {
        target_dir: &target_dir,
        restore_command: restore_command(ctx, &args.source)?,
        force: args.force,
        port: args.port,
        concurrency: ctx.concurrency,
    };
    let progress = ctx.progress("restore", Some(plan.backup_bytes));
    restore(&repo, &plan, &manifest, &request, progress.handle())
        .await
        .with_context(|| format!("restoring {} into {}", plan.backup, target_dir.display()))?;
    progress.finish_and_clear();
    if args.start {
        let major = manifest.postgres.as_ref().map(|p| p.server_version / 10000);
        let dir = target_dir.clone();
        let timeout = args.start_timeout;
        tokio::task::spawn_blocking(move || start_and_wait(&dir, major, timeout))
            .await
            .context("start task failed")??;
        if !args.json {
            outln!(
                "restored into {} and started: recovery is over and the server runs",
                target_dir.display()
            );
        }
    } else if !args.json {
        outln!(
            "restored into {}: start PostgreSQL there and it recovers to the target, then promotes",
            target_dir.display()
        );
    }
    Ok(Exit::Ok)
}

/// Restores the newest fitting logical backup into a running server.
async fn restore_logical(
    ctx: &Context,
    args: &RestoreArgs,
    target: &Target,
    url: &str,
) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    // An instant into a running server: exact from a physical backup and its WAL, through a
    // scratch cluster, when there is one to start from.
    if let Target::Time(_) | Target::Lsn(_) | Target::Name(_) = target {
        if let Ok((plan, manifest)) = plan_restore(&repo, &args.source, target).await {
            return restore_through_scratch(ctx, args, &repo, plan, manifest, url).await;
        }
    }
    let manifests = repo.manifests(Some(&args.source)).await?;
    let chosen = match target {
        Target::Latest => choose_logical(&manifests, &args.source, None),
        Target::Time(t) => choose_logical(&manifests, &args.source, Some(*t)),
        Target::Backup(id) => manifests
            .iter()
            .find(|m| &m.id == id && m.kind == BackupKind::PostgresLogical),
        Target::Lsn(_) | Target::Name(_) => None,
    };
    let Some(manifest) = chosen else {
        bail!(RepoError::Invalid(format!(
            "no logical backup of {} fits {}: restoring into a running server takes a logical backup (backup {} --logical), or --time with a physical backup consistent before it",
            args.source,
            match target {
                Target::Latest => "--latest".to_owned(),
                Target::Time(t) => t.to_rfc3339(),
                Target::Backup(id) => id.to_string(),
                Target::Lsn(lsn) => format!("LSN {lsn}"),
                Target::Name(name) => format!("restore point {name}"),
            },
            args.source
        )));
    };
    if args.json {
        print_json(&serde_json::json!({
            "source": args.source, "backup": manifest.id, "taken": manifest.started,
            "kind": "postgres-logical", "bytes": manifest.size(),
        }))?;
    } else {
        outln!("source          {}", args.source);
        outln!(
            "logical backup  {} (taken {})",
            manifest.id,
            manifest.started.to_rfc3339()
        );
        outln!("to fetch        {}", human_bytes(manifest.size()));
    }
    if args.dry_run {
        return Ok(Exit::Ok);
    }
    let progress = ctx.progress("restore", Some(manifest.size()));
    logical_restore(&repo, manifest, url, ctx.concurrency, progress.handle())
        .await
        .with_context(|| format!("restoring {} into {}", manifest.id, redact(url)))?;
    progress.finish_and_clear();
    if !args.json {
        outln!("restored {} into {}", manifest.id, redact(url));
    }
    Ok(Exit::Ok)
}

/// A point-in-time restore into a running server from physical backups: the backup restored
/// into a scratch directory, recovered to the instant on a private port, and its database copied
/// across with pg_dump | pg_restore.
async fn restore_through_scratch(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &heirloom_backup::repo::Repository,
    plan: RestorePlan,
    manifest: heirloom_backup::repo::manifest::Manifest,
    url: &str,
) -> anyhow::Result<Exit> {
    if args.json {
        print_json(&plan)?;
    } else {
        print_plan(&plan)?;
        outln!(
            "then            a scratch cluster at that instant, its database copied into {}",
            redact(url)
        );
    }
    if args.dry_run {
        return Ok(if plan.is_complete() {
            Exit::Ok
        } else {
            Exit::Integrity
        });
    }
    let request = ScratchRestore {
        source_url: ctx
            .config
            .sources
            .get(&args.source)
            .and_then(|s| s.url.as_deref()),
        target_url: url,
        restore_command: restore_command(ctx, &args.source)?,
        start_timeout: args.start_timeout,
        concurrency: ctx.concurrency,
    };
    let progress = ctx.progress("restore", Some(plan.backup_bytes));
    let database = restore_into_server(repo, &plan, &manifest, &request, progress.handle())
        .await
        .with_context(|| {
            format!(
                "restoring {} into {} through a scratch cluster",
                plan.backup,
                redact(url)
            )
        })?;
    progress.finish_and_clear();
    if !args.json {
        outln!(
            "restored {database} of {} as of {} into {}",
            args.source,
            match &plan.target {
                Target::Time(t) => t.to_rfc3339(),
                Target::Lsn(lsn) => format!("LSN {lsn}"),
                Target::Name(name) => format!("restore point {name}"),
                _ => "the end of the archive".into(),
            },
            redact(url)
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
