//! `heirloom.yaml`: every error names a field; nothing panics.
#![no_main]

use heirloom_backup::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, "heirloom.yaml");
    }
});
