//! Collection decided on made-up holdings: no store, no clock.

use chrono::{Duration, TimeZone};

use super::*;
use crate::repo::pack::PackEntry;

fn chunk(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn pack(n: u8, chunks: &[u8]) -> IndexedPack {
    IndexedPack {
        id: PackId([n; 32]),
        size: 100 * chunks.len() as u64,
        entries: chunks
            .iter()
            .enumerate()
            .map(|(i, c)| PackEntry {
                id: chunk(*c),
                offset: 8 + 100 * i as u32,
                length: 100,
                raw_len: 100,
                base: None,
            })
            .collect(),
    }
}

fn holdings(
    packs: Vec<IndexedPack>,
    live: &[u8],
    marks: Vec<(DateTime<Utc>, Vec<u8>)>,
) -> Holdings {
    Holdings {
        stored: packs.iter().map(|p| (p.id, p.size)).collect(),
        index_files: vec![("index/a".into(), packs)],
        live: live.iter().map(|c| chunk(*c)).collect(),
        marks: marks
            .into_iter()
            .map(|(at, ids)| Mark {
                key: "marks/x".into(),
                record: MarkRecord {
                    version: 1,
                    at,
                    host: "h".into(),
                    packs: ids
                        .iter()
                        .map(|n| MarkedPack {
                            pack: PackId([*n; 32]).to_hex(),
                            bytes: 100,
                            why: MarkReason::Unreferenced,
                        })
                        .collect(),
                },
            })
            .collect(),
        written: HashMap::new(),
    }
}

fn ids(list: &[MarkedPack]) -> Vec<String> {
    list.iter().map(|p| p.pack[..2].to_owned()).collect()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 10, 12, 0, 0).unwrap()
}

#[test]
fn an_unreferenced_pack_is_marked_first_and_deleted_only_after_the_grace_period() {
    let options = GcOptions::default();
    let h = holdings(vec![pack(1, &[1, 2]), pack(2, &[3])], &[1, 2], vec![]);
    let plan = plan_gc(&h, now(), &options);
    assert_eq!(ids(&plan.mark), ["02"]);
    assert!(plan.delete.is_empty());
    // Marked an hour ago: waits until the day is over.
    let h = holdings(
        vec![pack(1, &[1, 2]), pack(2, &[3])],
        &[1, 2],
        vec![(now() - Duration::hours(1), vec![2])],
    );
    let plan = plan_gc(&h, now(), &options);
    assert!(plan.mark.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.waiting[0].1, now() + Duration::hours(23));
    // Marked a day ago: deleted.
    let plan = plan_gc(&h, now() + Duration::hours(23), &options);
    assert_eq!(ids(&plan.delete), ["02"]);
}

#[test]
fn a_marked_pack_referenced_again_is_revived_and_a_copy_elsewhere_lets_it_go() {
    let options = GcOptions::default();
    let old = now() - Duration::days(2);
    // Chunk 3 is live again, and only pack 2 holds it.
    let h = holdings(
        vec![pack(1, &[1]), pack(2, &[3])],
        &[1, 3],
        vec![(old, vec![2])],
    );
    let plan = plan_gc(&h, now(), &options);
    assert_eq!(ids(&plan.revive), ["02"]);
    assert!(plan.delete.is_empty());
    // Two marked packs hold the same live chunk: one is revived, the other may go.
    let h = holdings(
        vec![pack(1, &[1]), pack(2, &[3]), pack(3, &[3])],
        &[1, 3],
        vec![(old, vec![2, 3])],
    );
    let plan = plan_gc(&h, now(), &options);
    assert_eq!(plan.revive.len() + plan.delete.len(), 2);
    assert_eq!(plan.revive.len(), 1);
}

#[test]
fn mostly_dead_packs_are_repacked_and_unindexed_ones_marked() {
    let options = GcOptions::default();
    let mut h = holdings(
        vec![pack(1, &[1, 2, 3]), pack(2, &[4, 5])],
        &[1, 4, 5],
        vec![],
    );
    // A pack no index names (an interrupted backup's).
    h.stored.push((PackId([9; 32]), 50));
    let plan = plan_gc(&h, now(), &options);
    assert_eq!(ids(&plan.repack), ["01"], "two thirds of pack 1 are dead");
    assert_eq!(ids(&plan.mark), ["09"]);
    assert_eq!(plan.mark[0].why, MarkReason::Unindexed);
    // Above 1, nothing is ever repacked.
    let never = GcOptions {
        repack_dead: 1.1,
        ..options
    };
    assert!(plan_gc(&h, now(), &never).repack.is_empty());
}

#[test]
fn a_pack_the_bucket_still_locks_stays_marked_until_its_lock_and_its_index_files_end() {
    use crate::repo::object_lock::{LockMode, ObjectLock};
    let options = GcOptions {
        lock: Some(ObjectLock {
            mode: LockMode::Compliance,
            days: 3,
        }),
        ..GcOptions::default()
    };
    let mut h = holdings(
        vec![pack(1, &[1]), pack(2, &[3])],
        &[1],
        vec![(now() - Duration::days(2), vec![2])],
    );
    let two = pack_key(&PackId([2; 32]));
    // Written two days ago under a three-day lock: due, but locked one more day.
    h.written.insert(two.clone(), now() - Duration::days(2));
    h.written.insert(
        "index/a".into(),
        now() - Duration::days(2) - Duration::hours(1),
    );
    let plan = plan_gc(&h, now(), &options);
    assert!(plan.delete.is_empty());
    assert_eq!(
        ids(&plan.locked.iter().map(|l| l.0.clone()).collect::<Vec<_>>()),
        ["02"]
    );
    assert_eq!(plan.locked[0].1, now() + Duration::days(1));
    // An index file naming it, rewritten an hour ago, holds it longer.
    h.written
        .insert("index/a".into(), now() - Duration::hours(1));
    let plan = plan_gc(&h, now() + Duration::days(1), &options);
    assert_eq!(
        plan.locked[0].1,
        now() + Duration::days(3) - Duration::hours(1)
    );
    // Once every lock has ended, it goes.
    let plan = plan_gc(&h, now() + Duration::days(3), &options);
    assert!(plan.locked.is_empty());
    assert_eq!(ids(&plan.delete), ["02"]);
    // Without a lock, the times do not matter.
    let plan = plan_gc(&h, now(), &GcOptions::default());
    assert_eq!(ids(&plan.delete), ["02"]);
}
