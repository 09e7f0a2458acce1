//! `wal-push`, `binlog-push`: log files the server has closed, stored.

use super::{described, JobContext, JobError};
use crate::config::Config;
use crate::engine::{LogReport, PushRequest};
use crate::repo::source::SourceName;

/// Stores closed log files of source `name`. `engine` names the engine when the caller knows it
/// (PostgreSQL's `archive_command` runs before any backup exists, with no config to say).
pub async fn push_log(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    engine: Option<&str>,
    request: &PushRequest,
) -> Result<LogReport, JobError> {
    described(ctx, config, name, engine)
        .await?
        .push(ctx, request)
        .await
}
