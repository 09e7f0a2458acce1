//! PostgreSQL behind the engine interface: what a configured source does, and how a restore into
//! each kind of target is planned (a directory: physical; a server: logical, or an instant through
//! a scratch cluster).

use std::time::Duration;

use async_trait::async_trait;

use super::basebackup::{base_backup, BaseBackupRequest};
use super::config::{Mode, SourceConfig, NAME, SCHEMES};
use super::coverage::wal_coverage;
use super::logical::{choose_logical, logical_backup, logical_restore};
use super::plan::{plan, RestorePlan};
use super::restore::{restore, RestoreRequest};
use super::retention::{segment_size, wal_objects, wal_retention, Needs};
use super::scratch::{restore_into_server, ScratchRestore};
use super::server::start_and_wait;
use super::stream::{stream_wal, PgStreamOptions};
use super::wal::{read_archive, wal_push_ahead, PushOutcome};
use super::PgError;
use crate::context::{JobContext, JobError};
use crate::engine::retention::{LogKeep, LogRetention};
use crate::engine::{
    reporting, unsupported_point, BackupRequest, LogCoverage, LogReport, PlannedRestore,
    PushRequest, RestoreOptions, RestoreReport, Source, StreamRequest,
};
use crate::pipeline::backup::BackupSummary;
use crate::redact::redact;
use crate::repo::manifest::{BackupId, BackupKind, Manifest};
use crate::repo::source::SourceName;
use crate::restore::point::RestorePoint;
use crate::restore::summary::{LogRange, PlanSummary};
use crate::restore::target::{Destination, RestoreTarget};

/// The backups this engine makes.
pub fn owns(kind: BackupKind) -> bool {
    matches!(
        kind,
        BackupKind::PostgresPhysical | BackupKind::PostgresLogical
    )
}

pub fn open(name: &SourceName, config: &SourceConfig) -> Box<dyn Source> {
    Box::new(PgSource {
        name: name.clone(),
        config: config.clone(),
    })
}

/// The shortest flush interval streaming accepts: below it a store is written to without pause.
const MIN_FLUSH: Duration = Duration::from_millis(200);

const POINTS: &str = "--time, --lsn, --name, --latest or --backup";

struct PgSource {
    name: SourceName,
    config: SourceConfig,
}

impl PgSource {
    fn url(&self, why: &str) -> Result<&str, JobError> {
        self.config
            .url
            .as_deref()
            .ok_or_else(|| JobError::Usage(format!("sources.{}.url is needed: {why}", self.name)))
    }
}

#[async_trait]
impl Source for PgSource {
    fn name(&self) -> &SourceName {
        &self.name
    }

