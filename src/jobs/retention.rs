//! What each source's retention policy keeps, as of an instant: the plan `prune` shows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{described_by, JobContext, JobError};
use crate::config::Config;
use crate::engine::retention::{LogKeep, LogRetention};
use crate::engine::LogCoverage;
use crate::repo::gc::{GcOptions, GcReport};
use crate::repo::layout::ObjectKind;
use crate::repo::manifest::{BackupId, BackupKind, Manifest};
use crate::repo::object_lock::ObjectLock;
use crate::repo::prune_record::{Deleted, DeletedLog, Deletions};
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
    /// What the kept backups and the window ask of the log, and what nothing needs; `None` for a
    /// source without a log (stream backups only).
    pub log: Option<LogRetention>,
    /// Backups no rule keeps whose manifest the bucket's Object Lock still locks: they stay (and
    /// so does the log they need) until a prune after their lock ends.
    pub locked: Vec<LockedBackup>,
    /// Why the repository does not give what the policy's `immutability` asks, if it does not: a
    /// prune under such a policy is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutability_unmet: Option<String>,
    /// The source's log as the plan read it (for the audit); `None` without a log.
    #[serde(skip)]
    pub coverage: Option<LogCoverage>,
}

/// A backup the policy lets go that the bucket still locks.
#[derive(Debug, Clone, Serialize)]
pub struct LockedBackup {
    pub backup: BackupId,
    pub until: DateTime<Utc>,
}

/// Why `lock` (the repository's) does not give what `policy` asks, if it does not.
pub fn immutability_unmet(policy: &Policy, lock: Option<&ObjectLock>) -> Option<String> {
    let asked = policy.immutability.as_ref()?;
    match lock {
        Some(lock) if lock.satisfies(asked) => None,
        Some(lock) => Some(format!(
            "policy {} asks for an Object Lock of {asked}; repository.object_lock says the bucket locks {lock}",
            policy.name
        )),
        None => Some(format!(
            "policy {} asks for an Object Lock of {asked}; the repository states none (repository.object_lock in the config)",
            policy.name
        )),
    }
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
    plan_retention_of(ctx, config, &manifests, source, policy, at).await
}

