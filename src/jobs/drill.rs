//! `drill SOURCE`: a restore carried out for real into a server of its own and checked, timed and
//! recorded in the repository (`drills/`), passed or failed, for the audit to cite.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use tracing::warn;

use super::{described, JobContext, JobError};
use crate::audit::windows::{instant_in, windows};
use crate::config::Config;
use crate::engine::drill::{DrillOutcome, DrillRequest};
use crate::engine::RestoreOptions;
use crate::repo::drill_record::{DrillLog, DrillPoint, DrillRecord, DRILL_RECORD_VERSION};
use crate::repo::manifest::Manifest;
use crate::repo::source::SourceName;
use crate::restore::point::{Instant, RestorePoint};
use crate::restore::target::resolve_target;

/// Which instant a drill restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillAt {
    /// Everything stored.
    Latest,
    /// This instant.
    Time(Instant),
    /// An instant drawn at random from the source's point-in-time windows.
    RandomInWindow,
}

/// What a drill did, and where its record is.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub record: DrillRecord,
    /// The record's key, once written.
    pub key: Option<String>,
    /// Why the record could not be written, if it could not.
    pub record_failed: Option<String>,
}

/// Drills `source` at `at` into a scratch server (or `to`, a target as `restore --to` takes
/// one), and records the result. A drill that fails is a result, not an error: only a drill that
/// cannot begin (an unknown source, a bad target, no window to draw from) is an error.
pub async fn drill(
    ctx: &JobContext,
    config: &Config,
    source: &SourceName,
    at: DrillAt,
    to: Option<&str>,
    options: &RestoreOptions,
) -> Result<DrillReport, JobError> {
    let started = ctx.now();
    let opened = described(ctx, config, source, None).await?;
    let into = to
        .map(|to| resolve_target(config, to).map_err(JobError::Usage))
        .transpose()?;
    let (point, asked) = match at {
        DrillAt::Latest => (
            RestorePoint::Latest,
            DrillPoint {
                kind: "latest".into(),
                at: None,
                drawn_from: None,
            },
        ),
        DrillAt::Time(t) => (
            RestorePoint::Time(t),
            DrillPoint {
                kind: "time".into(),
                at: Some(t.at),
                drawn_from: None,
            },
        ),
        DrillAt::RandomInWindow => {
            let manifests = ctx.repo.manifests(Some(source)).await?;
            let mine: Vec<&Manifest> = manifests.iter().collect();
            let coverage = opened.coverage(ctx, &mine).await?;
            let spans = windows(&coverage, &mine);
            let draw: f64 = rand::thread_rng().gen();
            let (t, window) = instant_in(&spans, draw).ok_or_else(|| {
                JobError::Usage(format!(
                    "source {source} has no point-in-time window to draw an instant from: no unbroken log after a backup that replay can start from"
                ))
            })?;
            (
                RestorePoint::Time(Instant::utc(t)),
                DrillPoint {
                    kind: "time".into(),
                    at: Some(t),
                    drawn_from: Some([window.from, window.to]),
                },
            )
        }
    };
    let request = DrillRequest {
        point,
        into,
        options: options.clone(),
    };
    let outcome = opened.drill(ctx, &request).await;
    let record = record_of(source, opened.engine(), asked, outcome, started, ctx.now());
    let (key, record_failed) = match ctx.repo.record_drill(&record).await {
        Ok(key) => (Some(key), None),
        Err(e) => {
            warn!(error = %e, "the drill could not be recorded");
            (None, Some(e.to_string()))
        }
    };
    Ok(DrillReport {
        record,
        key,
        record_failed,
    })
}

fn record_of(
    source: &SourceName,
    engine: &str,
    point: DrillPoint,
    outcome: DrillOutcome,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
) -> DrillRecord {
    let passed = outcome.passed();
    let failed_checks: Vec<String> = outcome
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let plan = outcome.plan.as_ref();
    DrillRecord {
        version: DRILL_RECORD_VERSION,
        source: source.clone(),
        engine: engine.to_owned(),
        started,
        finished,
        host: crate::host::host_name(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        point,
        target: outcome.target,
        backup: plan.map(|p| p.backup.clone()),
        backup_kind: plan.map(|p| p.backup_kind),
        backup_consistent_at: plan.map(|p| p.backup_consistent_at),
        log: plan.and_then(|p| p.log.as_ref()).map(|log| DrillLog {
            log: log.log.to_owned(),
            first: log.first.clone(),
            last: log.last.clone(),
            objects: log.objects as u64,
            transactions: outcome.transactions,
        }),
        reached: outcome.reached,
        restore_seconds: outcome.restore.as_secs_f64(),
        check_seconds: outcome.checking.as_secs_f64(),
        checks: outcome.checks,
        tables: outcome.tables,
        passed,
        failure: outcome
            .failure
            .or_else(|| (!passed).then(|| failed_checks.join("; "))),
    }
}
