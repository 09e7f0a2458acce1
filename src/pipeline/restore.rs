//! Reading a backed-up file back: ranged pack reads, every chunk opened and re-hashed, bytes written
//! in order. Nothing unverified is ever written.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use crate::progress::Progress;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::Concurrency;
use crate::repo::blob;
use crate::repo::crypto::Keys;
use crate::repo::ids::{ChunkId, PackId};
use crate::repo::index::{ChunkLocation, Index};
use crate::repo::layout::pack_key;
use crate::repo::manifest::{FileEntry, Manifest};
use crate::repo::{RepoError, Repository};
use crate::store::{Store, StoreError};

/// Reads of adjacent chunks in one pack are merged up to this many stored bytes, and this many bytes
/// once opened (compressed chunks grow), so that memory stays bounded whatever the data.
const MAX_READ: u64 = 8 * 1024 * 1024;
const MAX_READ_PLAIN: u64 = 16 * 1024 * 1024;

/// One ranged read of a pack and the chunks it covers.
#[derive(Debug)]
struct PackRead {
    pack: PackId,
    range: Range<u64>,
    /// (chunk id, offset inside the read, sealed length, plaintext length, base of a delta)
    chunks: Vec<(ChunkId, u32, u32, u32, Option<ChunkId>)>,
    /// The plaintext bytes of those chunks.
    plain: u64,
    /// The bases of the delta chunks among them, and where those are.
    bases: Vec<(ChunkId, ChunkLocation)>,
}

impl PackRead {
    fn needs_base(
        &mut self,
        index: &Index,
        file: &str,
        id: &ChunkId,
        backup: &str,
    ) -> Result<(), RepoError> {
        let Some(base) = index.base_of(id) else {
            return Ok(());
        };
        if self.bases.iter().any(|(b, _)| *b == base) {
            return Ok(());
        }
        let location = index.get(&base).ok_or_else(|| {
            RepoError::corrupt(
                backup,
                format!("chunk {id} of {file} is a delta of chunk {base}, which is in no index"),
            )
        })?;
        self.plain += u64::from(location.raw_len);
        self.bases.push((base, location));
        Ok(())
    }
}

fn plan_reads(
    manifest: &Manifest,
    files: &[FileEntry],
    index: &Index,
) -> Result<Vec<PackRead>, RepoError> {
    let mut reads: Vec<PackRead> = Vec::new();
    for (file, id) in files
        .iter()
        .flat_map(|f| f.chunks.iter().map(move |c| (f, c)))
    {
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
                // A delta's base, read along with it, counts too.
                && last.plain + u64::from(loc.raw_len) * (1 + u64::from(loc.base.is_some()))
                    <= MAX_READ_PLAIN
            {
                last.plain += u64::from(loc.raw_len);
                let inner = (start - last.range.start) as u32;
                last.chunks
                    .push((*id, inner, loc.length, loc.raw_len, loc.base));
                last.range.end = end;
                last.needs_base(index, &file.path, id, &manifest.id.key())?;
                continue;
            }
        }
        let mut read = PackRead {
            pack: loc.pack,
            range: start..end,
            chunks: vec![(*id, 0, loc.length, loc.raw_len, loc.base)],
            plain: u64::from(loc.raw_len),
            bases: Vec::new(),
        };
        read.needs_base(index, &file.path, id, &manifest.id.key())?;
        reads.push(read);
    }
    Ok(reads)
}

