//! The library's entry points: back up, stream or push the log of a named source, restore it,
//! verify the repository, list what it holds; called alike by the command line and the agent.
//! A job takes one [`JobContext`] (the open repository, how much to do at once, where progress
//! goes, the clock, the shutdown signal) and the config; it opens the source's engine, and the
//! caller only prints or records what it returns.

mod audit;
mod backup;
mod catalog;
mod drill;
mod holds;
mod push;
mod restore;
mod retention;
mod stream;
mod verify;

pub use crate::context::{Clock, JobContext, JobError, Shutdown, ShutdownTrigger};
pub use crate::engine::{
    BackupRequest, LogCoverage, LogReport, LogRun, PushRequest, RestoreOptions, RestoreReport,
    StreamRequest, DEFAULT_ARCHIVE_TIMEOUT,
};
pub use crate::pipeline::backup::{BackupOptions, BackupSummary};
pub use audit::{audit, AuditRequest};
pub use backup::{backup_source, backup_stream, check_given_time};
pub use catalog::{coverage, list, recoverability, stats, Recoverability};
pub use drill::{drill, DrillAt, DrillReport};
pub use holds::{forget, hold, holds, release};
pub use push::push_log;
pub use restore::{plan_restore, restore};
pub use retention::{
    backup_time, plan_retention, plan_retention_of, prune, PruneReport, SourcePlan,
};
pub use stream::stream_source;
pub use verify::{next_part, verify};

use crate::config::Config;
use crate::engine::{self, Source};
use crate::repo::source::SourceName;

/// Opens the source `name` the config describes.
fn configured(config: &Config, name: &SourceName) -> Result<Box<dyn Source>, JobError> {
    if let Some(unresolved) = config.unresolved_sources.get(name) {
        return Err(JobError::Usage(format!(
            "source {name} cannot be reached from here: {unresolved}"
        )));
    }
    let source = config.sources.get(name).ok_or_else(|| {
        JobError::Usage(format!("source {name:?} is not in the config's sources"))
    })?;
    Ok(engine::open(name, source))
}

/// A source the config names but whose URL this process cannot complete, opened by its engine
/// alone: enough for what reads only the repository (restoring it elsewhere, its catalog).
fn unresolved(config: &Config, name: &SourceName) -> Option<Box<dyn Source>> {
    let engine = config.unresolved_sources.get(name)?.engine?;
    engine::open_unconfigured(engine, name)
}

/// Opens the source `name`: as the config describes it, else as an `engine` source (when the
/// caller knows which), else by the backups the repository holds of it.
async fn described(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    engine: Option<&str>,
) -> Result<Box<dyn Source>, JobError> {
    if let Some(source) = config.sources.get(name) {
        let opened = engine::open(name, source);
        if let Some(wanted) = engine.filter(|e| *e != opened.engine()) {
            return Err(JobError::Usage(format!(
                "source {name} is a {} source in the config, not a {wanted} one",
                opened.engine()
            )));
        }
        return Ok(opened);
    }
    if let Some(opened) = unresolved(config, name) {
        if let Some(wanted) = engine.filter(|e| *e != opened.engine()) {
            return Err(JobError::Usage(format!(
                "source {name} is a {} source in the config, not a {wanted} one",
                opened.engine()
            )));
        }
        return Ok(opened);
    }
    if let Some(engine) = engine {
        return engine::open_unconfigured(engine, name)
            .ok_or_else(|| JobError::Usage(format!("no engine is called {engine}")));
    }
    let manifests = ctx.repo.manifests(Some(name)).await?;
    described_by(config, name, manifests.iter())
}

/// Opens the source `name` as the config describes it, else by `manifests` (its backups, already
/// read).
fn described_by<'a>(
    config: &Config,
    name: &SourceName,
    manifests: impl IntoIterator<Item = &'a crate::repo::manifest::Manifest>,
) -> Result<Box<dyn Source>, JobError> {
    if let Some(source) = config.sources.get(name) {
        return Ok(engine::open(name, source));
    }
    if let Some(opened) = unresolved(config, name) {
        return Ok(opened);
    }
    crate::repo::manifest::newest(
        manifests
            .into_iter()
            .filter(|m| m.kind != crate::repo::manifest::BackupKind::Stream),
    )
    .and_then(|m| engine::open_by_kind(name, m.kind))
    .ok_or_else(|| {
        JobError::Usage(format!(
            "source {name} is not in the config, and the repository holds no database backup of it"
        ))
    })
}
