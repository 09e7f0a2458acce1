//! Packs: many sealed chunks in one object, named by the SHA-256 of its bytes.
//!
//! Layout: `HLMPACK1` | sealed chunk … | sealed header | header length (u32 LE). The header, sealed as
//! metadata, lists each chunk as id (32 bytes), offset, length and plaintext length (u32 LE each),
//! then (format 2, only when some chunk is a delta) the base section: count (u32 LE) and that many
//! pairs of chunk id and base chunk id.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::crypto::{Keys, MetaKind};
use super::ids::{ChunkId, PackId};

pub const PACK_MAGIC: &[u8; 8] = b"HLMPACK1";
const ENTRY_LEN: usize = 32 + 4 + 4 + 4;

/// Where one chunk sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    /// For a delta chunk (format 2), the whole chunk its bytes are encoded against.
    pub base: Option<ChunkId>,
}

/// Builds one pack in memory, as the list of its parts: sealed chunks are not copied again.
pub struct PackWriter {
    parts: Vec<Bytes>,
    len: usize,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    pub id: PackId,
    /// The pack's bytes are the concatenation of these.
    pub parts: Vec<Bytes>,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    pub fn new() -> Self {
        Self {
            parts: vec![Bytes::from_static(PACK_MAGIC)],
            len: PACK_MAGIC.len(),
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, id: ChunkId, sealed: Bytes, raw_len: u32, base: Option<ChunkId>) {
        self.entries.push(PackEntry {
            id,
            offset: self.len as u32,
            length: sealed.len() as u32,
            raw_len,
            base,
        });
        self.len += sealed.len();
        self.parts.push(sealed);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(mut self, keys: &Keys) -> FinishedPack {
        let mut header = Vec::with_capacity(4 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            encode_entry(e, &mut header);
        }
        encode_bases(&self.entries, &mut header);
        let sealed = keys.seal_meta(MetaKind::PackHeader, &header);
        let sealed_len = (sealed.len() as u32).to_le_bytes();
        self.len += sealed.len() + sealed_len.len();
        self.parts.push(Bytes::from(sealed));
        self.parts.push(Bytes::copy_from_slice(&sealed_len));
        let mut hasher = Sha256::new();
        for part in &self.parts {
            hasher.update(part);
        }
        FinishedPack {
            id: PackId(hasher.finalize().into()),
            parts: self.parts,
            size: self.len as u64,
            entries: self.entries,
        }
    }
}

impl FinishedPack {
    /// The pack's bytes in one buffer (tests and tools; uploads send the parts).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

/// Why a pack's structure is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("SHA-256 of the pack's bytes is {actual}, not its name")]
    Hash { actual: String },
    #[error("too short ({0} bytes) or does not start with {PACK_MAGIC:?}")]
    Magic(usize),
    #[error("header length {0} does not fit the pack")]
    HeaderLength(u32),
    #[error("header does not decrypt (altered bytes or wrong key)")]
    HeaderOpen,
    #[error("header is malformed: {0}")]
    HeaderFormat(String),
}

/// Checks the pack's name against its bytes, then reads its header.
pub fn read_pack(keys: &Keys, id: &PackId, bytes: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let actual = PackId(Sha256::digest(bytes).into());
    if actual != *id {
        return Err(PackError::Hash {
            actual: actual.to_hex(),
        });
    }
    read_header(keys, bytes)
}

/// Reads the header of a pack whose bytes are already trusted (or about to be checked chunk by chunk).
pub fn read_header(keys: &Keys, bytes: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if bytes.len() < PACK_MAGIC.len() + 4 || &bytes[..PACK_MAGIC.len()] != PACK_MAGIC {
        return Err(PackError::Magic(bytes.len()));
    }
    let len_at = bytes.len() - 4;
    let header_len = u32::from_le_bytes([
        bytes[len_at],
        bytes[len_at + 1],
        bytes[len_at + 2],
        bytes[len_at + 3],
    ]);
    let header_start = len_at
        .checked_sub(header_len as usize)
        .filter(|s| *s >= PACK_MAGIC.len())
        .ok_or(PackError::HeaderLength(header_len))?;
    let header = keys
        .open_meta(MetaKind::PackHeader, &bytes[header_start..len_at])
        .map_err(|_| PackError::HeaderOpen)?;
    let entries = parse_entries(&header)?;
    for e in &entries {
        let end = e.offset as usize + e.length as usize;
        if (e.offset as usize) < PACK_MAGIC.len() || end > header_start {
            return Err(PackError::HeaderFormat(format!(
                "chunk {} lies outside the pack's data",
                e.id
            )));
        }
    }
    Ok(entries)
}

fn parse_entries(header: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let (count, rest) = header
        .split_first_chunk::<4>()
        .ok_or_else(|| PackError::HeaderFormat("empty".into()))?;
    let count = u32::from_le_bytes(*count) as usize;
    if rest.len() < count * ENTRY_LEN {
        return Err(PackError::HeaderFormat(format!(
            "{count} entries need {} bytes, found {}",
            count * ENTRY_LEN,
            rest.len()
        )));
    }
    let (listed, bases) = rest.split_at(count * ENTRY_LEN);
    let mut entries: Vec<PackEntry> = listed.chunks_exact(ENTRY_LEN).map(decode_entry).collect();
    apply_bases(&mut entries, bases).map_err(PackError::HeaderFormat)?;
    Ok(entries)
}

/// Appends the base section for the delta chunks among `entries`; nothing when there are none, so
/// a pack or index without deltas is byte for byte what format 1 wrote.
pub(crate) fn encode_bases<'e>(
    entries: impl IntoIterator<Item = &'e PackEntry> + Clone,
    out: &mut Vec<u8>,
) {
    let count = entries
        .clone()
        .into_iter()
        .filter(|e| e.base.is_some())
        .count();
    if count == 0 {
        return;
    }
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for e in entries {
        if let Some(base) = &e.base {
            out.extend_from_slice(e.id.as_bytes());
            out.extend_from_slice(base.as_bytes());
        }
    }
}

/// Reads a base section (empty: no deltas) into the entries it names.
pub(crate) fn apply_bases(entries: &mut [PackEntry], raw: &[u8]) -> Result<(), String> {
    if raw.is_empty() {
        return Ok(());
    }
    let (count, pairs) = raw
        .split_first_chunk::<4>()
        .ok_or_else(|| format!("{} stray bytes after the entries", raw.len()))?;
    let count = u32::from_le_bytes(*count) as usize;
    if pairs.len() != count * 64 {
        return Err(format!(
            "base section of {count} pairs needs {} bytes, found {}",
            count * 64,
            pairs.len()
        ));
    }
    let mut bases = std::collections::HashMap::with_capacity(count);
    for pair in pairs.chunks_exact(64) {
        let (id, base) = pair.split_at(32);
        bases.insert(chunk_id_of(id), chunk_id_of(base));
    }
    for e in entries.iter_mut() {
        e.base = bases.remove(&e.id);
    }
    if let Some(id) = bases.keys().next() {
        return Err(format!(
            "base section names chunk {id}, which is not listed"
        ));
    }
    Ok(())
}

fn chunk_id_of(raw: &[u8]) -> ChunkId {
    let mut id = [0u8; 32];
    id.copy_from_slice(&raw[..32]);
    ChunkId(id)
}

/// Decodes one 44-byte entry (shared with index files).
pub(crate) fn decode_entry(raw: &[u8]) -> PackEntry {
    let u32_at = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    PackEntry {
        id: chunk_id_of(raw),
        offset: u32_at(32),
        length: u32_at(36),
        raw_len: u32_at(40),
        base: None,
    }
}

pub(crate) fn encode_entry(e: &PackEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(e.id.as_bytes());
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&e.length.to_le_bytes());
    out.extend_from_slice(&e.raw_len.to_le_bytes());
}