    fn engine(&self) -> &'static str {
        NAME
    }

    async fn backup(
        &self,
        ctx: &JobContext,
        request: &BackupRequest,
    ) -> Result<BackupSummary, JobError> {
        let url = self.url("every PostgreSQL backup runs on a connection")?;
        let now = ctx.now();
        if request.logical || self.config.mode == Some(Mode::Logical) {
            return Ok(logical_backup(
                &ctx.repo,
                &self.name,
                url,
                request.labels.clone(),
                ctx.concurrency,
                ctx.progress.clone(),
                now,
            )
            .await?);
        }
        let base = BaseBackupRequest {
            source: &self.name,
            conninfo: url,
            data_dir: self.config.data_dir.as_deref(),
            labels: request.labels.clone(),
            concurrency: ctx.concurrency,
            archive_timeout: request.archive_timeout,
        };
        Ok(base_backup(&ctx.repo, &base, ctx.progress.clone(), now).await?)
    }

    async fn stream(
        &self,
        ctx: &JobContext,
        request: &StreamRequest,
    ) -> Result<LogReport, JobError> {
        let url = self.url("streaming WAL needs a replication connection")?;
        let mut options = PgStreamOptions::new(&self.name);
        if let Some(interval) = request.flush_interval {
            options.flush_interval = interval.max(MIN_FLUSH);
        }
        options.spool = request.spool.clone();
        options.status = request.status.clone();
        if let Some(slot) = &request.slot {
            options.slot = slot.clone();
        }
        let report = stream_wal(
            &ctx.repo,
            &self.name,
            url,
            &options,
            ctx.shutdown.signalled(),
        )
        .await?;
        Ok(LogReport {
            log: "WAL",
            segments: report.segments,
            snapshots: report.snapshots,
            bytes: 0,
            transactions: None,
            end: None,
            already_stored: false,
            detail: serde_json::json!({
                "segments": report.segments,
                "snapshots": report.snapshots,
            }),
        })
    }

    async fn push(&self, ctx: &JobContext, request: &PushRequest) -> Result<LogReport, JobError> {
        let path = request
            .path
            .as_deref()
            .ok_or_else(|| JobError::Usage("wal-push needs the WAL file's path (%p)".into()))?;
        let outcome = wal_push_ahead(&ctx.repo, &self.name, path, request.ahead).await?;
        let already = outcome == PushOutcome::AlreadyArchived;
        Ok(LogReport {
            log: "WAL",
            segments: u64::from(!already),
            snapshots: 0,
            bytes: 0,
            transactions: None,
            end: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            already_stored: already,
            detail: serde_json::Value::Null,
        })
    }

    async fn coverage(
        &self,
        ctx: &JobContext,
        manifests: &[&Manifest],
    ) -> Result<LogCoverage, JobError> {
        let archive = read_archive(&ctx.repo, &self.name).await?;
        let segment_size = segment_size(manifests.iter().copied());
        let backups: Vec<_> = manifests
            .iter()
            .filter_map(|m| {
                let p = m.postgres.as_ref()?;
                let start: super::names::WalFileName = p.start_wal.parse().ok()?;
                Some((
                    p.timeline,
                    start.segment_number(segment_size)?,
                    p.consistent_at,
                ))
            })
            .collect();
        Ok(wal_coverage(&archive, segment_size, &backups))
    }

    async fn log_retention(
        &self,
        ctx: &JobContext,
        manifests: &[&Manifest],
        keep: &LogKeep,
    ) -> Result<LogRetention, JobError> {
        let size = segment_size(manifests.iter().copied());
        let needs = |id: &BackupId| {
            manifests
                .iter()
                .find(|m| &m.id == id)
                .and_then(|m| Needs::of(m, size))
        };
        let from = keep.from.as_ref().and_then(needs);
        let points: Vec<Needs> = keep.points.iter().filter_map(needs).collect();
        let objects = wal_objects(&ctx.repo, &self.name).await?;
        let why = from
            .as_ref()
            .map(|b| format!("the log from backup {} on", b.backup));
        Ok(wal_retention(
            objects,
            size,
            from.as_ref().zip(why.as_deref()),
            &points,
            keep.lock,
        ))
    }

    async fn plan_restore(
        &self,
        ctx: &JobContext,
        point: &RestorePoint,
        target: &RestoreTarget,
        options: &RestoreOptions,
    ) -> Result<Box<dyn PlannedRestore>, JobError> {
        if let RestorePoint::Gtid(_) = point {
            return Err(unsupported_point(NAME, point, POINTS));
        }
        target
            .check_engine(NAME, &self.name)
            .map_err(JobError::Usage)?;
        let repo = &ctx.repo;
        if options.delta && !matches!(target.destination, Destination::Directory(_)) {
            return Err(JobError::Usage(format!(
                "--delta restores a physical backup over a data directory, not into {}",
                target.destination.describe()
            )));
        }
        match &target.destination {
            Destination::Directory(dir) => {
                let manifests = repo.manifests(Some(&self.name)).await?;
                let archive = read_archive(repo, &self.name).await?;
                let plan = plan(&self.name, &manifests, &archive, point)?;
                let manifest = chosen(manifests, &plan)?;
                let summary = physical_summary(
                    &plan,
                    &manifest,
                    target,
                    "physical: the backup's files, then WAL replayed by the restored server",
                );
                Ok(Box::new(Physical {
                    plan,
                    manifest,
                    dir: dir.clone(),
                    options: options.clone(),
                    summary,
                }))
            }
            Destination::Server(url) => {
                if !SCHEMES.iter().any(|s| url.starts_with(&format!("{s}://"))) {
                    return Err(JobError::Usage(format!(
                        "{}: a PostgreSQL target is a data directory or a postgres:// URL",
                        redact(url)
                    )));
                }
                if options.start || options.port.is_some() {
                    return Err(JobError::Usage(
                        "--start and --port are for restores into a directory; this target is a running server".into(),
                    ));
                }
                self.plan_into_server(ctx, point, target, url, options)
                    .await
            }
        }
    }

    async fn drill(
        &self,
        ctx: &JobContext,
        request: &crate::engine::drill::DrillRequest,
    ) -> crate::engine::drill::DrillOutcome {
        let url = self
            .config
            .url
            .clone()
            .or_else(|| request.options.source_url.clone());
        super::drill::drill(self, url.as_deref(), ctx, request).await
    }
}

