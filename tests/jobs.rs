//! The job API called from the library alone, as the agent will: no command line in between.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use heirloom_backup::config::Config;
use heirloom_backup::jobs::{self, BackupRequest, JobContext, JobError};
use heirloom_backup::pipeline::verify::Subset;
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::progress::{Progress, ProgressSink};
use support::mixed_data;
use support::repo::{backup, small_params, LocalRepo};

struct Count(Arc<AtomicU64>);

impl ProgressSink for Count {
    fn advance(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_runs_as_a_job_and_reports_damage_as_integrity() {
    let local = LocalRepo::init(&small_params()).await;
    let repo = local.open().await;
    backup(&repo, &mixed_data(3 << 20, 4)).await.unwrap();
    let ctx = JobContext::new(repo, Concurrency::default());
    let report = jobs::verify(&ctx, Some(Subset::All)).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.packs_read > 0 && report.backups == 1);

    // One pack truncated: the same job names it.
    let data = local.root().join("data");
    let dir = std::fs::read_dir(&data)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pack = std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&pack).unwrap();
    std::fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap();
    let report = jobs::verify(&ctx, None).await.unwrap();
    assert!(!report.ok());
    assert!(
        report.problems[0].object.starts_with("data/"),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_job_of_a_source_the_config_lacks_is_a_usage_error_and_reports_no_progress() {
    let local = LocalRepo::init(&small_params()).await;
    let done = Arc::new(AtomicU64::new(0));
    let ctx = JobContext::new(local.open().await, Concurrency::default())
        .with_progress(Progress::new(Count(done.clone())));
    let request = BackupRequest::default();
    let err = jobs::backup_source(
        &ctx,
        &Config::default(),
        &"nowhere".parse().unwrap(),
        &request,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, JobError::Usage(_)), "{err}");
    assert!(err.is_usage() && !err.is_integrity());
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(done.load(Ordering::Relaxed), 0);
}
