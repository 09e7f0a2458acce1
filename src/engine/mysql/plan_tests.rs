//! The MySQL/MariaDB planner on synthetic manifests and binlog chains: no server, no store.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::position::Gtid;
use crate::repo::manifest::IdPrecision;
use crate::restore::point::Instant;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn gtid(server_id: u32, seq: u64) -> Gtid {
    Gtid {
        domain: 0,
        server_id,
        seq,
    }
}

fn pos(server_id: u32, seq: u64) -> GtidPos {
    let mut p = GtidPos::default();
    p.apply(gtid(server_id, seq));
    p
}

/// A dump of source `db` on `server_id` at `file:position`, holding transactions up to `seq`,
/// consistent `seconds` after t0.
fn dump(server_id: u32, file: &str, position: u64, seq: u64, seconds: i64) -> Manifest {
    let at = t0() + Duration::seconds(seconds);
    let mut m = Manifest::new(
        &"db".parse().unwrap(),
        BackupKind::MysqlDump,
        BTreeMap::new(),
        at,
        IdPrecision::Milliseconds,
    );
    m.mysql = Some(MysqlPoint {
        server_id,
        server_version: "11.4".into(),
        binlog_file: file.into(),
        binlog_pos: position,
        gtid_pos: pos(server_id, seq),
        consistent_at: at,
        databases: vec!["notes".into()],
    });
    m
}

/// Builds a chain segment by segment.
#[derive(Default)]
struct Chain {
    metas: Vec<SegmentMeta>,
}

impl Chain {
    /// A segment of `server_id`'s `file` from `start` to `end`, with transactions `seqs` (of that
    /// server) logged `first..=last` seconds after t0.
    fn segment(
        &mut self,
        server_id: u32,
        file: &str,
        (start, end): (u64, u64),
        seqs: (u64, u64),
        (first, last): (i64, i64),
    ) -> &mut SegmentMeta {
        let before = self.metas.last().map(|m| m.gtid_pos.clone());
        let mut gtid_pos = before.unwrap_or_default();
        gtid_pos.apply(gtid(server_id, seqs.1));
        self.metas.push(SegmentMeta {
            source: "db".into(),
            seq: self.metas.len() as u64 + 1,
            server_id,
            server_version: "11.4".into(),
            file: file.into(),
            file_created: 1,
            start,
            end,
            withheld: 0,
            events: 2 * (seqs.1 - seqs.0 + 1),
            first_event_time: Some(t0() + Duration::seconds(first)),
            last_event_time: Some(t0() + Duration::seconds(last)),
            first_gtid: Some(gtid(server_id, seqs.0)),
            last_gtid: Some(gtid(server_id, seqs.1)),
            gtid_pos,
            checksummed: true,
            format_description: String::new(),
            resumed_by: "file".into(),
            resumed_from: None,
            rotated_to: None,
            stored_at: t0(),
        });
        self.metas.last_mut().unwrap()
    }

    /// Plans `point` against this chain, reading headers as the planner asks, as the engine does,
    /// and counting the headers it read.
    fn plan(&self, manifests: &[Manifest], point: RestorePoint) -> (MyPlan, usize) {
        let mut coverage = BinlogCoverage {
            segments: self.metas.iter().map(SegmentMeta::name).collect(),
            metas: BTreeMap::new(),
        };
        loop {
            match plan("db", manifests, BackupKind::MysqlDump, &point, &coverage).unwrap() {
                Planned::Plan(p) => return (*p, coverage.metas.len()),
                Planned::Need(names) => {
                    assert!(!names.is_empty());
                    for n in names {
                        assert!(
                            !coverage.metas.contains_key(&n.seq),
                            "asked twice for {n:?}"
                        );
                        let meta = self.metas.iter().find(|m| m.seq == n.seq).unwrap();
                        coverage.metas.insert(n.seq, meta.clone());
                    }
                }
            }
        }
    }
}

fn at(seconds: f64) -> RestorePoint {
    RestorePoint::Time(Instant::utc(
        t0() + Duration::milliseconds((seconds * 1000.0) as i64),
    ))
}

