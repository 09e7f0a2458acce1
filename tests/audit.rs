//! `audit`: a repository generated deterministically (a fixed master secret, the clock injected,
//! every name and time fixed) gives byte-identical JSON and Markdown to `tests/golden/`; a gap in
//! the WAL, a backup too old and a month without a restore point each fail their check with exit
//! code 4, naming the evidence; the HTML opens in headless Chromium without an error, with the
//! timeline's elements for each source.
//!
//! `HEIRLOOM_BLESS=1` rewrites the golden files from the current output (then read the diff).

mod support;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use heirloom_backup::audit::{html, markdown, Audit, CheckStatus};
use heirloom_backup::config::Config;
use heirloom_backup::jobs::{self, AuditRequest, Clock, JobContext};
use heirloom_backup::pipeline::verify::Subset;
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::repo::crypto::MasterSecret;
use heirloom_backup::repo::drill_record::{DrillCheck, DrillPoint, DrillRecord, TableRows};
use heirloom_backup::repo::manifest::BackupId;
use heirloom_backup::repo::Repository;
use support::repo::{small_params, test_key};
use support::synthetic_wal::{physical_backup_as, push_segment, segment_name};

const HOURS_PER_SEGMENT: i64 = 6;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn start() -> DateTime<Utc> {
    at("2026-07-01T00:00:00Z")
}

/// When segment `n` was closed and archived.
fn segment_at(n: u64) -> DateTime<Utc> {
    start() + Duration::hours(HOURS_PER_SEGMENT * n as i64)
}

/// The instant the golden audit judges at.
fn audit_at() -> DateTime<Utc> {
    at("2026-11-30T12:00:00Z")
}

struct World {
    dir: tempfile::TempDir,
    repo: Repository,
    backups: Vec<BackupId>,
}

impl World {
    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn config_file(&self) -> PathBuf {
        let key = self.dir.path().join("key");
        support::write_key(&key, &[42u8; 32]);
        let path = self.dir.path().join("heirloom.yaml");
        std::fs::write(&path, support::config_text(&self.root(), &key, "")).unwrap();
        path
    }

    fn ctx(&self, now: DateTime<Utc>) -> JobContext {
        JobContext::new(self.repo.clone(), Concurrency::default()).with_clock(Clock::fixed(now))
    }

