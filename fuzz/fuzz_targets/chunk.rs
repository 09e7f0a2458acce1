//! A stored chunk after its seal is opened: the encoding byte and its payload (raw, a zstd frame,
//! or a delta naming its base), decoded against a length the index gives. The fuzzer's bytes are
//! sealed with the repository key first, so the decoder, not the AEAD, is what meets them.
#![no_main]

use heirloom_backup::repo::blob::open_chunk_with;
use heirloom_backup::repo::crypto::NONCE_LEN;
use heirloom_backup::repo::ids::ChunkId;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((len, encoded)) = data.split_first_chunk::<3>() else {
        return;
    };
    // The index's raw length is sealed too; a chunker writes at most 16 MiB.
    let raw_len = u32::from_le_bytes([len[0], len[1], len[2], 0]);
    let keys = common::keys();
    let id = ChunkId([9u8; 32]);
    let mut sealed = vec![0u8; NONCE_LEN];
    sealed.extend_from_slice(encoded);
    keys.seal_chunk_in_place(&id, &mut sealed);
    let base_plain = [0u8; 4096];
    let base = ChunkId(
        encoded
            .get(1..33)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0u8; 32]),
    );
    if let Ok(plain) = open_chunk_with(keys, &id, &sealed, raw_len, Some((&base, &base_plain))) {
        assert_eq!(plain.len(), raw_len as usize);
    }
});
