//! WAL archiving: `wal-push` (PostgreSQL's `archive_command`) and `wal-fetch` (`restore_command`).
//!
//! Each WAL file is one object, `wal/<source>/<file name>`: the file compressed with zstd and sealed
//! with its key bound in, so an object cannot be passed off under another name. Objects are
//! write-once: pushing a file again succeeds only if the bytes are identical.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::names::WalFileName;
use super::PgError;
use crate::repo::crypto::MetaKind;
use crate::repo::layout::{ObjectKey, ObjectKind};
use crate::repo::{RepoError, Repository};
use crate::store::PutOutcome;

/// The object key of a WAL file of `source`.
pub fn wal_key(source: &str, name: &WalFileName) -> String {
    ObjectKey::Wal {
        source: source.to_owned(),
        name: name.to_string(),
    }
    .key()
}

fn identity_key(source: &str) -> String {
    ObjectKey::SourceIdentity {
        source: source.to_owned(),
        engine: "postgres".to_owned(),
    }
    .key()
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct SourceIdentity {
    system_identifier: String,
}

/// The system identifier in the long header that starts every WAL segment, if it has one.
pub fn segment_system_identifier(bytes: &[u8]) -> Option<u64> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_le_bytes(bytes.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(24..32)?.try_into().ok()?))
}

/// Records which cluster `source` is on first use, and refuses any other cluster afterwards.
/// `what` names the file or server the identifier came from, for the message.
pub async fn ensure_identity(
    repo: &Repository,
    source: &str,
    system_identifier: &str,
    what: &str,
) -> Result<(), PgError> {
    let key = identity_key(source);
    let mine = SourceIdentity {
        system_identifier: system_identifier.to_owned(),
    };
    for _ in 0..2 {
        match repo.store().get(&key).await {
            Ok(sealed) => {
                let plain = repo
                    .keys()
                    .open_named(MetaKind::SourceIdentity, &key, &sealed)
                    .map_err(|e| RepoError::corrupt(&key, e.to_string()))?;
                let stored: SourceIdentity = serde_json::from_slice(&plain)
                    .map_err(|e| RepoError::corrupt(&key, e.to_string()))?;
                if stored != mine {
                    return Err(PgError::OtherCluster {
                        file: what.to_owned(),
                        found: system_identifier.to_owned(),
                        source_name: source.to_owned(),
                        expected: stored.system_identifier,
                    });
                }
                return Ok(());
            }
            Err(e) if e.is_not_found() => {
                let plain =
                    serde_json::to_vec(&mine).map_err(|e| PgError::Invalid(e.to_string()))?;
                let sealed = repo
                    .keys()
                    .seal_named(MetaKind::SourceIdentity, &key, &plain);
                if repo.store().put_if_absent(&key, sealed).await? == PutOutcome::Created {
                    info!(source, system_identifier, "source bound to its cluster");
                    return Ok(());
                }
                // Written concurrently by someone else: compare with theirs.
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PgError::Invalid(format!(
        "{key} could not be read or written"
    )))
}

/// What `wal-push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Archived,
    /// The same bytes were archived before.
    AlreadyArchived,
}

/// Archives one WAL file. Returns only once the object is durable in the store.
pub async fn wal_push(
    repo: &Repository,
    source: &str,
    path: &Path,
) -> Result<PushOutcome, PgError> {
    let name: WalFileName = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PgError::Invalid(format!("{} has no file name", path.display())))?
        .parse()
        .map_err(PgError::Invalid)?;
    // First only the digest, streamed: enough to answer a push of a file already archived.
    let keys = repo.keys().clone();
    let file_path = path.to_owned();
    let (digest, size, system_id) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut file = std::fs::File::open(&file_path)?;
        let mut head = [0u8; 32];
        let got = std::io::Read::read(&mut file, &mut head)?;
        let system_id = segment_system_identifier(&head[..got]);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        let (digest, size) = keys.chunk_id_of_reader(std::io::BufReader::new(file))?;
        Ok((digest, size, system_id))
    })
    .await
    .map_err(|e| PgError::Invalid(format!("reading task failed: {e}")))?
    .map_err(|e| PgError::io(path.display(), e))?;
    if matches!(name, WalFileName::Segment { .. } | WalFileName::Partial(_)) {
        let id = system_id.ok_or_else(|| {
            PgError::Invalid(format!(
                "{}: not a WAL segment (no long page header)",
                path.display()
            ))
        })?;
        ensure_identity(repo, source, &id.to_string(), &path.display().to_string()).await?;
    }
    let key = wal_key(source, &name);
    // PostgreSQL pushes a file again after a crash: answer from the stored digest, without reading
    // the stored file.
    match read_digest(repo, &key).await {
        Ok(stored) => return same_or_conflict(stored, (digest.0, size), &name, source),
        Err(PgError::Repo(RepoError::Store(e))) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| PgError::io(path.display(), e))?;
    if repo.keys().chunk_id(&bytes) != digest {
        return Err(PgError::Invalid(format!(
            "{} changed while it was being archived",
            path.display()
        )));
    }
    let size = bytes.len() as u64;
    let object = seal_wal_object(repo, &key, bytes, digest)
        .await
        .map_err(|e| PgError::io(path.display(), e))?;
    match repo.store().put_if_absent(&key, object).await? {
        PutOutcome::Created => {
            debug!(%key, "archived");
            Ok(PushOutcome::Archived)
        }
        // Pushed concurrently by someone else.
        PutOutcome::AlreadyExists => same_or_conflict(
            read_digest(repo, &key).await?,
            (digest.0, size),
            &name,
            source,
        ),
    }
}

