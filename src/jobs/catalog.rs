//! `list`, `stats`, log coverage: what the repository holds.

use super::{described, JobContext, JobError};
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
