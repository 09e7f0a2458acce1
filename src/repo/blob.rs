//! A chunk's stored form: compressed when that helps, then sealed.
//!
//! The plaintext inside the seal is one encoding byte and the payload: 0 = raw, 1 = a zstd frame,
//! 2 = a delta (format 2): the 32-byte id of a whole chunk, the base, and a zstd frame compressed
//! with the base's plaintext as its prefix. A delta's base is never itself a delta.
//! Sealing builds the whole box in one buffer: no copy of the chunk beyond the one compression makes.
//! The buffer, sized for the worst case, is then trimmed to the box: a sealed chunk waits in its
//! pack until the pack is uploaded, and a chunk that compresses forty times would otherwise hold
//! forty times its stored size (a pack of them, hundreds of megabytes).

use std::cell::RefCell;
use std::io::Cursor;

use bytes::Bytes;

use super::crypto::{Keys, OpenError, NONCE_LEN, TAG_LEN};
use super::ids::ChunkId;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const DELTA: u8 = 2;
/// Deltas reach back over the base and the chunk: windows up to 2^27 bytes, zstd's default limit
/// for decoders, so chunks of up to 64 MiB can be deltas.
const DELTA_WINDOW_LOG_MAX: u32 = 27;

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
    #[error("the index gives it {0} bytes, more than any chunk holds")]
    TooLong(u32),
    #[error("plaintext does not hash to its chunk id")]
    Hash,
    #[error("is a delta of chunk {0}, whose bytes were not at hand")]
    NeedsBase(ChunkId),
    #[error("is a delta of chunk {found}, but the index names base {expected}")]
    BaseMismatch { found: ChunkId, expected: ChunkId },
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
            buf.shrink_to_fit();
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

fn delta_window_log(prefix: usize, data: usize) -> u32 {
    let span = (prefix + data).max(1 << 10) as u64;
    (64 - (span - 1).leading_zeros()).min(DELTA_WINDOW_LOG_MAX)
}

/// Seals `plaintext` as a delta of the whole chunk `base` (whose plaintext is `base_plain`): only
/// what differs from the base costs space. `None` when zstd refuses (the caller seals it whole).
pub fn seal_delta(
    keys: &Keys,
    id: &ChunkId,
    plaintext: &[u8],
    level: i32,
    base: &ChunkId,
    base_plain: &[u8],
) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .ok()?;
    let window = delta_window_log(base_plain.len(), plaintext.len());
    cctx.set_parameter(CParameter::WindowLog(window)).ok()?;
    // The base's matches lie a whole chunk back, beyond what the fast levels' tables remember:
    // long-distance matching finds them (zstd's --patch-from does the same).
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .ok()?;
    cctx.ref_prefix(base_plain).ok()?;
    let head = NONCE_LEN + 1 + base.as_bytes().len();
    let bound = zstd::zstd_safe::compress_bound(plaintext.len());
    let mut buf = Vec::with_capacity(head + bound + TAG_LEN);
    buf.resize(NONCE_LEN, 0);
    buf.push(DELTA);
    buf.extend_from_slice(base.as_bytes());
    let mut cursor = Cursor::new(buf);
    cursor.set_position(head as u64);
    cctx.compress2(&mut cursor, plaintext).ok()?;
    let mut buf = cursor.into_inner();
    keys.seal_chunk_in_place(id, &mut buf);
    buf.shrink_to_fit();
    Some(buf)
}

/// Opens, decompresses and re-hashes one whole chunk: what it returns is exactly what was backed
/// up. A delta chunk is refused with [`BlobError::NeedsBase`]; see [`open_chunk_with`].
pub fn open_chunk(
    keys: &Keys,
    id: &ChunkId,
    sealed: &[u8],
    raw_len: u32,
) -> Result<Bytes, BlobError> {
    open_chunk_with(keys, id, sealed, raw_len, None)
}

