//! `hold`, `release`, `forget`: what keeps a backup, and removing one that nothing keeps.

use chrono::{DateTime, Utc};

use super::{JobContext, JobError};
use crate::repo::holds::{HoldRecord, HoldState, ReleaseRecord};
use crate::repo::manifest::{BackupId, Manifest};

/// Puts a hold on backup `id`, from `ctx.now()` until `until` (or until released).
pub async fn hold(
    ctx: &JobContext,
    id: &BackupId,
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> Result<HoldRecord, JobError> {
    let manifest = ctx.repo.manifest(id).await?;
    Ok(ctx
        .repo
        .add_hold(&manifest, reason, until, ctx.now())
        .await?)
}

/// Ends every hold on backup `id` active now; refused when there is none.
pub async fn release(ctx: &JobContext, id: &BackupId) -> Result<Vec<ReleaseRecord>, JobError> {
    ctx.repo.manifest(id).await?;
    let released = ctx.repo.release_holds(id, ctx.now()).await?;
    if released.is_empty() {
        return Err(JobError::Usage(format!(
            "backup {id} has no hold to release"
        )));
    }
    Ok(released)
}

/// Every hold, with its release if it has one.
pub async fn holds(ctx: &JobContext) -> Result<Vec<HoldState>, JobError> {
    Ok(ctx.repo.holds().await?)
}

/// Removes backup `id`'s manifest (its data stays for garbage collection); refused while a hold
/// keeps it.
pub async fn forget(ctx: &JobContext, id: &BackupId) -> Result<Manifest, JobError> {
    let now = ctx.now();
    let held: Vec<String> = ctx
        .repo
        .holds()
        .await?
        .into_iter()
        .filter(|h| &h.hold.backup == id && h.active_at(now))
        .map(|h| {
            format!(
                "{} ({}{})",
                h.hold.id,
                h.hold.reason,
                h.hold
                    .until
                    .map(|u| format!(", until {}", u.to_rfc3339()))
                    .unwrap_or_default()
            )
        })
        .collect();
    if !held.is_empty() {
        return Err(JobError::Usage(format!(
            "backup {id} is held: {}; `release {id}` first",
            held.join("; ")
        )));
    }
    Ok(ctx.repo.forget(id).await?)
}
