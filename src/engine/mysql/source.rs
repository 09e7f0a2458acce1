//! MySQL/MariaDB behind the engine interface: what a configured source does, and how a restore is
//! planned (into a server: the dump loaded and the binlog replayed; into a directory: a physical
//! backup prepared and the binlog applied).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::config::{Mode, SourceConfig, NAME, SCHEMES};
use super::coverage::{binlog_coverage, breaks};
use super::dump::dump_backup;
use super::physical::{physical_backup, physical_restore};
use super::plan::{plan, BinlogCoverage, MyPlan, Planned};
use super::push::binlog_push;
use super::restore::{restore, MyRestoreRequest};
use super::retention::binlog_retention;
use super::segment::{list_segments, read_meta, read_metas};
use super::server::MysqlUrl;
use super::stream::{stream, StreamOptions};
use super::{chain::StreamReport, MyError};
use crate::context::{JobContext, JobError};
use crate::engine::retention::{LogKeep, LogRetention};
use crate::engine::{
    reporting, unsupported_point, BackupRequest, LogCoverage, LogReport, PlannedRestore,
    PushRequest, RestoreOptions, RestoreReport, Source, StreamRequest,
};
use crate::pipeline::backup::BackupSummary;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::source::SourceName;
use crate::repo::Repository;
use crate::restore::point::RestorePoint;
use crate::restore::summary::{LogRange, PlanSummary};
use crate::restore::target::{Destination, RestoreTarget};

/// The backups this engine makes.
pub fn owns(kind: BackupKind) -> bool {
    matches!(kind, BackupKind::MysqlDump | BackupKind::MysqlPhysical)
}

pub fn open(name: &SourceName, config: &SourceConfig) -> Box<dyn Source> {
    Box::new(MySource {
        name: name.clone(),
        config: config.clone(),
    })
}

/// The shortest flush interval streaming accepts: below it a store is written to without pause.
const MIN_FLUSH: Duration = Duration::from_millis(100);

const POINTS: &str = "--time, --gtid, --latest or --backup";

struct MySource {
    name: SourceName,
    config: SourceConfig,
}

impl MySource {
    fn url(&self) -> Result<MysqlUrl, JobError> {
        let url = self.config.url.as_deref().ok_or_else(|| {
            JobError::Usage(format!(
                "sources.{}.url is needed (mysql://user:password@host:port)",
                self.name
            ))
        })?;
        Ok(MysqlUrl::parse(url)?)
    }
}

/// What `stream` and `binlog-push` report, in the engines' shared shape.
fn log_report(report: StreamReport) -> LogReport {
    let end = report.last.as_ref().map(|m| {
        format!(
            "{}:{} of server {} (GTID {})",
            m.file, m.end, m.server_id, m.gtid_pos
        )
    });
    LogReport {
        log: "binlog",
        segments: report.segments,
        snapshots: 0,
        bytes: report.bytes,
        transactions: Some(report.transactions),
        end,
        already_stored: report.segments == 0,
        detail: serde_json::json!({ "last": report.last }),
    }
}

