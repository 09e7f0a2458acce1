//! WAL archiving: `wal-push` (PostgreSQL's `archive_command`) and `wal-fetch` (`restore_command`).
//!
//! Each WAL file is one object, `wal/<source>/<file name>`: the file compressed with zstd and sealed
//! with its key bound in, so an object cannot be passed off under another name. Objects are
//! write-once: pushing a file again succeeds only if the bytes are identical.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::names::WalFileName;
use super::plan::{parse_history, WalArchive};
use super::snapshot::{partial_chain, partial_chains, read_partial};
use super::wal_object::{read_digest, read_wal, seal_wal_object};
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

/// What a restore plan needs of the archive: every file with its size, and every timeline history
/// read (they are small, and one per promotion).
pub async fn read_archive(repo: &Repository, source: &str) -> Result<WalArchive, PgError> {
    let files = archived_with_sizes(repo, source).await?;
    let mut histories = std::collections::BTreeMap::new();
    for (name, _) in &files {
        if let WalFileName::History { timeline } = name {
            let key = wal_key(source, name);
            let bytes = read_wal(repo, &key).await?;
            let text = String::from_utf8_lossy(&bytes);
            let switches =
                parse_history(&text).map_err(|why| PgError::Repo(RepoError::corrupt(&key, why)))?;
            histories.insert(*timeline, switches);
        }
    }
    Ok(WalArchive { files, histories })
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
