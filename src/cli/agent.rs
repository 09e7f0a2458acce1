//! `agent`: runs every source's schedules and log streamers (`sources.NAME.schedules`) until
//! SIGTERM or SIGINT, serving metrics and health on `--listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::agent::run::{run_agent, AgentOptions};
use heirloom_backup::jobs::{JobContext, Shutdown};
use heirloom_backup::repo::Repository;
use heirloom_backup::store::metered::StoreMeter;

use super::{restore_command, shutdown_signal, Context, Exit, UsageError};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// How long running jobs may go on after SIGTERM before they are cancelled; streamers store
    /// what they hold within it too
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = heirloom_backup::store::parse_duration)]
    grace: std::time::Duration,
    /// Where to serve /metrics, /healthz and /readyz (`none`: nowhere)
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:9847", value_parser = parse_listen)]
    listen: Listen,
    /// Run only these sources' schedules and streamers, and report only them (repeatable)
    #[arg(long = "source", value_name = "NAME")]
    sources: Vec<heirloom_backup::repo::source::SourceName>,
    /// Run no job and no streamer: only serve the metrics and health of the sources (what the
    /// repository holds of them), beside CronJobs that run the jobs
    #[arg(long)]
    monitor: bool,
}

#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "none" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address such as 0.0.0.0:9847 (or none)"))
}

pub async fn agent(ctx: &Context, args: &AgentArgs) -> anyhow::Result<Exit> {
    let mut config = ctx.config.clone();
    if let Some(unknown) = args.sources.iter().find(|s| !config.declares(s)) {
        return Err(UsageError(format!("--source {unknown}: not a source of the config")).into());
    }
    if !args.sources.is_empty() {
        config.schedules.retain(|s, _| args.sources.contains(s));
    }
    if args.monitor {
        if args.listen.0.is_none() {
            return Err(UsageError("--monitor serves metrics: it needs --listen".into()).into());
        }
        config.schedules.clear();
    }
    let monitored = if args.sources.is_empty() {
        config.source_names().cloned().collect()
    } else {
        args.sources.clone()
    };
    let restore_commands = config
        .schedules
        .keys()
        .map(|s| {
            (
                s.clone(),
                restore_command(ctx, s.as_str()).map_err(|e| format!("{e:#}")),
            )
        })
        .collect();
    let meter = Arc::new(StoreMeter::default());
    let (store, settings) = ctx.store()?;
    let store = store.metered(meter.clone());
    let location = store.location();
    let repo = Repository::open(store, &settings.load_key()?)
        .await
        .with_context(|| format!("opening the repository at {location}"))?;
    let job = JobContext::new(repo, ctx.concurrency).with_shutdown(Shutdown::on(shutdown_signal()));
    let report = run_agent(
        job,
        Arc::new(config),
        AgentOptions {
            grace: args.grace,
            restore_commands,
            listen: args.listen.0,
            store_meter: Some(meter),
            backoff: Default::default(),
            monitored,
        },
    )
    .await?;
    eprintln!(
        "agent stopped: {} runs started, {} succeeded, {} failed, {} skipped, {} cancelled; streamers restarted {} times",
        report.started,
        report.succeeded,
        report.failed,
        report.skipped,
        report.cancelled,
        report.stream_restarts
    );
    Ok(Exit::Ok)
}
