//! `schedule`: the next runs of every scheduled job, in the schedule's zone and in UTC.

use clap::Args;
use heirloom_backup::agent;
use heirloom_backup::restore::point::{parse_time, parse_tz};

use super::{print_json, Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Only this source's jobs
    source: Option<String>,
    /// How many runs of each job
    #[arg(long, short = 'n', default_value_t = 5)]
    count: usize,
    /// From this instant instead of now
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// The time zone of a --from without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    tz: chrono_tz::Tz,
    #[arg(long)]
    json: bool,
}

pub async fn schedule(ctx: &Context, args: &ScheduleArgs) -> anyhow::Result<Exit> {
    let from = match &args.from {
        Some(t) => parse_time(t, args.tz).map_err(UsageError)?,
        None => chrono::Utc::now(),
    };
    if let Some(s) = &args.source {
        if !ctx.config.schedules.contains_key(s.as_str()) {
            return Err(UsageError(format!(
                "source {s} has no schedules in the config (sources.{s}.schedules)"
            ))
            .into());
        }
    }
    let jobs = agent::upcoming(&ctx.config, args.source.as_deref(), from, args.count);
    if args.json {
        print_json(&jobs)?;
        return Ok(Exit::Ok);
    }
    if jobs.is_empty() {
        outln!("no schedules: add sources.NAME.schedules to the config");
        return Ok(Exit::Ok);
    }
    for job in &jobs {
        let jitter = match job.jitter_seconds {
            0 => String::new(),
            j => format!(", jitter {j}s (this source: +{}s)", job.offset_seconds),
        };
        outln!(
            "{} {}: \"{}\" in {}{jitter}, deadline {}s",
            job.source,
            job.job.name(),
            job.cron,
            job.zone,
            job.deadline_seconds
        );
        for run in &job.runs {
            outln!(
                "  {}  ({})",
                run.local,
                heirloom_backup::units::utc_seconds(run.at)
            );
        }
    }
    Ok(Exit::Ok)
}