impl PgSource {
    /// A logical backup restored into a running server; or an instant, exactly, from a physical
    /// backup and its WAL through a scratch cluster, when there is one to start from.
    async fn plan_into_server(
        &self,
        ctx: &JobContext,
        point: &RestorePoint,
        target: &RestoreTarget,
        url: &str,
        options: &RestoreOptions,
    ) -> Result<Box<dyn PlannedRestore>, JobError> {
        let repo = &ctx.repo;
        let manifests = repo.manifests(Some(&self.name)).await?;
        if let RestorePoint::Time(_) | RestorePoint::Lsn(_) | RestorePoint::Name(_) = point {
            let archive = read_archive(repo, &self.name).await?;
            if let Ok(plan) = plan(&self.name, &manifests, &archive, point) {
                let manifest = chosen(manifests, &plan)?;
                let summary = physical_summary(
                    &plan,
                    &manifest,
                    target,
                    "through a scratch cluster: the physical backup recovered to the point on a private port, its database copied in with pg_dump | pg_restore",
                );
                return Ok(Box::new(Scratch {
                    plan,
                    manifest,
                    url: url.to_owned(),
                    source_url: self
                        .config
                        .url
                        .clone()
                        .or_else(|| options.source_url.clone()),
                    options: options.clone(),
                    summary,
                }));
            }
        }
        let chosen = match point {
            RestorePoint::Latest => choose_logical(&manifests, &self.name, None),
            RestorePoint::Time(t) => choose_logical(&manifests, &self.name, Some(t.at)),
            RestorePoint::Backup(id) => manifests
                .iter()
                .find(|m| &m.id == id && m.kind == BackupKind::PostgresLogical),
            _ => None,
        };
        let Some(manifest) = chosen.cloned() else {
            return Err(JobError::Usage(format!(
                "no logical backup of {} fits {point}: restoring into a running server takes a logical backup (backup {} --logical), or --time with a physical backup consistent before it",
                self.name, self.name
            )));
        };
        let summary = PlanSummary {
            source: self.name.clone(),
            engine: NAME,
            point: point.clone(),
            into: target.destination.describe(),
            method: "logical: pg_restore of the pg_dump".into(),
            backup: manifest.id.clone(),
            backup_kind: manifest.kind,
            backup_consistent_at: manifest.started,
            log: None,
            backup_bytes: manifest.size(),
            log_bytes: 0,
            gaps: Vec::new(),
            crossings: Vec::new(),
            problem: None,
            detail: serde_json::json!({
                "backup": manifest.id, "taken": manifest.started, "kind": "postgres-logical",
                "bytes": manifest.size(),
            }),
        };
        Ok(Box::new(Logical {
            manifest,
            url: url.to_owned(),
            summary,
        }))
    }
}

fn chosen(manifests: Vec<Manifest>, plan: &RestorePlan) -> Result<Manifest, PgError> {
    manifests
        .into_iter()
        .find(|m| m.id == plan.backup)
        .ok_or_else(|| PgError::Invalid(format!("backup {} vanished", plan.backup)))
}

fn physical_summary(
    plan: &RestorePlan,
    manifest: &Manifest,
    target: &RestoreTarget,
    method: &str,
) -> PlanSummary {
    PlanSummary {
        source: manifest.source.clone(),
        engine: NAME,
        point: plan.point.clone(),
        into: target.destination.describe(),
        method: method.to_owned(),
        backup: plan.backup.clone(),
        backup_kind: manifest.kind,
        backup_consistent_at: plan.backup_consistent_at,
        log: Some(LogRange {
            log: "WAL",
            first: plan.wal_start.clone(),
            last: plan
                .wal_last
                .clone()
                .unwrap_or_else(|| plan.wal_consistent.clone()),
            objects: plan.wal_segments,
        }),
        backup_bytes: plan.backup_bytes,
        log_bytes: plan.wal_bytes,
        gaps: plan.gaps(),
        crossings: plan
            .switches
            .iter()
            .map(|s| format!("timeline {} -> {} at {}", s.from, s.to, s.at))
            .collect(),
        problem: plan.problem(),
        detail: serde_json::to_value(plan).unwrap_or_default(),
    }
}

