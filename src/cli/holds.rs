//! `hold`, `release`: keep a backup whatever the retention policy says.

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::jobs::{self, JobContext};
use heirloom_backup::repo::manifest::BackupId;
use heirloom_backup::restore::point::{parse_time, parse_tz};

use super::{print_json, Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The whole id of the backup to keep (see `list`)
    backup: BackupId,
    /// Why it is kept (a case, an audit): what `list` and reports show
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// When the hold ends by itself [default: only `release` ends it]
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// The time zone of an --until without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    tz: chrono_tz::Tz,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The whole id of the held backup
    backup: BackupId,
    #[arg(long)]
    json: bool,
}

pub async fn hold(ctx: &Context, args: &HoldArgs) -> anyhow::Result<Exit> {
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time(t, args.tz))
        .transpose()
        .map_err(UsageError)?;
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    let hold = jobs::hold(&job, &args.backup, &args.reason, until)
        .await
        .with_context(|| format!("holding backup {}", args.backup))?;
    if args.json {
        print_json(&hold)?;
    } else {
        outln!(
            "held backup {} of {} ({}){}; hold {}",
            hold.backup,
            hold.source,
            hold.reason,
            hold.until
                .map(|u| format!(" until {}", u.to_rfc3339()))
                .unwrap_or_else(|| " until released".into()),
            hold.id
        );
    }
    Ok(Exit::Ok)
}

pub async fn release(ctx: &Context, args: &ReleaseArgs) -> anyhow::Result<Exit> {
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    let released = jobs::release(&job, &args.backup)
        .await
        .with_context(|| format!("releasing backup {}", args.backup))?;
    if args.json {
        print_json(&released)?;
    } else {
        for r in &released {
            outln!("released hold {} on backup {}", r.hold, r.backup);
        }
    }
    Ok(Exit::Ok)
}
