//! A binary log as a server sends it or a segment holds it: every event, and every accessor a
//! reader calls on one, with and without checksums.
#![no_main]

use heirloom_backup::engine::mysql::binlog::{Events, GroupTracker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for holes in [false, true] {
        let events = if holes {
            Events::with_holes(data, 4)
        } else {
            Events::new(data, 4)
        };
        let mut tracker = GroupTracker::default();
        for item in events {
            let Ok((_, event)) = item else {
                break;
            };
            let _ = event.header.is_artificial();
            let _ = event.mariadb_gtid();
            let _ = event.mariadb_gtid_list();
            let _ = event.checksum_alg();
            for checksummed in [false, true] {
                let _ = event.body(checksummed);
                let _ = event.query(checksummed);
                let _ = event.rotate(checksummed);
                let _ = event.verify_checksum(checksummed);
                let _ = tracker.observe(&event, checksummed);
            }
        }
    }
});