    /// `audit` through the command line, as of `at`: its exit code and JSON.
    fn cli_audit(&self, at: &str) -> (i32, Audit) {
        let out = assert_cmd::Command::cargo_bin("heirloom-backup")
            .unwrap()
            .env("HEIRLOOM_HOST", "golden-host")
            .args(["--config", self.config_file().to_str().unwrap()])
            .args(["audit", "--format", "json", "--at", at])
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let audit = Audit::from_json(&text).unwrap_or_else(|e| {
            panic!(
                "audit printed no audit ({e}); exit {code}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, audit)
    }
}

/// Sets a file's modification time: what a file:// store reports as the object's last change.
fn set_mtime(path: &Path, t: DateTime<Utc>) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::from(t)).unwrap();
}

/// Source `pg`, from 2026-07-01: a WAL segment every 6 hours; a base backup weekly from July to
/// 18 November, then daily to 30 November (02:00, consistent at 02:05); pruned under the default
/// policy at 03:00 on the 30th; a hold; a verify reading every byte; a failed and a passed drill.
async fn world() -> World {
    // Every record names its host; the golden files must not depend on this machine's name.
    std::env::set_var("HEIRLOOM_HOST", "golden-host");
    let dir = tempfile::tempdir().unwrap();
    let local: std::sync::Arc<dyn heirloom_backup::store::Backend> = std::sync::Arc::new(
        heirloom_backup::store::LocalBackend::new(dir.path().join("repo")),
    );
    let secret = MasterSecret {
        data_key: [7u8; 32],
        id_key: [9u8; 32],
        chunker_seed: 0x5eed_0001,
    };
    let repo = Repository::init_with_secret(
        heirloom_backup::store::Store::new(local),
        &test_key(),
        &small_params(),
        start(),
        secret,
    )
    .await
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut pushed = 0u64;
    let mut backups = Vec::new();
    let days: Vec<i64> = (0..=140).step_by(7).chain(141..=152).collect();
    for day in days {
        let when = start() + Duration::days(day) + Duration::hours(2);
        let first = 1 + ((when - start()).num_hours() / HOURS_PER_SEGMENT) as u64;
        while pushed < first + 1 {
            pushed += 1;
            push_segment(&repo, "pg", spool.path(), pushed).await;
        }
        let id = physical_backup_as(&repo, "pg", when, first, Some(day as u32))
            .await
            .unwrap();
        backups.push(id);
    }
    let world = World { dir, repo, backups };
    let prune_at = at("2026-11-30T03:00:00Z");
    while segment_at(pushed + 1) <= prune_at {
        pushed += 1;
        push_segment(&world.repo, "pg", spool.path(), pushed).await;
    }
    jobs::prune(
        &world.ctx(prune_at),
        &Config::default(),
        None,
        None,
        &Default::default(),
    )
    .await
    .unwrap();
    while segment_at(pushed + 1) <= audit_at() {
        pushed += 1;
        push_segment(&world.repo, "pg", spool.path(), pushed).await;
    }
    // A hold on September's last backup, made at 04:00.
    let september = world
        .backups
        .iter()
        .rfind(|id| id.as_str().starts_with("202609"))
        .unwrap()
        .clone();
    let manifest = world.repo.manifest(&september).await.unwrap();
    world
        .repo
        .add_hold(
            &manifest,
            "audit of fiscal year 2026",
            None,
            at("2026-11-30T04:00:00Z"),
        )
        .await
        .unwrap();
    jobs::verify(&world.ctx(at("2026-11-30T05:00:00Z")), Some(Subset::All))
        .await
        .unwrap();
    for (finished, passed) in [
        ("2026-11-20T06:10:00Z", false),
        ("2026-11-30T06:10:00Z", true),
    ] {
        let finished = at(finished);
        let backup = world
            .backups
            .iter()
            .rfind(|id| id.as_str() < finished.format("%Y%m%dT").to_string().as_str())
            .cloned();
        let record = DrillRecord {
            version: 1,
            source: "pg".parse().unwrap(),
            engine: "postgres".into(),
            started: finished - Duration::minutes(10),
            finished,
            host: "golden-host".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            point: DrillPoint {
                kind: "latest".into(),
                at: None,
                drawn_from: None,
            },
            target: "a scratch PostgreSQL server".into(),
            backup,
            backup_kind: None,
            backup_consistent_at: None,
            log: None,
            reached: Some(finished - Duration::minutes(11)),
            restore_seconds: if passed { 41.5 } else { 0.0 },
            check_seconds: if passed { 12.25 } else { 0.0 },
            checks: vec![DrillCheck {
                name: "started".into(),
                passed,
                detail: if passed {
                    "the server started".into()
                } else {
                    "the restore failed before the server started".into()
                },
            }],
            tables: if passed {
                vec![TableRows {
                    table: "app.public.orders".into(),
                    rows: 1200,
                }]
            } else {
                Vec::new()
            },
            passed,
            failure: (!passed).then(|| {
                "data/3f/3f00…: authentication failed (wrong key or altered bytes)".to_owned()
            }),
        };
        world.repo.record_drill(&record).await.unwrap();
    }
    // The store dates each WAL object by its file's modification time: when it was archived.
    // (Prune deleted the WAL nothing kept needs.)
    for n in 1..=pushed {
        let path = world.root().join("wal/pg").join(segment_name(n));
        if path.exists() {
            set_mtime(&path, segment_at(n));
        }
    }
    world
}

async fn golden_audit(world: &World) -> Audit {
    jobs::audit(
        &world.ctx(audit_at()),
        &Config::default(),
        &AuditRequest {
            location: Some("file:///srv/backups/golden".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("HEIRLOOM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (HEIRLOOM_BLESS=1 writes it from the current output)",
            path.display()
        )
    });
    if expected != actual {
        let artifact = artifacts().join(name);
        std::fs::write(&artifact, actual).unwrap();
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output from line {} on: expected {:?}, got {:?} (the output is in {})",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
            artifact.display()
        );
    }
}

/// Where the tests keep what a reader may want to look at (the screenshot, a differing output).
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_repository_gives_the_golden_json_and_markdown() {
    let world = world().await;
    let audit = golden_audit(&world).await;
    // What the world was built to show, before the bytes.
    assert!(audit.passed, "{:?}", audit.failed);
    let pg = &audit.sources[0];
    assert_eq!(pg.source, "pg");
    assert!(pg.checks.iter().all(|c| c.status != CheckStatus::Fail));
    assert_eq!(pg.first_backup, Some(at("2026-07-01T02:05:00Z")));
    assert!(pg.backups.iter().any(|b| !b.holds.is_empty()));
    assert_eq!(pg.drills.history.len(), 2);
    assert!(pg.drills.last_passed.is_some());
    assert_eq!(
        pg.log
            .as_ref()
            .unwrap()
            .newest
            .as_ref()
            .unwrap()
            .age_seconds,
        0
    );
    let json = serde_json::to_string_pretty(&audit).unwrap() + "\n";
    assert_eq!(
        Audit::from_json(&json).unwrap(),
        audit,
        "the JSON reads back"
    );
    golden("audit.json", &json);
    golden("audit.md", &markdown::render(&audit));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_an_old_backup_and_a_missing_month_each_fail_with_exit_4_naming_the_evidence() {
    let world = world().await;
    let (code, audit) = world.cli_audit("2026-11-30T12:00:00Z");
    assert_eq!((code, audit.failed.clone()), (0, Vec::<String>::new()));

    // The newest backup, 30 November 02:05, is 3 days old on 3 December.
    let (code, audit) = world.cli_audit("2026-12-03T06:00:00Z");
    assert_eq!(code, 4);
    assert!(audit.failed.contains(&"pg: backup-age".to_owned()));
    let check = find(&audit, "backup-age");
    assert!(
        check.evidence[0].contains("20261130T020000Z-00000098") && check.evidence[0].contains("3d"),
        "{check:?}"
    );

    // A WAL file inside the window goes missing.
    let lost = segment_name(1 + (24 / HOURS_PER_SEGMENT as u64) * 150);
    std::fs::remove_file(world.root().join("wal/pg").join(&lost)).unwrap();
    let (code, audit) = world.cli_audit("2026-11-30T12:00:00Z");
    assert_eq!(code, 4);
    assert_eq!(audit.failed, ["pg: window-continuous"]);
    let check = find(&audit, "window-continuous");
    assert!(
        check
            .evidence
            .iter()
            .any(|e| e.contains(&format!("WAL file {lost}")) && e.contains("not in the archive")),
        "{check:?}"
    );
    // Besides the stretches prune deleted (their record names them), that one gap.
    let gaps = &audit.sources[0].log.as_ref().unwrap().gaps;
    let unexplained: Vec<_> = gaps
        .iter()
        .filter(|g| !g.gap.cause.starts_with("deleted by the prune of"))
        .collect();
    assert_eq!(unexplained.len(), 1, "{gaps:?}");
    assert_eq!(unexplained[0].gap.missing, format!("WAL file {lost}"));

    // August's backups are forgotten: August has no restore point left.
    for id in world
        .backups
        .iter()
        .filter(|id| id.as_str().starts_with("202608"))
    {
        match world.repo.forget(id).await {
            Ok(_) | Err(heirloom_backup::repo::RepoError::BackupNotFound(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let (code, audit) = world.cli_audit("2026-11-30T12:00:00Z");
    assert_eq!(code, 4);
    assert!(audit.failed.contains(&"pg: monthly-points".to_owned()));
    let check = find(&audit, "monthly-points");
    assert!(
        check
            .evidence
            .iter()
            .any(|e| e.starts_with("2026-08: no restore point")),
        "{check:?}"
    );
}

fn find<'a>(audit: &'a Audit, id: &str) -> &'a heirloom_backup::audit::Check {
    audit.sources[0].checks.iter().find(|c| c.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_opens_in_a_browser_without_errors_with_a_timeline_per_source() {
    let world = world().await;
    // A second source: a stream piped in, without a log, so with checks that fail.
    heirloom_backup::pipeline::backup::backup_stream(
        &world.repo,
        std::io::Cursor::new(b"the contents of /etc".repeat(500)),
        &support::repo::options("etc"),
        heirloom_backup::progress::Progress::none(),
        at("2026-11-29T01:00:00Z"),
    )
    .await
    .unwrap();
    let audit = golden_audit(&world).await;
    assert_eq!(audit.sources.len(), 2);
    let dir = artifacts();
    let page = dir.join("audit.html");
    std::fs::write(&page, html::render(&audit)).unwrap();
    let python = std::env::var("HEIRLOOM_TEST_PYTHON")
        .expect("HEIRLOOM_TEST_PYTHON is unset: run the tests through scripts/test, which installs Playwright");
    let chromium = std::env::var("HEIRLOOM_TEST_CHROMIUM").expect(
        "HEIRLOOM_TEST_CHROMIUM is unset: run the tests through scripts/test (apt-get install chromium)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/browser_check.py");
    let shot = dir.join("audit.png");
    let (etc, pg) = (&audit.sources[0], &audit.sources[1]);
    assert_eq!((etc.source.as_str(), pg.source.as_str()), ("etc", "pg"));
    let selectors = [
        "svg.timeline[data-source=\"pg\"]",
        "svg.timeline[data-source=\"pg\"] rect.window",
        "svg.timeline[data-source=\"pg\"] circle.backup",
        "svg.timeline[data-source=\"pg\"] circle.hold",
        "svg.timeline[data-source=\"pg\"] path.drill",
        "svg.timeline[data-source=\"pg\"] line.now",
        "div.check[data-status=\"fail\"]",
        "svg.timeline[data-source=\"pg\"] rect.gap.pruned",
        "svg.timeline[data-source=\"pg\"] rect.gap.lost",
        "svg.timeline[data-source=\"etc\"]",
        "svg.timeline[data-source=\"etc\"] circle.backup",
        "svg.timeline[data-source=\"etc\"] rect.window",
        "svg.timeline",
    ];
    let run = |page: &Path, shot: &Path| {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&chromium)
            .arg(page)
            .arg(shot)
            .args(selectors)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the browser check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let seen = run(&page, &shot);
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["external_requests"], serde_json::json!([]), "{seen}");
    let count = |i: usize| seen["counts"][selectors[i]].as_u64().unwrap();
    assert_eq!(count(0), 1);
    assert_eq!(count(1), pg.windows.len() as u64);
    assert!(count(1) >= 1);
    assert_eq!(count(2), pg.backups.len() as u64);
    assert_eq!(count(3), 1, "the held backup is ringed");
    assert_eq!(count(4), 2, "both drills");
    assert_eq!(count(5), 1);
    // The failed checks are the stream source's: no log for the window, a backup of 35 hours
    // ago, no drill.
    let failed = audit.failed.len() as u64;
    assert_eq!(
        audit.failed,
        [
            "etc: window-continuous",
            "etc: backup-age",
            "etc: drill-recent",
            "etc: drill-passed"
        ]
    );
    assert_eq!(count(6), failed);
    assert_eq!((count(9), count(10), count(11)), (1, 1, 0));
    assert_eq!(
        count(12),
        audit.sources.len() as u64,
        "a timeline per source"
    );
    let gaps = pg.log.as_ref().unwrap().gaps.len() as u64;
    assert_eq!(
        (count(7), count(8)),
        (gaps, 0),
        "the pruned stretches, no loss"
    );
    assert!(gaps >= 1);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());

    // The check sees errors when there are some: a page that throws is caught.
    let broken = dir.join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><script>console.error('boom'); undefinedCall();</script></body></html>",
    )
    .unwrap();
    let seen = run(&broken, &dir.join("broken.png"));
    let errors = seen["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{seen}");
}
