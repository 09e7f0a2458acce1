//! Backing up one byte stream into the repository.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::progress::Progress;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::Concurrency;
use crate::repo::blob;
use crate::repo::chunker::{Chunker, FixedChunker};
use crate::repo::ids::ChunkId;
use crate::repo::index::{Index, IndexedPack};
use crate::repo::layout::pack_key;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::manifest::{BackupId, BackupKind, FileEntry, Manifest, TimeGiven};
use crate::repo::pack::{FinishedPack, PackWriter};
use crate::repo::source::SourceName;
use crate::repo::{RepoError, Repository};
use crate::store::PutPayload;

/// An index file is written after this many packs, so an interrupted backup's uploads are reused.
const INDEX_EVERY_PACKS: usize = 8;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub source: SourceName,
    pub labels: BTreeMap<String, String>,
    pub concurrency: Concurrency,
    /// Record a backup of nothing. Off by default: an empty stream is far more often a producer
    /// that failed before writing (`false | heirloom-backup backup --stdin`) than an empty dump.
    pub allow_empty: bool,
    /// The time to record the backup as taken at instead of now (history imported from another
    /// tool); `None`: now. The manifest then records when it really ran.
    pub time: Option<DateTime<Utc>>,
}

/// What a backup did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupSummary {
    pub id: BackupId,
    pub source: SourceName,
    pub size: u64,
    pub chunks: usize,
    pub new_chunks: usize,
    /// New chunks stored as deltas of an earlier backup's chunks.
    pub delta_chunks: usize,
    /// Stored bytes this backup added (sealed chunks in new packs).
    pub added_bytes: u64,
    pub packs: usize,
    pub seconds: f64,
}

enum Sealed {
    /// Already in the repository, or sealed by another worker of this backup.
    Known { id: ChunkId },
    New {
        id: ChunkId,
        sealed: Bytes,
        raw_len: u32,
        base: Option<ChunkId>,
    },
}

/// How a source's files are cut into chunks, and what earlier bytes new chunks may be encoded
/// against.
#[derive(Debug, Clone, Default)]
pub struct Cutting {
    /// Fixed-size chunks (the repository's average chunk size) instead of content-defined ones: for
    /// files whose bytes never shift, like PostgreSQL's page files.
    pub fixed: bool,
    /// The chunk lists of the same paths in an earlier backup of the source. With fixed cutting and
    /// a format 2 or later repository, a new chunk is stored as a delta of the chunk at the same place there
    /// (of that chunk's base, when it is a delta itself), so a page file whose pages each changed a
    /// little costs little.
    pub previous: Option<Arc<HashMap<String, Vec<ChunkId>>>>,
}

impl Cutting {
    /// Fixed cutting, with deltas against `previous`'s files.
    pub fn pages(previous: Option<&Manifest>) -> Self {
        Self {
            fixed: true,
            previous: previous.map(|m| {
                Arc::new(
                    m.files
                        .iter()
                        .map(|f| (f.path.clone(), f.chunks.clone()))
                        .collect(),
                )
            }),
        }
    }
}

/// One file to back up: its path inside the backup, its mode, and where its bytes come from.
pub struct SourceFile {
    pub path: String,
    pub mode: Option<u32>,
    pub reader: Box<dyn Read + Send>,
}

/// Receives each file of a source: its path, mode and bytes; answers whether to go on.
pub type VisitFile<'a> = dyn FnMut(&str, Option<u32>, &mut dyn Read) -> std::io::Result<bool> + 'a;

/// The files a backup reads, in order, on a blocking thread. An error ends the backup.
pub trait FileSource: Send + 'static {
    /// Hands each file to `each` in order.
    fn visit(self: Box<Self>, each: &mut VisitFile<'_>) -> std::io::Result<()>;
}

/// Any iterator of files is a source.
impl<I> FileSource for I
where
    I: Iterator<Item = std::io::Result<SourceFile>> + Send + 'static,
{
    fn visit(self: Box<Self>, each: &mut VisitFile<'_>) -> std::io::Result<()> {
        for file in *self {
            let mut file = file?;
            if !each(&file.path, file.mode, &mut file.reader)? {
                break;
            }
        }
        Ok(())
    }
}

/// The files as stored, and what storing them cost.
#[derive(Debug)]
pub struct StoredFiles {
    pub files: Vec<FileEntry>,
    pub new_chunks: usize,
    pub delta_chunks: usize,
    pub added_bytes: u64,
    pub packs: usize,
}

