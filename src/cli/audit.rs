//! `audit`: per source what is restorable and whether its policy holds, as JSON, Markdown or
//! HTML; exit code 4 when a check fails.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use heirloom_backup::audit::{html, markdown, Audit};
use heirloom_backup::jobs::{self, AuditRequest, JobContext};
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::restore::point::{parse_time, parse_tz};

use super::{policy_flag, Context, Exit, UsageError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Md,
    Html,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this source [default: every source of the repository and the config]
    source: Option<SourceName>,
    /// A policy to judge every source by instead of the config's: a shipped name or a file
    #[arg(long, value_name = "NAME|FILE")]
    policy: Option<String>,
    /// The report's format; JSON is the source of truth the others are rendered from
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
    /// Write the report to this file instead of stdout
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Judge as of this instant instead of now (backup, log and drill ages, the window)
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The time zone of an --at without one
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    tz: chrono_tz::Tz,
}

pub async fn audit(ctx: &Context, args: &AuditArgs) -> anyhow::Result<Exit> {
    let policy = policy_flag(args.policy.as_deref())?;
    let at = args
        .at
        .as_deref()
        .map(|t| parse_time(t, args.tz))
        .transpose()
        .map_err(UsageError)?;
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    let request = AuditRequest {
        source: args.source.clone(),
        policy,
        at,
        location: None,
    };
    let report = jobs::audit(&job, &ctx.config, &request)
        .await
        .context("auditing the repository")?;
    let text = render(&report, args.format)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("writing the audit to {}", path.display()))?;
            eprintln!("{}", summary(&report));
        }
        None => {
            outln!("{}", text.trim_end());
        }
    }
    Ok(if report.passed {
        Exit::Ok
    } else {
        Exit::Policy
    })
}

fn render(report: &Audit, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Md => markdown::render(report),
        Format::Html => html::render(report),
    })
}

/// One line for the terminal when the report goes to a file.
fn summary(report: &Audit) -> String {
    if report.passed {
        format!(
            "audit as of {}: PASSED, {} source(s)",
            report.at.to_rfc3339(),
            report.sources.len()
        )
    } else {
        format!(
            "audit as of {}: FAILED: {}",
            report.at.to_rfc3339(),
            report.failed.join(", ")
        )
    }
}
