//! `verify`: the repository's structure and, with `read_data`, its bytes; packs, WAL archives and
//! binlog chains alike, in one report.

use super::{JobContext, JobError};
use crate::engine::mysql::segment::verify_chains;
use crate::engine::postgres::check::verify_wal;
use crate::pipeline::verify::{verify as verify_packs, Subset, VerifyReport};

/// Checks everything the repository holds; `read_data` reads the chosen part of it back.
pub async fn verify(ctx: &JobContext, read_data: Option<Subset>) -> Result<VerifyReport, JobError> {
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
