//! A chunk's stored form: compressed when that helps, then sealed.
//!
//! The plaintext inside the seal is one encoding byte (0 = raw, 1 = zstd frame) and the payload.
//! Sealing builds the whole box in one buffer: no copy of the chunk beyond the one compression makes.

use std::cell::RefCell;
use std::io::Cursor;

use bytes::Bytes;

use super::crypto::{Keys, OpenError, NONCE_LEN, TAG_LEN};
use super::ids::ChunkId;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Chunks at least this long are first probed for compressibility on a sample.
const PROBE_MIN: usize = 64 * 1024;
const PROBE_SLICES: usize = 4;
const PROBE_SLICE: usize = 4096;
/// A sample that does not shrink below this fraction marks the chunk incompressible.
const PROBE_RATIO: f64 = 0.97;

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

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> T,
) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        slot.as_mut().map(|(_, c)| f(c))
    })
}

/// Whether a sample of the chunk (a few slices spread over it) shrinks under zstd. Already compressed
/// or encrypted data (images, TOAST-compressed values, compressed dumps) is stored raw without paying
/// for a full compression attempt; data that compresses is never missed by more than the slices' luck.
fn worth_compressing(plaintext: &[u8], level: i32) -> bool {
    if plaintext.len() < PROBE_MIN {
        return true;
    }
    let step = plaintext.len() / PROBE_SLICES;
    let mut sample = Vec::with_capacity(PROBE_SLICES * PROBE_SLICE);
    for i in 0..PROBE_SLICES {
        sample.extend_from_slice(&plaintext[i * step..i * step + PROBE_SLICE]);
    }
    with_compressor(level, |c| c.compress(&sample).ok())
        .flatten()
        .is_none_or(|c| (c.len() as f64) < sample.len() as f64 * PROBE_RATIO)
}

/// Compresses (if it shrinks) and seals one chunk.
pub fn seal_chunk(keys: &Keys, id: &ChunkId, plaintext: &[u8], level: i32) -> Vec<u8> {
    let mut buf = Vec::new();
    if worth_compressing(plaintext, level) {
        let bound = zstd::zstd_safe::compress_bound(plaintext.len());
        buf.reserve_exact(NONCE_LEN + 1 + bound + TAG_LEN);
        buf.resize(NONCE_LEN, 0);
        buf.push(ZSTD);
        let mut cursor = Cursor::new(buf);
        cursor.set_position((NONCE_LEN + 1) as u64);
        let written =
            with_compressor(level, |c| c.compress_to_buffer(plaintext, &mut cursor).ok()).flatten();
        buf = cursor.into_inner();
        if written.is_some_and(|n| n < plaintext.len()) {
            keys.seal_chunk_in_place(id, &mut buf);
            return buf;
        }
        buf.clear();
    }
    buf.reserve_exact(NONCE_LEN + 1 + plaintext.len() + TAG_LEN);
    buf.resize(NONCE_LEN, 0);
    buf.push(RAW);
    buf.extend_from_slice(plaintext);
    keys.seal_chunk_in_place(id, &mut buf);
    buf
}

/// Opens, decompresses and re-hashes one chunk: what it returns is exactly what was backed up.
pub fn open_chunk(
    keys: &Keys,
    id: &ChunkId,
    sealed: &[u8],
    raw_len: u32,
) -> Result<Bytes, BlobError> {
    let encoded = keys.open_chunk(id, sealed)?;
    let encoding = *encoded.first().ok_or(BlobError::Encoding(255))?;
    let plaintext = match encoding {
        RAW => Bytes::from(encoded).slice(1..),
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
                    .decompress(&encoded[1..], raw_len as usize)
                    .map(Bytes::from)
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
    use crate::repo::crypto::{MasterSecret, SEAL_OVERHEAD};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blobs_round_trip(data in proptest::collection::vec(0u8..4, 0..200_000), level in 1i32..6) {
            let keys = Keys::new(MasterSecret::generate());
            let id = keys.chunk_id(&data);
            let sealed = seal_chunk(&keys, &id, &data, level);
            prop_assert_eq!(&open_chunk(&keys, &id, &sealed, data.len() as u32).unwrap()[..], &data[..]);
        }
    }

    #[test]
    fn compressible_chunks_shrink_and_random_ones_stay_raw() {
        let keys = Keys::new(MasterSecret::generate());
        let text = b"INSERT INTO notes VALUES (1, 'hello');\n".repeat(10_000);
        let id = keys.chunk_id(&text);
        assert!(seal_chunk(&keys, &id, &text, 3).len() < text.len() / 4);
        for len in [10_000, 300_000] {
            let random: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            let id = keys.chunk_id(&random);
            let sealed = seal_chunk(&keys, &id, &random, 3);
            assert_eq!(sealed.len(), random.len() + 1 + SEAL_OVERHEAD);
            assert_eq!(
                &open_chunk(&keys, &id, &sealed, len as u32).unwrap()[..],
                &random[..]
            );
        }
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
