use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn berlin(text: &str) -> Cron {
    Cron::parse(text, chrono_tz::Europe::Berlin).unwrap()
}

fn new_york(text: &str) -> Cron {
    Cron::parse(text, chrono_tz::America::New_York).unwrap()
}

#[test]
fn five_and_six_fields_in_a_zone() {
    let daily = berlin("30 2 * * *");
    // 02:30 in Berlin in winter is 01:30 UTC.
    assert_eq!(
        daily.next_after(at("2026-12-01T00:00:00Z")),
        Some(at("2026-12-01T01:30:00Z"))
    );
    let with_seconds = Cron::parse("15 30 2 * * *", chrono_tz::UTC).unwrap();
    assert_eq!(
        with_seconds.next_after(at("2026-12-01T02:30:15Z")),
        Some(at("2026-12-02T02:30:15Z"))
    );
    assert_eq!(
        Cron::parse("*/10 * * * *", chrono_tz::UTC)
            .unwrap()
            .upcoming(at("2026-12-01T00:05:00Z"), 3),
        [
            at("2026-12-01T00:10:00Z"),
            at("2026-12-01T00:20:00Z"),
            at("2026-12-01T00:30:00Z")
        ]
    );
    for bad in [
        "* * * *",
        "61 * * * *",
        "0 2 * * 8",
        "0 0 2 * * * * *",
        "a b c d e",
    ] {
        assert!(Cron::parse(bad, chrono_tz::UTC).is_err(), "{bad}");
    }
}

#[test]
fn days_of_the_week_count_as_crontab_does() {
    // 1 is Monday, 0 and 7 Sunday; 2026-12-06 is a Sunday.
    let monday = Cron::parse("0 3 * * 1", chrono_tz::UTC).unwrap();
    assert_eq!(
        monday.next_after(at("2026-12-01T00:00:00Z")),
        Some(at("2026-12-07T03:00:00Z"))
    );
    for sunday in ["0 3 * * 0", "0 3 * * 7", "0 3 * * SUN"] {
        assert_eq!(
            Cron::parse(sunday, chrono_tz::UTC)
                .unwrap()
                .next_after(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-06T03:00:00Z")),
            "{sunday}"
        );
    }
    let weekdays = Cron::parse("0 3 * * 1-5", chrono_tz::UTC).unwrap();
    assert_eq!(
        weekdays.upcoming(at("2026-12-04T04:00:00Z"), 2),
        [at("2026-12-07T03:00:00Z"), at("2026-12-08T03:00:00Z")]
    );
    let weekend = Cron::parse("0 3 * * 6-7", chrono_tz::UTC).unwrap();
    assert_eq!(
        weekend.upcoming(at("2026-12-01T00:00:00Z"), 2),
        [at("2026-12-05T03:00:00Z"), at("2026-12-06T03:00:00Z")]
    );
}

#[test]
fn a_skipped_time_runs_once_at_the_jump_and_a_repeated_one_once() {
    // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    let daily = berlin("30 2 * * *");
    assert_eq!(
        daily.upcoming(at("2026-03-28T12:00:00Z"), 2),
        [at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
    );
    // 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 happens at 00:30 and 01:30 UTC.
    assert_eq!(
        daily.upcoming(at("2026-10-24T12:00:00Z"), 2),
        [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
    );
    // Every quarter hour: the repeated hour runs once, the skipped one not at all.
    let often = berlin("*/15 * * * *");
    let runs = often.upcoming(at("2026-10-24T23:50:00Z"), 6);
    assert_eq!(
        runs,
        [
            at("2026-10-25T00:00:00Z"), // 02:00 CEST
            at("2026-10-25T00:15:00Z"),
            at("2026-10-25T00:30:00Z"),
            at("2026-10-25T00:45:00Z"),
            at("2026-10-25T02:00:00Z"), // 03:00 CET: 02:00..02:45 CET ran as CEST
            at("2026-10-25T02:15:00Z"),
        ]
    );
    let spring = often.upcoming(at("2026-03-29T00:50:00Z"), 3);
    assert_eq!(
        spring,
        [
            at("2026-03-29T01:00:00Z"), // 03:00 CEST (02:00, 02:15 … skipped, run once here)
            at("2026-03-29T01:15:00Z"),
            at("2026-03-29T01:30:00Z"),
        ]
    );
    // New York: 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT goes
    // back to 01:00 EST.
    let ny = new_york("30 2 * * *");
    assert_eq!(
        ny.upcoming(at("2026-03-07T12:00:00Z"), 2),
        [at("2026-03-08T07:00:00Z"), at("2026-03-09T06:30:00Z")]
    );
    let ny_one = new_york("30 1 * * *");
    assert_eq!(
        ny_one.upcoming(at("2026-10-31T12:00:00Z"), 2),
        [at("2026-11-01T05:30:00Z"), at("2026-11-02T06:30:00Z")]
    );
}

#[test]
fn runs_missed_while_asleep_run_once() {
    let hourly = Cron::parse("0 * * * *", chrono_tz::UTC).unwrap();
    // Asleep from 01:10 to 06:20: five runs fell due; the newest runs, once.
    assert_eq!(
        hourly.due(at("2026-12-01T01:10:00Z"), at("2026-12-01T06:20:00Z")),
        Some(at("2026-12-01T06:00:00Z"))
    );
    assert_eq!(
        hourly.due(at("2026-12-01T06:00:00Z"), at("2026-12-01T06:59:59Z")),
        None
    );
    assert_eq!(
        hourly.due(at("2026-12-01T06:00:00Z"), at("2026-12-01T07:00:00Z")),
        Some(at("2026-12-01T07:00:00Z"))
    );
}

#[test]
fn jitter_is_within_its_bound_and_stable_per_source() {
    let bound = std::time::Duration::from_secs(15 * 60);
    let offsets: Vec<Duration> = (0..100)
        .map(|i| jitter_offset(&format!("db-{i}"), "backup", bound))
        .collect();
    assert!(offsets
        .iter()
        .all(|o| *o >= Duration::zero() && *o < Duration::minutes(15)));
    // Stable: the same source and job, the same offset.
    assert_eq!(offsets[7], jitter_offset("db-7", "backup", bound));
    // Spread: a hundred sources do not start in a handful of minutes.
    let mut minutes: Vec<i64> = offsets.iter().map(|o| o.num_minutes()).collect();
    minutes.sort_unstable();
    minutes.dedup();
    assert!(minutes.len() >= 12, "{minutes:?}");
    assert_ne!(
        jitter_offset("db-1", "backup", bound),
        jitter_offset("db-1", "prune", bound)
    );
    assert_eq!(
        jitter_offset("db", "backup", std::time::Duration::ZERO),
        Duration::zero()
    );
}
