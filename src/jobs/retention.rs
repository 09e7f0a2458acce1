//! What each source's retention policy keeps, as of an instant: the plan `prune` shows.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{described, JobContext, JobError};
use crate::config::Config;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::source::SourceName;
use crate::retention::policy::Policy;
use crate::retention::select::{select, Candidate, Hold, LogSpan, Selection};

/// One source's policy and what it keeps.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub source: SourceName,
    pub policy: String,
    pub zone: String,
    pub selection: Selection,
}

/// The instant a backup restores to, as retention counts it: its consistency point, or a stream
/// backup's start.
pub fn backup_time(m: &Manifest) -> DateTime<Utc> {
    m.postgres
        .as_ref()
        .map(|p| p.consistent_at)
        .or(m.mysql.as_ref().map(|p| p.consistent_at))
        .unwrap_or(m.started)
}

/// Applies each source's policy (or `policy`, for every source) as of `at`: `source`, or every
/// source the repository holds backups of.
pub async fn plan_retention(
    ctx: &JobContext,
    config: &Config,
    source: Option<&SourceName>,
    policy: Option<&Policy>,
    at: DateTime<Utc>,
) -> Result<Vec<SourcePlan>, JobError> {
    let manifests = ctx.repo.manifests(source.map(|s| s.as_str())).await?;
    if let Some(s) = source {
        if manifests.is_empty() && !config.sources.contains_key(s) {
            return Err(JobError::Usage(format!(
                "source {s} is neither in the config nor in the repository"
            )));
        }
    }
    let mut sources: Vec<SourceName> = manifests.iter().map(|m| m.source.clone()).collect();
    sources.extend(source.cloned());
    sources.sort();
    sources.dedup();
    let holds = ctx.repo.holds().await?;
    let mut plans = Vec::new();
    for name in sources {
        let mine: Vec<&Manifest> = manifests.iter().filter(|m| m.source == name).collect();
        let candidates: Vec<Candidate> = mine
            .iter()
            .map(|m| Candidate {
                id: m.id.clone(),
                at: backup_time(m),
            })
            .collect();
        let held: Vec<Hold> = holds
            .iter()
            .filter(|h| h.hold.source == name && h.hold.created <= at)
            .map(|h| Hold {
                backup: h.hold.backup.clone(),
                reason: h.hold.reason.clone(),
                // A release ends the hold from its time on.
                until: match (h.hold.until, h.release.as_ref().map(|r| r.released)) {
                    (Some(u), Some(r)) => Some(u.min(r)),
                    (u, r) => u.or(r),
                },
            })
            .collect();
        let log = log_spans(ctx, config, &name, &mine, at).await?;
        let policy = match policy {
            Some(p) => p.clone(),
            None => config
                .policy_for(&name)
                .map_err(|e| JobError::Usage(e.to_string()))?,
        };
        let selection = select(&candidates, &log, &held, &policy, at);
        plans.push(SourcePlan {
            source: name,
            policy: policy.name.clone(),
            zone: policy.zone.name().to_owned(),
            selection,
        });
    }
    Ok(plans)
}

/// The source's log in time: each unbroken run from the first backup that starts in it, to the
/// last one (or to `at`, for the run the log still grows at). A source of stream backups has none.
async fn log_spans(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    manifests: &[&Manifest],
    at: DateTime<Utc>,
) -> Result<Vec<LogSpan>, JobError> {
    let database =
        config.sources.contains_key(name) || manifests.iter().any(|m| m.kind != BackupKind::Stream);
    if !database {
        return Ok(Vec::new());
    }
    let coverage = described(ctx, config, name, None)
        .await?
        .coverage(ctx, manifests)
        .await?;
    Ok(coverage
        .runs
        .iter()
        .filter_map(|run| {
            let from = run.first_event?;
            let to = if run.open {
                at.max(run.last_event.unwrap_or(from))
            } else {
                run.last_event.unwrap_or(from)
            };
            Some(LogSpan { from, to })
        })
        .collect())
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub plans: Vec<SourcePlan>,
    /// The record written before anything was deleted; `None` when nothing was to go.
    pub record: Option<String>,
    pub deleted: Vec<crate::repo::prune_record::Deleted>,
}

/// Applies each source's policy as of `ctx.now()` and deletes the manifests of the backups no
/// rule keeps, after writing the record of what goes. One prune at a time per repository (a sole
/// lease); backups may run meanwhile, since only manifests are deleted: the data and the logs of
/// deleted backups stay (garbage collection comes later).
pub async fn prune(
    ctx: &JobContext,
    config: &Config,
    source: Option<&SourceName>,
    policy: Option<&Policy>,
) -> Result<PruneReport, JobError> {
    use crate::repo::lease::Lease;
    use crate::repo::prune_record::Deleted;
    let now = ctx.now();
    let lease = Lease::acquire_sole(ctx.repo.store(), "prune", now)
        .await
        .map_err(crate::repo::RepoError::from)?;
    let result = async {
        let plans = plan_retention(ctx, config, source, policy, now).await?;
        // A hold put on since the plan was made still counts.
        let holds = ctx.repo.holds().await?;
        let mut deleted = Vec::new();
        for plan in &plans {
            for v in plan.selection.deleted() {
                if holds
                    .iter()
                    .any(|h| h.hold.backup == v.id && h.active_at(now))
                {
                    continue;
                }
                deleted.push(Deleted {
                    backup: v.id.clone(),
                    source: plan.source.clone(),
                    backup_time: v.at,
                    policy: plan.policy.clone(),
                });
            }
        }
        if deleted.is_empty() {
            return Ok(PruneReport {
                plans,
                record: None,
                deleted,
            });
        }
        let record = ctx.repo.record_prune(now, deleted.clone()).await?;
        for d in &deleted {
            match ctx.repo.forget(&d.backup).await {
                Ok(_) | Err(crate::repo::RepoError::BackupNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(PruneReport {
            plans,
            record: Some(record),
            deleted,
        })
    }
    .await;
    lease.release().await;
    result
}
