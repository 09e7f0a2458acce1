//! The agent's loop: the scheduler's decisions carried out with the library's jobs, each run a
//! task with its deadline, one log event when it starts and one when it ends with its outcome;
//! beside them each source's log streamer, kept running, and the metrics and health endpoints.
//! On shutdown it stops scheduling, lets running jobs finish and streamers store what they hold
//! within a grace period, then cancels what is left.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::config::Job;
use super::http::{bind, serve, Served};
use super::metrics::{AgentMetrics, Outcome};
use super::refresh::Refresher;
use super::scheduler::{Decision, Run, Scheduler};
use super::streams::{keep_streaming, Backoff};
use crate::config::Config;
use crate::context::{JobContext, JobError, Shutdown};
use crate::engine::StreamStatus;
use crate::jobs::{self, AuditRequest, DrillAt};
use crate::pipeline::verify::Subset;
use crate::repo::gc::GcOptions;
use crate::repo::source::SourceName;
use crate::store::metered::StoreMeter;

/// How the agent runs.
#[derive(Clone)]
pub struct AgentOptions {
    /// How long running jobs may go on after shutdown is asked for, before they are cancelled.
    pub grace: Duration,
    /// Each source's `restore_command` for its drills (PostgreSQL fetches WAL through it), or
    /// why there is none.
    pub restore_commands: BTreeMap<SourceName, Result<String, String>>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None`: nowhere.
    pub listen: Option<SocketAddr>,
    /// The counts of the store the context's repository was opened on, served as metrics.
    pub store_meter: Option<Arc<StoreMeter>>,
    /// How streamers that end are started again.
    pub backoff: Backoff,
    /// The sources whose backups, windows and drills the metrics report (read from the
    /// repository every few minutes), scheduled here or not.
    pub monitored: Vec<SourceName>,
}

/// What the agent did, when it stopped.
#[derive(Debug, Default, Clone)]
pub struct AgentReport {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
    /// Times a log streamer ended and was started again.
    pub stream_restarts: u64,
}

type Key = (SourceName, Job);

/// How often what each source can be restored to is read again, besides after each of its runs.
const REFRESH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Runs `config`'s schedules and streamers until `ctx.shutdown` is signalled.
pub async fn run_agent(
    ctx: JobContext,
    config: Arc<Config>,
    options: AgentOptions,
) -> Result<AgentReport, JobError> {
    let mut scheduler = Scheduler::new(&config, ctx.now());
    let streams: Vec<(SourceName, _, StreamStatus)> = config
        .schedules
        .iter()
        .filter_map(|(s, schedules)| {
            let settings = schedules.stream.clone()?;
            Some((s.clone(), settings, StreamStatus::default()))
        })
        .collect();
    if scheduler.is_empty() && streams.is_empty() && options.listen.is_none() {
        return Err(JobError::Usage(
            "nothing to do: no schedules (the agent runs the jobs and streamers of sources.NAME.schedules in the config), and no metrics to serve".into(),
        ));
    }
    let watched: Vec<(String, StreamStatus)> = streams
        .iter()
        .map(|(s, _, status)| (s.to_string(), status.clone()))
        .collect();
    let metrics = Arc::new(AgentMetrics::new(
        watched.clone(),
        options.store_meter.clone(),
        ctx.clock.clone(),
    ));
    for (source, schedules) in &config.schedules {
        for job in schedules.jobs.keys() {
            metrics.declare(source.as_str(), *job);
        }
    }
    // The endpoints outlive the runs: they answer until the agent has stopped.
    let (stop_serving, served_until) = Shutdown::new();
    let server = match options.listen {
        None => None,
        Some(address) => {
            let listener = bind(address)
                .await
                .map_err(|e| JobError::Usage(format!("cannot serve metrics on {address}: {e}")))?;
            let served = Served {
                metrics: metrics.clone(),
                repo: ctx.repo.clone(),
                streams: watched,
            };
            Some(tokio::spawn(serve(
                listener,
                served,
                served_until.signalled(),
            )))
        }
    };
    info!(
        jobs = scheduler.len(),
        streams = streams.len(),
        "agent started"
    );
    let streamers: Vec<JoinHandle<u64>> = streams
        .into_iter()
        .map(|(source, settings, status)| {
            tokio::spawn(keep_streaming(
                ctx.clone(),
                config.clone(),
                source,
                settings,
                status,
                metrics.clone(),
                options.backoff,
            ))
        })
        .collect();
    let refresher = Refresher::new(
        ctx.clone(),
        config.clone(),
        metrics.clone(),
        &options.monitored,
    );
    let mut next_refresh = ctx.now();
    // Each message names its run by the instant it was due: a cancelled run's late message is
    // not taken for the next run's.
    let (done_tx, mut done) =
        mpsc::unbounded_channel::<(Key, DateTime<Utc>, Result<String, String>)>();
    let mut tasks: HashMap<Key, Running> = HashMap::new();
    let mut report = AgentReport::default();
    let shutdown = ctx.shutdown.clone();
    loop {
        let now = ctx.now();
        if now >= next_refresh {
            next_refresh = now + REFRESH_EVERY;
            refresher.all();
        }
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
                    metrics.started(run.source.as_str(), run.job);
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
                    tasks.insert(
                        key,
                        Running {
                            scheduled,
                            began: Instant::now(),
                            task,
                        },
                    );
                }
                Decision::Skip {
                    source,
                    job,
                    scheduled,
                    running_since,
                } => {
                    report.skipped += 1;
                    metrics.skipped(source.as_str(), job);
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
                    if let Some(running) = tasks.remove(&(source.clone(), job)) {
                        running.task.abort();
                        metrics.ended(
                            source.as_str(),
                            job,
                            Outcome::Cancelled,
                            ctx.now(),
                            running.began.elapsed(),
                        );
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
            .map_or(next_refresh, |t| t.min(next_refresh));
        let wait = (wait - ctx.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some((key, scheduled, outcome)) = done.recv() => {
                if tasks.get(&key).is_some_and(|r| r.scheduled == scheduled) {
                    if let Some(running) = tasks.remove(&key) {
                        scheduler.finished(&key.0, key.1);
                        ended(&mut report, &metrics, &ctx, &key, running.began, &outcome);
                        refresher.one(&key.0);
                    }
                }
            }
            _ = shutdown.signalled() => break,
        }
    }
    info!(
        running = tasks.len(),
        streams = streamers.len(),
        grace_seconds = options.grace.as_secs(),
        "agent stopping: no new runs"
    );
    let deadline = tokio::time::Instant::now() + options.grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, done.recv()).await {
            Ok(Some((key, scheduled, outcome))) => {
                if tasks.get(&key).is_some_and(|r| r.scheduled == scheduled) {
                    if let Some(running) = tasks.remove(&key) {
                        ended(&mut report, &metrics, &ctx, &key, running.began, &outcome);
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    for ((source, job), running) in tasks.drain() {
        running.task.abort();
        report.cancelled += 1;
        error!(event = "job cancelled", source = %source, job = job.name(), "the agent stopped");
    }
    // The streamers saw the same shutdown: each stores what it holds and ends.
    for mut streamer in streamers {
        match tokio::time::timeout_at(deadline, &mut streamer).await {
            Ok(Ok(restarts)) => report.stream_restarts += restarts,
            Ok(Err(e)) => error!(error = %e, "a streamer's task failed"),
            Err(_) => {
                streamer.abort();
                error!("a streamer did not finish storing within the grace period");
            }
        }
    }
    stop_serving.signal();
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    info!(
        started = report.started,
        succeeded = report.succeeded,
        failed = report.failed,
        "agent stopped"
    );
    Ok(report)
}

/// A run going on.
struct Running {
    scheduled: DateTime<Utc>,
    began: Instant,
    task: JoinHandle<()>,
}

fn ended(
    report: &mut AgentReport,
    metrics: &AgentMetrics,
    ctx: &JobContext,
    (source, job): &Key,
    began: Instant,
    outcome: &Result<String, String>,
) {
    let took = began.elapsed();
    match outcome {
        Ok(what) => {
            report.succeeded += 1;
            metrics.ended(source.as_str(), *job, Outcome::Success, ctx.now(), took);
            info!(event = "job finished", source = %source, job = job.name(), outcome = "success", seconds = took.as_secs_f64(), result = %what);
        }
        Err(why) => {
            report.failed += 1;
            metrics.ended(source.as_str(), *job, Outcome::Failure, ctx.now(), took);
            error!(event = "job finished", source = %source, job = job.name(), outcome = "failure", seconds = took.as_secs_f64(), error = %why);
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
