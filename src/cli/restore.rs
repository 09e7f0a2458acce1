//! `restore SOURCE --to TARGET --time T`: one set of arguments for every engine; the library
//! resolves the target, plans, and restores, and this prints the plan and what was done.

use anyhow::{bail, Context as _};
use clap::Args;
use heirloom_backup::jobs::{plan_restore, DrillAt, RestoreOptions};
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::restore::point::{parse_tz, PointWords};
use heirloom_backup::restore::summary::PlanSummary;

use super::{human_bytes, print_json, restore_command, Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The source to restore
    pub source: SourceName,
    /// A target from the config, a postgres:// or mysql:// URL, or a data directory path
    #[arg(long = "to", value_name = "TARGET")]
    pub to: String,
    /// Recover to this instant: RFC 3339 (2026-11-20T14:03:00Z), or `YYYY-MM-DD HH:MM[:SS]` in --tz
    #[arg(long, value_name = "TIME", conflicts_with_all = ["latest", "backup"])]
    pub time: Option<String>,
    /// The time zone of a --time without one (an IANA name such as Europe/Berlin)
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    pub tz: chrono_tz::Tz,
    /// Recover everything archived
    #[arg(long, conflicts_with = "backup")]
    pub latest: bool,
    /// PostgreSQL: recover to just after this WAL location (0/3000028)
    #[arg(long, value_name = "LSN", conflicts_with_all = ["time", "latest", "backup", "gtid", "name"])]
    pub lsn: Option<String>,
    /// PostgreSQL: recover to the restore point made with pg_create_restore_point(NAME)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["time", "latest", "backup", "gtid"])]
    pub name: Option<String>,
    /// MySQL/MariaDB: replay up to and including this transaction (domain-server-sequence)
    #[arg(long, value_name = "GTID", conflicts_with_all = ["time", "latest", "backup"])]
    pub gtid: Option<String>,
    /// Restore this backup, consistent and no further
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Replace the contents of a non-empty target directory
    #[arg(long)]
    pub force: bool,
    /// PostgreSQL: restore over a data directory of the same cluster (stopped), rewriting only
    /// the files and chunks that differ from the backup and removing what it lacks
    #[arg(long, conflicts_with = "force")]
    pub delta: bool,
    /// The port the restored server listens on (written to postgresql.auto.conf)
    #[arg(long)]
    pub port: Option<u16>,
    /// Start the restored server, wait until recovery ends, and check it runs
    #[arg(long)]
    pub start: bool,
    /// How long --start waits for recovery to end
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = heirloom_backup::store::parse_duration)]
    pub start_timeout: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<Exit> {
    let point = PointWords {
        time: args.time.as_deref(),
        zone: Some(args.tz),
        latest: args.latest,
        lsn: args.lsn.as_deref(),
        gtid: args.gtid.as_deref(),
        name: args.name.as_deref(),
        backup: args.backup.as_deref(),
    }
    .point()
    .map_err(UsageError)?;
    let options = RestoreOptions {
        force: args.force,
        delta: args.delta,
        port: args.port,
        start: args.start,
        start_timeout: args.start_timeout,
        // Not every restore needs one (a dry run, a logical or MySQL restore): why it could not be
        // made is said only by a restore that does.
        restore_command: restore_command(ctx, &args.source).map_err(|e| format!("{e:#}")),
        source_url: None,
    };
    let (job, bar) = ctx.job(ctx.open().await?, "restore");
    let planned = plan_restore(&job, &ctx.config, &args.source, &args.to, &point, &options)
        .await
        .with_context(|| format!("planning the restore of {}", args.source))?;
    let summary = planned.summary().clone();
    if args.json {
        print_json(&summary)?;
    } else {
        print_plan(&summary)?;
    }
    if args.dry_run {
        bar.finish_and_clear();
        return Ok(if summary.is_complete() {
            Exit::Ok
        } else {
            Exit::Integrity
        });
    }
    let report = planned
        .run(&job)
        .await
        .with_context(|| format!("restoring {} into {}", args.source, summary.into))?;
    bar.finish_and_clear();
    if !args.json {
        outln!("{}", report.done);
    }
    Ok(Exit::Ok)
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The source to drill
    pub source: SourceName,
    /// Restore into this target (from the config, a URL or a directory) instead of a scratch server
    #[arg(long = "to", value_name = "TARGET")]
    pub to: Option<String>,
    /// Restore this instant: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in --tz [default: the latest]
    #[arg(long, value_name = "TIME", conflicts_with = "random_in_window")]
    pub time: Option<String>,
    /// The time zone of a --time without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    pub tz: chrono_tz::Tz,
    /// Restore an instant drawn at random from the source's point-in-time windows
    #[arg(long)]
    pub random_in_window: bool,
    /// How long the restored server may take to recover
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = heirloom_backup::store::parse_duration)]
    pub start_timeout: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

