//! A WAL object (an archived WAL file or a streamed snapshot of a segment) as read from the store:
//! its framing, its sealed header (keyed digest and size) and its compressed body. The first byte
//! picks what the fuzzer's bytes are: the whole object; or a header's plaintext (40 bytes) and a
//! body's zstd frame, sealed with the repository key so the header and decompression checks are
//! what meet them; or WAL bytes sealed whole, which must open back to themselves.
#![no_main]

use heirloom_backup::engine::postgres::wal_object::{open_object, seal_object};
use heirloom_backup::repo::crypto::MetaKind;
use libfuzzer_sys::fuzz_target;

mod common;

const KEY: &str = "wal/pg/000000010000000000000001";

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = open_object(keys, KEY, rest);
        }
        1 => {
            let Some((header, frame)) = rest.split_at_checked(40) else {
                return;
            };
            let header = keys.seal_named(MetaKind::Wal, &format!("{KEY}#header"), header);
            let body = keys.seal_named(MetaKind::Wal, KEY, frame);
            let mut object = b"HLMWAL01".to_vec();
            object.extend_from_slice(&(header.len() as u32).to_le_bytes());
            object.extend_from_slice(&header);
            object.extend_from_slice(&body);
            if let Ok(bytes) = open_object(keys, KEY, &object) {
                assert_eq!(keys.chunk_id(&bytes).0, header_digest(rest));
            }
        }
        _ => {
            let digest = keys.chunk_id(rest);
            let object = seal_object(keys, 1, KEY, rest, digest).expect("sealing WAL bytes");
            let back = open_object(keys, KEY, &object).expect("a sealed WAL object opens");
            assert_eq!(back, rest);
        }
    }
});

fn header_digest(plain: &[u8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&plain[..32]);
    digest
}
