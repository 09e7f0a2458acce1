//! WAL archiving through the command line, without a server: idempotent pushes, conflicting bytes,
//! another cluster's WAL, missing and damaged archive objects.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

struct Archive {
    dir: tempfile::TempDir,
}

impl Archive {
    fn new() -> Self {
        let archive = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        support::write_key(&archive.key(), &[3u8; 32]);
        assert!(archive.run(&["init"]).status.success());
        archive
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::cargo_bin("heirloom-backup")
            .unwrap()
            .env_remove("HEIRLOOM_REPO")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .env_remove("HEIRLOOM_KEY_FILE")
            .arg("--repo")
            .arg(format!("file://{}", self.repo().display()))
            .arg("--key-file")
            .arg(self.key())
            .args(args)
            .output()
            .unwrap()
    }

    /// A file that looks like a WAL segment of cluster `system_id`: a long page header, then noise.
    fn segment(&self, name: &str, system_id: u64, fill: u8) -> PathBuf {
        let mut bytes = vec![fill; 64 * 1024];
        bytes[0..2].copy_from_slice(&0xD110u16.to_le_bytes()); // xlp_magic of PostgreSQL 15
        bytes[2..4].copy_from_slice(&0x0002u16.to_le_bytes()); // XLP_LONG_HEADER
        bytes[24..32].copy_from_slice(&system_id.to_le_bytes());
        let dir = self.dir.path().join("pg_wal");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn push(&self, path: &Path) -> Output {
        self.run(&["wal-push", "--source", "db", path.to_str().unwrap()])
    }

    fn fetch(&self, name: &str) -> (Output, PathBuf) {
        let dest = self.dir.path().join("restored").join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let out = self.run(&["wal-fetch", "--source", "db", name, dest.to_str().unwrap()]);
        (out, dest)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SEG1: &str = "000000010000000000000001";
const SEG2: &str = "000000010000000000000002";

#[test]
fn a_segment_pushed_again_with_the_same_bytes_succeeds_and_with_other_bytes_fails_loudly() {
    let a = Archive::new();
    let path = a.segment(SEG1, 7_000_000_000_000_000_001, 1);
    let original = std::fs::read(&path).unwrap();
    assert!(a.push(&path).status.success(), "{}", stderr(&a.push(&path)));
    let again = a.push(&path);
    assert!(again.status.success(), "{}", stderr(&again));

    a.segment(SEG1, 7_000_000_000_000_000_001, 2);
    let conflict = a.push(&path);
    assert_eq!(conflict.status.code(), Some(1));
    assert!(
        stderr(&conflict).contains(SEG1) && stderr(&conflict).contains("different contents"),
        "{}",
        stderr(&conflict)
    );
    // The stored copy is untouched: fetching gives the first bytes back.
    let (out, dest) = a.fetch(SEG1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dest).unwrap(), original);
}

#[test]
fn wal_from_another_cluster_is_refused_naming_both_identifiers() {
    let a = Archive::new();
    assert!(a.push(&a.segment(SEG1, 111, 1)).status.success());
    let other = a.push(&a.segment(SEG2, 222, 1));
    assert_eq!(other.status.code(), Some(1));
    let err = stderr(&other);
    assert!(
        err.contains("another cluster") && err.contains("222") && err.contains("111"),
        "{err}"
    );
    let (out, _) = a.fetch(SEG2);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the refused segment must not be stored"
    );
}

#[test]
fn history_files_and_backup_history_files_round_trip() {
    let a = Archive::new();
    let dir = a.dir.path().join("pg_wal");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        (
            "00000002.history",
            "1\t0/3000000\tno recovery target specified\n",
        ),
        (
            "000000010000000000000002.00000028.backup",
            "START WAL LOCATION: 0/2000028\n",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
        let pushed = a.push(&dir.join(name));
        assert!(pushed.status.success(), "{}", stderr(&pushed));
        let (out, dest) = a.fetch(name);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(dest).unwrap(), text);
    }
}

