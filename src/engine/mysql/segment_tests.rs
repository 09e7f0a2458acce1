//! Segment names, continuity, and opening a segment object against its header: no server, no store.

use super::*;

#[test]
fn names_round_trip() {
    let name = SegmentName {
        seq: 42,
        first_time: 1_790_000_000,
        last_time: 1_790_000_005,
        server_id: 7,
        start: 4,
        end: 1234,
        file: "mysql-bin.000003".into(),
    };
    let text = name.to_string();
    assert_eq!(
        text,
        "000000000042-1790000000-1790000005-7-4-1234-mysql-bin.000003"
    );
    assert_eq!(SegmentName::parse(&text), Some(name));
    assert_eq!(SegmentName::parse("42-1-2-3-4-5-f"), None);
    assert_eq!(SegmentName::parse("000000000042-1-2-3-9-5-f"), None);
}

fn name(seq: u64, server: u32, file: &str, start: u64, end: u64) -> SegmentName {
    SegmentName {
        seq,
        first_time: 0,
        last_time: 0,
        server_id: server,
        start,
        end,
        file: file.into(),
    }
}

#[test]
fn continuity_on_names() {
    let a = name(0, 1, "binlog.000001", 4, 900);
    assert!(continues(&a, &name(1, 1, "binlog.000001", 900, 1000)));
    assert!(!continues(&a, &name(1, 1, "binlog.000001", 950, 1000)));
    assert!(continues(&a, &name(1, 1, "binlog.000002", 4, 100)));
    assert!(!continues(&a, &name(1, 1, "binlog.000003", 4, 100)));
    assert!(!continues(&a, &name(1, 2, "binlog.000001", 900, 1000)));
}

fn sealed(keys: &Keys, meta: &SegmentMeta, events: &[u8]) -> Vec<u8> {
    let key = meta.name().key(&meta.source);
    let header = serde_json::to_vec(meta).unwrap();
    let header = keys.seal_named(MetaKind::Binlog, &format!("{key}#header"), &header);
    let body = zstd::bulk::compress(events, 1).unwrap();
    let body = keys.seal_named(MetaKind::Binlog, &key, &body);
    let mut object = SEGMENT_MAGIC.to_vec();
    object.extend_from_slice(&(header.len() as u32).to_le_bytes());
    object.extend_from_slice(&header);
    object.extend_from_slice(&body);
    object
}

#[test]
fn a_header_claiming_more_events_than_the_body_holds_costs_no_more_than_the_body() {
    let keys = Keys::new(crate::repo::crypto::MasterSecret::generate());
    let mut meta: SegmentMeta = serde_json::from_value(serde_json::json!({
        "source": "notes", "seq": 1, "server_id": 1, "server_version": "10.11",
        "file": "binlog.000001", "file_created": 0, "start": 4, "end": 104, "events": 1,
        "gtid_pos": {"0": "0-1-1"}, "checksummed": false, "format_description": "",
        "resumed_by": "file", "stored_at": "2026-12-04T00:00:00Z"
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&meta.gtid_pos).unwrap(),
        serde_json::json!({"0": "0-1-1"}),
        "docs/FORMAT.md gives GTID positions as objects"
    );
    // Positions past a binlog file's 4 GiB are refused before anything is decompressed.
    meta.end = (1 << 40) + 4;
    let object = sealed(&keys, &meta, &[0u8; 100]);
    let err = open_segment(&keys, "notes", &meta.name(), &object).unwrap_err();
    assert!(
        err.to_string().contains("past a binlog file's end"),
        "{err}"
    );
    // A header claiming 1 GiB of events over a body of 100 bytes: the body's size is reported.
    meta.end = (1 << 30) + 4;
    let object = sealed(&keys, &meta, &[0u8; 100]);
    let err = open_segment(&keys, "notes", &meta.name(), &object).unwrap_err();
    assert!(
        err.to_string()
            .contains("100 bytes of events, the header says 1073741824"),
        "{err}"
    );
}
