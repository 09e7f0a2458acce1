use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Source `a` with `schedules`, and `b` with `other`.
fn config_of(schedules: &str, other: &str) -> Config {
    Config::parse(
        &format!(
            "sources:\n  a:\n    kind: postgres\n    url: 'postgres://x'\n    schedules: {schedules}\n  b:\n    kind: postgres\n    url: 'postgres://y'\n    schedules: {other}\n"
        ),
        "x",
    )
    .unwrap()
}

fn config(schedules: &str) -> Config {
    config_of(schedules, "{}")
}

fn started(decisions: &[Decision]) -> Vec<(String, Job, DateTime<Utc>)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Start(r) => Some((r.source.to_string(), r.job, r.scheduled)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_due_while_the_last_goes_on_is_skipped_not_started_twice() {
    let mut s = Scheduler::new(
        &config("{ backup: '*/5 * * * *' }"),
        at("2026-12-01T00:00:30Z"),
    );
    let a: SourceName = "a".parse().unwrap();
    assert_eq!(s.tick(at("2026-12-01T00:04:59Z")), []);
    let d = s.tick(at("2026-12-01T00:05:01Z"));
    assert_eq!(
        started(&d),
        [("a".into(), Job::Backup, at("2026-12-01T00:05:00Z"))]
    );
    // It overruns past the next run.
    let d = s.tick(at("2026-12-01T00:10:02Z"));
    assert!(started(&d).is_empty());
    assert!(
        matches!(
            &d[..],
            [Decision::Skip { scheduled, running_since, .. }]
                if *scheduled == at("2026-12-01T00:10:00Z") && *running_since == at("2026-12-01T00:05:01Z")
        ),
        "{d:?}"
    );
    s.finished(&a, Job::Backup);
    // Finished: the skipped run is not made up for; the next one starts.
    assert_eq!(s.tick(at("2026-12-01T00:12:00Z")), []);
    let d = s.tick(at("2026-12-01T00:15:00Z"));
    assert_eq!(started(&d).len(), 1);
}

#[test]
fn runs_missed_while_asleep_start_once_and_history_before_the_start_is_not_run() {
    let mut s = Scheduler::new(
        &config("{ backup: '0 * * * *' }"),
        at("2026-12-01T01:30:00Z"),
    );
    // Nothing of what fell due before the agent started.
    assert_eq!(started(&s.tick(at("2026-12-01T01:30:01Z"))), []);
    // Asleep from 01:30 to 06:20: one run, the newest.
    let d = s.tick(at("2026-12-01T06:20:00Z"));
    assert_eq!(
        started(&d),
        [("a".into(), Job::Backup, at("2026-12-01T06:00:00Z"))]
    );
}

#[test]
fn prunes_of_one_repository_never_run_at_once() {
    let c = config_of("{ prune: '*/10 * * * *' }", "{ prune: '*/10 * * * *' }");
    let mut s = Scheduler::new(&c, at("2026-12-01T00:05:00Z"));
    let d = s.tick(at("2026-12-01T00:10:00Z"));
    // Both sources' prunes fall due; one starts, the other waits.
    let first = started(&d);
    assert_eq!(first.len(), 1, "{d:?}");
    assert_eq!(started(&s.tick(at("2026-12-01T00:11:00Z"))), []);
    let source: SourceName = first[0].0.parse().unwrap();
    s.finished(&source, Job::Prune);
    let second = started(&s.tick(at("2026-12-01T00:11:30Z")));
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].0, first[0].0);
    assert_eq!(
        second[0].2,
        at("2026-12-01T00:10:00Z"),
        "it was due at 00:10"
    );
}

#[test]
fn a_run_past_its_deadline_is_cancelled_once() {
    let mut s = Scheduler::new(
        &config("{ backup: { cron: '0 * * * *', deadline: 20m } }"),
        at("2026-12-01T00:30:00Z"),
    );
    let d = s.tick(at("2026-12-01T01:00:00Z"));
    let Decision::Start(run) = &d[0] else {
        panic!("{d:?}")
    };
    assert_eq!(run.deadline, at("2026-12-01T01:20:00Z"));
    // The loop looks again at the deadline, before the next run at 02:00.
    assert_eq!(
        s.next_wake(at("2026-12-01T01:00:00Z")),
        Some(at("2026-12-01T01:20:00Z"))
    );
    let d = s.tick(at("2026-12-01T01:20:00Z"));
    assert!(
        matches!(&d[..], [Decision::Cancel { deadline, .. }] if *deadline == at("2026-12-01T01:20:00Z")),
        "{d:?}"
    );
    assert_eq!(s.tick(at("2026-12-01T01:21:00Z")), [], "cancelled once");
}

#[test]
fn verify_reads_its_parts_in_turn_and_drills_say_how() {
    let mut s = Scheduler::new(
        &config("{ verify: { cron: '0 * * * *', read_data_parts: 3 }, drill: { cron: '30 * * * *', random_in_window: true } }"),
        at("2026-12-01T00:59:00Z"),
    );
    let a: SourceName = "a".parse().unwrap();
    let mut parts = Vec::new();
    for hour in 1..=4 {
        let d = s.tick(at(&format!("2026-12-01T{hour:02}:00:00Z")));
        for decision in d {
            match decision {
                Decision::Start(r) if r.job == Job::Verify => parts.push(r.part),
                Decision::Start(r) => s.finished(&a, r.job),
                _ => {}
            }
        }
        s.finished(&a, Job::Verify);
    }
    assert_eq!(
        parts,
        [Some((1, 3)), Some((2, 3)), Some((3, 3)), Some((1, 3))]
    );
    let d = s.tick(at("2026-12-01T04:30:00Z"));
    assert!(
        matches!(&d[..], [Decision::Start(r)] if r.job == Job::Drill && r.random_in_window),
        "{d:?}"
    );
}

#[test]
fn jitter_delays_every_run_by_the_sources_offset() {
    let c = config("{ backup: { cron: '0 2 * * *', jitter: 1h } }");
    let offset = jitter_offset("a", "backup", std::time::Duration::from_secs(3600));
    let mut s = Scheduler::new(&c, at("2026-12-01T00:00:00Z"));
    let due = at("2026-12-01T02:00:00Z") + offset;
    assert_eq!(s.next_wake(at("2026-12-01T00:00:00Z")), Some(due));
    assert_eq!(started(&s.tick(due - Duration::seconds(1))), []);
    assert_eq!(started(&s.tick(due)), [("a".into(), Job::Backup, due)]);
}