/// Backs up everything `reader` yields as one stream, and writes its manifest.
pub async fn backup_stream<R: Read + Send + 'static>(
    repo: &Repository,
    reader: R,
    options: &BackupOptions,
    progress: Progress,
    now: DateTime<Utc>,
) -> Result<BackupSummary, RepoError> {
    let clock = std::time::Instant::now();
    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "backup", now).await?;
    let source = Box::new(std::iter::once(Ok(SourceFile {
        path: "-".into(),
        mode: None,
        reader: Box::new(reader),
    })));
    let result = async {
        let stored = store_files(
            repo,
            source,
            options.concurrency,
            progress,
            &Cutting::default(),
        )
        .await?;
        let size: u64 = stored.files.iter().map(|f| f.size).sum();
        if size == 0 && !options.allow_empty {
            return Err(RepoError::EmptyInput);
        }
        let mut manifest = repo.new_manifest(
            &options.source,
            BackupKind::Stream,
            options.labels.clone(),
            options.time.unwrap_or(now),
        );
        if options.time.is_some() {
            manifest.time_given = Some(TimeGiven {
                ran_started: now,
                ran_finished: now,
            });
        }
        commit_backup(repo, &lease, manifest, stored, clock).await
    }
    .await;
    lease.release().await;
    result
}

/// Completes a backup whose files are stored: writes its manifest, the last object of a backup, and
/// sums up what it did. Refused when `lease` has run out: garbage collection may have deleted a
/// pack the backup counted on since.
pub async fn commit_backup(
    repo: &Repository,
    lease: &Lease,
    mut manifest: Manifest,
    stored: StoredFiles,
    clock: std::time::Instant,
) -> Result<BackupSummary, RepoError> {
    manifest.files = stored.files;
    let took = chrono::Duration::from_std(clock.elapsed()).unwrap_or_default();
    manifest.finished = manifest.started + took;
    if let Some(ran) = manifest.time_given.as_mut() {
        ran.ran_finished = ran.ran_started + took;
    }
    manifest.version = manifest.needed_version();
    lease.ensure_held().await?;
    repo.save_manifest(&manifest).await?;
    let summary = BackupSummary {
        id: manifest.id.clone(),
        source: manifest.source.clone(),
        size: manifest.size(),
        chunks: manifest.chunk_count(),
        new_chunks: stored.new_chunks,
        delta_chunks: stored.delta_chunks,
        added_bytes: stored.added_bytes,
        packs: stored.packs,
        seconds: clock.elapsed().as_secs_f64(),
    };
    info!(id = %summary.id, kind = ?manifest.kind, size = summary.size, new_chunks = summary.new_chunks, delta_chunks = summary.delta_chunks, "backup complete");
    Ok(summary)
}