pub(crate) const PACK_ENTRY_LEN: usize = ENTRY_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob;
    use crate::repo::crypto::MasterSecret;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packs_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let keys = Keys::new(MasterSecret::generate());
            let mut w = PackWriter::new();
            for c in &chunks {
                let id = keys.chunk_id(c);
                w.add(id, blob::seal_chunk(&keys, &id, c, 1).into(), c.len() as u32, None);
            }
            let pack = w.finish(&keys);
            let bytes = pack.to_vec();
            prop_assert_eq!(bytes.len() as u64, pack.size);
            let entries = read_pack(&keys, &pack.id, &bytes).unwrap();
            prop_assert_eq!(&entries, &pack.entries);
            for (e, c) in entries.iter().zip(&chunks) {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&blob::open_chunk(&keys, &e.id, sealed, e.raw_len).unwrap()[..], &c[..]);
            }
        }
    }

    #[test]
    fn a_flipped_byte_changes_the_hash_and_a_truncation_breaks_the_header() {
        let keys = Keys::new(MasterSecret::generate());
        let mut w = PackWriter::new();
        let id = keys.chunk_id(b"hello");
        w.add(
            id,
            blob::seal_chunk(&keys, &id, b"hello", 1).into(),
            5,
            None,
        );
        let pack = w.finish(&keys);
        let bytes = pack.to_vec();
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(matches!(
            read_pack(&keys, &pack.id, &flipped),
            Err(PackError::Hash { .. })
        ));
        let cut = &bytes[..bytes.len() - 7];
        assert!(read_header(&keys, cut).is_err());
    }
}
