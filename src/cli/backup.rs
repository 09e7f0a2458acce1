//! `backup`, `list`, `show`, `cat`.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::engine::process::ChildOutput;
use heirloom_backup::jobs::{
    backup_source as backup_job, backup_stream, check_given_time, list as list_job, BackupOptions,
    BackupRequest,
};
use heirloom_backup::pipeline::backup::BackupSummary;
use heirloom_backup::pipeline::restore::restore_file;
use heirloom_backup::repo::manifest::BackupId;
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::restore::point::{parse_time, parse_tz};

use super::{human_bytes, print_json, Context, Exit, UsageError};

#[derive(Debug, Args)]
#[command(
    after_help = "Run the producer through heirloom-backup, so a failed dump is never recorded:\n  \
    heirloom-backup backup --source app -- pg_dumpall -h db -U backup\n\
A shell pipe (`pg_dumpall | heirloom-backup backup --stdin --source app`) cannot tell heirloom-backup \
that the producer failed: a dump that died half-way looks like a short dump."
)]
pub struct BackupArgs {
    /// A source from the config (PostgreSQL or MySQL/MariaDB)
    source_name: Option<SourceName>,
    /// Back up what is piped to stdin (prefer `--source NAME -- COMMAND`, which sees the producer fail)
    #[arg(long, conflicts_with = "command")]
    stdin: bool,
    /// The source name recorded for a --stdin or command backup
    #[arg(long, value_name = "NAME", required_if_eq("stdin", "true"))]
    source: Option<SourceName>,
    /// Record an empty stream as a backup (refused by default: it is usually a producer that failed)
    #[arg(long)]
    allow_empty: bool,
    /// The producer to run, after `--`: its stdout is backed up, and the backup is recorded only
    /// if it exits 0
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// A logical backup (pg_dump) of the source's database instead of a physical one
    #[arg(long)]
    logical: bool,
    /// Record a --stdin or command backup as taken at TIME instead of now, for history imported
    /// from another tool (RFC 3339, or `YYYY-MM-DD HH:MM:SS` in --tz); not for database sources,
    /// nor a time to come
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// The time zone of a --time without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz, requires = "time")]
    tz: chrono_tz::Tz,
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

/// `KEY=VALUE`: a key of 1-64 ASCII letters, digits, `-`, `_`, `.` and `/`; a value of at most 256
/// characters, none of them control characters (a label is printed by `list` and `show`, and must
/// not be able to rewrite a terminal or forge a line).
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{:?}: a label is KEY=VALUE", text))?;
    let key_ok = !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !key_ok {
        return Err(format!(
            "{k:?}: a label's key is 1-64 ASCII letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if v.chars().count() > 256 {
        return Err(format!(
            "label {k}: the value is longer than 256 characters"
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "label {k}: the value holds the control character {:?}; labels are printed, so they hold printable text only",
            c
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Text read back from a repository, made safe to print: control characters are escaped, so a
/// label written by an older version cannot rewrite a terminal.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this source
    source: Option<SourceName>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A backup id, a unique prefix of one, or `latest` (the newest by its start time)
    backup: String,
    /// Only this source's backups: `latest` is its newest, and another source's id is refused
    #[arg(long, value_name = "NAME")]
    source: Option<SourceName>,
    /// The whole manifest as JSON, chunk lists included
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// A backup id, a unique prefix of one, or `latest` (the newest by its start time)
    backup: String,
    /// Only this source's backups: `latest` is its newest, and another source's id is refused
    #[arg(long, value_name = "NAME")]
    source: Option<SourceName>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The whole id of the backup to remove (see `list`); no prefix and no `latest`, on purpose
    backup: BackupId,
    #[arg(long)]
    json: bool,
}

pub async fn backup(ctx: &Context, args: &BackupArgs) -> anyhow::Result<Exit> {
    let source = match (&args.source_name, args.stdin, &args.source, args.command.is_empty()) {
        (Some(name), false, None, true) => return backup_source(ctx, args, name).await,
        (None, true, Some(name), true) | (None, false, Some(name), false) => name.clone(),
        (None, false, Some(_), true) => {
            return Err(UsageError(
                "--source needs what to back up: a command after `--` (`backup --source NAME -- pg_dumpall`), or --stdin".into(),
            )
            .into())
        }
        _ => {
            return Err(UsageError(
                "say what to back up: a source from the config (`backup NAME`), a command (`backup --source NAME -- COMMAND ARGS...`), or stdin (`backup --stdin --source NAME`)".into(),
            )
            .into())
        }
    };
    let time = args
        .time
        .as_deref()
        .map(|t| parse_time(t, args.tz))
        .transpose()
        .map_err(|e| UsageError(format!("--time: {e}")))?;
    let options = BackupOptions {
        source,
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        concurrency: ctx.concurrency,
        allow_empty: args.allow_empty,
        time,
    };
    let summary = if args.command.is_empty() {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(UsageError(
                "--stdin reads what is piped in, and stdin is a terminal: pipe a dump in, or run the producer with `backup --source NAME -- COMMAND`".into(),
            )
            .into());
        }
        let (job, progress) = ctx.job(ctx.open().await?, "backup");
        let summary = backup_stream(&job, &ctx.config, std::io::stdin(), &options)
            .await
            .with_context(|| format!("backing up stdin as source {}", options.source))?;
        progress.finish_and_clear();
        summary
    } else {
        // The repository first: a producer is not started for a backup that cannot be stored.
        let (job, progress) = ctx.job(ctx.open().await?, "backup");
        if let Some(time) = time {
            check_given_time(&job, &ctx.config, &options.source, time).await?;
        }
        let producer = spawn_producer(&args.command)?;
        let what = producer.what().to_owned();
        let summary = backup_stream(&job, &ctx.config, producer, &options)
            .await
            .with_context(|| {
                format!(
                    "backing up the output of {what} as source {}",
                    options.source
                )
            })?;
        progress.finish_and_clear();
        summary
    };
    print_summary(&summary, args.json)?;
    Ok(Exit::Ok)
}

/// Backs up a source named in the config.
async fn backup_source(
    ctx: &Context,
    args: &BackupArgs,
    name: &SourceName,
) -> anyhow::Result<Exit> {
    if args.allow_empty {
        return Err(UsageError(
            "--allow-empty is for --stdin and command backups; a database backup is never empty"
                .into(),
        )
        .into());
    }
    if args.time.is_some() {
        return Err(UsageError(format!(
            "--time is for --stdin and command backups: a backup of source {name} is dated by its server"
        ))
        .into());
    }
    let (job, progress) = ctx.job(ctx.open().await?, "backup");
    let request = BackupRequest {
        labels: args.labels.iter().cloned().collect(),
        logical: args.logical,
        archive_timeout: args.archive_timeout,
    };
    let summary = backup_job(&job, &ctx.config, name, &request)
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
    outln!(
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
    let job = heirloom_backup::jobs::JobContext::new(ctx.open().await?, ctx.concurrency);
    let manifests = list_job(&job, args.source.as_ref()).await?;
    let now = job.now();
    let holds = heirloom_backup::jobs::holds(&job).await?;
    let held = |m: &heirloom_backup::repo::manifest::Manifest| -> Vec<_> {
        holds
            .iter()
            .filter(|h| h.hold.backup == m.id && h.active_at(now))
            .map(|h| &h.hold)
            .collect()
    };
    if args.json {
        let rows: Vec<_> = manifests
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "source": m.source, "kind": m.kind, "labels": m.labels,
                    "host": m.host, "started": m.started, "finished": m.finished,
                    "size": m.size(), "chunks": m.chunk_count(), "holds": held(m),
                    "time_given": m.time_given,
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(Exit::Ok);
    }
    outln!(
        "{:<29} {:<16} {:<17} {:>10}  {:<20} LABELS",
        "ID",
        "SOURCE",
        "KIND",
        "SIZE",
        "STARTED"
    );
    for m in &manifests {
        let mut labels: Vec<String> = m
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", printable(k), printable(v)))
            .collect();
        if m.time_given.is_some() {
            labels.push("[time given]".into());
        }
        labels.extend(
            held(m)
                .iter()
                .map(|h| format!("[held: {}]", printable(&h.reason))),
        );
        outln!(
            "{:<29} {:<16} {:<17} {:>10}  {:<20} {}",
            m.id,
            m.source,
            m.kind.to_string(),
            human_bytes(m.size()),
            m.started.format("%Y-%m-%d %H:%M:%S"),
            labels.join(",")
        );
    }
    Ok(Exit::Ok)
}

pub async fn show(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let id = repo
        .resolve_backup(&args.backup, args.source.as_deref())
        .await?;
    let m = repo.manifest(&id).await?;
    if args.json {
        print_json(&m)?;
        return Ok(Exit::Ok);
    }
    outln!("backup    {}", m.id);
    outln!("source    {}", m.source);
    outln!("kind      {}", m.kind);
    outln!("host      {}", printable(&m.host));
    outln!("started   {}", m.started.to_rfc3339());
    outln!("finished  {}", m.finished.to_rfc3339());
    if let Some(ran) = &m.time_given {
        outln!(
            "time      given (backup --time); it ran from {} to {}",
            ran.ran_started.to_rfc3339(),
            ran.ran_finished.to_rfc3339()
        );
    }
    for (k, v) in &m.labels {
        outln!("label     {}={}", printable(k), printable(v));
    }
    if let Some(p) = &m.postgres {
        outln!(
            "postgres  system {} version {} timeline {} start {} stop {}",
            p.system_identifier,
            p.server_version,
            p.timeline,
            p.start_lsn,
            p.stop_lsn
        );
        outln!("consistent {}", p.consistent_at.to_rfc3339());
    }
    if let Some(p) = &m.mysql {
        outln!(
            "mysql     server {} ({}) binlog {}:{} GTID {}",
            p.server_id,
            p.server_version,
            p.binlog_file,
            p.binlog_pos,
            if p.gtid_pos.is_empty() {
                "-".to_owned()
            } else {
                p.gtid_pos.to_string()
            }
        );
        outln!("databases {}", p.databases.join(", "));
        outln!("consistent {}", p.consistent_at.to_rfc3339());
    }
    for f in &m.files {
        outln!(
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
    let id = repo
        .resolve_backup(&args.backup, args.source.as_deref())
        .await?;
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
            progress.handle(),
        )
        .await
        .with_context(|| format!("reading backup {id}"))?;
        progress.finish_and_clear();
    }
    Ok(Exit::Ok)
}

/// Removes one backup's manifest. Its chunks stay in the repository until garbage collection finds
/// nothing else refers to them.
pub async fn forget(ctx: &Context, args: &ForgetArgs) -> anyhow::Result<Exit> {
    let job = heirloom_backup::jobs::JobContext::new(ctx.open().await?, ctx.concurrency);
    let manifest = heirloom_backup::jobs::forget(&job, &args.backup)
        .await
        .with_context(|| format!("forgetting backup {}", args.backup))?;
    if args.json {
        print_json(&serde_json::json!({
            "forgotten": manifest.id, "source": manifest.source, "started": manifest.started,
            "size": manifest.size(),
        }))?;
    } else {
        outln!(
            "forgot backup {} of {} (started {}, {}); its data stays until garbage collection",
            manifest.id,
            manifest.source,
            manifest.started.to_rfc3339(),
            human_bytes(manifest.size())
        );
    }
    Ok(Exit::Ok)
}

/// Starts a producer command whose stdout is the backup. At the end of its output it is waited
/// for, and an exit other than 0 (or death by a signal) is a read error ([`ChildOutput`]), so the
/// backup is never recorded.
fn spawn_producer(command: &[String]) -> anyhow::Result<ChildOutput> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| UsageError("no command after `--`".into()))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // The repository's secrets are ours, not the producer's.
    for secret in ["HEIRLOOM_PASSPHRASE", "HEIRLOOM_NEW_PASSPHRASE"] {
        cmd.env_remove(secret);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {program:?}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("{program:?} has no stdout"))?;
    Ok(ChildOutput::new(child, stdout, format!("{program:?}")).echo_stderr())
}