/// One ranged read of a pack, with the store's failures named as the pack's.
async fn get_range(store: &Store, key: &str, range: Range<u64>) -> Result<Bytes, RepoError> {
    match store.get_range(key, range.clone()).await {
        Ok(b) => Ok(b),
        Err(StoreError::NotFound { .. }) => {
            Err(RepoError::corrupt(key, "pack is missing from the store"))
        }
        Err(StoreError::Truncated { expected, got, .. }) => Err(RepoError::corrupt(
            key,
            format!(
                "pack is truncated: asked for {expected} bytes at {}, got {got}",
                range.start
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whole chunks (the bases delta chunks need), read, opened and verified at once; adjacent ones in
/// one ranged read, as the bases of a file's consecutive chunks were stored side by side.
pub(crate) async fn read_bases(
    store: &Store,
    keys: &Arc<Keys>,
    bases: &[(ChunkId, ChunkLocation)],
) -> Result<HashMap<ChunkId, Bytes>, RepoError> {
    let mut sorted: Vec<&(ChunkId, ChunkLocation)> = bases.iter().collect();
    sorted.sort_by_key(|(_, l)| (l.pack, l.offset));
    let mut groups: Vec<Vec<&(ChunkId, ChunkLocation)>> = Vec::new();
    for base in sorted {
        match groups.last_mut() {
            Some(group)
                if group.last().is_some_and(|(_, l)| {
                    l.pack == base.1.pack && l.offset + l.length == base.1.offset
                }) && u64::from(base.1.offset + base.1.length - group[0].1.offset)
                    <= MAX_READ =>
            {
                group.push(base)
            }
            _ => groups.push(vec![base]),
        }
    }
    let reads = groups.into_iter().map(|group| async move {
        let first = &group[0].1;
        let key = pack_key(&first.pack);
        let start = u64::from(first.offset);
        let end = group
            .last()
            .map_or(start, |(_, l)| u64::from(l.offset + l.length));
        let bytes = get_range(store, &key, start..end).await?;
        let group: Vec<(ChunkId, ChunkLocation)> = group.into_iter().copied().collect();
        let keys = keys.clone();
        tokio::task::spawn_blocking(move || {
            group
                .iter()
                .map(|(id, l)| {
                    let at = (u64::from(l.offset) - start) as usize;
                    let sealed = bytes.get(at..at + l.length as usize).ok_or_else(|| {
                        RepoError::corrupt(&key, format!("chunk {id}: short read"))
                    })?;
                    blob::open_chunk(&keys, id, sealed, l.raw_len)
                        .map(|plain| (*id, plain))
                        .map_err(|e| RepoError::corrupt(&key, format!("chunk {id}: {e}")))
                })
                .collect::<Result<Vec<_>, RepoError>>()
        })
        .await
        .map_err(|e| RepoError::Internal(format!("decrypt task failed: {e}")))?
    });
    let opened = futures::future::try_join_all(reads).await?;
    Ok(opened.into_iter().flatten().collect())
}

async fn fetch(store: Store, keys: Arc<Keys>, read: PackRead) -> Result<Vec<Bytes>, RepoError> {
    let key = pack_key(&read.pack);
    let (bytes, bases) = futures::future::try_join(
        get_range(&store, &key, read.range.clone()),
        read_bases(&store, &keys, &read.bases),
    )
    .await?;
    tokio::task::spawn_blocking(move || {
        read.chunks
            .iter()
            .map(|(id, at, len, raw_len, base)| {
                let sealed = bytes
                    .get(*at as usize..(*at + *len) as usize)
                    .ok_or_else(|| RepoError::corrupt(&key, format!("chunk {id}: short read")))?;
                let base = base
                    .as_ref()
                    .and_then(|b| bases.get(b).map(|plain| (b, &plain[..])));
                blob::open_chunk_with(&keys, id, sealed, *raw_len, base)
                    .map_err(|e| RepoError::corrupt(&key, format!("chunk {id}: {e}")))
            })
            .collect()
    })
    .await
    .map_err(|e| RepoError::Internal(format!("decrypt task failed: {e}")))?
}

/// Where restored files go: each file of a backup in turn.
pub trait FileSink: Send + 'static {
    /// Opens the writer for the next file.
    fn open(&mut self, file: &FileEntry) -> std::io::Result<Box<dyn Write + Send>>;
    /// Ends a file whose bytes are all written (flush, fsync, permissions).
    fn close(&mut self, file: &FileEntry, writer: Box<dyn Write + Send>) -> std::io::Result<()>;
}

/// A sink for one file: the given writer.
struct OneWriter<W>(Option<W>);

impl<W: Write + Send + 'static> FileSink for OneWriter<W> {
    fn open(&mut self, _: &FileEntry) -> std::io::Result<Box<dyn Write + Send>> {
        match self.0.take() {
            Some(w) => Ok(Box::new(w)),
            None => Err(std::io::Error::other(
                "a single-file sink was asked for a second file",
            )),
        }
    }
    fn close(&mut self, _: &FileEntry, mut writer: Box<dyn Write + Send>) -> std::io::Result<()> {
        writer.flush()
    }
}

/// Writes the bytes of `file` of `manifest` to `writer`, verifying every chunk and the length.
pub async fn restore_file<W: Write + Send + 'static>(
    repo: &Repository,
    index: &Index,
    manifest: &Manifest,
    file: &FileEntry,
    writer: W,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<(), RepoError> {
    let files = std::slice::from_ref(file);
    restore_files(
        repo,
        index,
        manifest,
        files,
        OneWriter(Some(writer)),
        concurrency,
        progress,
    )
    .await
}

/// Writes `files` (of `manifest`) into `sink` in order, verifying every chunk and each file's length.
///
/// Memory: at most `io + cpu` reads (8 MiB stored, 16 MiB opened, at most) are fetched and opened
/// at once, and two more wait for the writer.
pub async fn restore_files<S: FileSink>(
    repo: &Repository,
    index: &Index,
    manifest: &Manifest,
    files: &[FileEntry],
    sink: S,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<(), RepoError> {
    let reads = plan_reads(manifest, files, index)?;
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(2);
    let plan: Vec<FileEntry> = files.to_vec();
    let backup = manifest.id.key();
    let writer_task =
        tokio::task::spawn_blocking(move || write_files(plan, rx, sink, &backup, progress));

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
        .map_err(|e| RepoError::Internal(format!("writer task failed: {e}")))?;
    match failure {
        Some(e) => Err(e),
        None => written,
    }
}

/// The writer thread: takes verified chunks in order and spreads them over the files.
fn write_files<S: FileSink>(
    files: Vec<FileEntry>,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
    mut sink: S,
    backup: &str,
    progress: Progress,
) -> Result<(), RepoError> {
    let mut pending = std::collections::VecDeque::<Bytes>::new();
    for file in &files {
        let mut writer = sink.open(file).map_err(|e| file_error(file, e))?;
        let mut written = 0u64;
        for _ in 0..file.chunks.len() {
            let chunk = loop {
                if let Some(c) = pending.pop_front() {
                    break c;
                }
                match rx.blocking_recv() {
                    Some(batch) => pending.extend(batch),
                    // The reader stopped early; its error is the one reported.
                    None => return Ok(()),
                }
            };
            writer.write_all(&chunk).map_err(|e| file_error(file, e))?;
            written += chunk.len() as u64;
            progress.inc(chunk.len() as u64);
        }
        sink.close(file, writer).map_err(|e| file_error(file, e))?;
        if written != file.size {
            return Err(RepoError::corrupt(
                backup,
                format!(
                    "{}: restored {written} bytes, the manifest says {}",
                    file.path, file.size
                ),
            ));
        }
    }
    Ok(())
}

fn file_error(file: &FileEntry, e: std::io::Error) -> RepoError {
    if file.path == "-" {
        RepoError::Output(e)
    } else {
        RepoError::Output(std::io::Error::new(e.kind(), format!("{}: {e}", file.path)))
    }
}
