//! The job API called from the library alone, as the agent will: no command line in between.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Datelike;
use std::sync::Arc;

use heirloom_backup::config::Config;
use heirloom_backup::jobs::{self, BackupRequest, Clock, JobContext, JobError, Shutdown};
use heirloom_backup::pipeline::verify::Subset;
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::progress::{Progress, ProgressSink};
use heirloom_backup::restore::point::RestorePoint;
use support::mixed_data;
use support::repo::{backup, small_params, LocalRepo};

/// A stream backup of source `notes`.
fn notes_options() -> jobs::BackupOptions {
    jobs::BackupOptions {
        source: "notes".parse().unwrap(),
        labels: Default::default(),
        concurrency: Concurrency::default(),
        allow_empty: false,
        time: None,
    }
}

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

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_backup_job_takes_its_time_from_the_context_clock_and_list_and_stats_see_it() {
    let local = LocalRepo::init(&small_params()).await;
    let at = chrono::DateTime::parse_from_rfc3339("2029-02-28T12:00:00Z")
        .unwrap()
        .to_utc();
    let done = Arc::new(AtomicU64::new(0));
    let ctx = JobContext::new(local.open().await, Concurrency::default())
        .with_clock(Clock::fixed(at))
        .with_progress(Progress::new(Count(done.clone())));
    let data = mixed_data(1 << 20, 7);
    let options = notes_options();
    let summary = jobs::backup_stream(
        &ctx,
        &Config::default(),
        std::io::Cursor::new(data.clone()),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(summary.size, data.len() as u64);
    assert_eq!(done.load(Ordering::Relaxed), data.len() as u64);
    let listed = jobs::list(&ctx, Some(&"notes".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].started, at, "the backup is taken as of the clock");
    assert!(
        listed[0].id.as_str().starts_with("20290228T120000"),
        "{}",
        listed[0].id
    );
    assert!(jobs::list(&ctx, Some(&"other".parse().unwrap()))
        .await
        .unwrap()
        .is_empty());
    let stats = jobs::stats(&ctx).await.unwrap();
    assert_eq!((stats.backups, stats.sources), (1, 1));
    assert_eq!(stats.logical_bytes, data.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_job_refuses_what_its_engine_cannot_do_before_touching_anything() {
    let local = LocalRepo::init(&small_params()).await;
    let ctx = JobContext::new(local.open().await, Concurrency::default());
    let config = Config::parse(
        "sources:\n  db: { kind: mysql, url: 'mysql://u@127.0.0.1:1' }\n  pg: { kind: postgres, url: 'postgres://u@127.0.0.1:1/app' }\n",
        "heirloom.yaml",
    )
    .unwrap();
    let options = jobs::RestoreOptions::default();
    let plan = |source: &'static str, to: &'static str, point: RestorePoint| {
        let (ctx, config, options) = (&ctx, &config, &options);
        async move {
            jobs::plan_restore(ctx, config, &source.parse().unwrap(), to, &point, options)
                .await
                .err()
                .map(|e| (e.is_usage(), e.to_string()))
        }
    };
    // A PostgreSQL point for a MySQL source, and the other way round.
    let lsn = RestorePoint::Lsn("0/3000028".parse().unwrap());
    let (usage, why) = plan("db", "mysql://u@h/x", lsn).await.unwrap();
    assert!(usage && why.contains("--lsn is not for mysql"), "{why}");
    let gtid = RestorePoint::Gtid("0-1-1".parse().unwrap());
    let (usage, why) = plan("pg", "/tmp/nowhere", gtid).await.unwrap();
    assert!(usage && why.contains("--gtid is not for postgres"), "{why}");
    // A target of another engine.
    let (usage, why) = plan("pg", "mysql://u@h/x", RestorePoint::Latest)
        .await
        .unwrap();
    assert!(usage && why.contains("mysql target"), "{why}");
    // A source neither the config nor the repository knows.
    let (usage, why) = plan("ghost", "/tmp/nowhere", RestorePoint::Latest)
        .await
        .unwrap();
    assert!(usage && why.contains("ghost"), "{why}");
    // A source the config knows, with nothing to restore from: named, not a usage error.
    let (usage, why) = plan("pg", "/tmp/nowhere", RestorePoint::Latest)
        .await
        .unwrap();
    assert!(!usage && why.contains("no PostgreSQL base backup"), "{why}");
    assert!(!std::path::Path::new("/tmp/nowhere").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_job_of_an_unreachable_server_fails_fast_and_names_it_even_when_shut_down() {
    let local = LocalRepo::init(&small_params()).await;
    let (trigger, shutdown) = Shutdown::new();
    let ctx = JobContext::new(local.open().await, Concurrency::default()).with_shutdown(shutdown);
    let port = support::free_port();
    let config = Config::parse(
        &format!("sources:\n  db: {{ kind: mysql, url: 'mysql://u@127.0.0.1:{port}' }}\n"),
        "x",
    )
    .unwrap();
    trigger.signal();
    let started = std::time::Instant::now();
    let err = jobs::stream_source(&ctx, &config, &"db".parse().unwrap(), &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Three years on a real file:// repository with the clock injected: a stream backup every third
/// day, and prune after each. Every month, every backup the policy keeps restores byte for byte,
/// and what is kept is what the selection promised: a backup in each of the last 36 months.
#[tokio::test(flavor = "multi_thread")]
async fn prune_applied_over_three_simulated_years_keeps_every_promised_backup_restorable() {
    use std::collections::BTreeMap;

    let local = LocalRepo::init(&small_params()).await;
    let repo = local.open().await;
    let config = Config::parse("retention: { default: three-year }\n", "x").unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T02:00:00Z")
        .unwrap()
        .to_utc();
    let shared = mixed_data(96 << 10, 1);
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut records = 0;
    let mut packs_deleted = 0;
    for step in 0..(365 * 3 / 3) {
        let at = start + chrono::Duration::days(3 * step);
        let ctx =
            JobContext::new(repo.clone(), Concurrency::default()).with_clock(Clock::fixed(at));
        let mut data = shared.clone();
        data.extend_from_slice(format!("backup of {at}").as_bytes());
        let options = notes_options();
        let summary = jobs::backup_stream(
            &ctx,
            &Config::default(),
            std::io::Cursor::new(data.clone()),
            &options,
        )
        .await
        .unwrap();
        contents.insert(summary.id.to_string(), data);
        // A day later, prune.
        let later = ctx
            .clone()
            .with_clock(Clock::fixed(at + chrono::Duration::days(1)));
        let report = jobs::prune(&later, &config, None, None, &Default::default())
            .await
            .unwrap();
        records += usize::from(report.record.is_some()) + usize::from(report.gc.record.is_some());
        packs_deleted += report.gc.packs_deleted;
        for d in &report.deleted {
            contents.remove(d.backup.as_str());
        }
        let listed = jobs::list(&later, None).await.unwrap();
        assert_eq!(
            listed.iter().map(|m| m.id.to_string()).collect::<Vec<_>>(),
            contents.keys().cloned().collect::<Vec<_>>(),
            "{at}: the repository holds exactly what prune kept"
        );
        if step % 10 == 9 {
            for (id, data) in &contents {
                let restored = support::repo::restore(&repo, &id.parse().unwrap())
                    .await
                    .unwrap();
                assert!(restored == *data, "{at}: backup {id} does not restore");
            }
            let now = later.now();
            for back in 0..36 {
                let month = (now.year() * 12 + now.month0() as i32) - back;
                let (y, m) = (month.div_euclid(12), month.rem_euclid(12) as u32 + 1);
                if (y, m) < (2026, 1) {
                    break;
                }
                assert!(
                    listed
                        .iter()
                        .any(|b| b.started.year() == y && b.started.month() == m),
                    "{now}: no backup of {y}-{m:02} is left"
                );
            }
        }
    }
    // One record per prune that deleted something, all readable.
    let on_record = repo.prune_records().await.unwrap();
    assert_eq!(on_record.len(), records);
    let deleted: usize = on_record.iter().map(|r| r.deleted.len()).sum();
    assert_eq!(deleted + contents.len(), 365);
    assert!(contents.len() < 100, "{} kept", contents.len());
    // Garbage collection kept the stored size bounded: the packs left are about what the kept
    // backups need, not what three years wrote.
    let packs_left = repo.stored_packs().await.unwrap().len();
    assert!(packs_deleted > 0);
    assert!(
        packs_left < 3 * contents.len() + 10,
        "{packs_left} packs left for {} backups ({packs_deleted} deleted)",
        contents.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verifies_of_the_next_part_read_the_parts_in_turn_from_what_is_recorded() {
    let local = LocalRepo::init(&small_params()).await;
    let repo = local.open().await;
    backup(&repo, &mixed_data(1 << 20, 4)).await.unwrap();
    let ctx = JobContext::new(repo, Concurrency::default());
    let mut parts = Vec::new();
    for _ in 0..4 {
        let part = jobs::next_part(&ctx, 3).await.unwrap();
        parts.push(part.to_string());
        // Records a second apart: the newest is the one the next part follows.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(jobs::verify(&ctx, Some(part)).await.unwrap().ok());
    }
    assert_eq!(parts, ["1/3", "2/3", "3/3", "1/3"]);
    // A verify of another split does not move this one.
    jobs::verify(&ctx, Some(Subset::Part { n: 1, t: 2 }))
        .await
        .unwrap();
    assert_eq!(jobs::next_part(&ctx, 3).await.unwrap().to_string(), "2/3");
}
