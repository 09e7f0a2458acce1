//! Three years of a WAL-like source under the default policy, on a real file:// repository with the
//! clock injected: WAL segments archived every four hours through `wal-push`, a base backup every
//! third day (a synthetic one: `support::synthetic_wal`), and prune a day after each. Checked as it
//! goes: every backup kept restores byte for byte and keeps its own WAL; every instant of the window
//! plans a restore without a gap; the WAL and the packs stored stay bounded.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use heirloom_backup::config::Config;
use heirloom_backup::engine::postgres::wal::archived_with_sizes;
use heirloom_backup::jobs::{self, Clock, JobContext};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::restore::point::{Instant, RestorePoint};
use support::repo::{small_params, LocalRepo};
use support::synthetic_wal::{backup_body, physical_backup, push_segment, segment_name};

const SEGMENT_EVERY_HOURS: i64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn three_years_of_wal_and_backups_keep_the_window_and_every_kept_backup_restorable() {
    let local = LocalRepo::init(&small_params()).await;
    let repo = local.open().await;
    let spool = tempfile::tempdir().unwrap();
    let config = Config::default();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    // Segment n is closed at start + n × 4 h.
    let segment_at = |n: u64| start + Duration::hours(SEGMENT_EVERY_HOURS * n as i64);
    let mut pushed = 0u64;
    // Each backup: the segment it starts in, for checking its WAL.
    let mut backups: BTreeMap<String, u64> = BTreeMap::new();
    let mut max_wal = 0usize;
    for step in 0..365i64 {
        let at = start + Duration::days(3 * step) + Duration::hours(2);
        // The segment the backup starts in, and the next (its stop) are archived before its
        // manifest is written, as `backup` waits for them.
        let first = 1 + ((at - start).num_hours() / SEGMENT_EVERY_HOURS) as u64;
        while pushed < first + 1 {
            pushed += 1;
            push_segment(&repo, "pg", spool.path(), pushed).await;
        }
        let id = physical_backup(&repo, "pg", at, first).await.unwrap();
        backups.insert(id.to_string(), first);
        // A day of WAL later, prune.
        let now = at + Duration::days(1);
        while segment_at(pushed + 1) <= now {
            pushed += 1;
            push_segment(&repo, "pg", spool.path(), pushed).await;
        }
        let ctx =
            JobContext::new(repo.clone(), Concurrency::default()).with_clock(Clock::fixed(now));
        let report = jobs::prune(&ctx, &config, None, None, &Default::default())
            .await
            .unwrap();
        for d in &report.deleted {
            backups.remove(d.backup.as_str());
        }
        let archived: BTreeSet<String> = archived_with_sizes(&repo, "pg")
            .await
            .unwrap()
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect();
        max_wal = max_wal.max(archived.len());
        if step % 10 != 9 {
            continue;
        }
        // Every backup kept restores byte for byte, and its own WAL is stored.
        for (id, first) in &backups {
            let restored = support::repo::restore(&repo, &id.parse().unwrap())
                .await
                .unwrap();
            assert!(
                restored == backup_body(*first),
                "{now}: backup {id} does not restore"
            );
            for n in [*first, first + 1] {
                assert!(
                    archived.contains(&segment_name(n)),
                    "{now}: backup {id} lost its segment {}",
                    segment_name(n)
                );
            }
        }
        // Every day of the window (35 days back from now) plans a restore without a gap, from
        // a backup that is kept; and the window's first instant is what the plan stated.
        let window = report.plans[0].selection.window.as_ref().unwrap();
        let first_restorable = window.first_restorable.unwrap();
        // (Until there are 35 days of history, the window starts at the first backup.)
        let asked = now - Duration::days(35);
        assert!(
            first_restorable <= asked.max(start + Duration::hours(3)),
            "{now}: {window:?}"
        );
        let target = tempfile::tempdir().unwrap();
        let into = target.path().join("pgdata");
        let mut instant = asked.max(first_restorable);
        while instant < now {
            let point = RestorePoint::Time(Instant {
                at: instant,
                zone: chrono_tz::UTC,
            });
            let plan = jobs::plan_restore(
                &ctx,
                &config,
                &"pg".parse().unwrap(),
                into.to_str().unwrap(),
                &point,
                &Default::default(),
            )
            .await
            .unwrap();
            let summary = plan.summary();
            assert!(
                summary.problem.is_none() && summary.gaps.is_empty(),
                "{now}: {instant} is not restorable: {summary:?}"
            );
            assert!(backups.contains_key(summary.backup.as_str()));
            assert!(summary.backup_consistent_at <= instant);
            instant += Duration::hours(23);
        }
    }
    // Three years wrote 6,570 segments; what is stored is the window's and the archival points'.
    assert!(pushed > 6_500, "{pushed}");
    let kept = backups.len();
    assert!(kept < 100, "{kept} backups kept");
    assert!(
        max_wal < 36 * 6 + 2 * kept + 20,
        "{max_wal} WAL segments stored at most, for {kept} backups"
    );
}
