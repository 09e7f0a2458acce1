//! `heirloom.json`, the repository's one unsealed object: anyone who can write the bucket writes it.
#![no_main]

use heirloom_backup::repo::format::RepoConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = RepoConfig::parse(data) {
        // What parses is what a reader acts on: it must survive being written back and read again.
        let again = serde_json::to_vec(&config).expect("a parsed config serializes");
        RepoConfig::parse(&again).expect("a written config parses");
    }
});
