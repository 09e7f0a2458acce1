//! Object names as a listing returns them (anyone who can write the bucket names objects), and
//! the names inside them: binlog segments, WAL files, PostgreSQL timeline histories.
#![no_main]

use heirloom_backup::engine::mysql::segment::SegmentName;
use heirloom_backup::engine::postgres::plan::parse_history;
use heirloom_backup::repo::layout::ObjectKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ObjectKey::parse(text);
    if let Some(name) = SegmentName::parse(text) {
        let _ = name.key("fuzz");
    }
    let _ = parse_history(text);
});
