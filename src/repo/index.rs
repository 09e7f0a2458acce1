//! Index files (`index/<sha256>`) map chunk ids to their place in packs; the in-memory [`Index`] is
//! the union of all of them.
//!
//! Plaintext of an index file (sealed as metadata): pack count (u32 LE), then per pack: pack id
//! (32 bytes), pack size (u64 LE), entry count (u32 LE), and that many 44-byte pack entries; then
//! (format 2, only when some chunk is a delta) the base section, as in pack headers.

use std::collections::HashMap;

use super::ids::{ChunkId, PackId};
use super::pack::{
    apply_bases, decode_entry, encode_bases, encode_entry, PackEntry, PACK_ENTRY_LEN,
};

/// One pack as an index file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    pub id: PackId,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

/// Where a chunk can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    /// The whole chunk a delta chunk is encoded against.
    pub base: Option<ChunkId>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    offset: u32,
    length: u32,
    raw_len: u32,
}

/// All chunks the repository holds. Pack ids are stored once; a chunk costs about 50 bytes.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<(PackId, u64)>,
    pack_slots: HashMap<PackId, u32>,
    chunks: HashMap<ChunkId, Slot>,
    /// Delta chunks and their bases (few: only chunks stored as deltas).
    bases: HashMap<ChunkId, ChunkId>,
}

impl Index {
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        let slot = *self.pack_slots.entry(pack.id).or_insert_with(|| {
            self.packs.push((pack.id, pack.size));
            (self.packs.len() - 1) as u32
        });
        for e in &pack.entries {
            if let std::collections::hash_map::Entry::Vacant(v) = self.chunks.entry(e.id) {
                v.insert(Slot {
                    pack: slot,
                    offset: e.offset,
                    length: e.length,
                    raw_len: e.raw_len,
                });
                if let Some(base) = e.base {
                    self.bases.insert(e.id, base);
                }
            }
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn get(&self, id: &ChunkId) -> Option<ChunkLocation> {
        self.chunks.get(id).map(|s| ChunkLocation {
            pack: self.packs[s.pack as usize].0,
            offset: s.offset,
            length: s.length,
            raw_len: s.raw_len,
            base: self.bases.get(id).copied(),
        })
    }

    /// The base of a delta chunk; `None` for a whole chunk (or one the index lacks).
    pub fn base_of(&self, id: &ChunkId) -> Option<ChunkId> {
        self.bases.get(id).copied()
    }

    /// How many chunks are stored as deltas.
    pub fn delta_count(&self) -> usize {
        self.bases.len()
    }

    /// Every delta chunk with its base.
    pub fn deltas(&self) -> impl Iterator<Item = (&ChunkId, &ChunkId)> {
        self.bases.iter()
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every pack the index names, with the size the index recorded.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Sum of the plaintext lengths of all distinct chunks.
    pub fn unique_raw_bytes(&self) -> u64 {
        self.chunks.values().map(|s| u64::from(s.raw_len)).sum()
    }

    /// Sum of the stored (sealed) lengths of all distinct chunks.
    pub fn unique_stored_bytes(&self) -> u64 {
        self.chunks.values().map(|s| u64::from(s.length)).sum()
    }

    /// The chunks the index places in `pack`.
    pub fn entries_of(&self, pack: &PackId) -> Vec<PackEntry> {
        let Some(&slot) = self.pack_slots.get(pack) else {
            return Vec::new();
        };
        let mut out: Vec<PackEntry> = self
            .chunks
            .iter()
            .filter(|(_, s)| s.pack == slot)
            .map(|(id, s)| PackEntry {
                id: *id,
                offset: s.offset,
                length: s.length,
                raw_len: s.raw_len,
                base: self.bases.get(id).copied(),
            })
            .collect();
        out.sort_by_key(|e| e.offset);
        out
    }
}

pub fn encode(packs: &[IndexedPack]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(p.id.as_bytes());
        out.extend_from_slice(&p.size.to_le_bytes());
        out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            encode_entry(e, &mut out);
        }
    }
    encode_bases(packs.iter().flat_map(|p| &p.entries), &mut out);
    out
}

pub fn decode(mut raw: &[u8]) -> Result<Vec<IndexedPack>, String> {
    let mut take = |n: usize| -> Result<&[u8], String> {
        if raw.len() < n {
            return Err(format!(
                "ends early: needed {n} more bytes, {} left",
                raw.len()
            ));
        }
        let (head, rest) = raw.split_at(n);
        raw = rest;
        Ok(head)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let count = u32_of(take(4)?) as usize;
    let mut packs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let mut id = [0u8; 32];
        id.copy_from_slice(take(32)?);
        let size_bytes = take(8)?;
        let mut size = [0u8; 8];
        size.copy_from_slice(size_bytes);
        let n = u32_of(take(4)?) as usize;
        let entries = take(n * PACK_ENTRY_LEN)?
            .chunks_exact(PACK_ENTRY_LEN)
            .map(decode_entry)
            .collect();
        packs.push(IndexedPack {
            id: PackId(id),
            size: u64::from_le_bytes(size),
            entries,
        });
    }
    if !raw.is_empty() {
        let mut all: Vec<PackEntry> = packs.iter().flat_map(|p| p.entries.clone()).collect();
        apply_bases(&mut all, raw).map_err(|e| format!("after the last pack: {e}"))?;
        let mut all = all.into_iter();
        for p in &mut packs {
            for e in &mut p.entries {
                if let Some(done) = all.next() {
                    e.base = done.base;
                }
            }
        }
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8, chunks: u8) -> IndexedPack {
        IndexedPack {
            id: PackId([n; 32]),
            size: 1000 + u64::from(n),
            entries: (0..chunks)
                .map(|i| PackEntry {
                    id: ChunkId([n.wrapping_mul(31).wrapping_add(i); 32]),
                    offset: 8 + u32::from(i) * 10,
                    length: 10,
                    raw_len: 20,
                    base: (i == 1).then_some(ChunkId([n; 32])),
                })
                .collect(),
        }
    }

    #[test]
    fn index_files_round_trip_and_reject_garbage() {
        let packs = vec![pack(1, 3), pack(2, 0), pack(3, 5)];
        let raw = encode(&packs);
        assert_eq!(decode(&raw).unwrap(), packs);
        assert!(decode(&raw[..raw.len() - 1]).is_err());
        let mut longer = raw.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn the_index_finds_chunks_and_lists_pack_entries() {
        let mut index = Index::default();
        let p = pack(4, 3);
        index.add_pack(&p);
        let loc = index.get(&p.entries[1].id).unwrap();
        assert_eq!(loc.pack, p.id);
        assert_eq!(loc.offset, 18);
        assert_eq!(index.entries_of(&p.id), p.entries);
        assert_eq!(index.unique_raw_bytes(), 60);
    }
}
