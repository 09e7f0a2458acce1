//! A chunk's stored form: compressed when that helps, then sealed.
//!
//! The plaintext inside the seal is one encoding byte (0 = raw, 1 = zstd frame) and the payload.

use std::cell::RefCell;

use super::crypto::{Keys, OpenError};
use super::ids::ChunkId;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Why a stored chunk could not be turned back into its plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("decryption failed (altered bytes or wrong key)")]
    Open(#[from] OpenError),
    #[error("unknown encoding byte {0}")]
    Encoding(u8),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("plaintext is {got} bytes, the index says {expected}")]
    Length { expected: u32, got: usize },
    #[error("plaintext does not hash to its chunk id")]
    Hash,
}

/// Compresses (if it shrinks) and seals one chunk.
pub fn seal_chunk(keys: &Keys, id: &ChunkId, plaintext: &[u8], level: i32) -> Vec<u8> {
    let compressed = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        slot.as_mut().and_then(|(_, c)| c.compress(plaintext).ok())
    });
    let mut encoded;
    match compressed {
        Some(c) if c.len() < plaintext.len() => {
            encoded = Vec::with_capacity(c.len() + 1);
            encoded.push(ZSTD);
            encoded.extend_from_slice(&c);
        }
        _ => {
            encoded = Vec::with_capacity(plaintext.len() + 1);
            encoded.push(RAW);
            encoded.extend_from_slice(plaintext);
        }
    }
    keys.seal_chunk(id, &encoded)
}

/// Opens, decompresses and re-hashes one chunk: what it returns is exactly what was backed up.
pub fn open_chunk(
    keys: &Keys,
    id: &ChunkId,
    sealed: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>, BlobError> {
    let encoded = keys.open_chunk(id, sealed)?;
    let (&encoding, payload) = encoded.split_first().ok_or(BlobError::Encoding(255))?;
    let plaintext = match encoding {
        RAW => payload.to_vec(),
        ZSTD => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| BlobError::Decompress(e.to_string()))?,
                );
            }
            match slot.as_mut() {
                Some(d) => d
                    .decompress(payload, raw_len as usize)
                    .map_err(|e| BlobError::Decompress(e.to_string())),
                None => Err(BlobError::Decompress("no decompressor".into())),
            }
        })?,
        other => return Err(BlobError::Encoding(other)),
    };
    if plaintext.len() != raw_len as usize {
        return Err(BlobError::Length {
            expected: raw_len,
            got: plaintext.len(),
        });
    }
    if keys.chunk_id(&plaintext) != *id {
        return Err(BlobError::Hash);
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::MasterSecret;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blobs_round_trip(data in proptest::collection::vec(0u8..4, 0..20_000), level in 1i32..6) {
            let keys = Keys::new(MasterSecret::generate());
            let id = keys.chunk_id(&data);
            let sealed = seal_chunk(&keys, &id, &data, level);
            prop_assert_eq!(open_chunk(&keys, &id, &sealed, data.len() as u32).unwrap(), data);
        }
    }

    #[test]
    fn compressible_chunks_shrink_and_random_ones_stay_raw() {
        let keys = Keys::new(MasterSecret::generate());
        let text = b"INSERT INTO notes VALUES (1, 'hello');\n".repeat(1000);
        let id = keys.chunk_id(&text);
        assert!(seal_chunk(&keys, &id, &text, 3).len() < text.len() / 4);
        let random: Vec<u8> = (0..10_000).map(|_| rand::random()).collect();
        let id = keys.chunk_id(&random);
        let sealed = seal_chunk(&keys, &id, &random, 3);
        assert_eq!(
            sealed.len(),
            random.len() + 1 + crate::repo::crypto::SEAL_OVERHEAD
        );
    }

    #[test]
    fn wrong_length_is_caught() {
        let keys = Keys::new(MasterSecret::generate());
        let id = keys.chunk_id(b"abc");
        let sealed = seal_chunk(&keys, &id, b"abc", 3);
        assert_eq!(
            open_chunk(&keys, &id, &sealed, 4),
            Err(BlobError::Length {
                expected: 4,
                got: 3
            })
        );
    }
}
