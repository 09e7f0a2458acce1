//! `backup`, `list`, `show`, `cat`.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use heirloom_backup::config::{BackupMode, EngineKind};
use heirloom_backup::engine::mysql::dump::dump_backup;
use heirloom_backup::engine::mysql::physical::physical_backup;
use heirloom_backup::engine::postgres::basebackup::{base_backup, BaseBackupRequest};
use heirloom_backup::engine::postgres::logical::logical_backup;
use heirloom_backup::pipeline::backup::{backup_stream, BackupOptions, BackupSummary};
use heirloom_backup::pipeline::restore::restore_file;
use heirloom_backup::repo::RepoError;

use super::{human_bytes, print_json, Context, Exit};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A source from the config (PostgreSQL with url and data_dir)
    source_name: Option<String>,
    /// Back up what is piped to stdin, e.g. `pg_dumpall | heirloom-backup backup --stdin --source app`
    #[arg(long)]
    stdin: bool,
    /// The source name recorded for a --stdin backup
    #[arg(long, value_name = "NAME", required_if_eq("stdin", "true"))]
    source: Option<String>,
    /// A logical backup (pg_dump) of the source's database instead of a physical one
    #[arg(long)]
    logical: bool,
    /// A label recorded in the manifest (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// How long a PostgreSQL backup waits for the WAL segment it ends in to reach the repository
    /// before it fails (e.g. 60s, 10m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = heirloom_backup::store::parse_duration)]
    archive_timeout: std::time::Duration,
    #[arg(long)]
    json: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: a label is KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{text:?}: the label's key is empty"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this source
    source: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A backup id, a unique prefix of one, or `latest`
    backup: String,
    /// The whole manifest as JSON, chunk lists included
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// A backup id, a unique prefix of one, or `latest`
    backup: String,
}

pub async fn backup(ctx: &Context, args: &BackupArgs) -> anyhow::Result<Exit> {
    let source = match (&args.source_name, args.stdin, &args.source) {
        (None, true, Some(name)) => name.clone(),
        (Some(name), false, _) => return backup_source(ctx, args, name).await,
        _ => {
            return Err(RepoError::Invalid(
                "say what to back up: a source from the config, or `backup --stdin --source NAME` with the data on stdin".into(),
            )
            .into())
        }
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(RepoError::Invalid(
            "--stdin reads what is piped in, and stdin is a terminal: pipe a dump in (`pg_dumpall | heirloom-backup backup --stdin --source NAME`)".into(),
        )
        .into());
    }
    let repo = ctx.open().await?;
    let options = BackupOptions {
        source,
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        concurrency: ctx.concurrency,
    };
    let progress = ctx.progress("backup", None);
    let summary = backup_stream(
        &repo,
        std::io::stdin(),
        &options,
        progress.clone(),
        Utc::now(),
    )
    .await
    .with_context(|| format!("backing up stdin as source {}", options.source))?;
    progress.finish_and_clear();
    print_summary(&summary, args.json)?;
    Ok(Exit::Ok)
}

/// Backs up a source named in the config.
async fn backup_source(ctx: &Context, args: &BackupArgs, name: &str) -> anyhow::Result<Exit> {
    let Some(source) = ctx.config.sources.get(name) else {
        return Err(
            RepoError::Invalid(format!("source {name:?} is not in the config's sources")).into(),
        );
    };
    let logical = source.kind == EngineKind::Postgres
        && (args.logical || source.mode == Some(BackupMode::Logical));
    if let (true, EngineKind::Postgres, Some(url)) = (logical, source.kind, &source.url) {
        let repo = ctx.open().await?;
        let progress = ctx.progress("backup", None);
        let labels = args.labels.iter().cloned().collect();
        let summary = logical_backup(
            &repo,
            name,
            url,
            labels,
            ctx.concurrency,
            progress.clone(),
            Utc::now(),
        )
        .await
        .with_context(|| format!("logical backup of source {name}"))?;
        progress.finish_and_clear();
        print_summary(&summary, args.json)?;
        return Ok(Exit::Ok);
    }
    let url = match (source.kind, &source.url) {
        (EngineKind::Postgres, Some(url)) => url,
        (EngineKind::Postgres, None) => {
            return Err(RepoError::Invalid(format!(
                "sources.{name}.url is needed: every PostgreSQL backup runs on a connection"
            ))
            .into())
        }
        (EngineKind::Mysql, _) => {
            let url = super::mysql::mysql_source(ctx, name)?;
            let repo = ctx.open().await?;
            let progress = ctx.progress("backup", None);
            let summary = if source.mode == Some(BackupMode::Physical) {
                let data_dir = source.data_dir.as_deref().ok_or_else(|| {
                    RepoError::Invalid(format!(
                        "sources.{name}.data_dir is needed: mariabackup reads the data directory"
                    ))
                })?;
                physical_backup(
                    &repo,
                    name,
                    &url,
                    data_dir,
                    args.labels.iter().cloned().collect(),
                    ctx.concurrency,
                    progress.clone(),
                    Utc::now(),
                )
                .await
            } else {
                dump_backup(
                    &repo,
                    name,
                    &url,
                    args.labels.iter().cloned().collect(),
                    ctx.concurrency,
                    progress.clone(),
                    Utc::now(),
                )
                .await
            }
            .with_context(|| format!("backing up source {name}"))?;
            progress.finish_and_clear();
            print_summary(&summary, args.json)?;
            return Ok(Exit::Ok);
        }
    };
    let repo = ctx.open().await?;
    let request = BaseBackupRequest {
        source: name,
        conninfo: url,
        data_dir: source.data_dir.as_deref(),
        labels: args.labels.iter().cloned().collect(),
        concurrency: ctx.concurrency,
        archive_timeout: args.archive_timeout,
    };
    let progress = ctx.progress("backup", None);
    let summary = base_backup(&repo, &request, progress.clone(), Utc::now())
        .await
        .with_context(|| format!("backing up source {name}"))?;
    progress.finish_and_clear();
    print_summary(&summary, args.json)?;
    Ok(Exit::Ok)
}

