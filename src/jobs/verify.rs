//! `verify`: the repository's structure and, with `read_data`, its bytes; packs, WAL archives and
//! binlog chains alike, in one report.

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{JobContext, JobError};
use crate::engine::mysql::segment::verify_chains;
use crate::engine::postgres::check::verify_wal;
use crate::pipeline::verify::{verify as verify_packs, Subset, VerifyReport};
use crate::repo::verify_record::{FoundProblem, VerifyRecord, VERIFY_RECORD_VERSION};

/// Checks everything the repository holds; `read_data` reads the chosen part of it back. The
/// result is recorded in the repository (`verifies/`) for audits to cite; a record that cannot be
/// written is said in the report, and the checks stand.
pub async fn verify(ctx: &JobContext, read_data: Option<Subset>) -> Result<VerifyReport, JobError> {
    let started = ctx.now();
    let mut report = check(ctx, read_data).await?;
    let record = record_of(&report, read_data, started, ctx.now());
    match ctx.repo.record_verify(&record).await {
        Ok(key) => report.record = Some(key),
        Err(e) => {
            warn!(error = %e, "the verify could not be recorded");
            report.record_failed = Some(e.to_string());
        }
    }
    Ok(report)
}

/// The part of `t` after the newest one a recorded verify read (`1/t` when none did): runs that
/// keep no state (CronJobs) read the data in turn all the same.
pub async fn next_part(ctx: &JobContext, t: u32) -> Result<Subset, JobError> {
    let records = ctx.repo.verify_records().await?;
    let last = records
        .iter()
        .filter_map(|(_, r)| {
            let part = r.read_data.as_deref()?.parse::<Subset>().ok()?;
            match part {
                Subset::Part { n, t: of } if of == t => Some((r.finished, n)),
                _ => None,
            }
        })
        .max_by_key(|(finished, _)| *finished);
    Ok(Subset::Part {
        n: last.map_or(1, |(_, n)| n % t + 1),
        t,
    })
}

fn record_of(
    report: &VerifyReport,
    read_data: Option<Subset>,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
) -> VerifyRecord {
    let n = |v: usize| v as u64;
    VerifyRecord {
        version: VERIFY_RECORD_VERSION,
        started,
        finished,
        host: crate::host::host_name(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        read_data: read_data.map(|s| s.to_string()),
        index_files: n(report.index_files),
        packs: n(report.packs),
        backups: n(report.backups),
        wal_files: n(report.wal_files),
        wal_files_read: n(report.wal_files_read),
        binlog_segments: n(report.binlog_segments),
        binlog_segments_read: n(report.binlog_segments_read),
        packs_read: n(report.packs_read),
        chunks_read: n(report.chunks_read),
        bytes_read: report.bytes_read,
        unindexed_packs: n(report.unindexed_packs),
        unknown_objects: n(report.unknown_objects.len()),
        problems: report
            .problems
            .iter()
            .map(|p| FoundProblem {
                object: p.object.clone(),
                problem: p.problem.clone(),
            })
            .collect(),
    }
}

async fn check(ctx: &JobContext, read_data: Option<Subset>) -> Result<VerifyReport, JobError> {
    let repo = &ctx.repo;
    let mut report = verify_packs(repo, read_data, ctx.concurrency).await?;
    let chains = verify_chains(repo, |seq| {
        read_data.is_some_and(|s| s.contains_number(seq))
    })
    .await?;
    report.binlog_segments = chains.segments;
    report.binlog_segments_read = chains.read;
    // The log prunes deleted on purpose are not holes.
    let pruned: Vec<_> = repo
        .prune_records()
        .await?
        .into_iter()
        .flat_map(|r| r.logs)
        .collect();
    let wal = verify_wal(repo, &report.manifests, &pruned, |key| {
        read_data.is_some_and(|s| s.contains_key(key))
    })
    .await?;
    report.wal_files = wal.files;
    report.wal_files_read = wal.read;
    for (object, problem) in chains.problems.into_iter().chain(wal.problems) {
        report.add_problem(object, problem);
    }
    report.problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(report)
}
