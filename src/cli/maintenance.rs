//! `verify` and `stats`.

use clap::Args;
use heirloom_backup::jobs::{next_part, stats as stats_job, verify as verify_job, JobContext};
use heirloom_backup::pipeline::verify::Subset;

use super::{human_bytes, print_json, Context, Exit};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also download every pack, check its hash, and decrypt and re-hash every chunk
    #[arg(long)]
    read_data: bool,
    /// With --read-data, only a deterministic part: N/T (run 1/T … T/T to cover all), next/T
    /// (the part after the last one recorded: for runs that keep no state, such as CronJobs) or P%
    #[arg(long, value_name = "N/T|next/T|P%", requires = "read_data", value_parser = parse_subset)]
    subset: Option<Wanted>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[arg(long)]
    json: bool,
}

/// A subset as given: a fixed one, or the next of `T` parts.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Fixed(Subset),
    Next(u32),
}

fn parse_subset(text: &str) -> Result<Wanted, String> {
    match text.strip_prefix("next/") {
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|t| *t > 0)
            .map(Wanted::Next)
            .ok_or_else(|| format!("{text:?}: T in next/T is a whole number above 0")),
        None => text.parse().map(Wanted::Fixed),
    }
}

pub async fn verify(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let job = JobContext::new(repo, ctx.concurrency);
    let read_data = match (args.read_data, args.subset) {
        (false, _) => None,
        (true, None) => Some(Subset::All),
        (true, Some(Wanted::Fixed(s))) => Some(s),
        (true, Some(Wanted::Next(t))) => Some(next_part(&job, t).await?),
    };
    let report = verify_job(&job, read_data).await?;
    if args.json {
        print_json(&report)?;
    } else {
        outln!(
            "checked {} index file(s), {} pack(s), {} backup(s)",
            report.index_files,
            report.packs,
            report.backups
        );
        if args.read_data {
            outln!(
                "read {} pack(s), {} chunk(s), {}",
                report.packs_read,
                report.chunks_read,
                human_bytes(report.bytes_read)
            );
        }
        if report.wal_files > 0 {
            outln!(
                "checked {} WAL file(s), read {}",
                report.wal_files,
                report.wal_files_read
            );
        }
        if report.binlog_segments > 0 {
            outln!(
                "checked {} binlog segment(s), read {}",
                report.binlog_segments,
                report.binlog_segments_read
            );
        }
        for key in &report.unknown_objects {
            eprintln!("warning: {key}: not an object of this repository's format (left alone)");
        }
        if report.unindexed_packs > 0 {
            outln!(
                "{} pack(s) are in no index (left by interrupted backups; harmless)",
                report.unindexed_packs
            );
        }
        for p in &report.problems {
            eprintln!("error: {}: {}", p.object, p.problem);
        }
        if report.ok() {
            outln!("no errors were found");
        } else {
            eprintln!("{} problem(s) found", report.problems.len());
        }
        match (&report.record, &report.record_failed) {
            (Some(key), _) => outln!("recorded in {key}"),
            (None, Some(why)) => {
                eprintln!("warning: this verify could not be recorded in the repository: {why}")
            }
            (None, None) => {}
        }
    }
    Ok(if report.ok() {
        Exit::Ok
    } else {
        Exit::Integrity
    })
}

pub async fn stats(ctx: &Context, args: &StatsArgs) -> anyhow::Result<Exit> {
    let job = JobContext::new(ctx.open().await?, ctx.concurrency);
    let s = stats_job(&job).await?;
    if args.json {
        print_json(&s)?;
        return Ok(Exit::Ok);
    }
    outln!(
        "backups            {} of {} source(s)",
        s.backups,
        s.sources
    );
    outln!(
        "logical size       {} ({} bytes)",
        human_bytes(s.logical_bytes),
        s.logical_bytes
    );
    outln!(
        "unique chunks      {} ({})",
        s.chunks,
        human_bytes(s.unique_bytes)
    );
    outln!(
        "stored chunks      {} ({} stored as deltas)",
        human_bytes(s.stored_chunk_bytes),
        s.delta_chunks
    );
    outln!(
        "packs              {} ({})",
        s.packs,
        human_bytes(s.pack_bytes)
    );
    outln!(
        "index files        {} ({})",
        s.index_files,
        human_bytes(s.index_bytes)
    );
    outln!(
        "all objects        {} ({})",
        s.objects,
        human_bytes(s.total_bytes)
    );
    outln!("deduplication      {:.2}x", s.dedup_ratio);
    outln!("compression        {:.2}x", s.compression_ratio);
    Ok(Exit::Ok)
}