#[async_trait]
impl Source for MySource {
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
        if request.logical {
            return Err(JobError::Usage(
                "--logical is for PostgreSQL sources; a MySQL source's mode says dump or physical"
                    .into(),
            ));
        }
        let url = self.url()?;
        let labels = request.labels.clone();
        let (repo, progress, now) = (&ctx.repo, ctx.progress.clone(), ctx.now());
        if self.config.mode == Some(Mode::Physical) {
            let data_dir = self.config.data_dir.as_deref().ok_or_else(|| {
                JobError::Usage(format!(
                    "sources.{}.data_dir is needed: mariabackup reads the data directory",
                    self.name
                ))
            })?;
            return Ok(physical_backup(
                repo,
                &self.name,
                &url,
                data_dir,
                labels,
                ctx.concurrency,
                progress,
                now,
            )
            .await?);
        }
        Ok(dump_backup(
            repo,
            &self.name,
            &url,
            labels,
            ctx.concurrency,
            progress,
            now,
        )
        .await?)
    }

    async fn stream(
        &self,
        ctx: &JobContext,
        request: &StreamRequest,
    ) -> Result<LogReport, JobError> {
        let url = self.url()?;
        let mut options = StreamOptions::new(&self.name);
        if let Some(interval) = request.flush_interval {
            options.flush_interval = interval.max(MIN_FLUSH);
        }
        if let Some(bytes) = request.flush_bytes {
            options.flush_bytes = bytes.max(1);
        }
        if let Some(heartbeat) = request.heartbeat {
            options.heartbeat = heartbeat.max(Duration::from_secs(1));
        }
        options.once = request.once;
        options.status = request.status.clone();
        if let Some(id) = request.replica_server_id {
            options.replica_server_id = id;
        }
        let report = stream(
            &ctx.repo,
            &self.name,
            &url,
            &options,
            ctx.shutdown.signalled(),
        )
        .await?;
        Ok(log_report(report))
    }

    async fn push(&self, ctx: &JobContext, request: &PushRequest) -> Result<LogReport, JobError> {
        let dir = request
            .path
            .clone()
            .or_else(|| self.config.data_dir.clone())
            .ok_or_else(|| {
                JobError::Usage(format!(
                    "name the binlog directory with --dir, or set sources.{}.data_dir",
                    self.name
                ))
            })?;
        let segment_bytes = request.segment_bytes.unwrap_or(8 << 20).max(1);
        let report = binlog_push(&ctx.repo, &self.name, &dir, segment_bytes).await?;
        Ok(log_report(report))
    }

    async fn coverage(
        &self,
        ctx: &JobContext,
        _manifests: &[&Manifest],
    ) -> Result<LogCoverage, JobError> {
        let repo = &ctx.repo;
        let names = list_segments(repo, &self.name).await?;
        let metas: Vec<_> = futures::stream::iter(breaks(&names))
            .map(|name| async move { read_meta(repo, &self.name, &name).await })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let by_gtid = metas
            .into_iter()
            .filter(|m| m.resumed_by == "gtid")
            .map(|m| m.seq)
            .collect();
        Ok(binlog_coverage(&names, &by_gtid))
    }

    async fn log_retention(
        &self,
        ctx: &JobContext,
        manifests: &[&Manifest],
        keep: &LogKeep,
    ) -> Result<LogRetention, JobError> {
        Ok(binlog_retention(&ctx.repo, &self.name, manifests, keep).await?)
    }

    async fn plan_restore(
        &self,
        ctx: &JobContext,
        point: &RestorePoint,
        target: &RestoreTarget,
        options: &RestoreOptions,
    ) -> Result<Box<dyn PlannedRestore>, JobError> {
        if let RestorePoint::Lsn(_) | RestorePoint::Name(_) = point {
            return Err(unsupported_point(NAME, point, POINTS));
        }
        if options.delta {
            return Err(JobError::Usage(
                "--delta is for PostgreSQL physical restores; a MySQL/MariaDB restore goes into an empty directory or a server".into(),
            ));
        }
        if options.start || options.port.is_some() {
            return Err(JobError::Usage(
                "--start and --port are for PostgreSQL restores; start MariaDB on a restored directory yourself".into(),
            ));
        }
        target
            .check_engine(NAME, &self.name)
            .map_err(JobError::Usage)?;
        let (into, kind, method) = match &target.destination {
            Destination::Server(url) => {
                if !SCHEMES.iter().any(|s| url.starts_with(&format!("{s}://"))) {
                    return Err(JobError::Usage(format!(
                        "{}: a MySQL target is a config target, a mysql:// URL or a data directory",
                        target.destination.describe()
                    )));
                }
                (
                    Into::Server(Box::new(MysqlUrl::parse(url)?)),
                    BackupKind::MysqlDump,
                    "the dump loaded, then the binlog replayed in one client session",
                )
            }
            Destination::Directory(dir) => (
                Into::Directory(dir.clone()),
                BackupKind::MysqlPhysical,
                "the physical backup prepared in the directory, then the binlog replayed into a private server on it",
            ),
        };
        let plan = read_and_plan(&ctx.repo, &self.name, point, kind).await?;
        let summary = summary(&self.name, &plan, target, method);
        Ok(Box::new(MyRestore {
            plan,
            into,
            force: options.force,
            summary,
        }))
    }

    async fn drill(
        &self,
        ctx: &JobContext,
        request: &crate::engine::drill::DrillRequest,
    ) -> crate::engine::drill::DrillOutcome {
        super::drill::drill(self, ctx, request).await
    }
}