/// Seals WAL bytes as a WAL object stored under `key`.
pub(crate) async fn seal_wal_object(
    repo: &Repository,
    key: &str,
    bytes: Vec<u8>,
    digest: crate::repo::ids::ChunkId,
) -> std::io::Result<Vec<u8>> {
    let level = repo.config().compression.level;
    let keys = repo.keys().clone();
    let sealing_key = key.to_owned();
    let size = bytes.len() as u64;
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let compressed = zstd::bulk::compress(&bytes, level)?;
        let mut header = Vec::with_capacity(HEADER_PLAIN_LEN);
        header.extend_from_slice(digest.as_bytes());
        header.extend_from_slice(&size.to_le_bytes());
        let header = keys.seal_named(MetaKind::Wal, &format!("{sealing_key}#header"), &header);
        let body = keys.seal_named(MetaKind::Wal, &sealing_key, &compressed);
        let mut object = Vec::with_capacity(WAL_MAGIC.len() + 4 + header.len() + body.len());
        object.extend_from_slice(WAL_MAGIC);
        object.extend_from_slice(&(header.len() as u32).to_le_bytes());
        object.extend_from_slice(&header);
        object.extend_from_slice(&body);
        Ok(object)
    })
    .await
    .map_err(|e| std::io::Error::other(format!("sealing task failed: {e}")))?
}

fn same_or_conflict(
    stored: ([u8; 32], u64),
    ours: ([u8; 32], u64),
    name: &WalFileName,
    source: &str,
) -> Result<PushOutcome, PgError> {
    if stored == ours {
        Ok(PushOutcome::AlreadyArchived)
    } else {
        Err(PgError::WalConflict {
            name: name.to_string(),
            source_name: source.to_owned(),
        })
    }
}

/// `HLMWAL01` | header box length (u32 LE) | header box | body box.
const WAL_MAGIC: &[u8; 8] = b"HLMWAL01";
/// The header's plaintext: the keyed digest of the file (HMAC-SHA256 under the id key) and its size.
const HEADER_PLAIN_LEN: usize = 32 + 8;
const HEADER_BOX_LEN: usize = HEADER_PLAIN_LEN + crate::repo::crypto::SEAL_OVERHEAD;
const PREFIX_LEN: usize = WAL_MAGIC.len() + 4 + HEADER_BOX_LEN;