/// Stores the files `source` yields: chunks them, seals and packs what the repository lacks, and
/// writes the packs and their index. The caller holds a lease and writes the manifest afterwards.
pub async fn store_files(
    repo: &Repository,
    source: Box<dyn FileSource>,
    concurrency: Concurrency,
    progress: Progress,
    cutting: &Cutting,
) -> Result<StoredFiles, RepoError> {
    let index = Arc::new(repo.load_index().await?);
    debug!(chunks = index.chunk_count(), "index loaded");
    let cpu = concurrency.cpu.max(1);
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>, Option<ChunkId>)>(cpu);

    // Stage 1, on a blocking thread: read each file and cut it into chunks, each with the chunk at
    // its place in the previous backup.
    let params = repo.config().chunker;
    let seed = repo.keys().chunker_seed();
    let fixed = cutting.fixed.then_some(params.avg_size as usize);
    let previous = cutting
        .previous
        .clone()
        .filter(|_| cutting.fixed && repo.config().allows_deltas());
    let reader_task = tokio::task::spawn_blocking(
        move || -> std::io::Result<Vec<(String, Option<u32>, u64)>> {
            let mut files = Vec::new();
            source.visit(&mut |path, mode, reader| {
                let number = files.len();
                let mut size = 0u64;
                let earlier = previous.as_ref().and_then(|p| p.get(path));
                let chunks: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>>> = match fixed {
                    Some(size) => Box::new(FixedChunker::new(reader, size)),
                    None => Box::new(Chunker::new(reader, &params, seed)),
                };
                for (place, chunk) in chunks.enumerate() {
                    let chunk = chunk.map_err(|e| {
                        std::io::Error::new(e.kind(), format!("reading {path}: {e}"))
                    })?;
                    size += chunk.len() as u64;
                    progress.inc(chunk.len() as u64);
                    let reference = earlier.and_then(|e| e.get(place)).copied();
                    if tx.blocking_send((number, chunk, reference)).is_err() {
                        return Ok(false); // the pipeline stopped; its error is reported there
                    }
                }
                files.push((path.to_owned(), mode, size));
                Ok(true)
            })?;
            Ok(files)
        },
    );

    // Stage 2, on the blocking pool: hash, and seal what is new, in order, several chunks at a time.
    let claimed: Arc<Mutex<HashSet<ChunkId>>> = Arc::default();
    let level = repo.config().compression.level;
    let sealed = tokio_stream_from(rx)
        .map(|(number, data, reference)| {
            let keys = repo.keys().clone();
            let index = index.clone();
            let claimed = claimed.clone();
            let store = repo.store().clone();
            async move {
                let Some(reference) = reference else {
                    let sealed = tokio::task::spawn_blocking(move || {
                        seal_one(&keys, &index, &claimed, data, level)
                    })
                    .await?;
                    return Ok((number, sealed));
                };
                let (hashed, data) = {
                    let (keys, index, claimed) = (keys.clone(), index.clone(), claimed.clone());
                    tokio::task::spawn_blocking(move || {
                        (hash_and_claim(&keys, &index, &claimed, &data), data)
                    })
                    .await?
                };
                let (id, fresh) = hashed;
                if !fresh {
                    return Ok((number, Sealed::Known { id }));
                }
                let base = delta_base(&store, &keys, &index, &id, reference).await;
                let sealed =
                    tokio::task::spawn_blocking(move || seal_new(&keys, id, &data, level, base))
                        .await?;
                Ok((number, sealed))
            }
        })
        .buffered(cpu * 3);

    // Stage 3: pack in order, upload packs `io` at a time.
    let mut packer = Packer::new(repo, concurrency.io.max(1));
    let mut chunk_ids: Vec<Vec<ChunkId>> = Vec::new();
    let mut new_chunks = 0usize;
    let mut delta_chunks = 0usize;
    let pipeline_result: Result<(), RepoError> = async {
        futures::pin_mut!(sealed);
        while let Some(joined) = sealed.next().await {
            let (number, item) = joined.map_err(|e: tokio::task::JoinError| {
                RepoError::Internal(format!("sealing task failed: {e}"))
            })?;
            if chunk_ids.len() <= number {
                chunk_ids.resize_with(number + 1, Vec::new);
            }
            match item {
                Sealed::Known { id } => chunk_ids[number].push(id),
                Sealed::New {
                    id,
                    sealed,
                    raw_len,
                    base,
                } => {
                    chunk_ids[number].push(id);
                    new_chunks += 1;
                    delta_chunks += usize::from(base.is_some());
                    packer.add(id, sealed, raw_len, base).await?;
                }
            }
        }
        packer.finish().await
    }
    .await;

    if let Err(e) = pipeline_result {
        // Keep what did reach the store usable for the retry.
        packer.save_index_best_effort().await;
        reader_task.abort();
        return Err(e);
    }
    let read = reader_task
        .await
        .map_err(|e| RepoError::Internal(format!("reader task failed: {e}")))?
        .map_err(RepoError::Input)?;
    chunk_ids.resize_with(read.len(), Vec::new);
    let files = read
        .into_iter()
        .zip(chunk_ids)
        .map(|((path, mode, size), chunks)| FileEntry {
            path,
            size,
            mode,
            chunks,
        })
        .collect();
    Ok(StoredFiles {
        files,
        new_chunks,
        delta_chunks,
        added_bytes: packer.added_bytes,
        packs: packer.packs_uploaded,
    })
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn seal_one(
    keys: &crate::repo::crypto::Keys,
    index: &Index,
    claimed: &Mutex<HashSet<ChunkId>>,
    data: Vec<u8>,
    level: i32,
) -> Sealed {
    match hash_and_claim(keys, index, claimed, &data) {
        (id, false) => Sealed::Known { id },
        (id, true) => seal_new(keys, id, &data, level, None),
    }
}

/// The chunk's id, and whether this backup is the one to store it (not when the repository has it
/// or another worker of this backup claimed it first).
fn hash_and_claim(
    keys: &crate::repo::crypto::Keys,
    index: &Index,
    claimed: &Mutex<HashSet<ChunkId>>,
    data: &[u8],
) -> (ChunkId, bool) {
    let id = keys.chunk_id(data);
    if index.contains(&id) {
        return (id, false);
    }
    let fresh = claimed.lock().map(|mut set| set.insert(id)).unwrap_or(true);
    (id, fresh)
}

/// A whole chunk to encode a new chunk against, with its verified plaintext and stored length: the
/// reference itself, or its base when it is a delta. `None` when there is none to use; a base that
/// cannot be read costs the delta, never the backup.
async fn delta_base(
    store: &crate::store::Store,
    keys: &Arc<crate::repo::crypto::Keys>,
    index: &Index,
    id: &ChunkId,
    reference: ChunkId,
) -> Option<(ChunkId, Bytes, u32)> {
    let base = index.base_of(&reference).unwrap_or(reference);
    let location = index.get(&base)?;
    if base == *id || location.base.is_some() {
        return None;
    }
    match super::restore::read_bases(store, keys, &[(base, location)]).await {
        Ok(mut opened) => Some((base, opened.remove(&base)?, location.length)),
        Err(e) => {
            warn!(chunk = %base, error = %e, "an earlier chunk could not be read; storing the new one whole");
            None
        }
    }
}

