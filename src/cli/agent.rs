//! `agent`: runs every source's schedules (`sources.NAME.schedules`) until SIGTERM or SIGINT.

use clap::Args;
use heirloom_backup::agent::run::{run_agent, AgentOptions};
use heirloom_backup::jobs::{JobContext, Shutdown};

use super::{restore_command, shutdown_signal, Context, Exit};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// How long running jobs may go on after SIGTERM before they are cancelled
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = heirloom_backup::store::parse_duration)]
    grace: std::time::Duration,
}

pub async fn agent(ctx: &Context, args: &AgentArgs) -> anyhow::Result<Exit> {
    let restore_commands = ctx
        .config
        .schedules
        .keys()
        .map(|s| {
            (
                s.clone(),
                restore_command(ctx, s.as_str()).map_err(|e| format!("{e:#}")),
            )
        })
        .collect();
    let job = JobContext::new(ctx.open().await?, ctx.concurrency)
        .with_shutdown(Shutdown::on(shutdown_signal()));
    let report = run_agent(
        job,
        std::sync::Arc::new(ctx.config.clone()),
        AgentOptions {
            grace: args.grace,
            restore_commands,
        },
    )
    .await?;
    eprintln!(
        "agent stopped: {} runs started, {} succeeded, {} failed, {} skipped, {} cancelled",
        report.started, report.succeeded, report.failed, report.skipped, report.cancelled
    );
    Ok(Exit::Ok)
}
