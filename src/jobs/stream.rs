//! `stream SOURCE`: the source's log followed until the context's shutdown: PostgreSQL's WAL over
//! a replication slot, or MySQL/MariaDB's binlog as a replica.

use super::{configured, JobContext, JobError};
use crate::config::Config;
use crate::engine::{LogReport, StreamRequest};
use crate::repo::source::SourceName;

/// Streams the log of source `name` into the repository until `ctx.shutdown` is signalled (or,
/// for MySQL with `once`, until the end of what the server has).
pub async fn stream_source(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    request: &StreamRequest,
) -> Result<LogReport, JobError> {
    configured(config, name)?.stream(ctx, request).await
}