fn print_summary(summary: &BackupSummary, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(summary);
    }
    println!(
        "backup {} of {}: {} in {} chunks ({} new{}, {} added to the repository) in {:.1}s",
        summary.id,
        summary.source,
        human_bytes(summary.size),
        summary.chunks,
        summary.new_chunks,
        match summary.delta_chunks {
            0 => String::new(),
            n => format!(", {n} of them as deltas of earlier chunks"),
        },
        human_bytes(summary.added_bytes),
        summary.seconds
    );
    Ok(())
}

pub async fn list(ctx: &Context, args: &ListArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let manifests = repo.manifests(args.source.as_deref()).await?;
    if args.json {
        let rows: Vec<_> = manifests
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "source": m.source, "kind": m.kind, "labels": m.labels,
                    "host": m.host, "started": m.started, "finished": m.finished,
                    "size": m.size(), "chunks": m.chunk_count(),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(Exit::Ok);
    }
    println!(
        "{:<26} {:<16} {:<8} {:>10}  {:<20} LABELS",
        "ID", "SOURCE", "KIND", "SIZE", "STARTED"
    );
    for m in &manifests {
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<26} {:<16} {:<8} {:>10}  {:<20} {}",
            m.id,
            m.source,
            serde_json::to_value(m.kind)?.as_str().unwrap_or("?"),
            human_bytes(m.size()),
            m.started.format("%Y-%m-%d %H:%M:%S"),
            labels.join(",")
        );
    }
    Ok(Exit::Ok)
}

pub async fn show(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let id = repo.resolve_backup(&args.backup).await?;
    let m = repo.manifest(&id).await?;
    if args.json {
        print_json(&m)?;
        return Ok(Exit::Ok);
    }
    println!("backup    {}", m.id);
    println!("source    {}", m.source);
    println!(
        "kind      {}",
        serde_json::to_value(m.kind)?.as_str().unwrap_or("?")
    );
    println!("host      {}", m.host);
    println!("started   {}", m.started.to_rfc3339());
    println!("finished  {}", m.finished.to_rfc3339());
    for (k, v) in &m.labels {
        println!("label     {k}={v}");
    }
    if let Some(p) = &m.postgres {
        println!(
            "postgres  system {} version {} timeline {} start {} stop {}",
            p.system_identifier, p.server_version, p.timeline, p.start_lsn, p.stop_lsn
        );
        println!("consistent {}", p.consistent_at.to_rfc3339());
    }
    if let Some(p) = &m.mysql {
        println!(
            "mysql     server {} ({}) binlog {}:{} GTID {}",
            p.server_id,
            p.server_version,
            p.binlog_file,
            p.binlog_pos,
            if p.gtid_pos.is_empty() {
                "-"
            } else {
                &p.gtid_pos
            }
        );
        println!("databases {}", p.databases.join(", "));
        println!("consistent {}", p.consistent_at.to_rfc3339());
    }
    for f in &m.files {
        println!(
            "file      {}  {} ({} bytes)  {} chunks",
            f.path,
            human_bytes(f.size),
            f.size,
            f.chunks.len()
        );
    }
    Ok(Exit::Ok)
}

pub async fn cat(ctx: &Context, args: &CatArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let id = repo.resolve_backup(&args.backup).await?;
    let manifest = repo.manifest(&id).await?;
    let index = repo.load_index().await?;
    // Write through our own handle on fd 1: unbuffered (chunks are large) and movable to a thread.
    let stdout = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdout")?,
    );
    for file in &manifest.files {
        let out = stdout.try_clone().context("duplicating stdout")?;
        let progress = ctx.progress("cat", Some(file.size));
        restore_file(
            &repo,
            &index,
            &manifest,
            file,
            out,
            ctx.concurrency,
            progress.clone(),
        )
        .await
        .with_context(|| format!("reading backup {id}"))?;
        progress.finish_and_clear();
    }
    Ok(Exit::Ok)
}
