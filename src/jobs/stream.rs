//! `stream SOURCE`: the source's log followed until a shutdown signal: PostgreSQL's WAL over a
//! replication slot, or MySQL/MariaDB's binlog as a replica, as the source's kind says.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::{JobContext, JobError};
use crate::config::{Config, EngineKind};
use crate::engine::mysql::server::MysqlUrl;
use crate::engine::mysql::stream::{stream, StreamOptions, StreamReport};
use crate::engine::postgres::stream::{stream_wal, PgStreamOptions, PgStreamReport};
use crate::repo::source::SourceName;

/// How to stream, beyond what the config says of the source. `None` takes each engine's default.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// Store what has arrived at least this often: the window of data a crash can lose.
    pub flush_interval: Option<Duration>,
    /// MySQL: store as soon as this many bytes of whole transactions wait.
    pub flush_bytes: Option<usize>,
    /// MySQL: the heartbeat asked of the server.
    pub heartbeat: Option<Duration>,
    /// MySQL: the server id to register as a replica with.
    pub replica_server_id: Option<u32>,
    /// MySQL: stop at the end of what the server has now.
    pub once: bool,
    /// PostgreSQL: where received WAL waits until it is stored.
    pub spool: Option<PathBuf>,
    /// PostgreSQL: the replication slot.
    pub slot: Option<String>,
}

/// What a streaming run stored, per engine.
#[derive(Debug, Clone)]
pub enum StreamOutcome {
    Wal(PgStreamReport),
    Binlog(Box<StreamReport>),
}

/// The shortest flush intervals each engine accepts: below them a store is written to without
/// pause.
const PG_MIN_FLUSH: Duration = Duration::from_millis(200);
const MY_MIN_FLUSH: Duration = Duration::from_millis(100);

/// Streams the log of source `name` into the repository until `shutdown` resolves (or, for MySQL
/// with `once`, until the end of what the server has).
pub async fn stream_source(
    ctx: &JobContext,
    config: &Config,
    name: &SourceName,
    request: &StreamRequest,
    shutdown: impl Future<Output = ()>,
) -> Result<StreamOutcome, JobError> {
    let source = config.sources.get(name).ok_or_else(|| {
        JobError::Usage(format!("source {name:?} is not in the config's sources"))
    })?;
    let url = source.url.as_deref().ok_or_else(|| {
        JobError::Usage(format!("sources.{name}.url is needed to stream its log"))
    })?;
    match source.kind {
        EngineKind::Postgres => {
            let mut options = PgStreamOptions::new(name);
            if let Some(interval) = request.flush_interval {
                options.flush_interval = interval.max(PG_MIN_FLUSH);
            }
            options.spool = request.spool.clone();
            if let Some(slot) = &request.slot {
                options.slot = slot.clone();
            }
            let report = stream_wal(&ctx.repo, name, url, &options, shutdown).await?;
            Ok(StreamOutcome::Wal(report))
        }
        EngineKind::Mysql => {
            let url = MysqlUrl::parse(url)?;
            let mut options = StreamOptions::new(name);
            if let Some(interval) = request.flush_interval {
                options.flush_interval = interval.max(MY_MIN_FLUSH);
            }
            if let Some(bytes) = request.flush_bytes {
                options.flush_bytes = bytes.max(1);
            }
            if let Some(heartbeat) = request.heartbeat {
                options.heartbeat = heartbeat.max(Duration::from_secs(1));
            }
            options.once = request.once;
            if let Some(id) = request.replica_server_id {
                options.replica_server_id = id;
            }
            let report = stream(&ctx.repo, name, &url, &options, shutdown).await?;
            Ok(StreamOutcome::Binlog(Box::new(report)))
        }
    }
}
