//! `stream`, `binlog-push`, `binlog-fetch`: the MySQL/MariaDB binlog into and out of the repository.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use heirloom_backup::config::EngineKind;
use heirloom_backup::engine::mysql::physical::physical_restore;
use heirloom_backup::engine::mysql::plan::{plan, MyPlan, MyTarget};
use heirloom_backup::engine::mysql::push::{binlog_fetch, binlog_push};
use heirloom_backup::engine::mysql::restore::{restore, MyRestoreRequest};
use heirloom_backup::engine::mysql::server::MysqlUrl;
use heirloom_backup::jobs::{stream_source, JobContext, StreamOutcome, StreamRequest};
use heirloom_backup::repo::manifest::BackupKind;
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::repo::RepoError;
use heirloom_backup::store::parse_duration;

use super::restore::{parse_time, RestoreArgs};
use super::{human_bytes, print_json, Context, Exit};

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// A MySQL/MariaDB source from the config
    source: SourceName,
    /// Store what has arrived at least this often: the window of data a crash can lose
    /// [default: 2s for a binlog, 5s for WAL]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    flush_interval: Option<Duration>,
    /// Store as soon as this many MiB of whole transactions are waiting
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    flush_mib: usize,
    /// Heartbeat period asked of the server; a link silent for three periods is reconnected
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// The server id to register as a replica with [default: derived from the source name]
    #[arg(long, value_name = "ID")]
    replica_server_id: Option<u32>,
    /// Stop at the end of the binlog the server has now instead of following it (MySQL)
    #[arg(long)]
    once: bool,
    /// PostgreSQL: where received WAL waits until it is stored; only this user may write it
    /// [default: $TMPDIR/heirloom-UID/stream-SOURCE, mode 0700]
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// PostgreSQL: the replication slot to stream from (created if missing) [default: heirloom_SOURCE]
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Print what was stored as JSON
    #[arg(long)]
    json: bool,
}

pub async fn run_stream(ctx: &Context, args: &StreamArgs) -> anyhow::Result<Exit> {
    let request = StreamRequest {
        flush_interval: args.flush_interval,
        flush_bytes: Some(args.flush_mib.max(1) << 20),
        heartbeat: Some(args.heartbeat),
        replica_server_id: args.replica_server_id,
        once: args.once,
        spool: args.spool.clone(),
        slot: args.slot.clone(),
    };
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    let outcome = stream_source(&job, &ctx.config, &args.source, &request, shutdown_signal())
        .await
        .with_context(|| format!("streaming the log of source {}", args.source))?;
    match outcome {
        StreamOutcome::Wal(report) if args.json => print_json(&serde_json::json!({
            "source": args.source,
            "segments": report.segments,
            "snapshots": report.snapshots,
        }))?,
        StreamOutcome::Wal(report) => outln!(
            "stored {} complete segments and {} snapshots of the segment being written",
            report.segments,
            report.snapshots
        ),
        StreamOutcome::Binlog(report) => print_binlog_report(&args.source, &report, args.json)?,
    }
    Ok(Exit::Ok)
}