/// Splits a WAL object into its header box and body box.
fn split_object<'a>(key: &str, object: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), PgError> {
    let bad = |why: &str| PgError::Repo(RepoError::corrupt(key, why));
    if object.len() < PREFIX_LEN || &object[..WAL_MAGIC.len()] != WAL_MAGIC {
        return Err(bad("not a WAL object (too short or wrong magic)"));
    }
    let len = u32::from_le_bytes([object[8], object[9], object[10], object[11]]) as usize;
    if len != HEADER_BOX_LEN {
        return Err(bad("header length is wrong"));
    }
    Ok((&object[12..12 + len], &object[12 + len..]))
}

fn open_header(repo: &Repository, key: &str, header: &[u8]) -> Result<([u8; 32], u64), PgError> {
    let plain = repo
        .keys()
        .open_named(MetaKind::Wal, &format!("{key}#header"), header)
        .map_err(|e| RepoError::corrupt(key, format!("header: {e}")))?;
    if plain.len() != HEADER_PLAIN_LEN {
        return Err(PgError::Repo(RepoError::corrupt(
            key,
            "header has the wrong length",
        )));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&plain[..32]);
    let size = u64::from_le_bytes(plain[32..40].try_into().unwrap_or_default());
    Ok((digest, size))
}

/// Reads only the header of an archived WAL file: its digest and size.
async fn read_digest(repo: &Repository, key: &str) -> Result<([u8; 32], u64), PgError> {
    let prefix = repo
        .store()
        .get_range(key, 0..PREFIX_LEN as u64)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Truncated { .. } => PgError::Repo(RepoError::corrupt(
                key,
                "shorter than a WAL object's header",
            )),
            other => other.into(),
        })?;
    let (header, _) = split_object(key, &prefix)?;
    open_header(repo, key, header)
}

/// Reads, opens and decompresses one archived WAL file.
pub(crate) async fn read_wal(repo: &Repository, key: &str) -> Result<Vec<u8>, PgError> {
    let object = repo.store().get(key).await?;
    let repo = repo.clone();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        let (header, body) = split_object(&key, &object)?;
        let (digest, size) = open_header(&repo, &key, header)?;
        let compressed = repo
            .keys()
            .open_named(MetaKind::Wal, &key, body)
            .map_err(|e| RepoError::corrupt(&key, e.to_string()))?;
        let bytes = zstd::stream::decode_all(&compressed[..])
            .map_err(|e| RepoError::corrupt(&key, format!("decompression: {e}")))?;
        if bytes.len() as u64 != size || repo.keys().chunk_id(&bytes).0 != digest {
            return Err(PgError::Repo(RepoError::corrupt(
                &key,
                "contents do not match the header's digest",
            )));
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| PgError::Invalid(format!("decrypt task failed: {e}")))?
}

/// Where prefetched segments wait, beside the file PostgreSQL asked for (in pg_wal).
const SPOOL: &str = "heirloom-prefetch";

/// Writes `bytes` to `path` through a temporary file beside it, so `path` is whole or absent.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PgError> {
    let tmp = path.with_extension("heirloom-tmp");
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| PgError::io(tmp.display(), e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| PgError::io(path.display(), e))
}