/// Seals a chunk this backup stores: as a delta of `base` when that is smaller than the base
/// itself (a delta that saves nothing is not worth the dependency), else whole.
fn seal_new(
    keys: &crate::repo::crypto::Keys,
    id: ChunkId,
    data: &[u8],
    level: i32,
    base: Option<(ChunkId, Bytes, u32)>,
) -> Sealed {
    let raw_len = data.len() as u32;
    if let Some((base, plain, base_len)) = base {
        if let Some(delta) = blob::seal_delta(keys, &id, data, level, &base, &plain) {
            if delta.len() < base_len as usize {
                return Sealed::New {
                    id,
                    sealed: Bytes::from(delta),
                    raw_len,
                    base: Some(base),
                };
            }
        }
    }
    Sealed::New {
        id,
        sealed: Bytes::from(blob::seal_chunk(keys, &id, data, level)),
        raw_len,
        base: None,
    }
}

/// Fills packs and uploads them; writes index files for uploaded packs.
struct Packer<'a> {
    repo: &'a Repository,
    current: PackWriter,
    uploads: JoinSet<Result<IndexedPack, RepoError>>,
    max_uploads: usize,
    unindexed: Vec<IndexedPack>,
    added_bytes: u64,
    packs_uploaded: usize,
}

impl<'a> Packer<'a> {
    fn new(repo: &'a Repository, max_uploads: usize) -> Self {
        Self {
            repo,
            current: PackWriter::new(),
            uploads: JoinSet::new(),
            max_uploads,
            unindexed: Vec::new(),
            added_bytes: 0,
            packs_uploaded: 0,
        }
    }

    async fn add(
        &mut self,
        id: ChunkId,
        sealed: Bytes,
        raw_len: u32,
        base: Option<ChunkId>,
    ) -> Result<(), RepoError> {
        self.added_bytes += sealed.len() as u64;
        self.current.add(id, sealed, raw_len, base);
        if self.current.len() >= self.repo.config().pack.target_size as usize {
            self.seal_pack().await?;
        }
        Ok(())
    }

    async fn seal_pack(&mut self) -> Result<(), RepoError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let writer = std::mem::take(&mut self.current);
        let keys = self.repo.keys().clone();
        let pack = tokio::task::spawn_blocking(move || writer.finish(&keys))
            .await
            .map_err(|e| RepoError::Internal(format!("pack task failed: {e}")))?;
        while self.uploads.len() >= self.max_uploads {
            self.collect_one().await?;
        }
        let store = self.repo.store().clone();
        self.uploads.spawn(upload(store, pack));
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), RepoError> {
        if let Some(joined) = self.uploads.join_next().await {
            let pack =
                joined.map_err(|e| RepoError::Internal(format!("upload task failed: {e}")))??;
            self.packs_uploaded += 1;
            self.unindexed.push(pack);
            if self.unindexed.len() >= INDEX_EVERY_PACKS {
                self.flush_index().await?;
            }
        }
        Ok(())
    }

    async fn flush_index(&mut self) -> Result<(), RepoError> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let key = self.repo.save_index(&self.unindexed).await?;
        debug!(%key, packs = self.unindexed.len(), "index written");
        self.unindexed.clear();
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), RepoError> {
        self.seal_pack().await?;
        while !self.uploads.is_empty() {
            self.collect_one().await?;
        }
        self.flush_index().await
    }

    /// After a failure: let the uploads in flight end, and index the packs that made it.
    async fn save_index_best_effort(&mut self) {
        while let Some(joined) = self.uploads.join_next().await {
            if let Ok(Ok(pack)) = joined {
                self.unindexed.push(pack);
            }
        }
        if let Err(e) = self.flush_index().await {
            warn!(error = %e, "could not index the packs uploaded before the failure");
        }
    }
}

async fn upload(store: crate::store::Store, pack: FinishedPack) -> Result<IndexedPack, RepoError> {
    let key = pack_key(&pack.id);
    let size = pack.size;
    store
        .put_if_absent(&key, pack.parts.into_iter().collect::<PutPayload>())
        .await?;
    debug!(%key, size, chunks = pack.entries.len(), "pack stored");
    Ok(IndexedPack {
        id: pack.id,
        size,
        entries: pack.entries,
    })
}
