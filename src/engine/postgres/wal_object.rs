//! The WAL object: one archived WAL file (or one streamed snapshot of a segment), compressed,
//! sealed with its key bound in, behind a header that holds its keyed digest and size.
//!
//! `HLMWAL01` | header box length (u32 LE) | header box | body box (docs/FORMAT.md, "WAL files").

use std::io::Read;

use super::PgError;
use crate::repo::crypto::{Keys, MetaKind};
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
    tokio::task::spawn_blocking(move || seal_object(&keys, level, &sealing_key, &bytes, digest))
        .await
        .map_err(|e| std::io::Error::other(format!("sealing task failed: {e}")))?
}

/// The WAL object of `bytes` stored under `key`, compressed at `level`; `digest` is the bytes'
/// keyed digest.
pub fn seal_object(
    keys: &Keys,
    level: i32,
    key: &str,
    bytes: &[u8],
    digest: crate::repo::ids::ChunkId,
) -> std::io::Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(bytes, level)?;
    let mut header = Vec::with_capacity(HEADER_PLAIN_LEN);
    header.extend_from_slice(digest.as_bytes());
    header.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let header = keys.seal_named(MetaKind::Wal, &format!("{key}#header"), &header);
    let body = keys.seal_named(MetaKind::Wal, key, &compressed);
    let mut object = Vec::with_capacity(WAL_MAGIC.len() + 4 + header.len() + body.len());
    object.extend_from_slice(WAL_MAGIC);
    object.extend_from_slice(&(header.len() as u32).to_le_bytes());
    object.extend_from_slice(&header);
    object.extend_from_slice(&body);
    Ok(object)
}

/// `HLMWAL01` | header box length (u32 LE) | header box | body box.
const WAL_MAGIC: &[u8; 8] = b"HLMWAL01";
/// The header's plaintext: the keyed digest of the file (HMAC-SHA256 under the id key) and its size.
const HEADER_PLAIN_LEN: usize = 32 + 8;
const HEADER_BOX_LEN: usize = HEADER_PLAIN_LEN + crate::repo::crypto::SEAL_OVERHEAD;
const PREFIX_LEN: usize = WAL_MAGIC.len() + 4 + HEADER_BOX_LEN;
/// The largest WAL file PostgreSQL writes (`wal_segment_size` is at most 1 GiB); a header naming a
/// larger size is refused before anything is decompressed.
pub const MAX_WAL_FILE: u64 = 1 << 30;

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

fn open_header(keys: &Keys, key: &str, header: &[u8]) -> Result<([u8; 32], u64), PgError> {
    let plain = keys
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
    if size > MAX_WAL_FILE {
        return Err(PgError::Repo(RepoError::corrupt(
            key,
            format!("header names {size} bytes, more than a WAL file can hold"),
        )));
    }
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
    open_header(repo.keys(), key, header)
}

/// Reads, opens and decompresses one archived WAL file.
pub(crate) async fn read_wal(repo: &Repository, key: &str) -> Result<Vec<u8>, PgError> {
    let object = repo.store().get(key).await?;
    let keys = repo.keys().clone();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || open_object(&keys, &key, &object))
        .await
        .map_err(|e| PgError::Invalid(format!("decrypt task failed: {e}")))?
}

/// Opens a WAL object read whole from `key`: its header, then its body, which must decompress to
/// exactly the size and keyed digest the header holds. Decompression stops one byte past that
/// size, so a body cannot make a reader allocate more than its authenticated header says.
pub fn open_object(keys: &Keys, key: &str, object: &[u8]) -> Result<Vec<u8>, PgError> {
    let (header, body) = split_object(key, object)?;
    let (digest, size) = open_header(keys, key, header)?;
    let compressed = keys
        .open_named(MetaKind::Wal, key, body)
        .map_err(|e| RepoError::corrupt(key, e.to_string()))?;
    let mut bytes = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])
        .and_then(|d| d.take(size + 1).read_to_end(&mut bytes))
        .map_err(|e| RepoError::corrupt(key, format!("decompression: {e}")))?;
    if bytes.len() as u64 != size || keys.chunk_id(&bytes).0 != digest {
        return Err(PgError::Repo(RepoError::corrupt(
            key,
            "contents do not match the header's digest",
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::MasterSecret;

    const KEY: &str = "wal/pg/000000010000000000000001";

    fn object(keys: &Keys, digest: [u8; 32], size: u64, body: &[u8]) -> Vec<u8> {
        let mut header = digest.to_vec();
        header.extend_from_slice(&size.to_le_bytes());
        let header = keys.seal_named(MetaKind::Wal, &format!("{KEY}#header"), &header);
        let body = keys.seal_named(MetaKind::Wal, KEY, &zstd::bulk::compress(body, 1).unwrap());
        [
            &WAL_MAGIC[..],
            &(header.len() as u32).to_le_bytes(),
            &header,
            &body,
        ]
        .concat()
    }

    #[test]
    fn a_sealed_wal_file_opens_to_itself_under_its_own_key_only() {
        let keys = Keys::new(MasterSecret::generate());
        let wal: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal_object(&keys, 3, KEY, &wal, keys.chunk_id(&wal)).unwrap();
        assert_eq!(open_object(&keys, KEY, &sealed).unwrap(), wal);
        let err = open_object(&keys, "wal/pg/000000010000000000000002", &sealed).unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn sizes_in_a_header_bound_what_a_reader_allocates() {
        let keys = Keys::new(MasterSecret::generate());
        let wal = vec![7u8; 4096];
        let digest = keys.chunk_id(&wal).0;
        // More than a WAL file can hold: refused before decompressing.
        let err = open_object(&keys, KEY, &object(&keys, digest, 1 << 40, &wal)).unwrap_err();
        assert!(
            err.to_string().contains("more than a WAL file can hold"),
            "{err}"
        );
        // A body longer than its header says is cut one byte past it, and refused.
        let err = open_object(&keys, KEY, &object(&keys, digest, 100, &wal)).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
        assert_eq!(
            open_object(&keys, KEY, &object(&keys, digest, 4096, &wal)).unwrap(),
            wal
        );
    }
}
