//! `list`, `stats`, log coverage: what the repository holds.

use chrono::{DateTime, Utc};

use super::{backup_time, described, described_by, JobContext, JobError};
use crate::audit::windows::windows;
use crate::config::Config;
use crate::engine::LogCoverage;
use crate::repo::manifest::Manifest;
use crate::repo::source::SourceName;
use crate::repo::stats::{stats as repo_stats, RepoStats};

/// Every backup of `source` (or of all sources), oldest first.
pub async fn list(
    ctx: &JobContext,
    source: Option<&SourceName>,
) -> Result<Vec<Manifest>, JobError> {
    Ok(ctx.repo.manifests(source.map(|s| s.as_str())).await?)
}

/// Sizes, object counts, deduplication and compression.
pub async fn stats(ctx: &JobContext) -> Result<RepoStats, JobError> {
    Ok(repo_stats(&ctx.repo).await?)
}

/// The log the repository holds of source `name`, as unbroken runs.
pub async fn coverage(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
) -> Result<LogCoverage, JobError> {
    let source = described(ctx, config, name, None).await?;
    let manifests = ctx.repo.manifests(Some(name)).await?;
    let manifests: Vec<&crate::repo::manifest::Manifest> = manifests.iter().collect();
    source.coverage(ctx, &manifests).await
}

/// How far back and how far forward a source can be restored, as the repository says now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recoverability {
    pub backups: usize,
    /// The consistency time of the newest backup.
    pub last_backup: Option<DateTime<Utc>>,
    /// The earliest instant a restore reaches: the oldest backup, or the start of the oldest
    /// point-in-time window if that is earlier.
    pub first_point: Option<DateTime<Utc>>,
    /// The latest instant a restore reaches: the end of the newest window, or the newest backup.
    pub last_point: Option<DateTime<Utc>>,
    /// When the newest drill ended, and whether it passed.
    pub last_drill: Option<(DateTime<Utc>, bool)>,
    /// When the newest drill that passed ended.
    pub last_passed_drill: Option<DateTime<Utc>>,
}

/// The backups, point-in-time windows and drills of source `name`, reduced to their bounds.
pub async fn recoverability(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
) -> Result<Recoverability, JobError> {
    let manifests = ctx.repo.manifests(Some(name)).await?;
    let mine: Vec<&Manifest> = manifests.iter().collect();
    let times: Vec<DateTime<Utc>> = mine.iter().map(|m| backup_time(m)).collect();
    let spans = if mine.is_empty() {
        Vec::new()
    } else {
        let source = described_by(config, name, mine.iter().copied())?;
        windows(&source.coverage(ctx, &mine).await?, &mine)
    };
    let drills = ctx.repo.drill_records(Some(name)).await?;
    let last_drill = drills
        .iter()
        .map(|(_, r)| (r.finished, r.passed))
        .max_by_key(|(t, _)| *t);
    let last_passed_drill = drills
        .iter()
        .filter(|(_, r)| r.passed)
        .map(|(_, r)| r.finished)
        .max();
    let starts = times.iter().copied().chain(spans.iter().map(|w| w.from));
    let ends = times.iter().copied().chain(spans.iter().map(|w| w.to));
    Ok(Recoverability {
        backups: mine.len(),
        last_backup: times.iter().copied().max(),
        first_point: starts.min(),
        last_point: ends.max(),
        last_drill,
        last_passed_drill,
    })
}
