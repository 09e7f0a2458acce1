//! WAL archiving: `wal-push` (PostgreSQL's `archive_command`) and `wal-fetch` (`restore_command`).
//!
//! Each WAL file is one object, `wal/<source>/<file name>`: the file compressed with zstd and sealed
//! with its key bound in, so an object cannot be passed off under another name. Objects are
//! write-once: pushing a file again succeeds only if the bytes are identical.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::names::WalFileName;
use super::PgError;
use crate::repo::crypto::MetaKind;
use crate::repo::{RepoError, Repository};
use crate::store::PutOutcome;

/// The object key of a WAL file of `source`.
pub fn wal_key(source: &str, name: &WalFileName) -> String {
    format!("wal/{source}/{name}")
}

fn identity_key(source: &str) -> String {
    format!("sources/{source}/postgres")
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
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| PgError::io(path.display(), e))?;
    if matches!(name, WalFileName::Segment { .. } | WalFileName::Partial(_)) {
        let id = segment_system_identifier(&bytes).ok_or_else(|| {
            PgError::Invalid(format!(
                "{}: not a WAL segment (no long page header)",
                path.display()
            ))
        })?;
        ensure_identity(repo, source, &id.to_string(), &path.display().to_string()).await?;
    }
    let key = wal_key(source, &name);
    let level = repo.config().compression.level;
    let keys = repo.keys().clone();
    let sealing_key = key.clone();
    let bytes = Bytes::from(bytes);
    let plain = bytes.clone();
    let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let compressed = zstd::bulk::compress(&plain, level)?;
        Ok(keys.seal_named(MetaKind::Wal, &sealing_key, &compressed))
    })
    .await
    .map_err(|e| PgError::Invalid(format!("sealing task failed: {e}")))?
    .map_err(|e| PgError::io(path.display(), e))?;
    match repo.store().put_if_absent(&key, sealed).await? {
        PutOutcome::Created => {
            debug!(%key, "archived");
            Ok(PushOutcome::Archived)
        }
        PutOutcome::AlreadyExists => {
            if read_wal(repo, &key).await? == bytes {
                Ok(PushOutcome::AlreadyArchived)
            } else {
                Err(PgError::WalConflict {
                    name: name.to_string(),
                    source_name: source.to_owned(),
                })
            }
        }
    }
}

/// Reads, opens and decompresses one archived WAL file.
async fn read_wal(repo: &Repository, key: &str) -> Result<Vec<u8>, PgError> {
    let sealed = repo.store().get(key).await?;
    let keys = repo.keys().clone();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        let compressed = keys
            .open_named(MetaKind::Wal, &key, &sealed)
            .map_err(|e| RepoError::corrupt(&key, e.to_string()))?;
        zstd::stream::decode_all(&compressed[..])
            .map_err(|e| PgError::Repo(RepoError::corrupt(&key, format!("decompression: {e}"))))
    })
    .await
    .map_err(|e| PgError::Invalid(format!("decrypt task failed: {e}")))?
}

/// Restores one archived WAL file to `dest` (written beside it, then renamed into place).
pub async fn wal_fetch(
    repo: &Repository,
    source: &str,
    name: &str,
    dest: &Path,
) -> Result<(), PgError> {
    let name: WalFileName = name.parse().map_err(PgError::Invalid)?;
    let key = wal_key(source, &name);
    let bytes = match read_wal(repo, &key).await {
        Err(PgError::Repo(RepoError::Store(e))) if e.is_not_found() => {
            return Err(PgError::WalNotFound {
                name: name.to_string(),
                source_name: source.to_owned(),
            })
        }
        other => other?,
    };
    let tmp = dest.with_extension("heirloom-tmp");
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| PgError::io(tmp.display(), e))?;
    tokio::fs::rename(&tmp, dest)
        .await
        .map_err(|e| PgError::io(dest.display(), e))?;
    Ok(())
}

/// Every WAL file archived for `source` with its stored size, sorted by name.
pub async fn archived_with_sizes(
    repo: &Repository,
    source: &str,
) -> Result<Vec<(WalFileName, u64)>, PgError> {
    let prefix = format!("wal/{source}/");
    let mut names: Vec<(WalFileName, u64)> = repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| Some((o.key.strip_prefix(&prefix)?.parse().ok()?, o.size)))
        .collect();
    names.sort();
    Ok(names)
}