/// Restores one archived WAL file to `dest` (written beside it, then renamed into place). For a
/// segment, the next `prefetch` segments are fetched meanwhile into a spool beside `dest`, so that
/// recovery's next calls are served locally; each spooled file was verified like any other.
pub async fn wal_fetch(
    repo: &Repository,
    source: &str,
    name: &str,
    dest: &Path,
    prefetch: usize,
) -> Result<(), PgError> {
    let name: WalFileName = name.parse().map_err(PgError::Invalid)?;
    let spool = dest.parent().map(|d| d.join(SPOOL));
    let spooled = spool.as_ref().map(|s| s.join(name.to_string()));
    let fetch_it = async {
        if let Some(path) = spooled.as_ref().filter(|p| p.exists()) {
            return tokio::fs::rename(path, dest)
                .await
                .map_err(|e| PgError::io(dest.display(), e));
        }
        let bytes = match read_wal(repo, &wal_key(source, &name)).await {
            Err(PgError::Repo(RepoError::Store(e))) if e.is_not_found() => {
                // Streamed but not complete: the snapshots, as far as WAL was received.
                let partial = match &name {
                    WalFileName::Segment { .. } => partial_chain(repo, source, &name).await?,
                    _ => None,
                };
                match partial {
                    Some(chain) => read_partial(repo, &chain).await?,
                    None => {
                        return Err(PgError::WalNotFound {
                            name: name.to_string(),
                            source_name: source.to_owned(),
                        })
                    }
                }
            }
            other => other?,
        };
        write_atomically(dest, &bytes).await
    };
    let prefetch_them = async {
        let (Some(spool), WalFileName::Segment { .. }) = (&spool, &name) else {
            return;
        };
        if prefetch == 0 || tokio::fs::create_dir_all(spool).await.is_err() {
            return;
        }
        forget_older(spool, &name).await;
        let mut next = Vec::new();
        let mut cursor = name.clone();
        for _ in 0..prefetch {
            // Segment sizes other than 16 MiB only change which names come next, never correctness.
            match cursor.next_segment(16 << 20) {
                Some(n) => {
                    next.push(n.clone());
                    cursor = n;
                }
                None => break,
            }
        }
        futures::future::join_all(next.iter().map(|n| async move {
            let path = spool.join(n.to_string());
            if path.exists() {
                return;
            }
            match read_wal(repo, &wal_key(source, n)).await {
                Ok(bytes) => {
                    if let Err(e) = write_atomically(&path, &bytes).await {
                        debug!(segment = %n, error = %e, "prefetch not kept");
                    }
                }
                // Not archived yet, or damaged: its own call will say so.
                Err(e) => debug!(segment = %n, error = %e, "not prefetched"),
            }
        }))
        .await;
    };
    let (fetched, ()) = futures::join!(fetch_it, prefetch_them);
    fetched
}

/// Removes spooled segments recovery has moved past.
async fn forget_older(spool: &Path, current: &WalFileName) {
    let Ok(mut entries) = tokio::fs::read_dir(spool).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let older = match name.parse::<WalFileName>() {
            Ok(n) => n < *current,
            Err(_) => name.ends_with(".heirloom-tmp"),
        };
        if older {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// Every WAL file archived for `source` with its stored size, sorted by name.
pub async fn archived_with_sizes(
    repo: &Repository,
    source: &str,
) -> Result<Vec<(WalFileName, u64)>, PgError> {
    let prefix = ObjectKind::Wal.source_prefix(source);
    let mut names: Vec<(WalFileName, u64)> = repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| Some((o.key.strip_prefix(&prefix)?.parse().ok()?, o.size)))
        .collect();
    // Segments streamed but not yet complete: their snapshots stand in for them.
    let whole: std::collections::HashSet<WalFileName> =
        names.iter().map(|(n, _)| n.clone()).collect();
    for (segment, chain) in partial_chains(repo, source).await? {
        if !whole.contains(&segment) {
            names.push((segment, chain.size()));
        }
    }
    names.sort();
    Ok(names)
}

/// The segments PostgreSQL has marked ready to archive after `path` (from
/// `archive_status/*.ready` beside it), oldest first, at most `limit`.
pub fn ready_after(path: &Path, limit: usize) -> Vec<std::path::PathBuf> {
    let (Some(dir), Some(current)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut ready: Vec<String> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".ready")
                .map(str::to_owned)
        })
        .filter(|name| {
            name.as_str() > current && matches!(name.parse(), Ok(WalFileName::Segment { .. }))
        })
        .collect();
    ready.sort();
    ready.truncate(limit);
    ready.into_iter().map(|name| dir.join(name)).collect()
}

/// Archives `path`, and meanwhile the next `ahead` segments PostgreSQL has marked ready, so that
/// the calls for those find them archived and return at once. Only `path`'s outcome counts: a
/// look-ahead upload that fails is retried by the call for its own segment.
pub async fn wal_push_ahead(
    repo: &Repository,
    source: &str,
    path: &Path,
    ahead: usize,
) -> Result<PushOutcome, PgError> {
    let later = ready_after(path, ahead);
    let (outcome, _) = futures::join!(
        wal_push(repo, source, path),
        futures::future::join_all(later.iter().map(|p| async move {
            if let Err(e) = wal_push(repo, source, p).await {
                debug!(path = %p.display(), error = %e, "look-ahead push failed; its own call will retry");
            }
        }))
    );
    outcome
}

