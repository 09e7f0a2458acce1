//! `stream SOURCE`: a source's log followed into the repository until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::jobs::{stream_source, Shutdown, StreamRequest};
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::store::parse_duration;

use super::{print_log_report, shutdown_signal, Context, Exit};

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// A source from the config
    source: SourceName,
    /// Store what has arrived at least this often: the window of data a crash can lose
    /// [default: 2s for a binlog, 5s for WAL]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    flush_interval: Option<Duration>,
    /// Store as soon as this many MiB of whole transactions are waiting
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    flush_mib: usize,
    /// Heartbeat period asked of the server; a link silent for three periods is reconnected
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// The server id to register as a replica with [default: derived from the source name]
    #[arg(long, value_name = "ID")]
    replica_server_id: Option<u32>,
    /// Stop at the end of the binlog the server has now instead of following it (MySQL)
    #[arg(long)]
    once: bool,
    /// PostgreSQL: where received WAL waits until it is stored; only this user may write it
    /// [default: $TMPDIR/heirloom-UID/stream-SOURCE, mode 0700]
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// PostgreSQL: the replication slot to stream from (created if missing) [default: heirloom_SOURCE]
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Print what was stored as JSON
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Context, args: &StreamArgs) -> anyhow::Result<Exit> {
    let request = StreamRequest {
        flush_interval: args.flush_interval,
        flush_bytes: Some(args.flush_mib.max(1) << 20),
        heartbeat: Some(args.heartbeat),
        replica_server_id: args.replica_server_id,
        once: args.once,
        spool: args.spool.clone(),
        slot: args.slot.clone(),
        status: Default::default(),
    };
    let job = heirloom_backup::jobs::JobContext::new(ctx.open().await?, ctx.concurrency)
        .with_shutdown(Shutdown::on(shutdown_signal()));
    let report = stream_source(&job, &ctx.config, &args.source, &request)
        .await
        .with_context(|| format!("streaming the log of source {}", args.source))?;
    print_log_report(&args.source, &report, args.json)?;
    Ok(Exit::Ok)
}