/// Server 1 logs transactions 1..=10 in binlog.000001; the dump is taken after transaction 4.
fn one_server() -> (Chain, Vec<Manifest>) {
    let mut chain = Chain::default();
    chain.segment(1, "binlog.000001", (4, 1000), (1, 4), (0, 4));
    chain.segment(1, "binlog.000001", (1000, 2000), (5, 7), (10, 12));
    chain.segment(1, "binlog.000001", (2000, 3000), (8, 10), (20, 22));
    (chain, vec![dump(1, "binlog.000001", 1000, 4, 5)])
}

#[test]
fn latest_replays_every_segment_after_the_dump_without_reading_a_header() {
    let (chain, dumps) = one_server();
    let (plan, read) = chain.plan(&dumps, RestorePoint::Latest);
    assert!(plan.is_complete());
    assert_eq!(plan.segment_count, 2);
    assert_eq!(plan.binlog_bytes, 2000);
    assert_eq!(
        plan.binlog_from.as_deref(),
        Some("server 1 binlog.000001:1000")
    );
    assert_eq!(read, 0, "positions and times are in the names");
}

#[test]
fn a_target_time_inside_a_transactions_second_stops_before_that_second() {
    let (chain, dumps) = one_server();
    // 12.5 s: inside the second of transaction 7 (logged at 12 s). The segment holding that
    // second is the last replayed; the replay leaves out what was logged in second 12 or later.
    let (plan, _) = chain.plan(&dumps, at(12.5));
    assert!(plan.is_complete());
    assert_eq!(plan.segment_count, 1);
    assert!(
        plan.stop.contains("2026-11-20T12:00:12+00:00"),
        "{}",
        plan.stop
    );
    assert!(plan.stop.contains("whole seconds"));
    // 15 s: between segments; the next one (first event at 20 s) is read to be sure, and cut.
    let (plan, _) = chain.plan(&dumps, at(15.0));
    assert_eq!(plan.segment_count, 2);
    // Before the dump: refused with the first dump's time.
    let err = super::plan(
        "db",
        &dumps,
        BackupKind::MysqlDump,
        &at(1.0),
        &BinlogCoverage::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("before the first dump"), "{err}");
}

#[test]
fn a_gtid_already_inside_the_dump_needs_no_binlog() {
    let (chain, mut dumps) = one_server();
    dumps.push(dump(1, "binlog.000001", 2000, 7, 15));
    // 0-1-6: the newer dump (7) is past it; the older (4) is not, and replays 5 and 6.
    let (plan, _) = chain.plan(&dumps, RestorePoint::Gtid(gtid(1, 6)));
    assert_eq!(plan.backup, dumps[0].id);
    assert_eq!(plan.segment_count, 1);
    assert!(plan.is_complete());
    // 0-1-7: exactly the newer dump's position: that dump alone.
    let (plan, read) = chain.plan(&dumps, RestorePoint::Gtid(gtid(1, 7)));
    assert_eq!(plan.backup, dumps[1].id);
    assert_eq!(plan.segment_count, 0);
    assert_eq!(read, 0);
    assert!(plan.stop.contains("already holds"), "{}", plan.stop);
    // 0-1-3: every dump holds transactions after it: nothing can stop there.
    let err = super::plan(
        "db",
        &dumps,
        BackupKind::MysqlDump,
        &RestorePoint::Gtid(gtid(1, 3)),
        &BinlogCoverage::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("past GTID 0-1-3"), "{err}");
}

#[test]
fn a_gtid_past_the_stored_binlog_is_a_gap_at_the_end() {
    let (chain, dumps) = one_server();
    let (plan, read) = chain.plan(&dumps, RestorePoint::Gtid(gtid(1, 50)));
    assert!(!plan.is_complete());
    assert!(plan
        .problem()
        .unwrap()
        .contains("ends at server 1 binlog.000001:3000"));
    assert_eq!(
        read, 2,
        "each segment after the dump was read for its GTIDs"
    );
}

