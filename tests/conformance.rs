//! One repository suite, run against every kind of store: memory://, file://, s3:// (moto) and
//! az:// (azurite). Each store is held to the same contract.

mod support;

use chrono::Utc;
use heirloom_backup::pipeline::verify::{verify, Subset};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::repo::format::InitParams;
use heirloom_backup::repo::Repository;
use heirloom_backup::store::PutOutcome;
use support::repo::{backup, restore, sha, test_key};
use support::{mixed_data, Location};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

async fn stored_bytes(loc: &Location) -> u64 {
    loc.open()
        .list("")
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

async fn conformance(loc: Location) {
    // The store itself: create-if-absent never overwrites.
    let store = loc.open();
    assert_eq!(
        store.put_if_absent("probe/x", "one").await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_if_absent("probe/x", "two").await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(&store.get("probe/x").await.unwrap()[..], b"one");
    assert_eq!(&store.get_range("probe/x", 1..3).await.unwrap()[..], b"ne");
    assert!(store.get("probe/missing").await.unwrap_err().is_not_found());
    store.delete("probe/x").await.unwrap();
    assert!(store.list("probe/").await.unwrap().is_empty());

    let params = InitParams::default();
    Repository::init(loc.open(), &test_key(), &params, Utc::now())
        .await
        .unwrap();
    let again = Repository::init(loc.open(), &test_key(), &params, Utc::now()).await;
    assert!(again.is_err(), "a second init must be refused");
    let repo = Repository::open(loc.open(), &test_key()).await.unwrap();

    // Sizes around each chunk bound, each read back byte for byte.
    let (min, avg, max) = (256 * KIB, MIB, 4 * MIB);
    for size in [
        0,
        1,
        min - 1,
        min,
        min + 1,
        avg - 1,
        avg + 1,
        max - 1,
        max,
        max + 1,
        3 * max + 17,
    ] {
        let data = mixed_data(size, size as u64);
        let summary = backup(&repo, &data).await.unwrap();
        assert_eq!(summary.size, size as u64);
        let back = restore(&repo, &summary.id)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(back.len(), size, "size {size}");
        assert_eq!(sha(&back), sha(&data), "size {size}");
    }

    // A 300 MiB mixed stream, then the same with a few changed regions: only those chunks are added.
    let mut data = mixed_data(300 * MIB, 300);
    let first = backup(&repo, &data).await.unwrap();
    let before = stored_bytes(&loc).await;
    for at in [17 * MIB + 5, 150 * MIB, 299 * MIB] {
        for b in &mut data[at..at + 100] {
            *b ^= 0x5a;
        }
    }
    let second = backup(&repo, &data).await.unwrap();
    let growth = stored_bytes(&loc).await - before;
    assert!(
        second.new_chunks <= 6,
        "{} new chunks for 3 small edits",
        second.new_chunks
    );
    assert!(
        growth < 16 * MIB as u64,
        "stored bytes grew by {growth} for 3 small edits"
    );
    assert_eq!(
        sha(&restore(&repo, &second.id)
            .await
            .map_err(|(e, _)| e)
            .unwrap()),
        sha(&data)
    );
    let original = restore(&repo, &first.id).await.map_err(|(e, _)| e).unwrap();
    assert_eq!(original.len(), data.len());
    assert_ne!(sha(&original), sha(&data));

    let report = verify(&repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.backups, 13);
    assert!(
        report.chunks_read >= 200,
        "{} chunks read",
        report.chunks_read
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_memory() {
    conformance(Location {
        url: "memory://conformance".into(),
        options: vec![],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_file() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Location {
        url: format!("file://{}", dir.path().join("repo").display()),
        options: vec![],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_s3_moto() {
    let server = support::start_moto();
    conformance(support::s3_location(&server, "team/prod")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_azure_azurite() {
    let server = support::start_azurite();
    conformance(support::azure_location(&server, "team/prod")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_gcs_fake_gcs_server() {
    let server = support::start_fake_gcs();
    conformance(support::gcs_location(&server, "team/prod")).await;
}