/// [`plan_retention`] of `manifests`, already read (every backup of `source`, or of all).
pub async fn plan_retention_of(
    ctx: &JobContext,
    config: &Config,
    manifests: &[Manifest],
    source: Option<&SourceName>,
    policy: Option<&Policy>,
    at: DateTime<Utc>,
) -> Result<Vec<SourcePlan>, JobError> {
    if let Some(s) = source {
        if manifests.is_empty() && !config.declares(s) {
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
    let lock = config.repository.object_lock;
    // When each manifest was written, which its lock counts from (only read under a lock).
    let written: HashMap<String, Option<DateTime<Utc>>> = match lock {
        Some(_) => ctx
            .repo
            .store()
            .list(ObjectKind::Manifest.prefix())
            .await
            .map_err(crate::repo::RepoError::from)?
            .into_iter()
            .map(|o| (o.key, o.last_modified))
            .collect(),
        None => HashMap::new(),
    };
    let mut plans = Vec::new();
    for name in sources {
        let mine: Vec<&Manifest> = manifests.iter().filter(|m| m.source == name).collect();
        let candidates: Vec<Candidate> = mine
            .iter()
            .map(|m| Candidate {
                id: m.id.clone(),
                at: backup_time(m),
                replayable: m.postgres.is_some() || m.mysql.is_some(),
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
        let policy = match policy {
            Some(p) => p.clone(),
            None => config
                .policy_for(&name)
                .map_err(|e| JobError::Usage(e.to_string()))?,
        };
        // A source with a log: a configured database, or one whose backups are database ones.
        let database = config.declares(&name) || mine.iter().any(|m| m.kind != BackupKind::Stream);
        let locked_now = |selection: &Selection| -> Vec<LockedBackup> {
            let Some(lock) = lock else {
                return Vec::new();
            };
            selection
                .deleted()
                .filter_map(|v| {
                    let written = written.get(&v.id.key()).copied().flatten();
                    Some(LockedBackup {
                        backup: v.id.clone(),
                        until: lock.locked_until(written, at)?,
                    })
                })
                .collect()
        };
        let (selection, log, locked, coverage) = if database {
            let engine = described_by(config, &name, mine.iter().copied())?;
            let coverage = engine.coverage(ctx, &mine).await?;
            let selection = select(&candidates, &log_spans(&coverage, at), &held, &policy, at);
            let locked = locked_now(&selection);
            let mut keep = log_keep(&selection, &candidates);
            // A locked backup stays, consistent: it keeps its log like a kept one.
            keep.points.extend(locked.iter().map(|l| l.backup.clone()));
            keep.lock = lock.map(|l| (l, at));
            let log = engine.log_retention(ctx, &mine, &keep).await?;
            (selection, Some(log), locked, Some(coverage))
        } else {
            let selection = select(&candidates, &[], &held, &policy, at);
            let locked = locked_now(&selection);
            (selection, None, locked, None)
        };
        plans.push(SourcePlan {
            source: name,
            policy: policy.name.clone(),
            zone: policy.zone.name().to_owned(),
            selection,
            log,
            locked,
            immutability_unmet: immutability_unmet(&policy, lock.as_ref()),
            coverage,
        });
    }
    Ok(plans)
}

/// The source's log in time: each unbroken run from the first backup that starts in it, to the
/// last one (or to `at`, for the run the log still grows at).
fn log_spans(coverage: &LogCoverage, at: DateTime<Utc>) -> Vec<LogSpan> {
    coverage
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
        .collect()
}

/// What the selection asks of the log: everything from the window's base on (without a window,
/// from the newest backup kept that replay starts from, so that the latest state stays
/// restorable), and what each other kept backup needs to be consistent.
fn log_keep(selection: &Selection, candidates: &[Candidate]) -> LogKeep {
    let replayable = |id: &BackupId| candidates.iter().any(|c| &c.id == id && c.replayable);
    let kept: Vec<&BackupId> = selection
        .kept()
        .map(|v| &v.id)
        .filter(|id| replayable(id))
        .collect();
    let from = selection
        .window
        .as_ref()
        .and_then(|w| w.base.clone())
        .filter(|b| replayable(b))
        // Verdicts are oldest first.
        .or_else(|| kept.last().map(|id| (*id).clone()));
    LogKeep {
        points: kept
            .into_iter()
            .filter(|id| Some(*id) != from.as_ref())
            .cloned()
            .collect(),
        from,
        lock: None,
    }
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub plans: Vec<SourcePlan>,
    /// The record written before anything was deleted; `None` when nothing was to go.
    pub record: Option<String>,
    pub deleted: Vec<crate::repo::prune_record::Deleted>,
    pub logs_deleted: Vec<crate::repo::prune_record::DeletedLog>,
    /// Log objects deleted (segments, snapshots, chain-number claims).
    pub log_objects_deleted: u64,
    /// Garbage collection of the packs, after the manifests and the log.
    pub gc: GcReport,
}

/// Applies each source's policy as of `ctx.now()`: writes the record of what goes, then deletes
/// the manifests of the backups no rule keeps, then the log nothing kept needs, then collects the
/// packs in two phases (`gc`). One prune at a time per repository (a sole lease). Backups and
/// streamers may run meanwhile: the log newer than the newest backup kept is never deleted, and a
/// pack is deleted only after its grace period and while no backup holds a lease.
pub async fn prune(
    ctx: &JobContext,
    config: &Config,
    source: Option<&SourceName>,
    policy: Option<&Policy>,
    gc: &GcOptions,
) -> Result<PruneReport, JobError> {
    use crate::repo::lease::Lease;
    let now = ctx.now();
    let lease = Lease::acquire_sole(ctx.repo.store(), "prune", now)
        .await
        .map_err(crate::repo::RepoError::from)?;
    let result = async {
        let plans = plan_retention(ctx, config, source, policy, now).await?;
        if let Some(why) = plans.iter().find_map(|p| p.immutability_unmet.clone()) {
            return Err(JobError::Usage(format!(
                "{why}: nothing is pruned under a policy whose immutability the bucket does not give"
            )));
        }
        let (deletions, log_keys) = deletions(ctx, &plans, now).await?;
        let io = ctx.concurrency.io.max(1);
        if deletions.is_empty() {
            let gc = ctx.repo.collect_garbage(now, gc, io).await?;
            return Ok(PruneReport {
                plans,
                record: None,
                deleted: Vec::new(),
                logs_deleted: Vec::new(),
                log_objects_deleted: 0,
                gc,
            });
        }
        let record = ctx.repo.record_prune(now, deletions.clone()).await?;
        for d in &deletions.backups {
            match ctx.repo.forget(&d.backup).await {
                Ok(_) | Err(crate::repo::RepoError::BackupNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        ctx.repo
            .store()
            .delete_many(&log_keys, io)
            .await
            .map_err(crate::repo::RepoError::from)?;
        let gc = ctx.repo.collect_garbage(now, gc, io).await?;
        Ok(PruneReport {
            plans,
            record: Some(record),
            deleted: deletions.backups,
            logs_deleted: deletions.logs,
            log_objects_deleted: log_keys.len() as u64,
            gc,
        })
    }
    .await;
    lease.release().await;
    result
}

/// What the plans delete, re-checked against the holds as they are now: a backup held since the
/// plan was made stays, and its source's log is then left whole for the next prune (the plan of
/// it assumed the backup gone).
async fn deletions(
    ctx: &JobContext,
    plans: &[SourcePlan],
    now: DateTime<Utc>,
) -> Result<(Deletions, Vec<String>), JobError> {
    let holds = ctx.repo.holds().await?;
    let mut out = Deletions::default();
    let mut keys = Vec::new();
    for plan in plans {
        let mut held_since = false;
        for v in plan.selection.deleted() {
            if plan.locked.iter().any(|l| l.backup == v.id) {
                continue;
            }
            if holds
                .iter()
                .any(|h| h.hold.backup == v.id && h.active_at(now))
            {
                held_since = true;
                continue;
            }
            out.backups.push(Deleted {
                backup: v.id.clone(),
                source: plan.source.clone(),
                backup_time: v.at,
                policy: plan.policy.clone(),
            });
        }
        let Some(log) = plan.log.as_ref().filter(|_| !held_since) else {
            continue;
        };
        out.logs.extend(log.deleted.iter().map(|s| DeletedLog {
            source: plan.source.clone(),
            log: log.log.to_owned(),
            first: s.first.clone(),
            last: s.last.clone(),
            objects: s.objects,
            bytes: s.bytes,
            why: s.why.clone(),
        }));
        keys.extend(log.keys.iter().cloned());
    }
    Ok((out, keys))
}
