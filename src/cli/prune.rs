//! `prune`: what each source's retention policy keeps, with every reason, and the backups it does
//! not keep deleted (`--dry-run`: shown only).

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::engine::retention::LogStretch;
use heirloom_backup::jobs::{self, plan_retention, JobContext, SourcePlan};
use heirloom_backup::repo::gc::GcOptions;
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::restore::point::{parse_time, parse_tz};
use heirloom_backup::retention::select::Reason;

use super::{human_bytes, policy_flag, print_json, Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this source [default: every source the repository holds backups of]
    source: Option<SourceName>,
    /// A policy for every source instead of the config's: a shipped name (three-year,
    /// pitr-7-days, seven-year-finance) or a policy file
    #[arg(long, value_name = "NAME|FILE")]
    policy: Option<String>,
    /// Evaluate the policy as of this instant instead of now ("what goes next month?")
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The time zone of an --at without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    tz: chrono_tz::Tz,
    /// How long a pack found unneeded stays before it is deleted (a backup running meanwhile may
    /// still reference it)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = heirloom_backup::store::parse_duration)]
    grace: std::time::Duration,
    /// Repack a pack once this share of its bytes (percent) is dead; above 100, never
    /// [default: the policy's repack_threshold, else 50]
    #[arg(long, value_name = "PERCENT")]
    repack_threshold: Option<f64>,
    /// Show the plan and change nothing
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub async fn prune(ctx: &Context, args: &PruneArgs) -> anyhow::Result<Exit> {
    if args.at.is_some() && !args.dry_run {
        return Err(UsageError(
            "--at evaluates the policy at another instant for a look only: add --dry-run".into(),
        )
        .into());
    }
    let policy = policy_flag(args.policy.as_deref())?;
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    if !args.dry_run {
        let threshold = match args.repack_threshold {
            Some(t) if !(0.0..).contains(&t) => {
                return Err(
                    UsageError("--repack-threshold is a percentage, 0 or more".into()).into(),
                )
            }
            Some(t) => t,
            None => ctx
                .config
                .repack_threshold(policy.as_ref())
                .map_err(|e| UsageError(e.to_string()))?,
        };
        let gc = GcOptions {
            grace: chrono::Duration::from_std(args.grace)
                .map_err(|_| UsageError("--grace is too long".into()))?,
            repack_dead: threshold / 100.0,
            lock: ctx.config.repository.object_lock,
        };
        let report = jobs::prune(
            &job,
            &ctx.config,
            args.source.as_ref(),
            policy.as_ref(),
            &gc,
        )
        .await
        .context("pruning")?;
        if args.json {
            print_json(&report)?;
            return Ok(Exit::Ok);
        }
        for plan in &report.plans {
            print_plan(plan)?;
        }
        match &report.record {
            Some(record) => {
                let logs = match report.log_objects_deleted {
                    0 => String::new(),
                    n => format!(" and {n} log object(s)"),
                };
                outln!(
                    "deleted {} backup(s){logs}, recorded in {record}",
                    report.deleted.len(),
                )
            }
            None => outln!("no backup or log to delete"),
        }
        let gc = &report.gc;
        outln!(
            "packs: {} marked, {} repacked into {} new, {} deleted ({}), {} revived, {} waiting for their grace period",
            gc.plan.mark.len(),
            gc.plan.repack.len(),
            gc.packs_written,
            gc.packs_deleted,
            human_bytes(gc.bytes_deleted),
            gc.plan.revive.len(),
            gc.plan.waiting.len()
        );
        if let Some(last) = gc.plan.locked.iter().map(|l| l.1).max() {
            outln!(
                "  {} pack(s) the bucket's Object Lock still locks stay marked, the last until {}",
                gc.plan.locked.len(),
                last.to_rfc3339()
            );
        }
        if let Some(why) = &gc.deferred {
            outln!(
                "  deletion of {} pack(s) waits: {why}",
                gc.plan.delete.len()
            );
        }
        return Ok(Exit::Ok);
    }
    let at = match &args.at {
        Some(t) => parse_time(t, args.tz).map_err(UsageError)?,
        None => chrono::Utc::now(),
    };
    let plans = plan_retention(&job, &ctx.config, args.source.as_ref(), policy.as_ref(), at)
        .await
        .context("planning what the retention policies keep")?;
    if args.json {
        print_json(&plans)?;
    } else if plans.is_empty() {
        outln!("no backups: nothing to keep or delete");
    } else {
        for plan in &plans {
            print_plan(plan)?;
        }
    }
    Ok(Exit::Ok)
}

fn print_plan(plan: &SourcePlan) -> anyhow::Result<()> {
    let s = &plan.selection;
    outln!(
        "source {}: policy {} ({}), as of {}",
        plan.source,
        plan.policy,
        plan.zone,
        s.now.to_rfc3339()
    );
    if let Some(w) = &s.window {
        match (w.first_restorable, &w.base) {
            (Some(first), Some(base)) if w.continuous => outln!(
                "  window  any instant from {} (asked: {}), replayed from backup {base}",
                first.to_rfc3339(),
                w.requested_from.to_rfc3339()
            ),
            (Some(first), _) => outln!(
                "  window  the backups from {} on (asked: {}; the source has no log to replay)",
                first.to_rfc3339(),
                w.requested_from.to_rfc3339()
            ),
            _ => outln!(
                "  window  NOTHING of it is restorable (asked: from {}): no backup reaches the log's end",
                w.requested_from.to_rfc3339()
            ),
        }
    }
    if let Some(why) = &plan.immutability_unmet {
        outln!("  IMMUTABILITY NOT MET: {why}; prune refuses to delete under this policy");
    }
    for v in &s.verdicts {
        let mut reasons: Vec<String> = v.reasons.iter().map(Reason::to_string).collect();
        if let Some(l) = plan.locked.iter().find(|l| l.backup == v.id) {
            reasons.push(format!(
                "but the bucket locks it until {}: it goes at a prune after that",
                l.until.to_rfc3339()
            ));
        }
        outln!(
            "  {:<6}  {}  {}  {}",
            if v.kept() { "keep" } else { "delete" },
            v.id,
            v.at.format("%Y-%m-%d %H:%M:%S"),
            reasons.join(", ")
        );
    }
    outln!(
        "  {} kept, {} to delete{}",
        s.kept().count(),
        s.deleted().count(),
        match plan.locked.len() {
            0 => String::new(),
            n => format!(" ({n} of them locked until later)"),
        }
    );
    if let Some(log) = &plan.log {
        let line = |verb: &str, st: &LogStretch| -> anyhow::Result<()> {
            let until = st
                .locked_until
                .map(|u| format!(" until {}", u.to_rfc3339()))
                .unwrap_or_default();
            outln!(
                "  {verb:<6}  {} {} .. {} ({} objects, {}): {}{until}",
                log.log,
                st.first,
                st.last,
                st.objects,
                human_bytes(st.bytes),
                st.why
            );
            Ok(())
        };
        for st in &log.kept {
            line("keep", st)?;
        }
        for st in &log.deleted {
            line("delete", st)?;
        }
        outln!(
            "  {}: {} objects to delete, {} freed",
            log.log,
            log.objects_deleted(),
            human_bytes(log.bytes_deleted())
        );
    }
    Ok(())
}