/// A snapshot of a segment still being written, taken by `stream`, named by how many bytes of the
/// segment hold WAL (`valid`). A whole snapshot (`from` 0) holds the segment as received,
/// zero-padded to its full size like pg_receivewal's `.partial` files; an increment holds only the
/// bytes from `from`, where the snapshot before it ended, to `valid`.
pub fn partial_key(source: &str, segment: &WalFileName, from: u64, valid: u64) -> String {
    ObjectKey::WalSnapshot {
        source: source.to_owned(),
        segment: segment.to_string(),
        valid,
        from,
    }
    .key()
}

/// Stores a snapshot of a partial segment: `bytes` are the whole zero-padded segment when `from`
/// is 0, else the bytes from `from` to `valid` (write-once; the same snapshot again is a no-op).
pub async fn put_partial(
    repo: &Repository,
    source: &str,
    segment: &WalFileName,
    bytes: Vec<u8>,
    from: u64,
    valid: u64,
) -> Result<(), PgError> {
    let key = partial_key(source, segment, from, valid);
    let digest = repo.keys().chunk_id(&bytes);
    let object = seal_wal_object(repo, &key, bytes, digest)
        .await
        .map_err(|e| PgError::io(&key, e))?;
    repo.store().put_if_absent(&key, object).await?;
    Ok(())
}

/// One stored snapshot of a partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPiece {
    pub key: String,
    pub from: u64,
    pub valid: u64,
    pub size: u64,
}

/// The snapshots that rebuild a partial segment as far as it was received: a whole snapshot, then
/// increments each starting where the one before ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialChain {
    pub pieces: Vec<PartialPiece>,
}

impl PartialChain {
    /// How many bytes of the segment the chain holds.
    pub fn valid(&self) -> u64 {
        self.pieces.last().map_or(0, |p| p.valid)
    }

    /// Increments since the chain's whole snapshot.
    pub fn increments(&self) -> usize {
        self.pieces.len().saturating_sub(1)
    }

    /// Stored bytes of all its snapshots.
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|p| p.size).sum()
    }

    /// The longest chain among `pieces` (all of one segment), if any starts with a whole snapshot.
    pub fn longest(mut pieces: Vec<PartialPiece>) -> Option<Self> {
        pieces.sort_by_key(|p| (p.from, p.valid));
        // For each length reached: the chain reaching it (fewest pieces first, as sorted).
        let mut reached: std::collections::BTreeMap<u64, Vec<PartialPiece>> = Default::default();
        for piece in pieces {
            let chain = if piece.from == 0 {
                Some(vec![piece.clone()])
            } else {
                reached.get(&piece.from).map(|before| {
                    let mut chain = before.clone();
                    chain.push(piece.clone());
                    chain
                })
            };
            if let Some(chain) = chain {
                let better = reached
                    .get(&piece.valid)
                    .is_none_or(|known| known.len() > chain.len());
                if better {
                    reached.insert(piece.valid, chain);
                }
            }
        }
        let (_, pieces) = reached.into_iter().next_back()?;
        Some(Self { pieces })
    }
}

/// The longest chain of snapshots of every segment that has one, by segment.
pub async fn partial_chains(
    repo: &Repository,
    source: &str,
) -> Result<std::collections::BTreeMap<WalFileName, PartialChain>, PgError> {
    chains_under(repo, source, &ObjectKind::WalSnapshot.source_prefix(source)).await
}

/// The longest chain of snapshots of `segment`, if it has one.
pub async fn partial_chain(
    repo: &Repository,
    source: &str,
    segment: &WalFileName,
) -> Result<Option<PartialChain>, PgError> {
    let prefix = format!(
        "{}{segment}/",
        ObjectKind::WalSnapshot.source_prefix(source)
    );
    Ok(chains_under(repo, source, &prefix).await?.remove(segment))
}

