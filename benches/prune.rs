//! The prune benchmark: a file:// repository with BACKUPS PostgreSQL base backups (default 1,100)
//! and SEGMENTS archived WAL segments (default 100,000), spread over three simulated years and
//! generated through the library with small payloads; then `audit` (gathered, and rendered in all
//! three formats), `prune --dry-run` and `prune` under the default policy as of the end of those
//! years, and the second phase of garbage collection a day later. For each: seconds, peak RSS,
//! and the store requests made, by kind, against the objects stored. Run by
//! `scripts/bench-prune [BACKUPS] [SEGMENTS]`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use heirloom_backup::config::Config;
use heirloom_backup::jobs::{self, Clock, JobContext};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::repo::format::InitParams;
use heirloom_backup::repo::gc::GcOptions;
use heirloom_backup::repo::keys::KeySource;
use heirloom_backup::repo::Repository;
use heirloom_backup::store::{
    Backend, LocalBackend, ObjectInfo, PutOutcome, PutPayload, Store, StoreError,
};

#[path = "../tests/support/synthetic_wal.rs"]
mod synthetic_wal;

/// Counts every store request by kind.
#[derive(Debug)]
struct Counting {
    inner: LocalBackend,
    counts: [AtomicU64; 5],
}

const KINDS: [&str; 5] = ["put", "get", "get_range", "list", "delete"];

impl Counting {
    fn count(&self, kind: usize) {
        self.counts[kind].fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) -> BTreeMap<&'static str, u64> {
        KINDS
            .iter()
            .zip(&self.counts)
            .map(|(k, c)| (*k, c.swap(0, Ordering::Relaxed)))
            .collect()
    }
}

#[async_trait]
impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        self.count(0);
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.count(1);
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.count(2);
        self.inner.get_range(key, range).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.count(3);
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count(4);
        self.inner.delete(key).await
    }
}

/// Peak resident memory since the last reset, in MiB (Linux: VmHWM, reset through clear_refs).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let backups = arg(1, 1_100);
    let segments = arg(2, 100_000);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run(backups, segments));
}

async fn run(backups: u64, segments: u64) {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
        .expect("a temp dir");
    let backend = Arc::new(Counting {
        inner: LocalBackend::new(dir.path().join("repo")),
        counts: Default::default(),
    });
    let store = Store::new(backend.clone());
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let span = Duration::days(3 * 365);
    let key = KeySource::passphrase("bench");
    let repo = Repository::init(store, &key, &InitParams::default(), start)
        .await
        .expect("init");
    let clock = Instant::now();
    generate(&repo, dir.path(), start, span, backups, segments).await;
    eprintln!(
        "generated {backups} backups and {segments} WAL segments in {:.1}s",
        clock.elapsed().as_secs_f64()
    );
    backend.take();
    let objects = count_objects(&dir.path().join("repo"));
    println!("objects stored: {objects}");

    let end = start + span + Duration::hours(1);
    let config = Config::default();
    let gc = GcOptions::default();
    let measure = |what: &str, secs: f64, counts: BTreeMap<&str, u64>| {
        let total: u64 = counts.values().sum();
        println!(
            "{what:<26} {secs:>7.2} s  peak RSS {:>5} MiB  requests {total} ({})",
            peak_rss_mib(),
            counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };

    let ctx = JobContext::new(repo.clone(), Concurrency::default()).with_clock(Clock::fixed(end));
    reset_peak_rss();
    let clock = Instant::now();
    let audit = jobs::audit(&ctx, &config, &Default::default())
        .await
        .expect("audit");
    let rendered = serde_json::to_string(&audit).expect("json").len()
        + heirloom_backup::audit::markdown::render(&audit).len()
        + heirloom_backup::audit::html::render(&audit).len();
    let secs = clock.elapsed().as_secs_f64();
    measure("audit (JSON, MD, HTML)", secs, backend.take());
    let source = &audit.sources[0];
    println!(
        "  audit: {} backups, {} windows, {} log objects, {} checks failed; {} KiB rendered",
        source.backups.len(),
        source.windows.len(),
        source.log.as_ref().map_or(0, |l| l.objects),
        audit.failed.len(),
        rendered / 1024
    );

    reset_peak_rss();
    let clock = Instant::now();
    let plans = jobs::plan_retention(&ctx, &config, None, None, end)
        .await
        .expect("plan");
    let secs = clock.elapsed().as_secs_f64();
    measure("prune --dry-run", secs, backend.take());
    let plan = &plans[0];
    let log = plan.log.as_ref().expect("a log");
    println!(
        "  plan: {} kept, {} to delete; WAL: {} objects to delete in {} stretch(es)",
        plan.selection.kept().count(),
        plan.selection.deleted().count(),
        log.objects_deleted(),
        log.deleted.len()
    );

    reset_peak_rss();
    let clock = Instant::now();
    let report = jobs::prune(&ctx, &config, None, None, &gc)
        .await
        .expect("prune");
    let secs = clock.elapsed().as_secs_f64();
    measure("prune", secs, backend.take());
    println!(
        "  deleted {} backups, {} WAL objects; {} packs marked",
        report.deleted.len(),
        report.log_objects_deleted,
        report.gc.plan.mark.len()
    );

    reset_peak_rss();
    let later = end + Duration::hours(25);
    let ctx = JobContext::new(repo.clone(), Concurrency::default()).with_clock(Clock::fixed(later));
    let clock = Instant::now();
    let report = jobs::prune(&ctx, &config, None, None, &gc)
        .await
        .expect("second prune");
    let secs = clock.elapsed().as_secs_f64();
    measure("prune a day later (GC)", secs, backend.take());
    println!("  deleted {} packs", report.gc.packs_deleted);
    let _ = std::io::stdout().flush();
}

fn count_objects(root: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// `segments` WAL segments evenly over `span` from `start`, and `backups` base backups among them,
/// each from one segment to the next, with a small file of its own.
async fn generate(
    repo: &Repository,
    dir: &Path,
    start: DateTime<Utc>,
    span: Duration,
    backups: u64,
    segments: u64,
) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).expect("spool");
    futures::stream::iter(1..=segments)
        .map(|n| synthetic_wal::push_segment(repo, "pg", &spool, n))
        .buffer_unordered(8)
        .collect::<()>()
        .await;
    let step = span / i32::try_from(backups).expect("backups");
    futures::stream::iter(0..backups)
        .map(|b| {
            let at = start + step * i32::try_from(b).expect("backup number");
            let n = 1 + b * (segments - 1) / backups;
            synthetic_wal::physical_backup(repo, "pg", at, n)
        })
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await
        .expect("backups");
}
