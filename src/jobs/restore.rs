//! `restore SOURCE --to TARGET --time T`: resolve the target, plan, and carry the plan out.

use super::{described, JobContext, JobError};
use crate::config::Config;
use crate::engine::{PlannedRestore, RestoreOptions, RestoreReport};
use crate::repo::source::SourceName;
use crate::restore::point::RestorePoint;
use crate::restore::target::resolve_target;

/// Plans the restore of `source` to `point` into `to` (a config target, a URL or a directory):
/// reads what it needs and decides, writing nothing. `summary()` says what it will do.
pub async fn plan_restore(
    ctx: &JobContext,
    config: &Config,
    source: &SourceName,
    to: &str,
    point: &RestorePoint,
    options: &RestoreOptions,
) -> Result<Box<dyn PlannedRestore>, JobError> {
    let target = resolve_target(config, to).map_err(JobError::Usage)?;
    // The source's engine comes from the config or its backups; it then judges the target.
    let opened = described(ctx, config, source, None).await?;
    opened.plan_restore(ctx, point, &target, options).await
}

/// Plans and carries out a restore; refused before anything is written when the plan is
/// incomplete.
pub async fn restore(
    ctx: &JobContext,
    config: &Config,
    source: &SourceName,
    to: &str,
    point: &RestorePoint,
    options: &RestoreOptions,
) -> Result<RestoreReport, JobError> {
    plan_restore(ctx, config, source, to, point, options)
        .await?
        .run(ctx)
        .await
}
