//! Faults injected by a store wrapper: an interrupted backup leaves the repository valid, earlier
//! backups intact, and a retry completes it; a truncated read is an error, never wrong bytes.

mod support;

use std::sync::Arc;

use heirloom_backup::pipeline::verify::{verify, Subset};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::repo::{RepoError, Repository};
use heirloom_backup::store::faults::{FaultPlan, FaultyBackend};
use heirloom_backup::store::Store;
use support::mixed_data;
use support::repo::{backup, restore, sha, small_params, test_key, LocalRepo};

const MIB: usize = 1024 * 1024;

/// A local repository, read healthy or through a store that fails as planned.
struct Setup(LocalRepo);

impl Setup {
    async fn new() -> Self {
        Self(LocalRepo::init(&small_params()).await)
    }

    async fn healthy(&self) -> Repository {
        self.0.open().await
    }

    async fn faulty(&self, plan: FaultPlan) -> Repository {
        let backend = Arc::new(FaultyBackend::new(self.0.local.clone(), plan));
        Repository::open(Store::new(backend), &test_key())
            .await
            .unwrap()
    }
}

async fn assert_valid(repo: &Repository) {
    let report = verify(repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        repo.store().list("locks/").await.unwrap().is_empty(),
        "a lease was left behind"
    );
}

async fn interrupted_backup_then_retry(plan: FaultPlan) {
    let setup = Setup::new().await;
    let healthy = setup.healthy().await;
    let earlier = mixed_data(6 * MIB, 1);
    let first = backup(&healthy, &earlier).await.unwrap();

    let data = mixed_data(16 * MIB, 2);
    let faulty = setup.faulty(plan).await;
    let err = backup(&faulty, &data).await.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");

    // Nothing of the failed backup is visible as a backup, and everything stored is sound.
    assert_eq!(healthy.backup_ids().await.unwrap(), vec![first.id.clone()]);
    assert_valid(&healthy).await;
    assert_eq!(
        sha(&restore(&healthy, &first.id)
            .await
            .map_err(|(e, _)| e)
            .unwrap()),
        sha(&earlier)
    );

    // The retry completes and reads back exactly.
    let retried = backup(&healthy, &data).await.unwrap();
    assert_eq!(
        sha(&restore(&healthy, &retried.id)
            .await
            .map_err(|(e, _)| e)
            .unwrap()),
        sha(&data)
    );
    assert_valid(&healthy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_lost_mid_backup_leaves_the_repository_valid_and_the_retry_reuses_uploads() {
    let setup = Setup::new().await;
    let healthy = setup.healthy().await;
    let data = mixed_data(16 * MIB, 3);
    let faulty = setup
        .faulty(FaultPlan {
            fail_puts_after: Some(4),
            only_prefix: Some("data/".into()),
            ..Default::default()
        })
        .await;
    assert!(backup(&faulty, &data).await.is_err());
    assert_valid(&healthy).await;
    // The packs that made it were indexed, so the retry uploads less than everything.
    let retried = backup(&healthy, &data).await.unwrap();
    assert!(
        retried.new_chunks < retried.chunks,
        "{} of {} chunks uploaded again",
        retried.new_chunks,
        retried.chunks
    );
    assert_eq!(
        sha(&restore(&healthy, &retried.id)
            .await
            .map_err(|(e, _)| e)
            .unwrap()),
        sha(&data)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_pack_uploads_interrupt_a_backup_safely() {
    interrupted_backup_then_retry(FaultPlan {
        fail_puts_after: Some(2),
        only_prefix: Some("data/".into()),
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_index_writes_interrupt_a_backup_safely() {
    interrupted_backup_then_retry(FaultPlan {
        fail_every_nth_put: Some(1),
        only_prefix: Some("index/".into()),
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_manifest_writes_interrupt_a_backup_safely() {
    interrupted_backup_then_retry(FaultPlan {
        fail_every_nth_put: Some(1),
        only_prefix: Some("backups/".into()),
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_read_is_an_integrity_error_and_no_wrong_byte_is_written() {
    let setup = Setup::new().await;
    let healthy = setup.healthy().await;
    let data = mixed_data(8 * MIB, 4);
    let id = backup(&healthy, &data).await.unwrap().id;
    let faulty = setup
        .faulty(FaultPlan {
            truncate_every_nth_get: Some(3),
            only_prefix: Some("data/".into()),
            ..Default::default()
        })
        .await;
    let (err, written) = restore(&faulty, &id).await.unwrap_err();
    assert!(err.is_integrity(), "{err}");
    assert!(
        matches!(err, RepoError::Corrupt { ref object, .. } if object.starts_with("data/")),
        "{err}"
    );
    assert!(written.len() < data.len());
    assert!(data.starts_with(&written));
    // The stored data was never touched.
    assert_valid(&healthy).await;
}

/// A verify whose record cannot be written (a store that refuses puts there, as read-only
/// credentials would) still checks everything, and says that it is not recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_verify_that_cannot_be_recorded_still_checks_and_says_so() {
    let setup = Setup::new().await;
    let healthy = setup.healthy().await;
    backup(&healthy, &mixed_data(2 * MIB, 5)).await.unwrap();
    let faulty = setup
        .faulty(FaultPlan {
            fail_puts_after: Some(0),
            only_prefix: Some("verifies/".into()),
            ..Default::default()
        })
        .await;
    let ctx = heirloom_backup::jobs::JobContext::new(faulty, Concurrency::default());
    let report = heirloom_backup::jobs::verify(&ctx, Some(Subset::All))
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.backups, 1);
    assert!(report.record.is_none());
    let why = report.record_failed.unwrap();
    assert!(
        why.contains("injected fault") && why.contains("verifies/"),
        "{why}"
    );
    assert!(healthy.verify_records().await.unwrap().is_empty());
}