/// Plans `point`, reading the segment headers the planner asks for (in parallel) until it can
/// decide.
async fn read_and_plan(
    repo: &Repository,
    source: &SourceName,
    point: &RestorePoint,
    kind: BackupKind,
) -> Result<MyPlan, MyError> {
    let manifests = repo.manifests(Some(source)).await?;
    let mut coverage = BinlogCoverage {
        segments: list_segments(repo, source).await?,
        metas: BTreeMap::new(),
    };
    loop {
        match plan(source, &manifests, kind, point, &coverage)? {
            Planned::Plan(plan) => return Ok(*plan),
            Planned::Need(names) => read_metas(repo, source, names, &mut coverage.metas).await?,
        }
    }
}

fn summary(
    source: &SourceName,
    plan: &MyPlan,
    target: &RestoreTarget,
    method: &str,
) -> PlanSummary {
    PlanSummary {
        source: source.clone(),
        engine: NAME,
        point: plan.point.clone(),
        into: target.destination.describe(),
        method: method.to_owned(),
        backup: plan.backup.clone(),
        backup_kind: plan.backup_kind,
        backup_consistent_at: plan.backup_consistent_at,
        log: match (&plan.binlog_from, &plan.binlog_to) {
            (Some(first), Some(last)) => Some(LogRange {
                log: "binlog",
                first: first.clone(),
                last: last.clone(),
                objects: plan.segment_count,
            }),
            _ => None,
        },
        backup_bytes: plan.dump_bytes,
        log_bytes: plan.binlog_bytes,
        gaps: plan.gaps.clone(),
        crossings: plan.forks.clone(),
        problem: plan.problem(),
        detail: serde_json::to_value(plan).unwrap_or_default(),
    }
}

enum Into {
    Server(Box<MysqlUrl>),
    Directory(std::path::PathBuf),
}

struct MyRestore {
    plan: MyPlan,
    into: Into,
    force: bool,
    summary: PlanSummary,
}

#[async_trait]
impl PlannedRestore for MyRestore {
    fn summary(&self) -> &PlanSummary {
        &self.summary
    }

    async fn run(self: Box<Self>, ctx: &JobContext) -> Result<RestoreReport, JobError> {
        let total = self.plan.dump_bytes;
        let (done, report) = match &self.into {
            Into::Directory(dir) => {
                let work = physical_restore(
                    &ctx.repo,
                    &self.plan,
                    dir,
                    self.force,
                    ctx.concurrency,
                    ctx.progress.clone(),
                );
                let report = reporting(ctx, "restore", total, work).await?;
                (
                    format!(
                        "restored {} into {}: backup {} prepared and {} transactions of binlog replayed; start a server on it",
                        self.plan.source,
                        dir.display(),
                        self.plan.backup,
                        report.transactions
                    ),
                    report,
                )
            }
            Into::Server(url) => {
                let request = MyRestoreRequest {
                    target: url,
                    force: self.force,
                    concurrency: ctx.concurrency,
                };
                let work = restore(&ctx.repo, &self.plan, &request, ctx.progress.clone());
                let report = reporting(ctx, "restore", total, work).await?;
                (
                    format!(
                        "restored {} into {}: dump {} and {} transactions of binlog{}",
                        self.plan.source,
                        url.display(),
                        self.plan.backup,
                        report.transactions,
                        report
                            .last_gtid
                            .as_ref()
                            .map(|g| format!(", the last {g}"))
                            .unwrap_or_default()
                    ),
                    report,
                )
            }
        };
        Ok(RestoreReport {
            done,
            transactions: Some(report.transactions),
            started: false,
            last_event: report.last_event_time,
        })
    }
}