/// `drill`: exit 0 when the drill passed, 3 when it failed (the record says why).
pub async fn drill(ctx: &Context, args: &DrillArgs) -> anyhow::Result<Exit> {
    let at = match (&args.time, args.random_in_window) {
        (Some(time), _) => {
            let point = PointWords {
                time: Some(time),
                zone: Some(args.tz),
                ..PointWords::default()
            }
            .point()
            .map_err(UsageError)?;
            match point {
                heirloom_backup::restore::point::RestorePoint::Time(t) => DrillAt::Time(t),
                _ => bail!(UsageError(format!("--time {time}: not an instant"))),
            }
        }
        (None, true) => DrillAt::RandomInWindow,
        (None, false) => DrillAt::Latest,
    };
    let options = RestoreOptions {
        start_timeout: args.start_timeout,
        restore_command: restore_command(ctx, &args.source).map_err(|e| format!("{e:#}")),
        ..RestoreOptions::default()
    };
    let (job, bar) = ctx.job(ctx.open().await?, "drill");
    let report = heirloom_backup::jobs::drill(
        &job,
        &ctx.config,
        &args.source,
        at,
        args.to.as_deref(),
        &options,
    )
    .await
    .with_context(|| format!("drilling {}", args.source))?;
    bar.finish_and_clear();
    let r = &report.record;
    if args.json {
        print_json(&report)?;
    } else {
        outln!(
            "drill of {} {}",
            r.source,
            if r.passed { "PASSED" } else { "FAILED" }
        );
        match r.point.at {
            Some(at) => outln!(
                "point           {}{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.point
                    .drawn_from
                    .map(|[a, b]| format!(
                        " (drawn from {} .. {})",
                        a.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        b.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ))
                    .unwrap_or_default()
            ),
            None => outln!("point           latest"),
        }
        outln!("into            {}", r.target);
        if let Some(backup) = &r.backup {
            outln!("backup          {backup}");
        }
        if let Some(log) = &r.log {
            outln!(
                "{:<15} {} .. {} ({} objects)",
                log.log,
                log.first,
                log.last,
                log.objects
            );
        }
        if let Some(reached) = r.reached {
            outln!(
                "reached         {}",
                reached.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
        }
        outln!(
            "restore took    {:.1} s (checks {:.1} s)",
            r.restore_seconds,
            r.check_seconds
        );
        for check in &r.checks {
            outln!(
                "{} {:<14} {}",
                if check.passed { "ok  " } else { "FAIL" },
                check.name,
                check.detail
            );
        }
        if let Some(why) = &r.failure {
            outln!("failure         {why}");
        }
        match (&report.key, &report.record_failed) {
            (Some(key), _) => outln!("recorded        {key}"),
            (None, Some(why)) => outln!("NOT RECORDED    {why}"),
            (None, None) => {}
        }
    }
    if let Some(why) = &report.record_failed {
        eprintln!("heirloom-backup: warning: the drill could not be recorded: {why}");
    }
    Ok(if r.passed { Exit::Ok } else { Exit::Integrity })
}

/// The plan, in words: what `--dry-run` shows.
fn print_plan(plan: &PlanSummary) -> anyhow::Result<()> {
    outln!("source          {} ({})", plan.source, plan.engine);
    outln!("point           {}", plan.point);
    outln!("into            {}", plan.into);
    outln!("method          {}", plan.method);
    outln!(
        "backup          {} (consistent at {})",
        plan.backup,
        plan.backup_consistent_at.to_rfc3339()
    );
    match &plan.log {
        Some(log) => outln!(
            "{:<15} {} .. {} ({} segments)",
            log.log,
            log.first,
            log.last,
            log.objects
        ),
        None => outln!("log             none replayed"),
    }
    for crossing in &plan.crossings {
        outln!("crosses         {crossing}");
    }
    for gap in &plan.gaps {
        let label = if gap.blocking {
            format!("MISSING {}", gap.log)
        } else {
            format!("GAP {}", gap.log)
        };
        if gap.first == gap.last {
            outln!("{label:<15} {}: {}", gap.first, gap.why);
        } else {
            outln!("{label:<15} {} .. {}: {}", gap.first, gap.last, gap.why);
        }
    }
    if let Some(why) = &plan.problem {
        outln!("CANNOT RESTORE  {why}");
    }
    outln!(
        "to fetch        {} of backup, {} of log",
        human_bytes(plan.backup_bytes),
        human_bytes(plan.log_bytes)
    );
    Ok(())
}