async fn chains_under(
    repo: &Repository,
    source: &str,
    listed: &str,
) -> Result<std::collections::BTreeMap<WalFileName, PartialChain>, PgError> {
    let prefix = ObjectKind::WalSnapshot.source_prefix(source);
    let mut pieces: std::collections::BTreeMap<WalFileName, Vec<PartialPiece>> = Default::default();
    for object in repo.store().list(listed).await? {
        let Some(rest) = object.key.strip_prefix(&prefix) else {
            continue;
        };
        let Some((segment, name)) = rest.split_once('/') else {
            continue;
        };
        let (valid, from) = name.split_once('-').unwrap_or((name, "0"));
        let (Ok(segment), Ok(valid), Ok(from)) = (
            segment.parse::<WalFileName>(),
            valid.parse::<u64>(),
            from.parse::<u64>(),
        ) else {
            continue;
        };
        if from >= valid && from != 0 {
            continue;
        }
        pieces.entry(segment).or_default().push(PartialPiece {
            key: object.key.clone(),
            from,
            valid,
            size: object.size,
        });
    }
    Ok(pieces
        .into_iter()
        .filter_map(|(segment, pieces)| Some((segment, PartialChain::longest(pieces)?)))
        .collect())
}

/// Rebuilds a partial segment from its chain: the whole snapshot with each increment laid over it.
pub async fn read_partial(repo: &Repository, chain: &PartialChain) -> Result<Vec<u8>, PgError> {
    let Some((first, rest)) = chain.pieces.split_first() else {
        return Err(PgError::Invalid("an empty chain of snapshots".into()));
    };
    let mut segment = read_wal(repo, &first.key).await?;
    let pieces = futures::future::try_join_all(rest.iter().map(|p| read_wal(repo, &p.key))).await?;
    for (piece, bytes) in rest.iter().zip(pieces) {
        let (from, valid) = (piece.from as usize, piece.valid as usize);
        if bytes.len() != valid - from || valid > segment.len() {
            return Err(PgError::Repo(RepoError::corrupt(
                &piece.key,
                format!(
                    "holds {} bytes for {from}..{valid} of a {}-byte segment",
                    bytes.len(),
                    segment.len()
                ),
            )));
        }
        segment[from..valid].copy_from_slice(&bytes);
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(from: u64, valid: u64) -> PartialPiece {
        PartialPiece {
            key: format!("{valid}-{from}"),
            from,
            valid,
            size: valid - from,
        }
    }

    #[test]
    fn the_longest_chain_starts_whole_and_follows_increments_without_gaps() {
        // Whole at 100, increments to 250 and 400; a stray increment from 300 (its predecessor
        // lost) cannot be reached; a later whole snapshot at 260 and an increment from it to 500.
        let pieces = vec![
            piece(0, 100),
            piece(100, 250),
            piece(250, 400),
            piece(300, 900),
            piece(0, 260),
            piece(260, 500),
        ];
        let chain = PartialChain::longest(pieces).unwrap();
        assert_eq!(chain.valid(), 500);
        assert_eq!(
            chain
                .pieces
                .iter()
                .map(|p| (p.from, p.valid))
                .collect::<Vec<_>>(),
            vec![(0, 260), (260, 500)]
        );
        assert_eq!(chain.increments(), 1);
        // Increments alone rebuild nothing.
        assert_eq!(PartialChain::longest(vec![piece(100, 200)]), None);
        // The fewest pieces win among chains of one length.
        let chain =
            PartialChain::longest(vec![piece(0, 100), piece(100, 200), piece(0, 200)]).unwrap();
        assert_eq!(chain.pieces.len(), 1);
    }

    #[test]
    fn partial_keys_keep_whole_snapshots_as_before() {
        let segment: WalFileName = "000000010000000000000003".parse().unwrap();
        assert_eq!(
            partial_key("pg", &segment, 0, 4096),
            "wal-partial/pg/000000010000000000000003/000000004096"
        );
        assert_eq!(
            partial_key("pg", &segment, 4096, 8192),
            "wal-partial/pg/000000010000000000000003/000000008192-000000004096"
        );
    }
}
