//! The agent's loop: the scheduler's decisions carried out with the library's jobs, each run a
//! task with its deadline, one log event when it starts and one when it ends with its outcome.
//! On shutdown it stops scheduling, lets running jobs finish within a grace period, then
//! cancels what is left.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::config::Job;
use super::scheduler::{Decision, Run, Scheduler};
use crate::config::Config;
use crate::context::{JobContext, JobError};
use crate::jobs::{self, AuditRequest, DrillAt};
use crate::pipeline::verify::Subset;
use crate::repo::gc::GcOptions;
use crate::repo::source::SourceName;

/// How the agent runs.
#[derive(Clone)]
pub struct AgentOptions {
    /// How long running jobs may go on after shutdown is asked for, before they are cancelled.
    pub grace: Duration,
    /// Each source's `restore_command` for its drills (PostgreSQL fetches WAL through it), or
    /// why there is none.
    pub restore_commands: BTreeMap<SourceName, Result<String, String>>,
}

/// What the agent did, when it stopped.
#[derive(Debug, Default, Clone)]
pub struct AgentReport {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
}

type Key = (SourceName, Job);

/// Runs `config`'s schedules until `ctx.shutdown` is signalled.
pub async fn run_agent(
    ctx: JobContext,
    config: Arc<Config>,
    options: AgentOptions,
) -> Result<AgentReport, JobError> {
    let mut scheduler = Scheduler::new(&config, ctx.now());
    if scheduler.is_empty() {
        return Err(JobError::Usage(
            "no schedules: the agent runs the jobs of sources.NAME.schedules in the config".into(),
        ));
    }
    info!(jobs = scheduler.len(), "agent started");
    // Each message names its run by the instant it was due: a cancelled run's late message is
    // not taken for the next run's.
    let (done_tx, mut done) =
        mpsc::unbounded_channel::<(Key, DateTime<Utc>, Result<String, String>)>();
    let mut tasks: HashMap<Key, (DateTime<Utc>, JoinHandle<()>)> = HashMap::new();
    let mut report = AgentReport::default();
    let shutdown = ctx.shutdown.clone();
    loop {
        let now = ctx.now();
        for decision in scheduler.tick(now) {
            match decision {
                Decision::Start(run) => {
                    report.started += 1;
                    info!(
                        event = "job started",
                        source = %run.source,
                        job = run.job.name(),
                        scheduled = %run.scheduled.to_rfc3339(),
                        deadline = %run.deadline.to_rfc3339(),
                        part = ?run.part,
                    );
                    let key = (run.source.clone(), run.job);
                    let scheduled = run.scheduled;
                    let (ctx, config, options, tx) = (
                        ctx.clone(),
                        config.clone(),
                        options.clone(),
                        done_tx.clone(),
                    );
                    let task = tokio::spawn(async move {
                        let outcome = run_job(&ctx, &config, &options, &run).await;
                        let _ = tx.send(((run.source.clone(), run.job), run.scheduled, outcome));
                    });
                    tasks.insert(key, (scheduled, task));
                }
                Decision::Skip {
                    source,
                    job,
                    scheduled,
                    running_since,
                } => {
                    report.skipped += 1;
                    warn!(
                        event = "job skipped",
                        source = %source,
                        job = job.name(),
                        scheduled = %scheduled.to_rfc3339(),
                        running_since = %running_since.to_rfc3339(),
                        "the previous run is still going"
                    );
                }
                Decision::Cancel {
                    source,
                    job,
                    started,
                    deadline,
                } => {
                    report.cancelled += 1;
                    if let Some((_, task)) = tasks.remove(&(source.clone(), job)) {
                        task.abort();
                    }
                    scheduler.finished(&source, job);
                    error!(
                        event = "job cancelled",
                        source = %source,
                        job = job.name(),
                        started = %started.to_rfc3339(),
                        deadline = %deadline.to_rfc3339(),
                        "the run passed its deadline"
                    );
                }
            }
        }
        // Look again when something falls due, at the latest in a minute (the clock may jump).
        let wait = scheduler
            .next_wake(now)
            .map(|t| (t - ctx.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some((key, scheduled, outcome)) = done.recv() => {
                if tasks.get(&key).is_some_and(|(s, _)| *s == scheduled) {
                    tasks.remove(&key);
                    scheduler.finished(&key.0, key.1);
                    ended(&mut report, &key, &outcome);
                }
            }
            _ = shutdown.signalled() => break,
        }
    }
    info!(
        running = tasks.len(),
        grace_seconds = options.grace.as_secs(),
        "agent stopping: no new runs"
    );
    let deadline = tokio::time::Instant::now() + options.grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, done.recv()).await {
            Ok(Some((key, scheduled, outcome))) => {
                if tasks.get(&key).is_some_and(|(s, _)| *s == scheduled) {
                    tasks.remove(&key);
                    ended(&mut report, &key, &outcome);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    for ((source, job), (_, task)) in tasks.drain() {
        task.abort();
        report.cancelled += 1;
        error!(event = "job cancelled", source = %source, job = job.name(), "the agent stopped");
    }
    info!(
        started = report.started,
        succeeded = report.succeeded,
        failed = report.failed,
        "agent stopped"
    );
    Ok(report)
}

fn ended(report: &mut AgentReport, (source, job): &Key, outcome: &Result<String, String>) {
    match outcome {
        Ok(what) => {
            report.succeeded += 1;
            info!(event = "job finished", source = %source, job = job.name(), outcome = "success", result = %what);
        }
        Err(why) => {
            report.failed += 1;
            error!(event = "job finished", source = %source, job = job.name(), outcome = "failure", error = %why);
        }
    }
}

/// Carries one run out through the library; `Ok` says what it did, `Err` why it failed (a
/// verify's problems, a failed audit or drill are failures of the run).
async fn run_job(
    ctx: &JobContext,
    config: &Config,
    options: &AgentOptions,
    run: &Run,
) -> Result<String, String> {
    let source = &run.source;
    match run.job {
        Job::Backup => {
            let summary = jobs::backup_source(ctx, config, source, &Default::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("backup {} ({} bytes)", summary.id, summary.size))
        }
        Job::Prune => {
            let gc = GcOptions {
                repack_dead: config.repack_threshold(None).map_err(|e| e.to_string())? / 100.0,
                lock: config.repository.object_lock,
                ..GcOptions::default()
            };
            let report = jobs::prune(ctx, config, Some(source), None, &gc)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "pruned {} backups and {} log objects; {} packs deleted",
                report.deleted.len(),
                report.log_objects_deleted,
                report.gc.packs_deleted
            ))
        }
        Job::Verify => {
            let subset = run.part.map(|(n, t)| Subset::Part { n, t });
            let report = jobs::verify(ctx, subset).await.map_err(|e| e.to_string())?;
            if report.problems.is_empty() {
                Ok(format!("verified{}", describe_part(run.part)))
            } else {
                Err(format!(
                    "verify found {} problems{}; the first: {}: {}",
                    report.problems.len(),
                    describe_part(run.part),
                    report.problems[0].object,
                    report.problems[0].problem
                ))
            }
        }
        Job::Audit => {
            let audit = jobs::audit(
                ctx,
                config,
                &AuditRequest {
                    source: Some(source.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            if audit.passed {
                Ok("audit passed".into())
            } else {
                Err(format!("audit failed: {}", audit.failed.join(", ")))
            }
        }
        Job::Drill => {
            let at = if run.random_in_window {
                DrillAt::RandomInWindow
            } else {
                DrillAt::Latest
            };
            let restore_options = crate::engine::RestoreOptions {
                restore_command: options
                    .restore_commands
                    .get(source)
                    .cloned()
                    .unwrap_or_else(|| Err(format!("no restore_command for source {source}"))),
                ..Default::default()
            };
            let report = jobs::drill(ctx, config, source, at, None, &restore_options)
                .await
                .map_err(|e| e.to_string())?;
            if report.record.passed {
                Ok(format!(
                    "drill passed ({:.1} s)",
                    report.record.restore_seconds
                ))
            } else {
                Err(format!(
                    "drill failed: {}",
                    report.record.failure.as_deref().unwrap_or("a check failed")
                ))
            }
        }
    }
}

fn describe_part(part: Option<(u32, u32)>) -> String {
    part.map(|(n, t)| format!(" (data part {n}/{t})"))
        .unwrap_or_default()
}
