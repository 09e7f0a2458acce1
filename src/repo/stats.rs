//! Repository statistics: what is stored, and what deduplication and compression saved.

use super::layout::ObjectKind;
use serde::Serialize;

use super::{RepoError, Repository};

#[derive(Debug, Serialize)]
pub struct RepoStats {
    pub backups: usize,
    pub sources: usize,
    /// Bytes of all backups as they were read (what restores would write).
    pub logical_bytes: u64,
    /// Bytes of the distinct chunks, before compression.
    pub unique_bytes: u64,
    /// Bytes of the distinct chunks as stored (compressed, sealed).
    pub stored_chunk_bytes: u64,
    pub chunks: usize,
    /// Distinct chunks stored as deltas of others.
    pub delta_chunks: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    pub index_files: usize,
    pub index_bytes: u64,
    /// All objects and bytes in the store (packs, indexes, manifests, keys, locks).
    pub objects: usize,
    pub total_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / stored chunk bytes.
    pub compression_ratio: f64,
}

pub async fn stats(repo: &Repository) -> Result<RepoStats, RepoError> {
    let manifests = repo.manifests(None).await?;
    let index = repo.load_index().await?;
    let all = repo.store().list("").await?;
    let sum = |prefix: &str| -> (usize, u64) {
        all.iter()
            .filter(|o| o.key.starts_with(prefix))
            .fold((0, 0), |(n, b), o| (n + 1, b + o.size))
    };
    let (packs, pack_bytes) = sum(ObjectKind::Pack.prefix());
    let (index_files, index_bytes) = sum(ObjectKind::Index.prefix());
    let logical_bytes: u64 = manifests.iter().map(|m| m.size()).sum();
    let unique_bytes = index.unique_raw_bytes();
    let stored_chunk_bytes = index.unique_stored_bytes();
    let mut sources: Vec<&str> = manifests.iter().map(|m| m.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Ok(RepoStats {
        backups: manifests.len(),
        sources: sources.len(),
        logical_bytes,
        unique_bytes,
        stored_chunk_bytes,
        chunks: index.chunk_count(),
        delta_chunks: index.delta_count(),
        packs,
        pack_bytes,
        index_files,
        index_bytes,
        objects: all.len(),
        total_bytes: all.iter().map(|o| o.size).sum(),
        dedup_ratio: ratio(logical_bytes, unique_bytes),
        compression_ratio: ratio(unique_bytes, stored_chunk_bytes),
    })
}