/// What `stream` or `binlog-push` stored; the text names where the chain ends when it is known.
fn print_binlog_report(
    source: &str,
    report: &heirloom_backup::engine::mysql::stream::StreamReport,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "source": source,
            "segments": report.segments,
            "bytes": report.bytes,
            "transactions": report.transactions,
            "last": report.last,
        }));
    }
    let end = report
        .last
        .as_ref()
        .map(|m| {
            format!(
                ", chain ends at {}:{} of server {} (GTID {})",
                m.file, m.end, m.server_id, m.gtid_pos
            )
        })
        .unwrap_or_default();
    outln!(
        "stored {} segments, {} of binlog, {} transactions{end}",
        report.segments,
        human_bytes(report.bytes),
        report.transactions
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `restore` of a MySQL/MariaDB source: plan, then dump and binlog replay into a server.
pub async fn run_restore(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<Exit> {
    if args.lsn.is_some() || args.name.is_some() {
        bail!(RepoError::Invalid(
            "--lsn and --name are for PostgreSQL sources; MySQL restores take --time, --gtid, --latest or --backup".into()
        ));
    }
    let target = match (&args.time, args.latest, &args.backup, &args.gtid) {
        (Some(t), ..) => MyTarget::Time(parse_time(t, args.tz).map_err(RepoError::Invalid)?),
        (None, _, Some(b), _) => MyTarget::Backup(b.parse().map_err(RepoError::Invalid)?),
        (None, _, None, Some(g)) => MyTarget::Gtid(g.parse().map_err(RepoError::Invalid)?),
        (None, true, None, None) => MyTarget::Latest,
        (None, false, None, None) => bail!(RepoError::Invalid(
            "say where to stop: --time T, --gtid G, --latest or --backup ID".into()
        )),
    };
    if args.start || args.port.is_some() {
        bail!(RepoError::Invalid(
            "--start and --port are for PostgreSQL restores; start MariaDB on a restored directory yourself".into()
        ));
    }
    enum Destination {
        Server(MysqlUrl),
        Directory(PathBuf),
    }
    let into = match ctx.config.targets.get(&args.to) {
        Some(t) => match (&t.url, &t.data_dir, t.kind) {
            (Some(url), _, EngineKind::Mysql) => Destination::Server(MysqlUrl::parse(url)?),
            (None, Some(dir), EngineKind::Mysql) => Destination::Directory(dir.clone()),
            _ => bail!(RepoError::Invalid(format!(
                "target {} is not a MySQL target (kind mysql with a url or a data_dir)",
                args.to
            ))),
        },
        None if args.to.starts_with("mysql://") || args.to.starts_with("mariadb://") => {
            Destination::Server(MysqlUrl::parse(&args.to)?)
        }
        None if args.to.contains("://") => bail!(RepoError::Invalid(format!(
            "{}: a MySQL target is a config target, a mysql:// URL or a data directory",
            args.to
        ))),
        None => Destination::Directory(PathBuf::from(&args.to)),
    };
    let kind = match into {
        Destination::Server(_) => BackupKind::MysqlDump,
        Destination::Directory(_) => BackupKind::MysqlPhysical,
    };
    let repo = ctx.open().await?;
    let plan = plan(&repo, &args.source, &target, kind)
        .await
        .with_context(|| format!("planning the restore of {}", args.source))?;
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
    let target_url = match into {
        Destination::Server(url) => url,
        Destination::Directory(dir) => {
            let progress = ctx.progress("restore", Some(plan.dump_bytes));
            let report = physical_restore(
                &repo,
                &plan,
                &dir,
                args.force,
                ctx.concurrency,
                progress.handle(),
            )
            .await
            .with_context(|| format!("restoring {} into {}", args.source, dir.display()))?;
            progress.finish_and_clear();
            if !args.json {
                outln!(
                    "restored {} into {}: backup {} prepared and {} transactions of binlog replayed; \
                     start a server on it",
                    args.source,
                    dir.display(),
                    plan.backup,
                    report.transactions
                );
            }
            return Ok(Exit::Ok);
        }
    };
    let progress = ctx.progress("restore", Some(plan.dump_bytes));
    let request = MyRestoreRequest {
        target: &target_url,
        force: args.force,
        concurrency: ctx.concurrency,
    };
    let report = restore(&repo, &plan, &request, progress.handle())
        .await
        .with_context(|| format!("restoring {} into {}", args.source, target_url.display()))?;
    progress.finish_and_clear();
    if !args.json {
        outln!(
            "restored {} into {}: dump {} and {} transactions of binlog{}",
            args.source,
            target_url.display(),
            plan.backup,
            report.transactions,
            report
                .last_gtid
                .as_ref()
                .map(|g| format!(", the last {g}"))
                .unwrap_or_default()
        );
    }
    Ok(Exit::Ok)
}

fn print_plan(plan: &MyPlan) -> anyhow::Result<()> {
    outln!("restore plan for {}", plan.source);
    outln!(
        "  dump      {} (consistent at {}, binlog {}, GTID {}), {}",
        plan.backup,
        plan.backup_consistent_at.to_rfc3339(),
        plan.backup_binlog,
        if plan.backup_gtid_pos.is_empty() {
            "-"
        } else {
            &plan.backup_gtid_pos
        },
        human_bytes(plan.dump_bytes)
    );
    outln!("  databases {}", plan.databases.join(", "));
    match (&plan.binlog_from, &plan.binlog_to) {
        (Some(from), Some(to)) => outln!(
            "  binlog    {} segments from {from} to {to}, {}",
            plan.segment_count,
            human_bytes(plan.binlog_bytes)
        ),
        _ => outln!("  binlog    none"),
    }
    outln!("  stop      {}", plan.stop);
    for fork in &plan.forks {
        outln!("  failover  {fork}");
    }
    for gap in &plan.gaps {
        outln!("  MISSING   {gap}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BinlogPushArgs {
    /// A MySQL/MariaDB source from the config
    source: SourceName,
    /// The server's binlog directory (with its .index file) [default: the source's data_dir]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Split files into segments of at most this many MiB of whole transactions
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    segment_mib: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct BinlogFetchArgs {
    /// A MySQL/MariaDB source from the config
    source: SourceName,
    /// The binlog file's name (e.g. binlog.000042)
    file: String,
    /// Where to write it
    dest: PathBuf,
    /// The server the file is from, when the store holds files of that name from several
    #[arg(long, value_name = "ID")]
    server_id: Option<u32>,
}

pub async fn run_binlog_push(ctx: &Context, args: &BinlogPushArgs) -> anyhow::Result<Exit> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => ctx
            .config
            .sources
            .get(&args.source)
            .and_then(|s| s.data_dir.clone())
            .ok_or_else(|| {
                RepoError::Invalid(format!(
                    "name the binlog directory with --dir, or set sources.{}.data_dir",
                    args.source
                ))
            })?,
    };
    let repo = ctx.open().await?;
    let report = binlog_push(&repo, &args.source, &dir, args.segment_mib.max(1) << 20)
        .await
        .with_context(|| {
            format!(
                "pushing the binlog of {} from {}",
                args.source,
                dir.display()
            )
        })?;
    print_binlog_report(&args.source, &report, args.json)?;
    Ok(Exit::Ok)
}

pub async fn run_binlog_fetch(ctx: &Context, args: &BinlogFetchArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let tmp = args.dest.with_extension("heirloom-partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let result = binlog_fetch(&repo, &args.source, &args.file, args.server_id, &mut out).await;
    let result = result.map_err(anyhow::Error::from).and_then(|n| {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &args.dest)?;
        Ok(n)
    });
    match result {
        Ok(n) => {
            tracing::info!(file = %args.file, bytes = n, "binlog file written");
            Ok(Exit::Ok)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e).with_context(|| format!("fetching {} of {}", args.file, args.source))
        }
    }
}
