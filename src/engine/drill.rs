//! What a restore drill asks of an engine, and what it gives back: the restore carried out into a
//! server of the drill's own (or a target), the server started, and its data checked.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{RestoreOptions, Source};
use crate::context::{JobContext, JobError};
use crate::repo::drill_record::{DrillCheck, TableRows};
use crate::restore::point::RestorePoint;
use crate::restore::summary::PlanSummary;
use crate::restore::target::{Destination, RestoreTarget};

/// One drill: the point, and where (`None`: a scratch server started from the local binaries on a
/// private port and a temporary directory, removed afterwards).
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub point: RestorePoint,
    pub into: Option<RestoreTarget>,
    pub options: RestoreOptions,
}

/// What a drill did and found. An engine always returns one: a step that fails ends the drill
/// with `failure` set, and what was done before it stays.
#[derive(Debug, Clone)]
pub struct DrillOutcome {
    /// Where it restored, in words.
    pub target: String,
    /// The restore's plan, once made.
    pub plan: Option<PlanSummary>,
    pub transactions: Option<u64>,
    /// The commit time of the last transaction the restored database holds, when known.
    pub reached: Option<DateTime<Utc>>,
    /// From the start of planning until the server was up with recovery ended.
    pub restore: Duration,
    /// The checks after that.
    pub checking: Duration,
    pub checks: Vec<DrillCheck>,
    pub tables: Vec<TableRows>,
    pub failure: Option<String>,
}

impl DrillOutcome {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            plan: None,
            transactions: None,
            reached: None,
            restore: Duration::ZERO,
            checking: Duration::ZERO,
            checks: Vec::new(),
            tables: Vec::new(),
            failure: None,
        }
    }

    /// Records a check's result.
    pub fn check(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(DrillCheck {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// Ends the drill as failed with `why`, unless an earlier step already failed it.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failure.get_or_insert_with(|| why.into());
    }

    /// Every check passed and no step failed.
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.checks.iter().all(|c| c.passed)
    }

    /// Marks the restore done: its duration runs from `began`.
    pub fn restored(&mut self, began: Instant) {
        self.restore = began.elapsed();
    }

    /// Marks the checks done: they ran from the end of the restore.
    pub fn checked(&mut self, began: Instant) {
        self.checking = began.elapsed().saturating_sub(self.restore);
    }
}

/// The drill's restore: `source` planned to the request's point into `destination` (with
/// `options`), and carried out; the plan and what the restore reports go into `out` as they
/// come. Returns the plan.
pub async fn restore_into(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
    destination: Destination,
    options: &RestoreOptions,
    out: &mut DrillOutcome,
) -> Result<PlanSummary, JobError> {
    let target = RestoreTarget {
        given: out.target.clone(),
        engine: Some(source.engine()),
        destination,
    };
    let planned = source
        .plan_restore(ctx, &request.point, &target, options)
        .await?;
    let summary = planned.summary().clone();
    out.plan = Some(summary.clone());
    let report = planned.run(ctx).await?;
    out.transactions = report.transactions;
    out.reached = report.last_event;
    Ok(summary)
}
