//! An index file's plaintext: what decodes encodes back to the same packs.
#![no_main]

use heirloom_backup::repo::index::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packs) = decode(data) {
        let again = decode(&encode(&packs)).expect("an encoded index decodes");
        assert_eq!(again, packs);
    }
});