#[test]
fn fetching_a_file_not_in_the_archive_exits_non_zero_and_writes_nothing() {
    let a = Archive::new();
    let (out, dest) = a.fetch(SEG2);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dest.exists());
    let bad = a.run(&["wal-push", "--source", "db", "/etc/passwd"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("not a WAL file name"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_damaged_archive_object_stops_recovery_and_is_named() {
    let a = Archive::new();
    assert!(a.push(&a.segment(SEG1, 5, 9)).status.success());
    let object = a.repo().join("wal/db").join(SEG1);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&object, bytes).unwrap();
    let (out, dest) = a.fetch(SEG1);
    // Above 125: PostgreSQL aborts recovery rather than ending it early at the damage.
    assert_eq!(out.status.code(), Some(126));
    assert!(
        stderr(&out).contains(&format!("wal/db/{SEG1}")),
        "{}",
        stderr(&out)
    );
    assert!(!dest.exists());
}

#[test]
fn a_push_also_archives_the_segments_marked_ready_after_it() {
    let a = Archive::new();
    let names = [
        SEG1,
        SEG2,
        "000000010000000000000003",
        "000000010000000000000004",
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| a.segment(n, 42, 1)).collect();
    let status = a.dir.path().join("pg_wal/archive_status");
    std::fs::create_dir_all(&status).unwrap();
    for name in &names[1..] {
        std::fs::write(status.join(format!("{name}.ready")), "").unwrap();
    }
    let out = a.run(&[
        "wal-push",
        "--source",
        "db",
        "--ahead",
        "2",
        paths[0].to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = |n: &str| a.repo().join("wal/db").join(n).exists();
    assert!(
        stored(SEG1) && stored(SEG2) && stored(names[2]),
        "look-ahead segments were not archived"
    );
    assert!(
        !stored(names[3]),
        "--ahead 2 archived more than two later segments"
    );
    // The later calls find their segment archived already.
    let out = a.push(&paths[1]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_fetch_prefetches_the_next_segments_and_serves_them_from_its_spool() {
    let a = Archive::new();
    let names = [
        SEG1,
        SEG2,
        "000000010000000000000003",
        "000000010000000000000004",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = a.segment(name, 42, i as u8);
        assert!(a.push(&path).status.success());
    }
    let pg_wal = a.dir.path().join("restored-wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let fetch = |name: &str| {
        a.run(&[
            "wal-fetch",
            "--source",
            "db",
            "--prefetch",
            "2",
            name,
            pg_wal.join("RECOVERYXLOG").to_str().unwrap(),
        ])
    };
    assert!(fetch(SEG1).status.success());
    let spool = pg_wal.join("heirloom-prefetch");
    assert!(
        spool.join(SEG2).exists() && spool.join(names[2]).exists(),
        "nothing was prefetched"
    );
    assert!(
        !spool.join(names[3]).exists(),
        "--prefetch 2 fetched more than two"
    );

    // SEG2 is served from the spool even once gone from the repository, byte for byte.
    std::fs::remove_file(a.repo().join("wal/db").join(SEG2)).unwrap();
    assert!(fetch(SEG2).status.success());
    let expected = std::fs::read(a.dir.path().join("pg_wal").join(SEG2)).unwrap();
    assert_eq!(
        std::fs::read(pg_wal.join("RECOVERYXLOG")).unwrap(),
        expected
    );
    assert!(
        !spool.join(SEG2).exists(),
        "a served segment must leave the spool"
    );
    assert!(spool.join(names[3]).exists(), "the window did not move on");
}

#[test]
fn a_streamed_segment_is_rebuilt_from_a_whole_snapshot_and_its_increments() {
    use heirloom_backup::engine::postgres::names::WalFileName;
    use heirloom_backup::engine::postgres::snapshot::put_partial;
    use heirloom_backup::repo::keys::KeySource;
    use heirloom_backup::repo::Repository;
    use heirloom_backup::store::{LocalBackend, Store};

    let a = Archive::new();
    let segment: WalFileName = SEG2.parse().unwrap();
    // The segment as received in three steps: 10 000, 25 000, then 40 000 bytes of WAL.
    let size = 64 * 1024;
    let wal: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let padded = |valid: usize| {
        let mut bytes = wal[..valid].to_vec();
        bytes.resize(size, 0);
        bytes
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Store::new(std::sync::Arc::new(LocalBackend::new(a.repo())));
    let repo = runtime
        .block_on(Repository::open(
            store,
            &KeySource::key_file(
                &a.key(),
                heirloom_backup::repo::keys::Permissions::OwnerOnly,
            )
            .unwrap(),
        ))
        .unwrap();
    runtime.block_on(async {
        put_partial(&repo, "db", &segment, padded(10_000), 0, 10_000)
            .await
            .unwrap();
        put_partial(
            &repo,
            "db",
            &segment,
            wal[10_000..25_000].to_vec(),
            10_000,
            25_000,
        )
        .await
        .unwrap();
    });
    let (out, dest) = a.fetch(SEG2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), padded(25_000));

    runtime.block_on(async {
        put_partial(
            &repo,
            "db",
            &segment,
            wal[25_000..].to_vec(),
            25_000,
            40_000,
        )
        .await
        .unwrap();
    });
    std::fs::remove_file(&dest).unwrap();
    let (out, dest) = a.fetch(SEG2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), padded(40_000));

    // The middle increment lost: the chain ends where the gap begins.
    let middle = a
        .repo()
        .join(format!("wal-partial/db/{SEG2}/000000025000-000000010000"));
    std::fs::remove_file(&middle).unwrap();
    std::fs::remove_file(&dest).unwrap();
    let (out, dest) = a.fetch(SEG2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), padded(10_000));
}

/// `000000010000000000000001` … for segment numbers.
fn seg_name(n: u32) -> String {
    format!("00000001{:08X}{:08X}", 0, n)
}

#[test]
fn verify_finds_a_damaged_wal_object_and_names_a_hole_by_its_range() {
    let a = Archive::new();
    for n in 1..=7 {
        let out = a.push(&a.segment(&seg_name(n), 42, n as u8));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let clean = a.run(&["verify", "--read-data", "--json"]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["wal_files"], 7);
    assert_eq!(report["wal_files_read"], 7);

    // One flipped byte in the body of segment 3: the structure holds, the data does not.
    let object = a.repo().join("wal/db").join(seg_name(3));
    let mut bytes = std::fs::read(&object).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x20;
    std::fs::write(&object, bytes).unwrap();
    assert!(a.run(&["verify"]).status.success());
    let damaged = a.run(&["verify", "--read-data"]);
    assert_eq!(damaged.status.code(), Some(3), "{}", stderr(&damaged));
    assert!(
        stderr(&damaged).contains(&format!("wal/db/{}", seg_name(3))),
        "{}",
        stderr(&damaged)
    );
    // The subsets together read every WAL object once.
    let mut read = 0;
    for part in 1..=3 {
        let out = a.run(&[
            "verify",
            "--read-data",
            "--subset",
            &format!("{part}/3"),
            "--json",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        read += report["wal_files_read"].as_u64().unwrap();
    }
    assert_eq!(read, 7);

    // Segments 4 and 5 gone: a hole, named by its first object and its range.
    std::fs::remove_file(a.repo().join("wal/db").join(seg_name(4))).unwrap();
    std::fs::remove_file(a.repo().join("wal/db").join(seg_name(5))).unwrap();
    let hole = a.run(&["verify"]);
    assert_eq!(hole.status.code(), Some(3), "{}", stderr(&hole));
    let err = stderr(&hole);
    assert!(
        err.contains(&format!("wal/db/{}", seg_name(4)))
            && err.contains(&format!("{} .. {} (2 segments)", seg_name(4), seg_name(5))),
        "{err}"
    );
}
