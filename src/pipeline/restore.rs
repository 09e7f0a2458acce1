//! Reading a backed-up file back: ranged pack reads, every chunk opened and re-hashed, bytes written
//! in order. Nothing unverified is ever written.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use super::Concurrency;
use crate::repo::blob;
use crate::repo::crypto::Keys;
use crate::repo::ids::{pack_key, ChunkId, PackId};
use crate::repo::index::Index;
use crate::repo::manifest::{FileEntry, Manifest};
use crate::repo::{RepoError, Repository};
use crate::store::{Store, StoreError};

/// Reads of adjacent chunks in one pack are merged up to this size.
const MAX_READ: u64 = 8 * 1024 * 1024;

/// One ranged read of a pack and the chunks it covers.
#[derive(Debug)]
struct PackRead {
    pack: PackId,
    range: Range<u64>,
    /// (chunk id, offset inside the read, sealed length, plaintext length)
    chunks: Vec<(ChunkId, u32, u32, u32)>,
}

fn plan_reads(
    manifest: &Manifest,
    file: &FileEntry,
    index: &Index,
) -> Result<Vec<PackRead>, RepoError> {
    let mut reads: Vec<PackRead> = Vec::new();
    for id in &file.chunks {
        let loc = index.get(id).ok_or_else(|| {
            RepoError::corrupt(
                manifest.id.key(),
                format!("chunk {id} of {} is in no index", file.path),
            )
        })?;
        let start = u64::from(loc.offset);
        let end = start + u64::from(loc.length);
        if let Some(last) = reads.last_mut() {
            if last.pack == loc.pack
                && last.range.end == start
                && end - last.range.start <= MAX_READ
            {
                let inner = (start - last.range.start) as u32;
                last.chunks.push((*id, inner, loc.length, loc.raw_len));
                last.range.end = end;
                continue;
            }
        }
        reads.push(PackRead {
            pack: loc.pack,
            range: start..end,
            chunks: vec![(*id, 0, loc.length, loc.raw_len)],
        });
    }
    Ok(reads)
}

async fn fetch(store: Store, keys: Arc<Keys>, read: PackRead) -> Result<Vec<Bytes>, RepoError> {
    let key = pack_key(&read.pack);
    let bytes = match store.get_range(&key, read.range.clone()).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(RepoError::corrupt(&key, "pack is missing from the store"))
        }
        Err(StoreError::Truncated { expected, got, .. }) => {
            return Err(RepoError::corrupt(
                &key,
                format!(
                    "pack is truncated: asked for {expected} bytes at {}, got {got}",
                    read.range.start
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    tokio::task::spawn_blocking(move || {
        read.chunks
            .iter()
            .map(|(id, at, len, raw_len)| {
                let sealed = bytes
                    .get(*at as usize..(*at + *len) as usize)
                    .ok_or_else(|| RepoError::corrupt(&key, format!("chunk {id}: short read")))?;
                blob::open_chunk(&keys, id, sealed, *raw_len)
                    .map_err(|e| RepoError::corrupt(&key, format!("chunk {id}: {e}")))
            })
            .collect()
    })
    .await
    .map_err(|e| RepoError::Invalid(format!("decrypt task failed: {e}")))?
}

/// Writes the bytes of `file` of `manifest` to `writer`, verifying every chunk and the length.
///
/// Memory: at most `io + cpu` reads of up to 8 MiB are fetched and opened at once, and two more wait
/// for the writer.
pub async fn restore_file<W: Write + Send + 'static>(
    repo: &Repository,
    index: &Index,
    manifest: &Manifest,
    file: &FileEntry,
    writer: W,
    concurrency: Concurrency,
    progress: ProgressBar,
) -> Result<(), RepoError> {
    let reads = plan_reads(manifest, file, index)?;
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(2);
    let expected = file.size;
    let object = format!("{} ({})", manifest.id.key(), file.path);
    let writer_task = tokio::task::spawn_blocking(move || -> Result<(), RepoError> {
        let mut writer = writer;
        let mut written = 0u64;
        while let Some(chunks) = rx.blocking_recv() {
            for chunk in chunks {
                writer.write_all(&chunk).map_err(RepoError::Output)?;
                written += chunk.len() as u64;
                progress.inc(chunk.len() as u64);
            }
        }
        writer.flush().map_err(RepoError::Output)?;
        if written != expected {
            return Err(RepoError::corrupt(
                object,
                format!("restored {written} bytes, the manifest says {expected}"),
            ));
        }
        Ok(())
    });

    let store = repo.store().clone();
    let keys = repo.keys().clone();
    let mut fetched = futures::stream::iter(reads)
        .map(|read| fetch(store.clone(), keys.clone(), read))
        .buffered(concurrency.io.max(1) + concurrency.cpu.max(1));
    let mut failure = None;
    while let Some(result) = fetched.next().await {
        match result {
            Ok(chunks) => {
                if tx.send(chunks).await.is_err() {
                    break; // the writer stopped: its error is the one to report
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer_task
        .await
        .map_err(|e| RepoError::Invalid(format!("writer task failed: {e}")))?;
    match failure {
        Some(e) => Err(e),
        None => written,
    }
}
