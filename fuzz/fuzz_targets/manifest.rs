//! A manifest's plaintext (JSON), and what a reader derives from it.
#![no_main]

use heirloom_backup::repo::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let again = serde_json::to_vec(&m).expect("a manifest serializes");
        let back: Manifest = serde_json::from_slice(&again).expect("a written manifest parses");
        assert_eq!(back, m);
    }
});