fn restore_command(options: &RestoreOptions) -> Result<String, JobError> {
    options.restore_command.clone().map_err(JobError::Usage)
}

fn refuse_incomplete(summary: &PlanSummary) -> Result<(), JobError> {
    match &summary.problem {
        Some(problem) => Err(PgError::Unrestorable(problem.clone()).into()),
        None => Ok(()),
    }
}

struct Physical {
    plan: RestorePlan,
    manifest: Manifest,
    dir: std::path::PathBuf,
    options: RestoreOptions,
    summary: PlanSummary,
}

#[async_trait]
impl PlannedRestore for Physical {
    fn summary(&self) -> &PlanSummary {
        &self.summary
    }

    async fn run(self: Box<Self>, ctx: &JobContext) -> Result<RestoreReport, JobError> {
        refuse_incomplete(&self.summary)?;
        let request = RestoreRequest {
            target_dir: &self.dir,
            restore_command: restore_command(&self.options)?,
            force: self.options.force,
            delta: self.options.delta,
            port: self.options.port,
            concurrency: ctx.concurrency,
        };
        let work = restore(
            &ctx.repo,
            &self.plan,
            &self.manifest,
            &request,
            ctx.progress.clone(),
        );
        let delta = reporting(ctx, "restore", self.plan.backup_bytes, work).await?;
        let how = match &delta {
            Some(d) => format!(
                " by delta ({} files kept, {} rewritten, {} removed; {} bytes checked, {} chunks fetched, {} bytes written)",
                d.files_kept, d.files_changed, d.removed, d.bytes_checked, d.chunks_fetched, d.bytes_written
            ),
            None => String::new(),
        };
        if !self.options.start {
            return Ok(RestoreReport {
                done: format!(
                    "restored into {}{how}: start PostgreSQL there and it recovers to the point, then promotes",
                    self.dir.display()
                ),
                transactions: None,
                started: false,
                last_event: None,
            });
        }
        let major = self
            .manifest
            .postgres
            .as_ref()
            .map(|p| p.server_version / 10000);
        let dir = self.dir.clone();
        let timeout = self.options.start_timeout;
        tokio::task::spawn_blocking(move || start_and_wait(&dir, major, timeout))
            .await
            .map_err(|e| PgError::Invalid(format!("start task failed: {e}")))??;
        Ok(RestoreReport {
            done: format!(
                "restored into {}{how} and started: recovery is over and the server runs",
                self.dir.display()
            ),
            transactions: None,
            started: true,
            last_event: None,
        })
    }
}

struct Scratch {
    plan: RestorePlan,
    manifest: Manifest,
    url: String,
    source_url: Option<String>,
    options: RestoreOptions,
    summary: PlanSummary,
}

#[async_trait]
impl PlannedRestore for Scratch {
    fn summary(&self) -> &PlanSummary {
        &self.summary
    }

    async fn run(self: Box<Self>, ctx: &JobContext) -> Result<RestoreReport, JobError> {
        refuse_incomplete(&self.summary)?;
        let request = ScratchRestore {
            source_url: self.source_url.as_deref(),
            target_url: &self.url,
            restore_command: restore_command(&self.options)?,
            start_timeout: self.options.start_timeout,
            concurrency: ctx.concurrency,
        };
        let work = restore_into_server(
            &ctx.repo,
            &self.plan,
            &self.manifest,
            &request,
            ctx.progress.clone(),
        );
        let database = reporting(ctx, "restore", self.plan.backup_bytes, work).await?;
        Ok(RestoreReport {
            done: format!(
                "restored {database} of {} as of {} into {}",
                self.summary.source,
                self.plan.point,
                redact(&self.url)
            ),
            transactions: None,
            started: false,
            last_event: None,
        })
    }
}

struct Logical {
    manifest: Manifest,
    url: String,
    summary: PlanSummary,
}

#[async_trait]
impl PlannedRestore for Logical {
    fn summary(&self) -> &PlanSummary {
        &self.summary
    }

    async fn run(self: Box<Self>, ctx: &JobContext) -> Result<RestoreReport, JobError> {
        let work = logical_restore(
            &ctx.repo,
            &self.manifest,
            &self.url,
            ctx.concurrency,
            ctx.progress.clone(),
        );
        reporting(ctx, "restore", self.manifest.size(), work).await?;
        Ok(RestoreReport {
            done: format!("restored {} into {}", self.manifest.id, redact(&self.url)),
            transactions: None,
            started: false,
            last_event: None,
        })
    }
}
