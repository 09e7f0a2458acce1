//! A binlog segment object as read from the store: its framing, its sealed JSON header and its
//! compressed events, every event checked against the header. The first byte picks what the
//! fuzzer's bytes are: the whole object under a fixed name; or a little-endian u16 header length,
//! the header's JSON and the events, sealed (and the events compressed) with the repository key
//! under the name the header gives, so the header's checks and the event reader are what meet them.
#![no_main]

use heirloom_backup::engine::mysql::segment::{
    open_segment, SegmentMeta, SegmentName, SEGMENT_MAGIC,
};
use heirloom_backup::repo::crypto::MetaKind;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let name = SegmentName {
            seq: 1,
            first_time: 0,
            last_time: 0,
            server_id: 1,
            start: 4,
            end: 256,
            file: "binlog.000001".into(),
        };
        let _ = open_segment(keys, "fuzz", &name, rest);
        return;
    }
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Some((header, events)) = rest.split_at_checked(u16::from_le_bytes(*len) as usize) else {
        return;
    };
    let Ok(meta) = serde_json::from_slice::<SegmentMeta>(header) else {
        return;
    };
    let name = meta.name();
    let key = name.key(&meta.source);
    let sealed_header = keys.seal_named(MetaKind::Binlog, &format!("{key}#header"), header);
    let compressed = zstd::bulk::compress(events, 1).expect("compressing events");
    let body = keys.seal_named(MetaKind::Binlog, &key, &compressed);
    let mut object = SEGMENT_MAGIC.to_vec();
    object.extend_from_slice(&(sealed_header.len() as u32).to_le_bytes());
    object.extend_from_slice(&sealed_header);
    object.extend_from_slice(&body);
    if let Ok((opened, bytes)) = open_segment(keys, &meta.source, &name, &object) {
        assert_eq!(opened, meta);
        assert_eq!(bytes, events);
    }
});
