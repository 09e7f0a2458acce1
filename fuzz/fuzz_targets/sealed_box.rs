//! A sealed box as read from the store (nonce, ciphertext, tag): never a panic, whatever its length.
#![no_main]

use heirloom_backup::repo::crypto::{cipher_from, open, MetaKind};
use heirloom_backup::repo::ids::ChunkId;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = open(&cipher_from(&[3u8; 32]), data, b"fuzz");
    let keys = common::keys();
    let _ = keys.open_chunk(&ChunkId([1u8; 32]), data);
    for kind in [MetaKind::PackHeader, MetaKind::Index, MetaKind::Manifest] {
        let _ = keys.open_meta(kind, data);
    }
    let _ = keys.open_named(MetaKind::Wal, "pg/000000010000000000000001", data);
});