/// Opens one chunk, given its base's id and verified plaintext when the index names one.
pub fn open_chunk_with(
    keys: &Keys,
    id: &ChunkId,
    sealed: &[u8],
    raw_len: u32,
    base: Option<(&ChunkId, &[u8])>,
) -> Result<Bytes, BlobError> {
    if raw_len > crate::repo::format::CHUNK_LEN_LIMIT {
        return Err(BlobError::TooLong(raw_len));
    }
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
        DELTA => {
            let named = encoded
                .get(1..33)
                .map(|b| {
                    let mut raw = [0u8; 32];
                    raw.copy_from_slice(b);
                    ChunkId(raw)
                })
                .ok_or(BlobError::Encoding(DELTA))?;
            let (expected, base_plain) = base.ok_or(BlobError::NeedsBase(named))?;
            if named != *expected {
                return Err(BlobError::BaseMismatch {
                    found: named,
                    expected: *expected,
                });
            }
            decompress_delta(&encoded[33..], base_plain, raw_len)?
        }
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

fn decompress_delta(frame: &[u8], base: &[u8], raw_len: u32) -> Result<Bytes, BlobError> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let fail = |what: &str, code: usize| {
        BlobError::Decompress(format!("{what}: {}", zstd::zstd_safe::get_error_name(code)))
    };
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(DELTA_WINDOW_LOG_MAX))
        .map_err(|c| fail("window", c))?;
    dctx.ref_prefix(base).map_err(|c| fail("base", c))?;
    let mut out: Vec<u8> = Vec::with_capacity(raw_len as usize);
    dctx.decompress(&mut out, frame)
        .map_err(|c| fail("delta", c))?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::{MasterSecret, SEAL_OVERHEAD};
    use proptest::prelude::*;

    #[test]
    fn a_length_past_any_chunk_is_refused_before_anything_is_allocated() {
        let keys = Keys::new(MasterSecret::generate());
        let data = vec![1u8; 1000];
        let id = keys.chunk_id(&data);
        let sealed = seal_chunk(&keys, &id, &data, 3);
        let limit = crate::repo::format::CHUNK_LEN_LIMIT;
        assert!(matches!(
            open_chunk_with(&keys, &id, &sealed, limit + 1, None),
            Err(BlobError::TooLong(n)) if n == limit + 1
        ));
        assert!(matches!(
            open_chunk_with(&keys, &id, &sealed, u32::MAX, None),
            Err(BlobError::TooLong(_))
        ));
        assert_eq!(
            &open_chunk_with(&keys, &id, &sealed, 1000, None).unwrap()[..],
            &data[..]
        );
    }

    proptest! {
        #[test]
        fn blobs_round_trip(data in proptest::collection::vec(0u8..4, 0..200_000), level in 1i32..6) {
            let keys = Keys::new(MasterSecret::generate());
            let id = keys.chunk_id(&data);
            let sealed = seal_chunk(&keys, &id, &data, level);
            prop_assert_eq!(&open_chunk(&keys, &id, &sealed, data.len() as u32).unwrap()[..], &data[..]);
        }
    }

    proptest! {
        #[test]
        fn deltas_round_trip(
            base in proptest::collection::vec(0u8..8, 0..60_000),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..40),
            tail in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let keys = Keys::new(MasterSecret::generate());
            let mut data = base.clone();
            for (at, b) in edits {
                if !data.is_empty() {
                    let i = at % data.len();
                    data[i] = b;
                }
            }
            data.extend_from_slice(&tail);
            let base_id = keys.chunk_id(&base);
            let id = keys.chunk_id(&data);
            let sealed = seal_delta(&keys, &id, &data, 3, &base_id, &base).unwrap();
            let opened = open_chunk_with(&keys, &id, &sealed, data.len() as u32, Some((&base_id, &base))).unwrap();
            prop_assert_eq!(&opened[..], &data[..]);
            prop_assert_eq!(open_chunk(&keys, &id, &sealed, data.len() as u32), Err(BlobError::NeedsBase(base_id)));
        }
    }

    #[test]
    fn a_delta_costs_little_and_needs_the_right_base() {
        let keys = Keys::new(MasterSecret::generate());
        let base: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut data = base.clone();
        for i in (0..data.len()).step_by(8192) {
            data[i] ^= 0x5a;
        }
        let (base_id, id) = (keys.chunk_id(&base), keys.chunk_id(&data));
        let whole = seal_chunk(&keys, &id, &data, 3);
        let delta = seal_delta(&keys, &id, &data, 3, &base_id, &base).unwrap();
        // Sealed chunks wait in their pack: each holds only its own bytes, not the worst case's.
        assert_eq!(delta.capacity(), delta.len());
        let zeros = vec![0u8; 1 << 20];
        let small = seal_chunk(&keys, &keys.chunk_id(&zeros), &zeros, 3);
        assert!(small.len() < 1000, "{}", small.len());
        assert_eq!(small.capacity(), small.len());
        assert!(
            delta.len() * 20 < whole.len(),
            "delta {} vs whole {}",
            delta.len(),
            whole.len()
        );
        let other = keys.chunk_id(b"other");
        assert_eq!(
            open_chunk_with(&keys, &id, &delta, data.len() as u32, Some((&other, &base))),
            Err(BlobError::BaseMismatch {
                found: base_id,
                expected: other
            })
        );
        // The right id with the wrong bytes cannot produce the chunk either.
        let wrong = vec![0u8; base.len()];
        assert!(open_chunk_with(
            &keys,
            &id,
            &delta,
            data.len() as u32,
            Some((&base_id, &wrong))
        )
        .is_err());
    }

    /// What FORMAT.md tells an independent reader: the frame after `0x02 || base id` is an
    /// ordinary zstd frame, decoded with the base's plaintext loaded as a raw-content dictionary
    /// (no refPrefix needed), with a window of up to 2^27.
    #[test]
    fn a_delta_frame_decodes_with_the_base_as_a_raw_content_dictionary() {
        use zstd::zstd_safe::{DCtx, DParameter};
        let keys = Keys::new(MasterSecret::generate());
        let base: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut data = base.clone();
        data[1000] ^= 1;
        data.extend_from_slice(b"grown");
        let (base_id, id) = (keys.chunk_id(&base), keys.chunk_id(&data));
        let sealed = seal_delta(&keys, &id, &data, 3, &base_id, &base).unwrap();
        let encoded = keys.open_chunk(&id, &sealed).unwrap();
        assert_eq!(encoded[0], DELTA);
        assert_eq!(&encoded[1..33], base_id.as_bytes());
        let frame = &encoded[33..];
        // The base does not begin with zstd's dictionary magic, so loading it is raw content.
        assert_ne!(&base[..4], &0xEC30_A437u32.to_le_bytes());
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(27)).unwrap();
        dctx.load_dictionary(&base).unwrap();
        let mut out = Vec::with_capacity(data.len());
        dctx.decompress(&mut out, frame).unwrap();
        assert_eq!(out, data);
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
