//! A pack as read from the store: its magic, data, and a header whose plaintext is the fuzzer's
//! (sealed with the repository key, so the entry parser is what meets it), or whose framing is.
#![no_main]

use heirloom_backup::repo::crypto::MetaKind;
use heirloom_backup::repo::pack::{read_header, PACK_MAGIC};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    // The bytes as a whole pack: framing, lengths.
    let _ = read_header(keys, data);
    // The bytes as a header's plaintext, behind 1 KiB of chunk data.
    let mut pack = PACK_MAGIC.to_vec();
    pack.extend_from_slice(&[0u8; 1024]);
    let header = keys.seal_meta(MetaKind::PackHeader, data);
    pack.extend_from_slice(&header);
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    if let Ok(entries) = read_header(keys, &pack) {
        for e in entries {
            assert!(e.offset as usize >= PACK_MAGIC.len());
            assert!(e.offset as usize + e.length as usize <= PACK_MAGIC.len() + 1024);
        }
    }
});
