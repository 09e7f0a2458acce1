//! The WAL object: one archived WAL file (or one streamed snapshot of a segment), compressed,
//! sealed with its key bound in, behind a header that holds its keyed digest and size.
//!
//! `HLMWAL01` | header box length (u32 LE) | header box | body box (docs/FORMAT.md, "WAL files").

use super::PgError;
use crate::repo::crypto::MetaKind;
use crate::repo::{RepoError, Repository};

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
pub(crate) async fn read_digest(repo: &Repository, key: &str) -> Result<([u8; 32], u64), PgError> {
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