#[test]
fn a_hole_in_the_binlog_is_a_gap_with_its_exact_range() {
    let mut chain = Chain::default();
    chain.segment(1, "binlog.000001", (4, 1000), (1, 4), (0, 4));
    chain.segment(1, "binlog.000001", (1500, 2000), (6, 7), (10, 12));
    let dumps = vec![dump(1, "binlog.000001", 500, 2, 1)];
    let (plan, _) = chain.plan(&dumps, RestorePoint::Latest);
    assert_eq!(plan.gaps.len(), 1);
    let gap = &plan.gaps[0];
    assert_eq!(gap.first, "server 1 binlog.000001:1000");
    assert_eq!(gap.last, "server 1 binlog.000001:1500");
    assert!(gap.blocking && !plan.is_complete());
}

#[test]
fn a_failover_by_gtid_is_followed_and_named() {
    let mut chain = Chain::default();
    chain.segment(1, "binlog.000001", (4, 1000), (1, 4), (0, 4));
    chain.segment(1, "binlog.000001", (1000, 2000), (5, 6), (10, 11));
    // Server 2 took over with everything server 1 had (0-1-6), and logs 0-2-7 on.
    let after = chain.segment(2, "mariadb-bin.000003", (4, 900), (7, 9), (30, 32));
    after.resumed_by = "gtid".into();
    after.resumed_from = Some(pos(1, 6));
    let dumps = vec![dump(1, "binlog.000001", 1000, 4, 5)];
    let (plan, _) = chain.plan(&dumps, RestorePoint::Latest);
    assert!(plan.is_complete(), "{:?}", plan.problem());
    assert_eq!(plan.segment_count, 2);
    assert_eq!(
        plan.forks,
        ["failover from server 1 to server 2 at GTID 0-1-6"]
    );
    assert_eq!(
        plan.caps,
        [Some(pos(1, 6)), None],
        "server 1 kept all it had"
    );
    assert_eq!(
        plan.binlog_to.as_deref(),
        Some("server 2 mariadb-bin.000003:900")
    );
    // A GTID of the new primary is found across the failover.
    let (plan, _) = chain.plan(&dumps, RestorePoint::Gtid(gtid(2, 8)));
    assert_eq!(plan.segment_count, 2);
}

#[test]
fn a_divergent_failover_names_what_the_new_history_lacks() {
    let mut chain = Chain::default();
    chain.segment(1, "binlog.000001", (4, 1000), (1, 4), (0, 4));
    chain.segment(1, "binlog.000001", (1000, 2000), (5, 8), (10, 11));
    // Server 2 had only 0-1-6 when it took over: 7 and 8 of server 1 are not in its history.
    let after = chain.segment(2, "mariadb-bin.000001", (4, 900), (7, 9), (30, 32));
    after.resumed_by = "gtid".into();
    after.resumed_from = Some(pos(1, 6));
    let dumps = vec![dump(1, "binlog.000001", 1000, 4, 5)];
    let (plan, _) = chain.plan(&dumps, RestorePoint::Latest);
    assert!(plan.is_complete());
    assert_eq!(plan.forks.len(), 2);
    assert!(
        plan.forks[1].contains("continued from GTID 0-1-6, not 0-1-8"),
        "{:?}",
        plan.forks
    );
    // The replay of server 1's segment stops at what server 2 continued from.
    assert_eq!(plan.caps[0], Some(pos(1, 6)));
}

#[test]
fn a_dump_of_another_server_is_placed_in_the_chain_by_bisection() {
    let mut chain = Chain::default();
    for i in 0..32u64 {
        chain.segment(
            1,
            "binlog.000001",
            (4 + i * 100, 104 + i * 100),
            (i * 2 + 1, i * 2 + 2),
            (i as i64, i as i64),
        );
    }
    // Taken on a replica (server 9): its file and position say nothing of server 1's chain.
    let mut replica = dump(9, "relay.000001", 77, 0, 40);
    replica.mysql.as_mut().unwrap().gtid_pos = pos(1, 40);
    let (plan, read) = chain.plan(&[replica], RestorePoint::Latest);
    // Transaction 40 ends segment 20 (0-based 19): replay from segment 21 on.
    assert_eq!(plan.segment_count, 12);
    assert!(
        read <= 7,
        "bisection reads about log2(32)+1 headers, not {read}"
    );
}
